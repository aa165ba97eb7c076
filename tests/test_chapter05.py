"""Chapter 05's graders, tested end to end through the CLI: every mutant loses points with
feedback that teaches, and valid variants keep full marks (reference and stub: `test_chapters.py`)."""

from __future__ import annotations

import pytest

from tests.conftest import (
    REFERENCE,
    assert_mutant_caught,
    assert_variant_keeps_full_marks,
    chapter_entry,
    grade,
    grade_edit,
    tree_with,
)
from tests.mutants.ch05 import MUTANTS, VALID_VARIANTS

CHAPTER = "layer_normalization"
MODULE = "normalization"
SOURCE = (REFERENCE / f"{MODULE}.py").read_text()


def test_banned_layer_norm_fails_only_its_class(tmp_path):
    # F.layer_norm inside LayerNorm: the static test and LayerNorm's tests fail, RMSNorm's pass.
    source = SOURCE.replace("        y = (h - mean) * torch.rsqrt(var + self.eps)  # same shape as x\n",
                            "        y = torch.nn.functional.layer_norm(h, self.normalized_shape, eps=self.eps)\n")
    chapter = grade_edit(tmp_path, CHAPTER, MODULE, source)
    by_name = {t["name"]: t for t in chapter["tests"]}
    assert by_name["test_no_banned_apis"]["status"] == "failed"
    assert "layer_norm" in by_name["test_no_banned_apis"]["message"]
    assert by_name["test_rmsnorm_golden"]["status"] == "passed"


def test_mutant_count():
    assert len(MUTANTS) >= 10


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
    tasks = {"LayerNorm", "RMSNorm", "BatchNorm", "ResidualBlock"}
    for mutant in MUTANTS:
        assert mutant.tasks and set(mutant.tasks) <= tasks, mutant.name


def test_mutants_apply_cleanly():
    for mutant in [*MUTANTS, *VALID_VARIANTS]:
        assert mutant.apply(SOURCE) != SOURCE


@pytest.mark.slow
def test_statistics_hint_only_when_the_forward_pass_is_right(tmp_path):
    """BatchNorm's training-gradient test names the batch statistics for a detached mean, whose output is right,
    and not for the unbiased variance, a forward bug that fails the same test."""
    mutants = {m.name: m for m in MUTANTS}
    hint = "the batch mean and variance are functions of x"
    for name, named in (("batchnorm_mean_detached", True), ("batchnorm_normalizes_with_unbiased_variance", False)):
        folder = tmp_path / name
        folder.mkdir()
        tree = tree_with(folder, MODULE, mutants[name].apply(SOURCE))
        entry = chapter_entry(grade(tree, folder / "report", CHAPTER, tasks=("BatchNorm",)), CHAPTER)
        test = next(t for t in entry["tests"] if t["name"] == "test_batchnorm_training_gradients_match_torch")
        assert test["status"] == "failed", name
        assert (hint in test["message"]) is named, test["message"]
