"""Chapter 06's graders, tested end to end through the CLI: every mutant loses points with
feedback that teaches, and valid variants keep full marks (reference and stub: `test_chapters.py`)."""

from __future__ import annotations

import pytest

from tests.conftest import REFERENCE, assert_mutant_caught, assert_variant_keeps_full_marks, grade_edit
from tests.mutants.ch06 import MUTANTS, VALID_VARIANTS

CHAPTER = "training_dynamics"
MODULE = "training_loop"
SOURCE = (REFERENCE / f"{MODULE}.py").read_text()


def test_banned_cross_entropy_fails_only_its_function(tmp_path):
    # F.cross_entropy inside cross_entropy: the static test and cross_entropy's tests fail, AdamW's pass.
    source = SOURCE.replace(
        "    return (losses.sum() / keep.sum()).to(logits.dtype)\n",
        "    return torch.nn.functional.cross_entropy(z, t, ignore_index=ignore_index).to(logits.dtype)\n")
    chapter = grade_edit(tmp_path, CHAPTER, MODULE, source)
    by_name = {t["name"]: t for t in chapter["tests"]}
    assert by_name["test_no_banned_apis"]["status"] == "failed"
    assert "cross_entropy" in by_name["test_no_banned_apis"]["message"]
    assert by_name["test_cross_entropy_golden"]["status"] == "failed"
    assert by_name["test_adamw_golden_steps"]["status"] == "passed"


def test_mutant_count():
    assert len(MUTANTS) >= 12


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
    tasks = {"schedules", "cross_entropy", "clip_grad_norm", "AdamW", "train_step", "Trainer", "scaling_laws"}
    for mutant in MUTANTS:
        assert mutant.tasks and set(mutant.tasks) <= tasks, mutant.name


def test_mutants_apply_cleanly():
    for mutant in [*MUTANTS, *VALID_VARIANTS]:
        assert mutant.apply(SOURCE) != SOURCE
