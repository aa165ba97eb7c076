"""What an nbgrader test cell calls: the points one rubric item earned, from one grade run.

A generated notebook (`graders/nbgrader_course.py`) has one test cell per rubric item, an item
being the tests of one task (a student function or class) at one visibility. Each cell holds a
single call and nothing else, so nbgrader's feedback, which shows hidden cells' source, shows
no test code:

    from graders.nbgrader_cells import check
    check("layer_normalization", "hidden", "LayerNorm", points=9)

The first call in a kernel grades the whole chapter once, with the same command as
`nox -s grade` (`python -m graders grade --impl <the notebook's folder> --chapter ID`, in a
subprocess started from the repository, so the submission folder can shadow nothing it
imports), and keeps the grade.json it wrote in this process's memory; later cells read their
item from it. The cell's value is the item's points: nbgrader gives a test cell whose result
is a single number that many points, so the gradebook holds exactly grade.json's scores.

Why memory and not a cache file: the kernel's working directory is the student's submission,
and anything on disk there (or anywhere a file name could be guessed) could have been
submitted ready-made. The grade run's report folder is a fresh private temporary folder,
hidden from the student's worker like every report folder, and removed once read. No student
code runs in this kernel: it runs in the grader's worker process, and the course's autograde
configuration drops every code cell the source notebook does not have
(`graders.nbgrader_preprocessors.DropUnknownCells`), so nothing can patch `check` first.

A failed test prints its name, status and grade.json message (for hidden tests: the property,
the shrunk case and the size of the error, never the test's code or expected values), passed
through `student_text.clean` like every report: a student's exception text reaches the
feedback file without control characters or escape sequences, and bounded.
Nothing is written to stderr: nbgrader scores a test cell with any stderr output zero.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from graders import chapters
from graders.student_text import MESSAGE_LIMIT, clean, clean_line

GRADE_TIMEOUT_S = 3600.0  # a whole chapter, hidden tests included, on a loaded machine

# (impl folder, chapter id) -> that chapter's entry in grade.json, or the reason grading failed
_GRADED: dict[tuple[str, str], dict | str] = {}


class CourseError(RuntimeError):
    """The grader could not grade this notebook's folder, or the notebook and the suites disagree."""


def check(chapter: str, visibility: str, task: str, *, points: float, impl: str | os.PathLike | None = None) -> float:
    """The points the submission in `impl` (default: the working directory) earned on one rubric item.

    `points` is the item's maximum as the notebook was generated; a grade run that gives the
    item another maximum means the suites changed since, and raises instead of scoring.
    """
    graded = chapter_grade(chapter, Path.cwd() if impl is None else Path(impl))
    item = next((i for i in graded["rubric"] if i["visibility"] == visibility and i["task"] == task), None)
    if item is None:
        raise CourseError(f"{graded['id']} has no {visibility} item for {task!r}: regenerate the course "
                          "(python -m graders nbgrader-course)")
    names = set(item["tests"])
    tests = [t for t in graded["tests"] if t["visibility"] == visibility and t["name"] in names]
    max_score = sum(t["max_score"] for t in tests)
    if max_score != points or len(tests) != len(names):
        raise CourseError(f"{graded['id']} / {visibility} / {task} is worth {max_score:g} points in the suites but "
                          f"{points:g} in this notebook: regenerate the course (python -m graders nbgrader-course)")
    score = sum(t["score"] for t in tests)
    print(f"{task}, {visibility} checks: {score:g} of {max_score:g} point{'' if max_score == 1 else 's'}")
    for test in tests:
        if test["status"] != "passed":
            worth = f"{test['max_score']:g} point{'' if test['max_score'] == 1 else 's'}"
            print(f"\n{clean_line(test['status'])}: {clean_line(test['name'])} ({worth})")
            print("    " + clean(test["message"], MESSAGE_LIMIT).replace("\n", "\n    "))
    return float(score)


def chapter_grade(chapter: str, impl: Path) -> dict:
    """One chapter's grade.json entry for `impl`, with its rubric under "rubric"; graded once per process."""
    chapter_id = chapters.find(chapter).id
    key = (str(impl.resolve()), chapter_id)
    if key not in _GRADED:
        try:
            _GRADED[key] = _grade(chapter_id, impl.resolve())
        except CourseError as exc:
            _GRADED[key] = str(exc)  # every later cell fails the same way, without grading again
    found = _GRADED[key]
    if isinstance(found, str):
        raise CourseError(found)
    return found


def _graders(*args: str) -> list[str]:
    return [sys.executable, "-m", "graders", *args]


def _grade(chapter_id: str, impl: Path) -> dict:
    """`python -m graders grade` on one chapter, and the chapter's rubric, both from the repository."""
    report = Path(tempfile.mkdtemp(prefix="graders-nbgrader-"))
    # Started from the repository with its own folder first on the path: nothing in the
    # submission folder (a planted `graders/`, say) can be imported instead.
    options = dict(cwd=chapters.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                   env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")})
    try:
        with subprocess.Popen(_graders("rubric", "--chapter", chapter_id), **options) as listing:
            graded = subprocess.run(_graders("grade", "--impl", str(impl), "--chapter", chapter_id,
                                             "--report", str(report), "--no-progress"),
                                    timeout=GRADE_TIMEOUT_S, **options)
            out, err = listing.communicate(timeout=GRADE_TIMEOUT_S)
        for name, result, stdout, stderr in (("grade", graded.returncode, graded.stdout, graded.stderr),
                                             ("rubric", listing.returncode, out, err)):
            if result != 0:
                raise CourseError(f"`python -m graders {name}` could not run (exit {result}):\n"
                                  + clean((stdout + stderr).strip()[-4000:]))
        grade = json.loads((report / "grade.json").read_text())
    except subprocess.TimeoutExpired:
        raise CourseError(f"grading {chapter_id} took longer than {GRADE_TIMEOUT_S:g} s") from None
    finally:
        shutil.rmtree(report, ignore_errors=True)
    entry = next(c for c in grade["chapters"] if c["id"] == chapter_id)
    return entry | {"rubric": json.loads(out)[chapter_id]}
