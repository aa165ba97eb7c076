"""Chapter 03's graders, tested end to end through the CLI.

Every mutant (a plausible student bug in
`positional_encoding.py`, or a chapter 02 bug that only attention with RoPE reveals) loses
points with a message that never reveals hidden expected values, and correct solutions written
another way keep full marks.
"""

from __future__ import annotations

import pytest

from tests.conftest import REFERENCE, assert_mutant_caught, assert_variant_keeps_full_marks, chapter_entry, grade, tree_with
from tests.mutants import ch02, ch03

CHAPTER = "positional_encodings"
MODULE = "positional_encoding"
ATTENTION = "multi_head_attention"
SOURCES = {name: (REFERENCE / f"{name}.py").read_text() for name in (MODULE, ATTENTION)}
# Each mutant with the module it edits: chapter 03's own, or chapter 02's attention.
CASES = ([(m, MODULE) for m in ch03.MUTANTS] + [(m, ATTENTION) for m in ch03.ATTENTION_MUTANTS]
         + [(m, ATTENTION) for m in ch02.ROPE_ONLY_MUTANTS if m.name not in {a.name for a in ch03.ATTENTION_MUTANTS}])


def test_a_broken_chapter_02_costs_only_the_attention_tests(tmp_path, reference_grade):
    # Chapter 03 also runs the student's chapter 02 module; if that module does not even
    # import, chapter 03 keeps every point that does not need attention.
    tree = tree_with(tmp_path, ATTENTION, "def broken(:\n")
    chapter = chapter_entry(grade(tree, tmp_path / "report", CHAPTER), CHAPTER)
    failed = [t for t in chapter["tests"] if t["status"] != "passed"]
    assert failed and all(t["name"].startswith("test_attention_with_") for t in failed), [t["name"] for t in failed]
    assert all("multi_head_attention.py did not import" in t["message"] for t in failed)
    assert chapter["score"] == chapter_entry(reference_grade, CHAPTER)["score"] - sum(t["max_score"] for t in failed)


def test_mutant_count():
    assert len(CASES) >= 10


@pytest.mark.slow
@pytest.mark.parametrize(("mutant", "module"), CASES, ids=[m.name for m, _ in CASES])
def test_mutant_loses_points(mutant, module, tmp_path):
    assert_mutant_caught(tmp_path, CHAPTER, module, SOURCES[module], mutant)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ch03.VALID_VARIANTS, ids=lambda m: m.name)
def test_valid_variant_keeps_full_marks(variant, tmp_path):
    """A correct solution written another way is never rejected."""
    assert_variant_keeps_full_marks(tmp_path, CHAPTER, MODULE, SOURCES[MODULE], variant)


def test_every_mutant_names_its_tasks():
    # Chapter 02's RoPE-only bugs are graded here, so they name chapter 03's tasks too.
    tasks = {"sinusoidal_encoding", "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding", "RotaryEmbedding",
             "alibi_slopes", "alibi_bias"}
    for mutant in [*ch03.MUTANTS, *ch03.ATTENTION_MUTANTS, *ch02.ROPE_ONLY_MUTANTS]:
        assert mutant.tasks and set(mutant.tasks) <= tasks, mutant.name


def test_mutants_apply_cleanly():
    for mutant, module in CASES:
        assert mutant.apply(SOURCES[module]) != SOURCES[module]
    for variant in ch03.VALID_VARIANTS:
        assert variant.apply(SOURCES[MODULE]) != SOURCES[MODULE]
