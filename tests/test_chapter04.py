"""Chapter 04's graders, tested end to end through the CLI: every mutant loses points with
feedback that teaches, and valid variants keep full marks (reference and stub: `test_chapters.py`)."""

from __future__ import annotations

import pytest

from tests.conftest import REFERENCE, assert_mutant_caught, assert_variant_keeps_full_marks, grade_edit
from tests.mutants.ch04 import MUTANTS, VALID_VARIANTS

CHAPTER = "feedforward_networks"
MODULE = "feedforward"
SOURCE = (REFERENCE / f"{MODULE}.py").read_text()


def test_banned_activation_fails_only_its_function(tmp_path):
    # F.gelu inside gelu: the static test and gelu's tests fail, relu's and silu's still pass.
    source = SOURCE.replace("        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))",
                            "        return torch.nn.functional.gelu(x)")
    chapter = grade_edit(tmp_path, CHAPTER, MODULE, source)
    by_name = {t["name"]: t for t in chapter["tests"]}
    assert by_name["test_no_banned_apis"]["status"] == "failed"
    assert "gelu" in by_name["test_no_banned_apis"]["message"]
    assert by_name["test_relu_examples"]["status"] == "passed"


def test_mutant_count():
    assert len(MUTANTS) >= 8


@pytest.mark.slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mutant_loses_points(mutant, tmp_path):
    assert_mutant_caught(tmp_path, CHAPTER, MODULE, SOURCE, mutant)


@pytest.mark.slow
@pytest.mark.parametrize("variant", VALID_VARIANTS, ids=lambda m: m.name)
def test_valid_variant_keeps_full_marks(variant, tmp_path):
    """A correct solution written another way is never rejected."""
    assert_variant_keeps_full_marks(tmp_path, CHAPTER, MODULE, SOURCE, variant)


def test_every_mutant_names_its_tasks():
    tasks = {"relu", "silu", "gelu", "FeedForward", "swiglu_hidden_dim", "SwiGLU", "feedforward_parameter_count",
             "swiglu_parameter_count"}
    for mutant in MUTANTS:
        assert mutant.tasks and set(mutant.tasks) <= tasks, mutant.name


def test_mutants_apply_cleanly():
    for mutant in [*MUTANTS, *VALID_VARIANTS]:
        assert mutant.apply(SOURCE) != SOURCE
