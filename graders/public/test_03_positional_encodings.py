"""Chapter 03 public tests: properties you can check yourself, and golden values.

These run without the reference solution. Golden values live in
`graders/snapshots/03_positional_encodings/` and are shown when a test fails. Your
instructor's hidden tests check much more (the formulas at random positions and bases, RoPE's
relative-position property, positions up to 1e5, every ALiBi head count up to 64, and
attention with RoPE and ALiBi through your chapter 02 layer).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given

from graders import checks, strategies, tolerances
from graders.strategies import randn

TASKS = ("sinusoidal_encoding", "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding", "RotaryEmbedding",
         "alibi_slopes", "alibi_bias")
SECTIONS = {"sinusoidal_encoding": "sinusoidal", "SinusoidalPositionalEncoding": "sinusoidal",
            "LearnedPositionalEmbedding": "learned", "RotaryEmbedding": "rope", "alibi_slopes": "alibi-slopes",
            "alibi_bias": "alibi"}


@pytest.mark.points(0)
@pytest.mark.task("static")
def test_module_parses(static_scan, chapter):
    """The module parses (chapter 03 bans no API)."""
    checks.static_clean(static_scan, chapter.module)


# --- sinusoidal ---------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("sinusoidal_encoding")
def test_sinusoidal_golden(student, snapshot):
    """sinusoidal_encoding(16, 8) matches the golden table (sin in even columns, cos in odd)."""
    table = student.call("sinusoidal_encoding", 16, 8)
    checks.check_tensor(table, what="sinusoidal_encoding(16, 8)", shape=(16, 8))
    snapshot.assert_match({"table": table.float()}, tolerances.angles(15.0))


@pytest.mark.points(1)
@pytest.mark.task("sinusoidal_encoding")
@given(case=strategies.sinusoid_cases())
def test_sinusoidal_first_row_and_bounds(student, case):
    """Position 0 is (0, 1, 0, 1, ...), and every entry lies in [-1, 1]."""
    table = student.call("sinusoidal_encoding", case.max_len, case.d_model, base=case.base)
    table = checks.check_tensor(table, what=f"sinusoidal_encoding({case.max_len}, {case.d_model})",
                                shape=(case.max_len, case.d_model))
    expected_first = torch.tensor([0.0, 1.0]).repeat(case.d_model // 2)
    checks.assert_close(table[0].float(), expected_first, tolerances.angles(0.0)[torch.float32],
                        what="row 0 (position 0)", reveal=True, hint="sin(0) = 0 in even columns, cos(0) = 1 in odd")
    if table.abs().max() > 1.0:
        checks.fail(f"an entry has magnitude {table.abs().max().item():.4g} > 1; sines and cosines lie in [-1, 1]")


@pytest.mark.points(1)
@pytest.mark.task("sinusoidal_encoding")
@pytest.mark.parametrize("d_model", [3, 7])
def test_sinusoidal_rejects_odd_d_model(student, d_model):
    """An odd d_model cannot be split into (sin, cos) pairs: ValueError."""
    checks.expect_value_error(lambda: student.call("sinusoidal_encoding", 4, d_model),
                              what=f"sinusoidal_encoding(4, {d_model})")


@pytest.mark.points(1)
@pytest.mark.task("SinusoidalPositionalEncoding")
def test_sinusoidal_module_adds_table(student, snapshot):
    """SinusoidalPositionalEncoding(8, max_len=32) adds the table's first T rows to x; nothing in its state_dict."""
    t = snapshot.inputs(x=randn((2, 5, 8), seed=3))
    result = student.module("SinusoidalPositionalEncoding", {"d_model": 8, "max_len": 32},
                            calls=[{"fn": "self.forward", "args": [t["x"]]}], state_dict_shapes=True)
    snapshot.assert_match({"out": result.output}, tolerances.ADDED_TABLE)
    if result.state_dict_shapes:
        checks.fail(f"the state_dict holds {result.state_dict_shapes}; the table is a buffer registered with "
                    "persistent=False, recomputed rather than saved")


# --- learned ------------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("LearnedPositionalEmbedding")
def test_learned_adds_rows(student):
    """LearnedPositionalEmbedding(6, 4) has `embedding.weight` (6, 4) and adds its first T rows."""
    weight = randn((6, 4), seed=1)
    x = randn((2, 3, 4), seed=2)
    result = student.module("LearnedPositionalEmbedding", {"max_len": 6, "d_model": 4},
                            state_dict={"embedding.weight": weight},
                            calls=[{"fn": "self.forward", "args": [x]}], state_dict_shapes=True)
    if result.state_dict_shapes != {"embedding.weight": [6, 4]}:
        checks.fail(f"state_dict shapes are {result.state_dict_shapes}, expected {{'embedding.weight': [6, 4]}}")
    checks.assert_close(result.output, x + weight[:3], tolerances.LAYER[torch.float32], what="x + embedding",
                        reveal=True)


