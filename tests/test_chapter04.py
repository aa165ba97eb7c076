"""Chapter 04's graders, tested end to end through the CLI: every mutant loses points with
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
from tests.mutants.ch04 import MUTANTS, VALID_VARIANTS

CHAPTER = "feedforward_networks"
MODULE = "feedforward"
SOURCE = (REFERENCE / f"{MODULE}.py").read_text()
BY_NAME = {m.name: m for m in MUTANTS}


def graded(tmp_path, mutant_name: str, *, tasks: tuple[str, ...] = ()) -> dict[str, dict]:
    """Grade the chapter with one mutant applied (only `tasks` when given); its tests by name."""
    tree = tree_with(tmp_path, MODULE, BY_NAME[mutant_name].apply(SOURCE))
    return {t["name"]: t for t in chapter_entry(grade(tree, tmp_path / "report", CHAPTER, tasks=tasks),
                                                CHAPTER)["tests"]}


def failed(tests: dict[str, dict]) -> set[str]:
    return {name for name, t in tests.items() if t["status"] != "passed"}


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


@pytest.mark.slow
@pytest.mark.parametrize("name", ["feedforward_only_3d_input", "swiglu_only_3d_input"])
def test_three_d_only_layer_loses_hidden_points_too(name, tmp_path):
    """The handout's `(..., D)`: the hidden strategies draw 0 to 3 leading dims, so a layer that
    unpacks `B, T, D = x.shape` fails the comparison with the reference as well."""
    tests = graded(tmp_path, name, tasks=BY_NAME[name].tasks)
    kind = "feedforward" if name.startswith("feedforward") else "swiglu"
    assert f"test_layer_matches_reference[{kind}]" in failed(tests)
    assert f"test_layer_accepts_any_leading_dims[{kind}]" in failed(tests)


@pytest.mark.slow
def test_gelu_bug_is_not_blamed_on_dropout(tmp_path):
    """A wrong tanh-GELU constant fails gelu's tests; the dropout test compares the layer with its own
    dropout-free output, so it passes and no "dropout" hint points the student elsewhere."""
    tests = graded(tmp_path, "gelu_tanh_constant_wrong", tasks=("gelu", "FeedForward"))
    assert {"test_gelu_tanh_constants", "test_gelu_golden[tanh]"} & failed(tests)
    assert "test_layer_matches_reference[feedforward]" in failed(tests)
    assert tests["test_layer_dropout_only_in_training[feedforward]"]["status"] == "passed"
    assert not any("dropout" in tests[name]["message"].lower() for name in failed(tests))


@pytest.mark.slow
def test_swapped_gate_fails_its_own_test_not_dropout(tmp_path):
    """silu(w3 x) * w1 x: `test_swiglu_gate_is_w1` fails (w3 no longer enters linearly); dropout's passes."""
    tests = graded(tmp_path, "swiglu_gate_and_up_swapped", tasks=("SwiGLU",))
    assert "test_swiglu_gate_is_w1" in failed(tests)
    assert tests["test_layer_dropout_only_in_training[swiglu]"]["status"] == "passed"
    assert "w1 is the gate" in tests["test_swiglu_gate_is_w1"]["message"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["feedforward_dropout_in_eval", "feedforward_dropout_before_fc2",
                                  "swiglu_dropout_before_w2", "feedforward_functional_dropout_always_on"])
def test_dropout_bugs_fail_the_dropout_test(name, tmp_path):
    """Dropout in eval mode or before the last linear layer: the hidden dropout test fails, saying so."""
    tests = graded(tmp_path, name, tasks=BY_NAME[name].tasks)
    kind = "feedforward" if name.startswith("feedforward") else "swiglu"
    test = tests[f"test_layer_dropout_only_in_training[{kind}]"]
    assert test["status"] != "passed"
    assert ("eval mode" if "before" not in name else "after the last linear layer") in test["message"]
