"""Chapter 03 public tests: properties you can check yourself, and golden values.

These run without the reference solution. Golden values live in
`graders/snapshots/03_positional_encodings/` and are shown when a test fails. Your
instructor's hidden tests check much more (the formulas at random positions and bases, RoPE's
relative-position property, positions up to 1e5, every ALiBi head count up to 64, and
attention with RoPE and ALiBi through your chapter 02 layer).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given

from graders import checks, strategies, tolerances
from graders.strategies import randn
from graders.submission import obj

TASKS = ("sinusoidal_encoding", "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding", "RotaryEmbedding",
         "alibi_slopes", "alibi_bias")
SECTIONS = {"sinusoidal_encoding": "sinusoidal", "SinusoidalPositionalEncoding": "sinusoidal",
            "LearnedPositionalEmbedding": "learned", "RotaryEmbedding": "rope", "alibi_slopes": "alibi-slopes",
            "alibi_bias": "alibi"}
ATTENTION = "multi_head_attention"  # chapter 02's module: RoPE runs inside your attention layer


@pytest.mark.points(0)
@pytest.mark.task("static")
def test_module_parses(static_scan, chapter):
    """The module parses (chapter 03 bans no API)."""
    checks.static_clean(static_scan, chapter.module)


# --- sinusoidal ---------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("sinusoidal_encoding")
def test_sinusoidal_golden(student, snapshot):
    """sinusoidal_encoding(16, 8) is float32 and matches the golden table (sin in even columns, cos in odd)."""
    table = student.call("sinusoidal_encoding", 16, 8)
    checks.check_tensor(table, what="sinusoidal_encoding(16, 8)", shape=(16, 8))
    if table.dtype != torch.float32:
        checks.fail(f"sinusoidal_encoding(16, 8) is {table.dtype}; the handout returns a float32 table (compute in "
                    "float64 if you like, then .float())")
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
def test_sinusoidal_base_sets_the_frequencies(student):
    """With base=100, row 1 of a width-4 table is (sin 1, cos 1, sin 0.1, cos 0.1): frequency base^(-2i/d)."""
    table = student.call("sinusoidal_encoding", 2, 4, base=100.0)
    table = checks.check_tensor(table, what="sinusoidal_encoding(2, 4, base=100)", shape=(2, 4))
    expected = torch.tensor([math.sin(1.0), math.cos(1.0), math.sin(0.1), math.cos(0.1)])
    checks.assert_close(table[1].float(), expected, tolerances.angles(1.0)[torch.float32],
                        what="row 1 of sinusoidal_encoding(2, 4, base=100)", reveal=True,
                        hint="use the base argument, not a fixed 10000")


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


@pytest.mark.points(1)
@pytest.mark.task("SinusoidalPositionalEncoding")
def test_sinusoidal_module_dropout_only_in_training(student):
    """SinusoidalPositionalEncoding(dropout=0.5) in eval mode returns x + PE[:T]; in training mode it drops entries."""
    x = randn((2, 5, 8), seed=3)
    call = {"fn": "self.forward", "args": [x]}

    def forward(dropout: float, train: bool = False) -> torch.Tensor:
        out = student.module("SinusoidalPositionalEncoding", {"d_model": 8, "max_len": 32, "dropout": dropout},
                             calls=[call], train=train).output
        return checks.check_tensor(out, what=f"SinusoidalPositionalEncoding(dropout={dropout})", shape=(2, 5, 8))

    free = forward(0.0)
    checks.assert_close(forward(0.5), free, tolerances.ADDED_TABLE[torch.float32],
                        what="SinusoidalPositionalEncoding(dropout=0.5) in eval mode", reveal=True,
                        hint="dropout acts only in training mode (nn.Dropout follows self.training)")
    if torch.allclose(forward(0.5, train=True), free):
        checks.fail("SinusoidalPositionalEncoding(dropout=0.5) in training mode returns x + PE unchanged: "
                    "apply the dropout to the sum")


@pytest.mark.points(1)
@pytest.mark.task("SinusoidalPositionalEncoding")
def test_sinusoidal_module_dropout_acts_on_the_sum(student):
    """In training mode with dropout=0.5 and x = 0, each entry is 0 or 2 * PE: the dropout acts on x + PE, not on x."""
    result = student.module("SinusoidalPositionalEncoding", {"d_model": 8, "max_len": 32, "dropout": 0.5}, train=True,
                            calls=[{"fn": "self.forward", "args": [torch.zeros(2, 16, 8)]}])
    out = checks.check_tensor(result.output, what="SinusoidalPositionalEncoding(dropout=0.5)(0) in training mode",
                              shape=(2, 16, 8))
    table = student.call("sinusoidal_encoding", 16, 8).float()
    kept = out != 0
    checks.assert_close(out[kept], (2 * table.expand(2, 16, 8))[kept], tolerances.ADDED_TABLE[torch.float32],
                        what="the kept entries (x = 0) against 2 * PE", reveal=True,
                        hint="dropout(x + PE[:T]): the kept entries are scaled by 1 / (1 - p)")
    if kept.all():
        checks.fail("no entry of dropout(0 + PE) was dropped at p = 0.5: apply the dropout to the sum x + PE[:T]")


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


@pytest.mark.points(1)
@pytest.mark.task("RotaryEmbedding")
def test_rope_turns_by_p_radians_at_far_positions(student):
    """RotaryEmbedding(2) turns (1, 0) at position p into (cos p, sin p), for p up to 1e5 (no length limit)."""
    positions = torch.tensor([1, 4095, 5000, 100_000])
    x = torch.tensor([[1.0, 0.0]] * 4, dtype=torch.float64)
    result = student.module("RotaryEmbedding", {"head_dim": 2}, dtype=torch.float64,
                            calls=[{"fn": "self.forward", "args": [x], "kwargs": {"positions": positions}}])
    rotated = checks.check_tensor(result.output, what="rope((1, 0)) at far positions", shape=(4, 2),
                                  dtype=torch.float64)
    angle = positions.double()
    checks.assert_close(rotated, torch.stack([angle.cos(), angle.sin()], dim=-1),
                        tolerances.angles(1e5)[torch.float64], what="rope((1, 0)) at positions 1, 4095, 5000, 1e5",
                        reveal=True, hint="compute the angles from the positions themselves: RoPE has no table limit")


@pytest.mark.points(1)
@pytest.mark.task("RotaryEmbedding")
@pytest.mark.parametrize("head_dim", [0, 3, 5])
def test_rope_refuses_an_odd_head_dim(student, head_dim):
    """An odd head_dim leaves a dimension without a partner (and 0 has none to rotate): RotaryEmbedding(head_dim)
    raises ValueError."""
    checks.expect_value_error(lambda: student.module("RotaryEmbedding", {"head_dim": head_dim}, calls=[]),
                              what=f"RotaryEmbedding({head_dim})")


def attention_with_rope(student, calls: list[dict], objects: dict | None = None):
    """Your chapter 02 MultiHeadAttention(16, 4 heads) with fixed weights and a RotaryEmbedding(4) named `rope`."""
    shapes = {"q_proj.weight": (16, 16), "q_proj.bias": (16,), "k_proj.weight": (16, 16), "k_proj.bias": (16,),
              "v_proj.weight": (16, 16), "v_proj.bias": (16,), "out_proj.weight": (16, 16), "out_proj.bias": (16,)}
    state = {name: randn(shape, seed=20 + i, scale=0.3) for i, (name, shape) in enumerate(shapes.items())}
    objects = {"rope": {"cls": "RotaryEmbedding", "init": {"head_dim": 4}}} | (objects or {})
    return student.module("MultiHeadAttention", {"d_model": 16, "num_heads": 4}, module=ATTENTION, state_dict=state,
                          objects=objects, calls=calls)


@pytest.mark.points(1)
@pytest.mark.task("RotaryEmbedding")
def test_attention_with_rope_golden(student, snapshot):
    """Your attention layer with rope=RotaryEmbedding(4), causal, matches the golden output and weights."""
    t = snapshot.inputs(x=randn((2, 5, 16), seed=12))
    call = {"fn": "self.forward", "args": [t["x"]],
            "kwargs": {"mask": torch.ones(5, 5, dtype=torch.bool).tril(), "rope": obj("rope"), "need_weights": True}}
    out, weights = attention_with_rope(student, [call]).output
    snapshot.assert_match({"out": out, "weights": weights}, tolerances.rope_attention(4.0),
                          hint="rotate the queries and the keys (never the values) at their positions")


@pytest.mark.points(1)
@pytest.mark.task("RotaryEmbedding")
def test_attention_with_rope_through_a_kv_cache(student):
    """Decoding 3 then 2 tokens through a KVCache with rope gives the full causal pass's output."""
    x = randn((1, 5, 16), seed=13)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    calls = [{"fn": "self.forward", "args": [x], "kwargs": {"mask": causal, "rope": obj("rope")}},
             {"fn": "self.forward", "args": [x[:, :3]],
              "kwargs": {"mask": causal[:3, :3], "rope": obj("rope"), "kv_cache": obj("cache")}},
             {"fn": "self.forward", "args": [x[:, 3:]],
              "kwargs": {"mask": causal[3:], "rope": obj("rope"), "kv_cache": obj("cache")}}]
    full, first, second = (output[0] for output in attention_with_rope(
        student, calls, objects={"cache": {"cls": "KVCache", "module": ATTENTION}}).outputs)
    checks.assert_close(torch.cat([first, second], dim=1), full, tolerances.rope_attention(4.0)[torch.float32],
                        what="outputs decoded through the cache against the full pass", reveal=True,
                        hint="with a cache of length L the new tokens sit at positions L, L + 1, ...")


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
                                 shape=(num_heads,), dtype=torch.float32)
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


