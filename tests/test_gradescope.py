"""The Gradescope autograder: `python -m graders gradescope` builds autograder.zip, and its
`run_autograder`, run against a fake /autograder tree, writes results.json with the points
`python -m graders grade` gives the same submission."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

from graders import chapters
from tests.conftest import REFERENCE, ROOT, grade
from tests.mutants.ch05 import MUTANTS

CHAPTER = chapters.find(5)
MODULE = f"{CHAPTER.module}.py"
MUTANT = next(m for m in MUTANTS if m.name == "layernorm_bias_ignored")


def test_run_autograder_scores_like_the_grade_command(tmp_path):
    built = subprocess.run([sys.executable, "-m", "graders", "gradescope", "--dest", str(tmp_path / "dist"),
                            "--chapter", str(CHAPTER.number)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    autograder = tmp_path / "autograder"
    with zipfile.ZipFile(tmp_path / "dist" / "autograder.zip") as archive:
        names = set(archive.namelist())
        assert {"setup.sh", "run_autograder", f"source/graders/hidden/test_{CHAPTER.slug}.py",
                f"source/reference_solutions/{MODULE}"} <= names
        assert not any("__pycache__" in name for name in names)
        archive.extractall(autograder)
    (autograder / "submission").mkdir()
    (autograder / "results").mkdir()
    (autograder / "submission" / MODULE).write_text(MUTANT.apply((REFERENCE / MODULE).read_text()))

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONPATH"))}
    env |= {"AUTOGRADER_ROOT": str(autograder), "AUTOGRADER_PYTHON": sys.executable}
    run = subprocess.run(["bash", str(autograder / "run_autograder")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr

    results = json.loads((autograder / "results" / "results.json").read_text())
    expected = grade(autograder / "submission", tmp_path / "report", CHAPTER.id)
    assert results["score"] == expected["score"]
    assert 0 < results["score"] < expected["max_score"]
    assert {t["visibility"] for t in results["tests"]} == {"visible", "after_published"}
    assert sum(t["max_score"] for t in results["tests"]) == expected["max_score"]
