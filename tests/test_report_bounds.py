"""Student text reaches a terminal, a report or a feedback file only cleaned and bounded:
no escape sequence, no control character, no megabytes, whatever the student's code raised."""

from __future__ import annotations

import json
import re

from graders import batch, chapters, nbgrader_cells, plugin, report
from graders.student_text import MESSAGE_LIMIT, clean, clean_line
from tests.conftest import REFERENCE, records_by_name, run_cli, tree_with

# What a terminal acts on: ESC, CSI, C0 but \n and \t, DEL, C1, bidirectional overrides.
ACTIVE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
REPAINT = "\x1b[1A\x1b[2K\r\x1b]0;title\x07\x9b2J\u202e"


def test_clean_strips_escapes_and_controls_and_keeps_text():
    text = f"ok\x1b[31mred\x1b[0m{REPAINT}\x00\x07\x7f\x85 line\n\ttab \x1bc end"
    assert clean(text) == "okred line\n\ttab  end"
    assert clean("ünïcødé ✓ 59 / 59") == "ünïcødé ✓ 59 / 59"
    assert clean_line("two\nlines\tand a tab") == "two lines and a tab"


def test_clean_caps_with_a_visible_note_and_is_idempotent():
    capped = clean("x" * 20 * 2**20, MESSAGE_LIMIT)
    assert len(capped) <= MESSAGE_LIMIT
    assert re.search(r"… \(\d+ characters cut\)$", capped)
    assert clean(capped, MESSAGE_LIMIT) == capped
    assert clean("short", 10) == "short"


def record(message: str, status: str = "failed", name: str = "test_x") -> plugin.TestRecord:
    return plugin.TestRecord("multi_head_attention", name, "public", 1.0, status, message)


def test_grade_json_caps_every_message_and_keeps_only_short_sandbox_facts():
    chapter = chapters.find(2)
    huge = "Boom" + REPAINT + "A" * 20 * 2**20
    records = [record(huge), record("", status="passed", name="test_y")]
    isolation = {chapter.id: {"mode": "namespaces", "uid": 1638912, "tool": "bubblewrap", "seccomp": True,
                              "why": "x\x1b[2J" + "y" * 10_000, "paths": ["/a", "/b"], 3: "not a name"}}
    graded = report.grade_json(REFERENCE, [chapter], records, isolation)
    size = len(json.dumps(graded))
    assert size < 2 * MESSAGE_LIMIT + 2000, size  # a 20 MiB message: a few kilobytes of report
    message = graded["chapters"][0]["tests"][0]["message"]
    assert message.startswith("BoomAAA") and not ACTIVE.search(message) and message.endswith("characters cut)")
    sandbox = graded["chapters"][0]["sandbox"]
    assert set(sandbox) == {"mode", "own_uid", "tool", "seccomp", "why"}
    assert sandbox["mode"] == "namespaces" and sandbox["own_uid"] is True and sandbox["seccomp"] is True
    assert len(sandbox["why"]) <= report.SANDBOX_VALUE_LIMIT and not ACTIVE.search(sandbox["why"])
    # the contract's keys are all there; no worker, no sandbox facts
    assert report.grade_json(REFERENCE, [chapter], records)["chapters"][0]["sandbox"] == {}
    assert {"id", "score", "max_score", "tests"} <= set(graded["chapters"][0])


def test_the_table_shows_the_score_the_report_holds():
    # A message that moved the cursor up and rewrote the line made the table show 59 / 59.
    chapter = chapters.find(2)
    records = [record(f"wrong\x1b[3A\r\x1b[2Kmulti_head_attention   59 / 59{REPAINT}")]
    records += [record("", status="passed", name=f"test_{i}") for i in range(58)]
    text = report.table(report.grade_json(REFERENCE, [chapter], records))
    assert not ACTIVE.search(text)
    assert "58 / 59" in text


def test_an_escaped_exception_name_gives_a_small_clean_report_and_table(tmp_path):
    # 20 KB each: under the worker's reply limits, so the text itself reaches the grader.
    source = (REFERENCE / "feedforward.py").read_text() + (
        "\n\ndef relu(x):\n"
        "    name = 'Boom\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07' + 'A' * 20_000\n"
        "    raise type(name, (ValueError,), {})('\\x1b[1A\\x1b[2K 59 / 59 ' * 1_000)\n")
    tree = tree_with(tmp_path, "feedforward", source)
    result = run_cli("grade", "--impl", str(tree), "--report", str(tmp_path / "report"), "--no-progress",
                     "--chapter", "4", "--task", "relu")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "report" / "grade.json").stat().st_size < 64 * 2**10
    graded = json.loads((tmp_path / "report" / "grade.json").read_text())
    for test in records_by_name(graded, "feedforward_networks").values():
        assert test["status"] == "failed" and not ACTIVE.search(test["message"]), test["message"][:300]
    assert not ACTIVE.search(result.stdout)


def test_the_batch_summary_and_gradebook_are_clean(tmp_path, capsys):
    rows = {"mallory\x1b[2J": {"student": "mallory\x1b[2J", "status": "error", "digest": "d",
                                "message": "exited\x1b[1A\x1b[2K\r all good" + "x" * 100_000},
            "eve": {"student": "eve", "status": "graded", "digest": "d", "score": 1, "max_score": 2,
                    "chapters": {"feedforward_networks": [1, 2]}, "failed": ["feedforward_networks::test_relu\x07"],
                    "message": "feedforward.py is a symbolic link\x1b[31m; the grader reads only regular files"}}
    run = batch.Batch(tmp_path, tmp_path / "reports", rows=rows)
    book = batch.gradebook_text(run)
    assert not ACTIVE.search(book.replace("\n", "")) and len(book) < 3 * MESSAGE_LIMIT
    batch.show_summary(run)
    out = capsys.readouterr().out
    assert not ACTIVE.search(out)
    assert "eve: graded without what it could not read: feedforward.py is a symbolic link; the grader" in out


def test_nbgrader_feedback_prints_cleaned_messages(tmp_path, capsys, monkeypatch):
    chapter = chapters.find(4)
    entry = {"id": chapter.id,
             "rubric": [{"visibility": "public", "task": "relu", "tests": ["test_relu_examples"]}],
             "tests": [{"name": "test_relu_examples", "visibility": "public", "score": 0, "max_score": 2,
                        "status": "failed", "message": "wrong\x1b[2J\x1b[H" + "z" * 50_000}]}
    monkeypatch.setitem(nbgrader_cells._GRADED, (str(tmp_path.resolve()), chapter.id), entry)
    assert nbgrader_cells.check(chapter.id, "public", "relu", points=2, impl=tmp_path) == 0.0
    out = capsys.readouterr().out
    assert "wrongzzz" in out and not ACTIVE.search(out) and len(out) < 2 * MESSAGE_LIMIT