# --- the cheap promises: errors and dtypes ------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("sinusoidal_encoding")
@pytest.mark.parametrize(("max_len", "d_model"), [(4, 0), (-1, 4)])
def test_sinusoidal_encoding_refuses_bad_sizes(student, max_len, d_model):
    """sinusoidal_encoding raises ValueError for a d_model that is not positive, or a negative max_len."""
    checks.expect_value_error(lambda: student.call("sinusoidal_encoding", max_len, d_model),
                              what=f"sinusoidal_encoding({max_len}, {d_model})")


@pytest.mark.points(1)
@pytest.mark.task("sinusoidal_encoding")
def test_sinusoidal_encoding_of_no_positions_is_empty(student):
    """sinusoidal_encoding(0, 4) is an empty (0, 4) table: max_len 0 is not negative, so it is valid."""
    checks.expect_value_error(lambda: student.call("sinusoidal_encoding", 0, 4), what="sinusoidal_encoding(0, 4)",
                              valid=True)
    checks.check_tensor(student.call("sinusoidal_encoding", 0, 4), what="sinusoidal_encoding(0, 4)", shape=(0, 4))


@pytest.mark.points(1)
@pytest.mark.task("SinusoidalPositionalEncoding")
def test_sinusoidal_module_refuses_odd_width_and_long_input(student):
    """SinusoidalPositionalEncoding(7) raises ValueError; with max_len=4, 4 tokens run and 5 raise ValueError."""
    checks.expect_value_error(lambda: student.module("SinusoidalPositionalEncoding", {"d_model": 7}, calls=[]),
                              what="SinusoidalPositionalEncoding(7)")
    for length, valid in ((4, True), (5, False)):
        call = {"fn": "self.forward", "args": [torch.zeros(1, length, 8)]}
        checks.expect_value_error(
            lambda call=call: student.module("SinusoidalPositionalEncoding", {"d_model": 8, "max_len": 4},
                                             calls=[call]),
            what=f"SinusoidalPositionalEncoding(8, max_len=4) on {length} tokens", valid=valid)


