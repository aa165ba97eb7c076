"""`nox -s tests` relies on pytest-xdist's `--dist loadgroup`: a file marked `xdist_group`
runs on one worker, so its expensive module fixture (a site build, a batch of serial grades,
an nbgrader course) runs once and no two workers write the same folder. A pytest/xdist pair
where the mark is silently ignored (pytest 9.2 with xdist 3.8) doubled CI's slowest fixtures
and let two site builds race; this test runs a tiny suite the way nox does and checks it."""

from __future__ import annotations

import subprocess
import sys

GROUPED = '''
import os
import pytest

pytestmark = pytest.mark.xdist_group("one")


@pytest.mark.parametrize("n", range(6))
def test_records_its_worker(n, tmp_path_factory):
    (tmp_path_factory.getbasetemp().parent / f"pid-{n}").write_text(str(os.getpid()))
'''
UNGROUPED = '''
import time


def test_a():
    time.sleep(0.5)


def test_b():
    time.sleep(0.5)
'''


def test_an_xdist_group_runs_on_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "test_ungrouped.py").write_text(UNGROUPED)
    base = tmp_path / "base"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
                          "--dist", "loadgroup", "--basetemp", str(base), "--rootdir", str(tmp_path), str(tmp_path)],
                         check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    workers = {path.read_text() for path in base.glob("pid-*")}
    assert len(list(base.glob("pid-*"))) == 6, sorted(p.name for p in base.iterdir())
    assert len(workers) == 1, f"one xdist_group ran on {len(workers)} workers: loadgroup ignores the mark"
