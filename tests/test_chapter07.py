"""Chapter 07's graders, tested end to end through the CLI: every mutant loses points in its own
tasks with feedback that teaches, and valid variants keep full marks (reference and stub:
`test_chapters.py`)."""

from __future__ import annotations

import pytest

from tests.conftest import REFERENCE, assert_mutant_caught, assert_variant_keeps_full_marks
from tests.mutants.ch07 import MUTANTS, VALID_VARIANTS

CHAPTER = "capstone"
MODULE = "gpt"
SOURCE = (REFERENCE / f"{MODULE}.py").read_text()
TASKS = {"GPT", "generate", "fused", "data", "training"}


def test_mutant_count():
    assert len(MUTANTS) >= 12


def test_every_mutant_names_its_tasks():
    for mutant in MUTANTS:
        assert mutant.tasks and set(mutant.tasks) <= TASKS, mutant.name


@pytest.mark.slow
@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mutant_loses_points(mutant, tmp_path):
    assert_mutant_caught(tmp_path, CHAPTER, MODULE, SOURCE, mutant)


@pytest.mark.slow
@pytest.mark.parametrize("variant", VALID_VARIANTS, ids=lambda m: m.name)
def test_valid_variant_keeps_full_marks(variant, tmp_path):
    """A correct solution written another way is never rejected."""
    assert_variant_keeps_full_marks(tmp_path, CHAPTER, MODULE, SOURCE, variant)


def test_mutants_apply_cleanly():
    for mutant in [*MUTANTS, *VALID_VARIANTS]:
        assert mutant.apply(SOURCE) != SOURCE