@pytest.mark.points(1)
@pytest.mark.task("LearnedPositionalEmbedding")
def test_learned_rejects_too_long(student):
    """A sequence longer than max_len raises ValueError; exactly max_len is fine."""
    init = {"max_len": 4, "d_model": 2}
    checks.expect_value_error(
        lambda: student.module("LearnedPositionalEmbedding", init, calls=[{"fn": "self.forward",
                                                                          "args": [torch.zeros(1, 4, 2)]}]),
        what="LearnedPositionalEmbedding(max_len=4) on a sequence of 4", valid=True)
    checks.expect_value_error(
        lambda: student.module("LearnedPositionalEmbedding", init, calls=[{"fn": "self.forward",
                                                                          "args": [torch.zeros(1, 5, 2)]}]),
        what="LearnedPositionalEmbedding(max_len=4) on a sequence of 5")


# --- RoPE ---------------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("RotaryEmbedding")
@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_golden(student, snapshot, interleaved):
    """RotaryEmbedding(8, interleaved=...) on fixed x at positions 3..7 matches the golden output."""
    t = snapshot.inputs(x=randn((2, 5, 8), seed=11))
    result = student.module("RotaryEmbedding", {"head_dim": 8, "interleaved": interleaved},
                            calls=[{"fn": "self.forward", "args": [t["x"]],
                                    "kwargs": {"positions": torch.arange(3, 8)}}])
    snapshot.assert_match({"rotated": result.output}, tolerances.angles(7.0, scale=4.0),
                          hint="half-split pairs (i, i + head_dim/2); interleaved pairs (2i, 2i+1)")


@pytest.mark.points(1)
@pytest.mark.task("RotaryEmbedding")
@given(case=strategies.rope_cases(dtype=torch.float64))
def test_rope_keeps_norms(student, case):
    """A rotation keeps each vector's length: |rope(x)| == |x| row by row."""
    x = case.x()
    result = student.module("RotaryEmbedding", case.init, dtype=case.dtype,
                            calls=[{"fn": "self.forward", "args": [x], "kwargs": {"positions": case.positions()}}])
    rotated = checks.check_tensor(result.output, what="rope(x)", shape=tuple(x.shape), dtype=x.dtype)
    checks.assert_close(rotated.norm(dim=-1), x.norm(dim=-1), tolerances.angles(0.0, scale=2.0 * float(x.norm(dim=-1).max()))[torch.float64],
                        what="row norms of rope(x) vs x", reveal=True)


# --- ALiBi --------------------------------------------------------------------------------------


# The paper's slopes, as exponents of 2: 8 heads are a power of two; 6 heads take the 4-head
# sequence, then every other slope of the 8-head sequence.
PAPER_EXPONENTS = {8: [-1, -2, -3, -4, -5, -6, -7, -8], 6: [-2, -4, -6, -8, -1, -3]}


@pytest.mark.points(1)
@pytest.mark.task("alibi_slopes")
@pytest.mark.parametrize("num_heads", [8, 6])
def test_alibi_slopes_examples(student, num_heads):
    """alibi_slopes(8) is 1/2, 1/4, ..., 1/256; alibi_slopes(6) follows the paper's rule for other counts."""
    slopes = checks.check_tensor(student.call("alibi_slopes", num_heads), what=f"alibi_slopes({num_heads})",
                                 shape=(num_heads,))
    expected = 2.0 ** torch.tensor(PAPER_EXPONENTS[num_heads], dtype=torch.float64)
    checks.assert_close(slopes.double(), expected,
                        tolerances.SLOPES[torch.float64], what=f"alibi_slopes({num_heads})", reveal=True)


@pytest.mark.points(1)
@pytest.mark.task("alibi_bias")
def test_alibi_bias_golden(student, snapshot):
    """alibi_bias(2, 3, 5): two queries' worth of cache, then bias[h, i, j] = -slope_h * |2 + i - j|."""
    bias = student.call("alibi_bias", 2, 3, 5)
    checks.check_tensor(bias, what="alibi_bias(2, 3, 5)", shape=(2, 3, 5))
    snapshot.assert_match({"bias": bias.float()}, tolerances.alibi(4))
