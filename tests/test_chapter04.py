"""Chapter 04's graders, tested end to end through the CLI: the reference gets full marks, the
stub zero, every mutant loses points with feedback that teaches, valid variants keep full marks."""

from __future__ import annotations

import pytest

from tests.conftest import REFERENCE, assert_feedback_teaches, chapter_entry, failing, grade, tree_with
from tests.mutants.ch04 import MUTANTS, VALID_VARIANTS

CHAPTER = "feedforward_networks"
MODULE = "feedforward"
SOURCE = (REFERENCE / f"{MODULE}.py").read_text()


def test_reference_gets_full_marks(reference_grade):
    chapter = chapter_entry(reference_grade, CHAPTER)
    assert not failing(chapter)
    assert chapter["score"] == chapter["max_score"] > 0


def test_stub_gets_zero(stub_grade):
    chapter = chapter_entry(stub_grade, CHAPTER)
    assert chapter["score"] == 0
    assert any("not implemented yet" in t["message"] for t in chapter["tests"])


def test_public_and_hidden_tests_both_carry_points(reference_grade):
    tests = chapter_entry(reference_grade, CHAPTER)["tests"]
    for visibility in ("public", "hidden"):
        assert sum(t["max_score"] for t in tests if t["visibility"] == visibility) > 0


def test_banned_activation_fails_only_its_function(tmp_path):
    # F.gelu inside gelu: the static test and gelu's tests fail, relu's and silu's still pass.
    source = SOURCE.replace("        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))",
                            "        return torch.nn.functional.gelu(x)")
    chapter = chapter_entry(grade(tree_with(tmp_path, MODULE, source), tmp_path / "report", CHAPTER), CHAPTER)
    by_name = {t["name"]: t for t in chapter["tests"]}
    assert by_name["test_no_banned_apis"]["status"] == "failed"
    assert "gelu" in by_name["test_no_banned_apis"]["message"]
    assert by_name["test_relu_examples"]["status"] == "passed"


def test_mutant_count():
    assert len(MUTANTS) >= 8


@pytest.mark.slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mutant_loses_points(mutant, tmp_path, reference_grade):
    chapter = chapter_entry(grade(tree_with(tmp_path, MODULE, mutant.apply(SOURCE)), tmp_path / "report", CHAPTER),
                            CHAPTER)
    assert chapter["score"] < chapter_entry(reference_grade, CHAPTER)["score"], (
        f"{mutant.name} ({mutant.description}) survived")
    assert_feedback_teaches(chapter)


@pytest.mark.slow
@pytest.mark.parametrize("variant", VALID_VARIANTS, ids=lambda m: m.name)
def test_valid_variant_keeps_full_marks(variant, tmp_path):
    """A correct solution written another way is never rejected."""
    chapter = chapter_entry(grade(tree_with(tmp_path, MODULE, variant.apply(SOURCE)), tmp_path / "report", CHAPTER),
                            CHAPTER)
    assert not failing(chapter), f"{variant.name} ({variant.description}) was rejected"


def test_mutants_apply_cleanly():
    for mutant in [*MUTANTS, *VALID_VARIANTS]:
        assert mutant.apply(SOURCE) != SOURCE
