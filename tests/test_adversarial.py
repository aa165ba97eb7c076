"""Hostile or broken submissions cost their own tests, never the grade run.

Each case in `tests.mutants.ch02.HOSTILE` is the reference with one hostile change. Grading
must complete (exit 0), fail exactly the tests that reach the broken code with the right
status, and grade everything else normally.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REFERENCE, grade, tree_with
from tests.mutants.ch02 import HOSTILE

SOURCE = (REFERENCE / "multi_head_attention.py").read_text()
TASK_PREFIXES = {"softmax": "test_softmax", "attention": "test_attention", "causal_mask": "test_causal_mask",
                 "kv_cache": "test_kv_cache", "mha": "test_mha"}


def task_of(name: str) -> str:
    return next((task for task, prefix in TASK_PREFIXES.items() if name.startswith(prefix)), "static")


def by_task(result: dict) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = {}
    for test in result["chapters"][0]["tests"]:
        groups.setdefault(task_of(test["name"]), []).append(test)
    return groups


def statuses(tests: list[dict]) -> set[str]:
    return {t["status"] for t in tests}


@pytest.fixture
def graded(tmp_path):
    def run(name: str) -> dict[str, list[dict]]:
        hostile = next(h for h in HOSTILE if h.name == name)
        tree = tree_with(tmp_path, "multi_head_attention", hostile.apply(SOURCE))
        return by_task(grade(tree, tmp_path / "report"))
    return run


def test_syntax_error_scores_zero_with_the_line_shown(graded):
    groups = graded("syntax_error")
    tests = [t for group in groups.values() for t in group]
    assert sum(t["score"] for t in tests) == 0
    assert all(t["status"] in ("error", "failed") for t in tests)
    line = 1 + SOURCE[: SOURCE.index("    if bias is not None:")].count("\n")
    assert all(f"syntax error on line {line}" in t["message"] for t in tests)


def test_exit_at_import_scores_zero(graded):
    tests = [t for group in graded("exit_at_import").values() for t in group if t["max_score"] > 0]
    assert statuses(tests) == {"error"}
    assert all("sys.exit" in t["message"] for t in tests)


def test_os_exit_fails_only_what_reaches_it(graded):
    groups = graded("os_exit_in_softmax")
    assert statuses(groups["softmax"]) == {"error"}
    assert all("exited with code 3" in t["message"] for t in groups["softmax"])
    assert statuses(groups["causal_mask"]) == statuses(groups["kv_cache"]) == {"passed"}


@pytest.mark.slow
def test_infinite_loop_times_out_and_the_rest_is_graded(graded):
    groups = graded("infinite_loop_in_causal_mask")
    assert statuses(groups["causal_mask"]) == {"timeout"}
    for task in ("softmax", "attention", "kv_cache", "mha"):
        assert statuses(groups[task]) == {"passed"}, task


def test_memory_blowup_is_bounded_and_reported(graded):
    groups = graded("memory_blowup_in_kvcache")
    assert statuses(groups["kv_cache"]) == {"error"}
    assert all("memory" in t["message"] for t in groups["kv_cache"])
    assert statuses(groups["softmax"]) == statuses(groups["attention"]) == {"passed"}


def test_segfault_fails_only_the_layer(graded):
    groups = graded("segfault_in_mha_init")
    assert statuses(groups["mha"]) == {"error"}
    assert all("SIGSEGV" in t["message"] for t in groups["mha"])
    assert statuses(groups["softmax"]) == statuses(groups["attention"]) == statuses(groups["causal_mask"]) == {"passed"}


def test_printing_garbage_cannot_forge_or_break_replies(graded):
    groups = graded("prints_garbage")
    failing = [(t["name"], t["message"][:300]) for group in groups.values() for t in group if t["status"] != "passed"]
    assert not failing


def test_banned_api_fails_the_task_that_used_it(graded):
    groups = graded("banned_softmax")
    assert statuses(groups["softmax"]) == {"failed"}
    assert all("torch.softmax" in t["message"] and "bans" in t["message"] for t in groups["softmax"])
    assert statuses(groups["static"]) == {"failed"}
    assert statuses(groups["attention"]) == statuses(groups["mha"]) == {"passed"}


def test_every_hostile_case_is_graded_here():
    used = set(re.findall(r'graded\("(\w+)"\)', Path(__file__).read_text()))
    assert used == {h.name for h in HOSTILE}
