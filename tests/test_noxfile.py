"""The noxfile's own promises: a one-line refusal on a Python the course does not support."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


class _Stopped(Exception):
    pass


class _Session:
    """Just enough of nox.Session: `error` stops the session with its message, as nox's does."""

    def error(self, message):
        raise _Stopped(message)


def test_an_older_python_is_refused_in_one_line(noxfile):
    with pytest.raises(_Stopped) as stopped:
        noxfile._require_python(_Session(), (3, 10, 12))
    message = str(stopped.value)
    assert "\n" not in message
    assert "Python 3.11 or newer" in message and "3.10.12" in message


def test_a_supported_python_goes_on(noxfile):
    noxfile._require_python(_Session(), (3, 11, 0))
    noxfile._require_python(_Session(), (3, 13, 1))


def test_pyproject_asks_for_the_noxfiles_python(noxfile):
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=" + ".".join(map(str, noxfile.MIN_PYTHON))
