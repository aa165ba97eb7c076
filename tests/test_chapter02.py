"""Chapter 02's graders, tested end to end through the CLI.

Every mutant (a plausible student bug)
loses points with a message, hidden feedback never reveals expected values, and the same
submission gets the same grade on every run.
"""

from __future__ import annotations

import pytest

from tests.conftest import REFERENCE, assert_mutant_caught, assert_variant_keeps_full_marks, chapter_entry, grade, tree_with
from tests.mutants.ch02 import MUTANTS, ROPE_ONLY_MUTANTS, VALID_VARIANTS

CHAPTER = "multi_head_attention"
MODULE = "multi_head_attention"
REFERENCE_SOURCE = (REFERENCE / f"{MODULE}.py").read_text()


def test_grading_is_deterministic(tmp_path):
    # A submission that passes some tests and fails others (Hypothesis among them), graded five
    # times: every run must give the same scores, statuses and messages.
    mutant = next(m for m in MUTANTS if m.name == "gqa_heads_tiled")
    tree = tree_with(tmp_path, MODULE, mutant.apply(REFERENCE_SOURCE))
    runs = [grade(tree, tmp_path / f"report{i}", CHAPTER) for i in range(5)]
    strip = lambda g: (g["score"], [(t["name"], t["status"], t["score"], t["message"])  # noqa: E731
                                    for t in chapter_entry(g, CHAPTER)["tests"]])
    assert 0 < runs[0]["score"] < runs[0]["max_score"]
    for run in runs[1:]:
        assert strip(run) == strip(runs[0])


@pytest.mark.slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mutant_loses_points(mutant, tmp_path):
    assert_mutant_caught(tmp_path, CHAPTER, MODULE, REFERENCE_SOURCE, mutant)


@pytest.mark.slow
@pytest.mark.parametrize("variant", VALID_VARIANTS, ids=lambda m: m.name)
def test_valid_variant_keeps_full_marks(variant, tmp_path):
    """A correct solution written another way is never rejected."""
    assert_variant_keeps_full_marks(tmp_path, CHAPTER, MODULE, REFERENCE_SOURCE, variant)


def test_every_mutant_names_its_tasks():
    tasks = {"softmax", "scaled_dot_product_attention", "causal_mask", "KVCache", "MultiHeadAttention"}
    for mutant in MUTANTS:
        assert mutant.tasks and set(mutant.tasks) <= tasks, mutant.name


def test_mutants_apply_cleanly():
    # ROPE_ONLY_MUTANTS change attention only with a rotary embedding, which chapter 02 does
    # not pass (the contract); chapter 03's graders catch them.
    for mutant in [*MUTANTS, *ROPE_ONLY_MUTANTS, *VALID_VARIANTS]:
        assert mutant.apply(REFERENCE_SOURCE) != REFERENCE_SOURCE
