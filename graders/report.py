"""Test records -> `grade.json`, Gradescope's `results.json`, and the terminal table.

This module never imports a suite: it sees only the records the plugin collected. Every
message is student text (their exception, their output): `grade_json` and `table` pass it
through `student_text.clean`, so no report or terminal receives escape sequences, control
characters or an unbounded string. Each chapter entry also says how its worker was confined
(`"sandbox"`, as the worker reported at boot), so a report shows what the grade ran under.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from graders import chapters
from graders.plugin import TestRecord
from graders.student_text import MESSAGE_LIMIT, clean, clean_line

GRADESCOPE_VISIBILITY = {"public": "visible", "hidden": "after_published"}
# A sandbox description is a few short facts (mode, uid, tool, why it fell back); more keys or
# longer values than these are not a description, and stay out of the report.
SANDBOX_KEYS = 8
SANDBOX_VALUE_LIMIT = 200


def grade_json(impl: Path, graded: list[chapters.Chapter], records: list[TestRecord],
               isolation: dict[str, dict] | None = None) -> dict:
    """The contract's `reports/grade.json`, each chapter with the `sandbox` its worker ran in
    (`isolation`: chapter id -> the worker's boot report; `{}` where no worker started)."""
    chapter_entries = []
    for chapter in graded:
        tests = [{"name": r.name, "score": r.score, "max_score": r.max_score, "visibility": r.visibility,
                  "status": r.status, "message": clean(r.message, MESSAGE_LIMIT)}
                 for r in records if r.chapter == chapter.id]
        chapter_entries.append({"id": chapter.id, "score": sum(t["score"] for t in tests),
                                "max_score": sum(t["max_score"] for t in tests), "tests": tests,
                                "sandbox": sandbox_entry((isolation or {}).get(chapter.id, {}))})
    return {"impl": clean(impl, MESSAGE_LIMIT), "score": sum(c["score"] for c in chapter_entries),
            "max_score": sum(c["max_score"] for c in chapter_entries), "chapters": chapter_entries}


def sandbox_entry(sandbox: dict) -> dict:
    """The worker's boot report, kept to short JSON scalars under string keys. Its uid becomes
    `own_uid` (whether the worker ran under a uid other than the grader's): the number changes
    from run to run, and two grades of the same files give the same grade.json."""
    entry: dict = {}
    for key, value in sandbox.items():
        if len(entry) == SANDBOX_KEYS:
            break
        if not isinstance(key, str):
            continue
        if key == "uid" and isinstance(value, int) and not isinstance(value, bool):
            key, value = "own_uid", value != os.geteuid()
        if isinstance(value, str):
            value = clean_line(value, SANDBOX_VALUE_LIMIT)
        elif isinstance(value, float) and not math.isfinite(value):
            continue  # NaN and infinities are not JSON
        elif not (value is None or isinstance(value, (bool, int, float))):
            continue  # lists, paths, objects: not a short fact
        entry[clean_line(key, SANDBOX_VALUE_LIMIT)] = value
    return entry


def gradescope_json(grade: dict, execution_time: float) -> dict:
    """The Gradescope autograder's `results.json` (no top-level max_score in its spec)."""
    tests = []
    for chapter in grade["chapters"]:
        number = chapters.find(chapter["id"]).number
        for test in chapter["tests"]:
            tests.append({
                "name": f"{number:02d} {chapter['id']}: {test['name']}",
                "score": test["score"],
                "max_score": test["max_score"],
                "status": "passed" if test["status"] == "passed" else "failed",
                "output": test["message"] if test["status"] != "passed" else "",
                "visibility": GRADESCOPE_VISIBILITY[test["visibility"]],
            })
    return {"score": grade["score"], "execution_time": round(execution_time, 3), "tests": tests}


def write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


def table(grade: dict, *, failures: int = 3) -> str:
    """A per-chapter summary, then the first lines of a few failures per chapter."""
    header = f"{'chapter':<30}{'score':>14}  {'passed':>6} {'failed':>6} {'error':>6} {'timeout':>7}"
    lines = [header, "-" * len(header)]
    notes = []
    for chapter in grade["chapters"]:
        counts = {s: sum(t["status"] == s for t in chapter["tests"]) for s in ("passed", "failed", "error", "timeout")}
        score = f"{chapter['score']:g} / {chapter['max_score']:g}"
        lines.append(f"{chapter['id']:<30}{score:>14}  {counts['passed']:>6} {counts['failed']:>6} "
                     f"{counts['error']:>6} {counts['timeout']:>7}")
        failed = [t for t in chapter["tests"] if t["status"] != "passed"]
        for test in failed[:failures]:
            message = clean(test["message"], MESSAGE_LIMIT)  # a grade.json read back may not have been cleaned
            first = next((ln for ln in message.splitlines() if ln and not ln.startswith("Property:")), "")
            notes.append(f"  {chapter['id']} / {clean_line(test['name'])} [{clean_line(test['status'], 10)}]: "
                         f"{clean_line(first, 110)}")
        if len(failed) > failures:
            notes.append(f"  {chapter['id']}: {len(failed) - failures} more; see the report for every message")
    lines.append("-" * len(header))
    total = f"{grade['score']:g} / {grade['max_score']:g}"
    lines.append(f"{'total':<30}{total:>14}")
    if notes:
        lines += ["", "first failures:"] + notes
    return "\n".join(lines)
