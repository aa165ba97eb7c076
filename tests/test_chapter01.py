"""Chapter 01's graders, tested end to end through the CLI: every mutant loses points with
feedback that teaches, and valid variants keep full marks (reference and stub: `test_chapters.py`)."""

from __future__ import annotations

import pytest

from tests.conftest import REFERENCE, assert_mutant_caught, assert_variant_keeps_full_marks, grade_edit
from tests.mutants.ch01 import MUTANTS, VALID_VARIANTS

CHAPTER = "transformer_architecture"
MODULE = "transformer_full"
SOURCE = (REFERENCE / f"{MODULE}.py").read_text()


def test_banned_transformer_layer_fails_only_the_static_test(tmp_path):
    # nn.TransformerEncoderLayer named inside EncoderLayer.forward (behaviour unchanged): the
    # static test and EncoderLayer's tests fail, DecoderLayer's pass.
    source = SOURCE.replace("        ignore = padding_to_ignore(attention_mask)  # (B, T) or None\n"
                            "        blocked = future_mask(x.shape[1], x.device) if is_causal else None",
                            "        _ = nn.TransformerEncoderLayer\n"
                            "        ignore = padding_to_ignore(attention_mask)  # (B, T) or None\n"
                            "        blocked = future_mask(x.shape[1], x.device) if is_causal else None")
    assert source != SOURCE
    chapter = grade_edit(tmp_path, CHAPTER, MODULE, source)
    by_name = {t["name"]: t for t in chapter["tests"]}
    assert by_name["test_no_banned_apis"]["status"] == "failed"
    assert "TransformerEncoderLayer" in by_name["test_no_banned_apis"]["message"]
    assert by_name["test_encoder_layer_matches_reference"]["status"] == "failed"
    assert by_name["test_decoder_layer_matches_reference"]["status"] == "passed"


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
    tasks = {"positions", "embeddings", "masks", "EncoderLayer", "DecoderLayer", "Transformer", "EncoderOnly",
             "DecoderOnly", "count_parameters", "transformer_parameter_count"}
    for mutant in MUTANTS:
        assert mutant.tasks and set(mutant.tasks) <= tasks, mutant.name


def test_mutants_apply_cleanly():
    for mutant in [*MUTANTS, *VALID_VARIANTS]:
        assert mutant.apply(SOURCE) != SOURCE