@pytest.mark.points(1)
@pytest.mark.task("RotaryEmbedding")
def test_rope_refuses_positions_of_the_wrong_shape(student):
    """RotaryEmbedding(4) on 3 rows with 2 positions raises ValueError (positions must have shape (T,))."""
    checks.expect_value_error(
        lambda: student.module("RotaryEmbedding", {"head_dim": 4},
                               calls=[{"fn": "self.forward", "args": [torch.zeros(3, 4)],
                                       "kwargs": {"positions": torch.arange(2)}}]),
        what="RotaryEmbedding(4) on (3, 4) with positions of shape (2,)")


@pytest.mark.points(1)
@pytest.mark.task("alibi_slopes")
def test_alibi_slopes_refuse_no_heads(student):
    """alibi_slopes(0) raises ValueError: there is no head to give a slope."""
    checks.expect_value_error(lambda: student.call("alibi_slopes", 0), what="alibi_slopes(0)")


@pytest.mark.points(1)
@pytest.mark.task("alibi_bias")
def test_alibi_bias_refuses_more_queries_than_keys(student):
    """alibi_bias(2, 3, 2) raises ValueError: query 0 would sit at position -1."""
    checks.expect_value_error(lambda: student.call("alibi_bias", 2, 3, 2), what="alibi_bias(2, 3, 2)")


@pytest.mark.points(1)
@pytest.mark.task("alibi_bias")
def test_alibi_bias_k_len_defaults_to_q_len(student):
    """alibi_bias(2, 3) equals alibi_bias(2, 3, 3): without a cache there are as many keys as queries."""
    short = checks.check_tensor(student.call("alibi_bias", 2, 3), what="alibi_bias(2, 3)", shape=(2, 3, 3))
    checks.assert_equal(short, student.call("alibi_bias", 2, 3, 3), what="alibi_bias(2, 3) vs alibi_bias(2, 3, 3)",
                        reveal=True)
