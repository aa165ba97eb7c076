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
    (`isolation`: chapter id -> the worker's boot report; `{}` where no worker started) and its
    public and hidden shares (`shares`). `score` and `max_score` count the tests that ran;
    `hidden_points_not_run` is what the hidden suites of the chapters whose hidden tests did not
    run (a student's grade) hold besides."""
    chapter_entries = []
    for chapter in graded:
        tests = [{"name": r.name, "score": r.score, "max_score": r.max_score, "visibility": r.visibility,
                  "status": r.status, "message": clean(r.message, MESSAGE_LIMIT)}
                 for r in records if r.chapter == chapter.id]
        chapter_entries.append({"id": chapter.id, "score": sum(t["score"] for t in tests),
                                "max_score": sum(t["max_score"] for t in tests), **shares(chapter, tests),
                                "tests": tests, "sandbox": sandbox_entry((isolation or {}).get(chapter.id, {}))})
    return {"impl": clean(impl, MESSAGE_LIMIT), "score": sum(c["score"] for c in chapter_entries),
            "max_score": sum(c["max_score"] for c in chapter_entries),
            "hidden_points_not_run": sum(c["hidden"]["max_score"] for c in chapter_entries if not c["hidden"]["ran"]),
            "chapters": chapter_entries}


def shares(chapter: chapters.Chapter, tests: list[dict]) -> dict:
    """A chapter's public score and its hidden share: `public` and `hidden` ({score, max_score};
    the hidden one also `ran`), and `summary`, one sentence for the student. Where no hidden test
    ran, the hidden score is None and its max_score the hidden suite's points from the chapter
    table (a student's release has no hidden suite to count them from)."""
    public = [t for t in tests if t["visibility"] == "public"]
    hidden = [t for t in tests if t["visibility"] == "hidden"]
    public_score, public_max = sum(t["score"] for t in public), sum(t["max_score"] for t in public)
    if hidden:
        hidden_score, hidden_max = sum(t["score"] for t in hidden), sum(t["max_score"] for t in hidden)
        summary = f"{public_score:g}/{public_max:g} public, {hidden_score:g}/{hidden_max:g} hidden"
    else:
        hidden_score, hidden_max = None, chapter.hidden_points
        summary = f"{public_score:g}/{public_max:g} public" + (
            f"; {hidden_max:g} more points in hidden tests your instructor runs" if hidden_max else "")
    return {"public": {"score": public_score, "max_score": public_max},
            "hidden": {"ran": bool(hidden), "score": hidden_score, "max_score": hidden_max}, "summary": summary}


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
    """The Gradescope autograder's `results.json` (no top-level max_score in its spec). Its
    top-level `output`, which Gradescope shows the student at once, gives each chapter's public
    score and only the size of its hidden share: the hidden tests are `after_published`, so their
    score waits for the instructor to publish, as each of their results does."""
    tests, lines = [], []
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
        public, hidden = chapter["public"], chapter["hidden"]
        line = f"{number:02d} {chapter['id']}: {public['score']:g}/{public['max_score']:g} public"
        if hidden["max_score"]:
            line += (f"; {hidden['max_score']:g} more points in hidden tests, shown when your instructor publishes "
                     "the grades")
        lines.append(line)
    return {"score": grade["score"], "execution_time": round(execution_time, 3), "output": "\n".join(lines),
            "tests": tests}


def write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, path)


def table(grade: dict, *, failures: int = 3) -> str:
    """A per-chapter summary (the score of what ran, its public part, and the hidden part: its
    score where it ran, else the points it holds), then the first lines of a few failures per chapter."""
    header = (f"{'chapter':<30}{'score':>14}  {'passed':>6} {'failed':>6} {'error':>6} {'timeout':>7}  "
              f"{'public':>10}  {'hidden':<18}")
    header = header.rstrip()
    lines = [header, "-" * len(header)]
    notes = []
    for chapter in grade["chapters"]:
        counts = {s: sum(t["status"] == s for t in chapter["tests"]) for s in ("passed", "failed", "error", "timeout")}
        score = f"{chapter['score']:g} / {chapter['max_score']:g}"
        public, hidden = _shares_of(chapter)
        lines.append(f"{clean_line(chapter['id'], 29):<30}{score:>14}  {counts['passed']:>6} {counts['failed']:>6} "
                     f"{counts['error']:>6} {counts['timeout']:>7}  {public:>10}  {hidden:<18}".rstrip())
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
    unrun = grade.get("hidden_points_not_run") or 0
    if unrun:
        lines.append(f"public tests only: {unrun:g} more points are in hidden tests your instructor runs "
                     "(per chapter above)")
    if notes:
        lines += ["", "first failures:"] + notes
    return "\n".join(lines)


def _shares_of(chapter: dict) -> tuple[str, str]:
    """The public and hidden cells of a chapter's row; blank for a grade.json without shares."""
    public, hidden = chapter.get("public"), chapter.get("hidden")
    if not isinstance(public, dict) or not isinstance(hidden, dict):
        return "", ""
    cells = f"{public['score']:g} / {public['max_score']:g}"
    if hidden.get("ran"):
        return cells, f"{hidden['score']:g} / {hidden['max_score']:g}"
    return cells, (f"{hidden['max_score']:g} more, not run" if hidden.get("max_score") else "none")
