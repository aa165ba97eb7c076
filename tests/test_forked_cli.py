"""The tests' forked `python -m graders` (tests/forked_cli.py) behaves as the real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests import forked_cli
from tests.conftest import ASSIGNMENTS, REFERENCE, ROOT, records_by_name

CHAPTER = "5"


def environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}


def real(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graders", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=environment())


@pytest.mark.parametrize("tree", [REFERENCE, ASSIGNMENTS], ids=["reference", "stub"])
def test_a_forked_grade_equals_the_real_commands(tree, tmp_path):
    args = ["grade", "--impl", str(tree), "--chapter", CHAPTER, "--no-progress", "--report"]
    forked = forked_cli.run([*args, str(tmp_path / "forked")], environment(), 600)
    plain = real([*args, str(tmp_path / "real")])
    assert forked.returncode == plain.returncode == 0, forked.stderr
    graded = [json.loads((tmp_path / run / "grade.json").read_text()) for run in ("forked", "real")]
    assert graded[0] == graded[1]  # grade.json holds no timings: every score and message is equal
    assert records_by_name(graded[0], "layer_normalization")  # the comparison compared a chapter


def test_an_error_exits_as_the_real_command_does(tmp_path):
    args = ["grade", "--impl", str(tmp_path / "nowhere"), "--report", str(tmp_path / "r")]
    forked, plain = forked_cli.run(args, environment(), 600), real(args)
    assert (forked.returncode, forked.stdout, forked.stderr) == (plain.returncode, plain.stdout, plain.stderr)
    assert forked.returncode == 2 and "nowhere" in forked.stderr


def test_a_command_past_its_timeout_is_killed_and_the_server_serves_on(tmp_path):
    args = ["grade", "--impl", str(REFERENCE), "--chapter", CHAPTER, "--no-progress", "--report"]
    with pytest.raises(subprocess.TimeoutExpired):
        forked_cli.run([*args, str(tmp_path / "slow")], environment(), 0.5)
    again = forked_cli.run(["grade", "--impl", str(tmp_path / "nowhere"), "--report", str(tmp_path / "r")],
                           environment(), 600)
    assert again.returncode == 2
