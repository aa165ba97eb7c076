"""Reports follow the contract: grade.json, Gradescope's results.json, the CLI's exit codes."""

from __future__ import annotations

import json

from graders import chapters
from tests.conftest import ASSIGNMENTS, REFERENCE, run_cli

STATUSES = {"passed", "failed", "error", "timeout"}


def test_grade_json_shape(reference_grade):
    assert set(reference_grade) == {"impl", "score", "max_score", "hidden_points_not_run", "chapters"}
    assert reference_grade["hidden_points_not_run"] == 0  # the instructor's tree runs every hidden suite
    for chapter in reference_grade["chapters"]:
        assert set(chapter) == {"id", "score", "max_score", "public", "hidden", "summary", "tests", "sandbox"}
        assert chapter["sandbox"]["mode"] in ("namespaces", "basic")  # how the chapter's worker was confined
        assert chapter["score"] == sum(t["score"] for t in chapter["tests"])
        assert chapter["hidden"]["ran"] and chapter["score"] == chapter["public"]["score"] + chapter["hidden"]["score"]
        for test in chapter["tests"]:
            assert set(test) == {"name", "score", "max_score", "visibility", "status", "message"}
            assert test["visibility"] in ("public", "hidden") and test["status"] in STATUSES
    assert reference_grade["score"] == sum(c["score"] for c in reference_grade["chapters"])


def test_gradescope_results_and_chapter_by_number(tmp_path):
    result = run_cli("grade", "--impl", str(ASSIGNMENTS), "--chapter", "2", "--report", str(tmp_path), "--no-progress")
    assert result.returncode == 0, result.stderr  # a zero score still completes
    assert "multi_head_attention" in result.stdout and "0 / " in result.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert "max_score" not in results  # the Gradescope spec has none at the top level
    # shown at once: the public score and the hidden share's size, never its score before publication
    public = sum(t["max_score"] for t in results["tests"] if t["visibility"] == "visible")
    hidden = sum(t["max_score"] for t in results["tests"] if t["visibility"] == "after_published")
    assert results["output"] == (f"02 multi_head_attention: 0/{public:g} public; {hidden:g} more points in hidden "
                                 "tests, shown when your instructor publishes the grades")
    assert results["score"] == 0 and results["execution_time"] > 0
    assert {t["visibility"] for t in results["tests"]} == {"visible", "after_published"}
    assert {t["status"] for t in results["tests"]} <= {"passed", "failed"}
    for test in results["tests"]:
        assert set(test) == {"name", "score", "max_score", "status", "output", "visibility"}


def test_unknown_chapter_is_a_grader_error(tmp_path):
    result = run_cli("grade", "--impl", str(REFERENCE), "--chapter", "attention", "--report", str(tmp_path))
    assert result.returncode == 2
    assert "unknown chapter 'attention'" in result.stderr and "multi_head_attention" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_tree_is_a_grader_error(tmp_path):
    result = run_cli("grade", "--impl", str(tmp_path / "nowhere"), "--report", str(tmp_path))
    assert result.returncode == 2 and "is not a directory" in result.stderr


def test_missing_module_grades_zero_with_a_reason(tmp_path):
    (tmp_path / "impl").mkdir()
    result = run_cli("grade", "--impl", str(tmp_path / "impl"), "--report", str(tmp_path), "--no-progress")
    assert result.returncode == 0
    grade = json.loads((tmp_path / "grade.json").read_text())
    assert grade["score"] == 0
    for entry in grade["chapters"]:  # every test of every chapter names the file that is missing
        module = chapters.find(entry["id"]).module
        assert all(module in t["message"] for t in entry["tests"]), entry["id"]
