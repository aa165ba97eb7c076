"""Chapter 03 hidden tests: the formulas, the properties behind them, and differential tests.

Expected values come from the reference in float64 on the same inputs; failure messages show
the student's own values, the size and place of the error and the shrunk case, never the
expected values or this file's source. Attention with RoPE and ALiBi runs the student's own
chapter 02 `MultiHeadAttention` (the contract grades it here).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from graders import checks, plugin, strategies, tolerances
from graders.strategies import randn
from graders.submission import obj

TASKS = ("sinusoidal_encoding", "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding", "RotaryEmbedding",
         "alibi_slopes", "alibi_bias")
SECTIONS = {"sinusoidal_encoding": "sinusoidal", "SinusoidalPositionalEncoding": "sinusoidal",
            "LearnedPositionalEmbedding": "learned", "RotaryEmbedding": "rope", "alibi_slopes": "alibi-slopes",
            "alibi_bias": "alibi"}
ATTENTION = "multi_head_attention"  # chapter 02's module, which these tests also call
FAR = 100_000  # "far beyond anything seen": no table, no training run reaches 1e5 positions


@pytest.fixture(scope="module")
def attention_reference():
    return plugin.load_reference(ATTENTION)


def rope_call(x: torch.Tensor, positions: torch.Tensor | None) -> dict:
    kwargs = {} if positions is None else {"positions": positions}
    return {"fn": "self.forward", "args": [x], "kwargs": kwargs}


def student_rope(student, case, x: torch.Tensor, positions: torch.Tensor | None, **init) -> torch.Tensor:
    """The student's RotaryEmbedding(case.init | init) applied to x at `positions`."""
    result = student.module("RotaryEmbedding", case.init | init, dtype=case.dtype, calls=[rope_call(x, positions)])
    return checks.check_tensor(result.output, what="rope(x)", shape=tuple(x.shape), dtype=x.dtype)


def rope_tolerance(x: torch.Tensor, max_angle: float):
    """Each output entry mixes two inputs of size up to max|x|, each turned by a rounded angle."""
    return tolerances.angles(max_angle, scale=2.0 * float(x.abs().max()))[x.dtype]


def reference_rope(reference, case, x: torch.Tensor, positions: torch.Tensor | None, **init) -> torch.Tensor:
    return reference.RotaryEmbedding(**(case.init | init))(x.double(), positions=positions)


# --- sinusoidal ---------------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.task("sinusoidal_encoding")
@given(case=strategies.sinusoid_cases())
def test_sinusoidal_matches_formula(student, reference, case):
    """PE[p, 2i] = sin(p / base^(2i/d)), PE[p, 2i+1] = cos(...) at every position, dim and base."""
    table = student.call("sinusoidal_encoding", case.max_len, case.d_model, base=case.base)
    table = checks.check_tensor(table, what=f"sinusoidal_encoding({case.max_len}, {case.d_model}, base={case.base:g})",
                                shape=(case.max_len, case.d_model))
    expected = reference.sinusoidal_encoding(case.max_len, case.d_model, base=case.base)
    checks.assert_close(table.float(), expected, tolerances.angles(case.max_angle)[torch.float32], what="PE",
                        hint="the exponent is 2i/d_model for the pair (2i, 2i+1): sin in column 2i, cos in 2i+1")


@pytest.mark.points(1)
@pytest.mark.task("sinusoidal_encoding")
@given(case=strategies.sinusoid_cases(max_len=200))
def test_sinusoidal_bounded(student, case):
    """Every entry lies in [-1, 1] (a sine or a cosine), and none is NaN."""
    table = student.call("sinusoidal_encoding", case.max_len, case.d_model, base=case.base)
    table = checks.check_tensor(table, what="PE", shape=(case.max_len, case.d_model))
    checks.assert_finite(table, what="PE")
    if table.abs().max() > 1.0:
        index = tuple(int(i) for i in (table.abs() == table.abs().max()).nonzero()[0])
        checks.fail(f"PE{list(index)} = {table[index].item():.6g} lies outside [-1, 1]")


@pytest.mark.points(2)
@pytest.mark.task("sinusoidal_encoding")
@given(case=strategies.sinusoid_cases(max_len=48), shift=st.integers(1, 16))
def test_sinusoidal_shift_is_a_rotation(student, case, shift):
    """For each pair (2i, 2i+1), PE(p + k) is PE(p) turned by the same angle for every p."""
    max_len = case.max_len + shift
    table = student.call("sinusoidal_encoding", max_len, case.d_model, base=case.base)
    table = checks.check_tensor(table, what="PE", shape=(max_len, case.d_model)).double()
    now, later = table[:-shift], table[shift:]  # (P, D) each: rows p and p + k
    a, b = now[:, 0::2], now[:, 1::2]  # (P, D/2) sin and cos of each pair at p
    c, d = later[:, 0::2], later[:, 1::2]  # (P, D/2) the same at p + k
    # The turn from (b, a) to (d, c) as an angle: its cos and sin are dot and cross products.
    cos_turn, sin_turn = b * d + a * c, b * c - a * d  # (P, D/2)
    tol = tolerances.angles(float(max_len), scale=2.0)[torch.float32]
    spread = torch.maximum((cos_turn - cos_turn[:1]).abs(), (sin_turn - sin_turn[:1]).abs())  # (P, D/2)
    if (spread > tol.atol).any():
        p, i = (int(v) for v in (spread == spread.max()).nonzero()[0])
        checks.fail(f"pair ({2 * i}, {2 * i + 1}) moves by a different angle from position {p} to {p + shift} than "
                    f"from 0 to {shift} (cos of the turn {cos_turn[p, i].item():.4g} vs {cos_turn[0, i].item():.4g}); "
                    f"with sin in column 2i and cos in 2i+1 at one frequency per pair, every shift by {shift} is the "
                    "same rotation")


@pytest.mark.points(1)
@pytest.mark.task("sinusoidal_encoding")
@given(max_len=st.integers(1, 8), half=st.integers(0, 8))
def test_sinusoidal_needs_an_even_d_model(student, max_len, half):
    """d_model = 2k + 1 raises ValueError; d_model = 2k + 2 builds."""
    checks.expect_value_error(lambda: student.call("sinusoidal_encoding", max_len, 2 * half + 1),
                              what=f"sinusoidal_encoding({max_len}, {2 * half + 1})")
    checks.expect_value_error(lambda: student.call("sinusoidal_encoding", max_len, 2 * half + 2),
                              what=f"sinusoidal_encoding({max_len}, {2 * half + 2})", valid=True)


@pytest.mark.points(2)
@pytest.mark.task("SinusoidalPositionalEncoding")
@given(case=strategies.sinusoid_cases(max_len=16, max_dim=16), extra=st.integers(0, 8), batch=st.integers(1, 3),
       dtype=strategies.dtypes(), seed=strategies.seeds())
def test_sinusoidal_module_matches_reference(student, reference, case, extra, batch, dtype, seed):
    """forward(x) == x + PE[:T] in x's dtype, for any T up to max_len, in eval mode with dropout set."""
    max_len = case.max_len + extra
    x = randn((batch, case.max_len, case.d_model), seed=seed, dtype=dtype)
    init = {"d_model": case.d_model, "max_len": max_len, "dropout": 0.5}
    result = student.module("SinusoidalPositionalEncoding", init, dtype=dtype,
                            calls=[{"fn": "self.forward", "args": [x]}])
    out = checks.check_tensor(result.output, what="forward(x)", shape=tuple(x.shape), dtype=dtype)
    expected = x.double() + reference.sinusoidal_encoding(max_len, case.d_model)[: case.max_len].double()
    tol = tolerances.ADDED_TABLE[dtype]
    hint = "add the first T rows of the table"
    if not torch.allclose(out.double(), expected, rtol=tol.rtol, atol=tol.atol):
        # Blame dropout only when the same module built with dropout=0 is right.
        free = student.module("SinusoidalPositionalEncoding", init | {"dropout": 0.0}, dtype=dtype,
                              calls=[{"fn": "self.forward", "args": [x]}]).output
        free = checks.check_tensor(free, what="forward(x) with dropout=0", shape=tuple(x.shape), dtype=dtype)
        if torch.allclose(free.double(), expected, rtol=tol.rtol, atol=tol.atol):
            hint = "dropout acts only in training mode: with dropout=0 your output is right, with dropout=0.5 not"
    checks.assert_close(out, expected, tol, what="forward(x) in eval mode, dropout=0.5", hint=hint)


@pytest.mark.points(1)
@pytest.mark.task("SinusoidalPositionalEncoding")
@given(length=st.integers(4, 16), d_model=st.sampled_from((8, 12, 16)), p=st.sampled_from((0.25, 0.5)),
       seed=strategies.seeds())
def test_sinusoidal_module_dropout_acts_on_the_sum(student, length, d_model, p, seed):
    """In training mode each entry of forward(x) is 0 or your eval-mode x + PE[:T] scaled by 1/(1-p), with a share p
    of zeros: dropout(x + PE[:T]), the sum dropped as a whole."""
    x = randn((6, length, d_model), seed=seed, dtype=torch.float64)
    init = {"d_model": d_model, "max_len": 16, "dropout": p}
    result = student.module("SinusoidalPositionalEncoding", init, dtype=torch.float64, train=True,
                            calls=[{"fn": "self.forward", "args": [x]}, {"fn": "self.eval", "discard": True},
                                   {"fn": "self.forward", "args": [x]}])
    trained = checks.check_tensor(result.outputs[0], what="forward(x) in training mode", shape=tuple(x.shape))
    summed = checks.check_tensor(result.outputs[2], what="forward(x) in eval mode", shape=tuple(x.shape))
    tol = tolerances.ADDED_TABLE[torch.float64]
    hint = "dropout(x + PE[:T]): the sum is dropped, never x alone, and only in training mode"
    checks.assert_dropped_or_scaled(trained, summed, p, tol, hint=hint,
                                    what=f"forward(x) in training mode with dropout={p}, against yours in eval mode")


@pytest.mark.points(1)
@pytest.mark.task("SinusoidalPositionalEncoding")
def test_sinusoidal_module_has_no_state(student):
    """The table is a non-persistent buffer: the state_dict is empty, so loading {} works."""
    result = student.module("SinusoidalPositionalEncoding", {"d_model": 4, "max_len": 8}, state_dict={}, calls=[],
                            state_dict_shapes=True)
    if result.state_dict_shapes:
        checks.fail(f"the state_dict holds {result.state_dict_shapes}: register the table with persistent=False")


# --- learned ------------------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.task("LearnedPositionalEmbedding")
@given(max_len=st.integers(1, 12), d_model=st.integers(1, 8), short=st.integers(0, 11), batch=st.integers(1, 3),
       seed=strategies.seeds())
def test_learned_matches_reference(student, reference, max_len, d_model, short, batch, seed):
    """forward(x) == x + embedding.weight[:T], and the gradient reaches exactly rows 0..T-1."""
    seq_len = max(1, max_len - short)
    weight = randn((max_len, d_model), seed=seed, dtype=torch.float64)
    x = randn((batch, seq_len, d_model), seed=seed + 1, dtype=torch.float64)
    upstream = randn((batch, seq_len, d_model), seed=seed + 2, dtype=torch.float64)
    result = student.module("LearnedPositionalEmbedding", {"max_len": max_len, "d_model": d_model},
                            state_dict={"embedding.weight": weight}, dtype=torch.float64,
                            calls=[{"fn": "self.forward", "args": [x]}], upstream=upstream, output=())
    module = reference.LearnedPositionalEmbedding(max_len, d_model).double()
    module.load_state_dict({"embedding.weight": weight})
    checks.assert_close(result.output, module(x), tolerances.LAYER[torch.float64], what="forward(x)",
                        hint="position p adds row p of the table, starting at 0")
    expected_grad = torch.zeros(max_len, d_model, dtype=torch.float64)
    expected_grad[:seq_len] = upstream.sum(dim=0)
    checks.assert_close(result.param_grads.get("embedding.weight"), expected_grad, tolerances.LAYER[torch.float64],
                        what=f"d loss / d embedding.weight (T={seq_len}, max_len={max_len})")


@pytest.mark.points(1)
@pytest.mark.task("LearnedPositionalEmbedding")
@given(max_len=st.integers(1, 10), over=st.integers(1, 5))
def test_learned_rejects_past_max_len(student, max_len, over):
    """T = max_len + k raises ValueError (a learned table has no row for it); T = max_len works."""
    init = {"max_len": max_len, "d_model": 2}
    too_long = {"fn": "self.forward", "args": [torch.zeros(1, max_len + over, 2)]}
    checks.expect_value_error(lambda: student.module("LearnedPositionalEmbedding", init, calls=[too_long]),
                              what=f"LearnedPositionalEmbedding(max_len={max_len}) on {max_len + over} positions")
    fits = {"fn": "self.forward", "args": [torch.zeros(1, max_len, 2)]}
    checks.expect_value_error(lambda: student.module("LearnedPositionalEmbedding", init, calls=[fits]),
                              what=f"LearnedPositionalEmbedding(max_len={max_len}) on {max_len} positions", valid=True)


# --- RoPE ---------------------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.task("RotaryEmbedding")
@given(case=strategies.rope_cases(), explicit=st.booleans())
def test_rope_matches_reference(student, reference, case, explicit):
    """rope(x, positions) equals the float64 reference over head dims, bases, positions, conventions, dtypes."""
    x = case.x()
    # Without `positions`, rows sit at 0..T-1; the explicit call gives start..start+T-1.
    positions = case.positions() if explicit else None
    rotated = student_rope(student, case, x, positions)
    expected = reference_rope(reference, case, x, positions)
    max_angle = case.max_angle if explicit else float(case.seq_len - 1)
    checks.assert_close(rotated, expected, rope_tolerance(x, max_angle),
                        what=f"rope(x) with interleaved={case.interleaved}",
                        hint="theta_i = base^(-2i/head_dim); (a, b) -> (a cos - b sin, a sin + b cos)")


@pytest.mark.points(1)
@pytest.mark.task("RotaryEmbedding")
@given(case=strategies.rope_cases(dtype=torch.float64))
def test_rope_keeps_pair_norms(student, case):
    """Each rotated pair keeps its length: |(a', b')| == |(a, b)| for every pair of the convention."""
    x = case.x()
    rotated = student_rope(student, case, x, case.positions())
    half = case.head_dim // 2

    def pair_norms(t: torch.Tensor) -> torch.Tensor:  # (..., T, Dh/2)
        a, b = (t[..., 0::2], t[..., 1::2]) if case.interleaved else (t[..., :half], t[..., half:])
        return torch.sqrt(a**2 + b**2)

    checks.assert_close(pair_norms(rotated), pair_norms(x), rope_tolerance(x, 0.0),
                        what=f"pair lengths after rope (interleaved={case.interleaved})",
                        hint="each pair is rotated, so its length cannot change; check which dims form a pair")


@pytest.mark.points(1)
@pytest.mark.task("RotaryEmbedding")
@given(case=strategies.rope_cases(starts=(0,), dtype=torch.float64))
def test_rope_identity_at_position_zero(student, case):
    """At position 0 every angle is 0: rope leaves the row unchanged."""
    x = case.x()
    zeros = torch.zeros(case.seq_len, dtype=torch.long)
    rotated = student_rope(student, case, x, zeros)
    checks.assert_close(rotated, x, rope_tolerance(x, 0.0), what="rope(x) at position 0",
                        hint="cos(0) = 1 and sin(0) = 0")


@pytest.mark.points(2)
@pytest.mark.task("RotaryEmbedding")
@given(case=strategies.rope_cases(dtype=torch.float64, max_len=1), m=st.integers(0, 2048),
       n=st.integers(0, 2048), shift=st.integers(1, 4096))
def test_rope_dot_product_depends_on_distance(student, case, m, n, shift):
    """<rope(q, m), rope(k, n)> == <rope(q, m + s), rope(k, n + s)>: only m - n matters."""
    q = randn((case.head_dim,), seed=case.seed, dtype=torch.float64)
    k = randn((case.head_dim,), seed=case.seed + 1, dtype=torch.float64)
    rows = torch.stack([q, k, q, k])[:, None, :]  # (4, 1, Dh): one row each, at its own position
    calls = [rope_call(row, torch.tensor([p])) for row, p in zip(rows, (m, n, m + shift, n + shift))]
    result = student.module("RotaryEmbedding", case.init, dtype=torch.float64, calls=calls)
    q_m, k_n, q_ms, k_ns = (checks.check_tensor(o, what="rope(x)", shape=(1, case.head_dim)) for o in result.outputs)
    before, after = (q_m * k_n).sum().item(), (q_ms * k_ns).sum().item()
    budget = tolerances.angles(float(max(m, n) + shift), scale=4.0 * float(q.norm() * k.norm()))[torch.float64]
    if abs(before - after) > budget.atol:
        checks.fail(f"<rope(q, {m}), rope(k, {n})> = {before:.6g} but <rope(q, {m + shift}), rope(k, {n + shift})> "
                    f"= {after:.6g} (difference {abs(before - after):.3g}, allowed {budget.atol:.2g}): the score must "
                    "depend only on the distance m - n. Rotate q and k with the same frequencies, by angle "
                    "position * theta_i, and the pair (a, b) -> (a cos - b sin, a sin + b cos)")


@pytest.mark.points(1)
@pytest.mark.task("RotaryEmbedding")
@given(case=strategies.rope_cases(dtype=torch.float64, interleaved=False))
def test_rope_conventions_are_one_rotation(student, case):
    """Interleaved RoPE on x with dims reordered (0, h, 1, h+1, ...) equals half-split RoPE on x, reordered."""
    x = case.x()
    half = case.head_dim // 2
    order = torch.stack([torch.arange(half), torch.arange(half) + half], dim=-1).flatten()  # (Dh,) 0, h, 1, h+1, ...
    split = student_rope(student, case, x, case.positions(), interleaved=False)
    mixed = student_rope(student, case, x[..., order], case.positions(), interleaved=True)
    checks.assert_close(mixed, split[..., order], rope_tolerance(x, case.max_angle),
                        what="interleaved rope of the reordered x vs half-split rope, reordered",
                        hint="half-split pairs dims (i, i + head_dim/2); interleaved pairs (2i, 2i+1); "
                             "see the page's section on the two conventions")


@pytest.mark.points(1)
@pytest.mark.task("RotaryEmbedding")
@given(case=strategies.rope_cases(starts=(FAR - 7, FAR, 3 * FAR)))
def test_rope_far_positions(student, reference, case):
    """At positions near 1e5, rope(x) stays finite and equal to the float64 reference."""
    x = case.x()
    rotated = student_rope(student, case, x, case.positions())
    checks.assert_finite(rotated, what=f"rope(x) at positions {case.start}..{case.start + case.seq_len - 1}")
    expected = reference_rope(reference, case, x, case.positions())
    tol = rope_tolerance(x, case.max_angle)
    hint = ""
    if not torch.allclose(rotated.double(), expected.double(), rtol=tol.rtol, atol=tol.atol):
        # Name the angle's precision only when the same rotation from position 0 is right.
        near = case.positions() - case.start
        near_ok = torch.allclose(student_rope(student, case, x, near).double(),
                                 reference_rope(reference, case, x, near).double(), rtol=tol.rtol, atol=tol.atol)
        hint = ("your rotation is right near position 0 but not here: compute position * theta in float32 or better "
                "(float64 is safest), never in half precision, and never through a table with a length limit"
                if near_ok else "")
    checks.assert_close(rotated, expected, tol, what=f"rope(x) at positions from {case.start}", hint=hint)


@pytest.mark.points(1)
@pytest.mark.task("RotaryEmbedding")
@given(half=st.integers(0, 8))
def test_rope_rejects_odd_head_dim(student, half):
    """An odd head_dim has a dimension with no partner: ValueError at construction."""
    checks.expect_value_error(lambda: student.module("RotaryEmbedding", {"head_dim": 2 * half + 1}, calls=[]),
                              what=f"RotaryEmbedding(head_dim={2 * half + 1})")


# --- attention with RoPE, through the student's chapter 02 layer -------------------------------


def mha_state(attention_reference, case) -> dict[str, torch.Tensor]:
    torch.manual_seed(case.seed)
    module = attention_reference.MultiHeadAttention(**case.init)
    return {k: v.detach().to(case.dtype).clone() for k, v in module.state_dict().items()}


def reference_mha(attention_reference, case, state, x, **kwargs):
    module = attention_reference.MultiHeadAttention(**case.init).double().eval()
    module.load_state_dict({k: v.double() for k, v in state.items()})
    return module(x.double(), **kwargs)


@pytest.mark.points(2)
@pytest.mark.task("RotaryEmbedding")
@given(case=strategies.mha_cases(masks=("none", "causal"), cross=False, even_head_dim=True),
       interleaved=st.booleans())
def test_attention_with_rope_matches_reference(student, reference, attention_reference, case, interleaved):
    """Your chapter 02 MultiHeadAttention with your RotaryEmbedding equals the reference pair."""
    head_dim = case.d_model // case.num_heads
    state = mha_state(attention_reference, case)
    inputs = case.inputs()
    call = {"fn": "self.forward", "args": [inputs["query"]],
            "kwargs": {"mask": inputs["mask"], "rope": obj("rope"), "need_weights": True}}
    result = student.module("MultiHeadAttention", case.init, module=ATTENTION, state_dict=state, dtype=case.dtype,
                            objects={"rope": {"cls": "RotaryEmbedding", "init": {"head_dim": head_dim,
                                                                                 "interleaved": interleaved}}},
                            calls=[call])
    out, weights = result.output
    rope = reference.RotaryEmbedding(head_dim, interleaved=interleaved)
    ref_out, ref_weights = reference_mha(attention_reference, case, state, inputs["query"], mask=inputs["mask"],
                                         rope=rope, need_weights=True)
    checks.check_tensor(out, what="out", dtype=case.dtype)
    tol = tolerances.rope_attention(float(case.q_len - 1))[case.dtype]
    checks.assert_close(weights, ref_weights, tol, what="attention weights with rope",
                        hint="rotate q and k (never v) with rope(x, positions) at their absolute positions")
    checks.assert_close(out, ref_out, tol, what="attention output with rope")


@pytest.mark.points(2)
@pytest.mark.task("RotaryEmbedding")
@given(case=strategies.mha_cases(masks=("causal",), cross=False, even_head_dim=True, min_len=2), data=st.data())
def test_attention_with_rope_through_a_cache(student, reference, attention_reference, case, data):
    """Decoding through a KVCache in chunks with rope gives the full causal pass's outputs."""
    chunks = data.draw(strategies.chunkings(case.q_len), label="chunks")
    head_dim = case.d_model // case.num_heads
    state = mha_state(attention_reference, case)
    x = case.inputs()["query"]
    calls, start = [], 0
    for size in chunks:  # queries start..start+size-1 see keys 0..start+size-1
        i = torch.arange(size)[:, None]
        j = torch.arange(start + size)[None, :]
        calls.append({"fn": "self.forward", "args": [x[:, start:start + size]],
                      "kwargs": {"mask": j <= start + i, "rope": obj("rope"), "kv_cache": obj("cache")}})
        start += size
    objects = {"rope": {"cls": "RotaryEmbedding", "init": {"head_dim": head_dim}},
               "cache": {"cls": "KVCache", "module": ATTENTION}}
    result = student.module("MultiHeadAttention", case.init, module=ATTENTION, state_dict=state, dtype=case.dtype,
                            objects=objects, calls=calls)
    pieces = [checks.check_tensor(o[0], what="out of one chunk") for o in result.outputs]
    mask = torch.ones(case.q_len, case.q_len, dtype=torch.bool).tril()
    full, _ = reference_mha(attention_reference, case, state, x, mask=mask, rope=reference.RotaryEmbedding(head_dim))
    checks.assert_close(torch.cat(pieces, dim=1), full, tolerances.rope_attention(float(case.q_len - 1))[case.dtype],
                        what=f"outputs decoded with rope through the cache in chunks {chunks}",
                        hint="with a cache, new queries and keys sit at positions cache.length, cache.length + 1, ...: "
                             "pass those positions to rope")


# --- ALiBi --------------------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.task("alibi_slopes")
def test_alibi_slopes_for_1_to_64_heads(student, reference):
    """alibi_slopes(n) equals the paper's slopes for every n from 1 to 64, powers of two or not."""
    counts = list(range(1, 65))
    outputs = student.run(calls=[{"fn": "alibi_slopes", "args": [n]} for n in counts]).outputs
    for n, slopes in zip(counts, outputs):
        slopes = checks.check_tensor(slopes, what=f"alibi_slopes({n})", shape=(n,))
        power = n & (n - 1) == 0
        checks.assert_close(slopes.double(), reference.alibi_slopes(n).double(), tolerances.SLOPES[torch.float64],
                            what=f"alibi_slopes({n})",
                            hint="a power of two n: 2^(-8/n), 2^(-16/n), ..." if power else
                                 f"{n} is not a power of two: the slopes of the largest power of two below it, then "
                                 "every other slope of the sequence for twice that many heads")


@pytest.mark.points(1)
@pytest.mark.task("alibi_bias")
@given(case=strategies.alibi_cases())
def test_alibi_bias_zero_where_query_meets_its_key(student, case):
    """bias[h, i, pos_i] == 0 with pos_i = k_len - q_len + i, and every other entry is negative."""
    bias = student.call("alibi_bias", case.num_heads, case.q_len, case.k_len)
    bias = checks.check_tensor(bias, what=f"alibi_bias({case.num_heads}, {case.q_len}, {case.k_len})",
                               shape=(case.num_heads, case.q_len, case.k_len))
    rows = torch.arange(case.q_len)
    checks.assert_equal(bias[:, rows, rows + case.offset], torch.zeros(case.num_heads, case.q_len, dtype=bias.dtype),
                        what="bias at each query's own position",
                        hint="query i sits at position k_len - q_len + i, where its distance is 0")
    off = torch.ones(case.q_len, case.k_len, dtype=torch.bool)
    off[rows, rows + case.offset] = False
    if (bias[:, off] >= 0).any():
        checks.fail(f"a bias at a nonzero distance is {bias[:, off].max().item():.4g} >= 0; ALiBi subtracts "
                    "slope * distance, so farther keys get lower scores")


@pytest.mark.points(1)
@pytest.mark.task("alibi_bias")
@given(case=strategies.alibi_cases(cache=False))
def test_alibi_bias_symmetric_in_distance(student, case):
    """Without a cache, bias[h] is symmetric: a key d before and a key d after cost the same."""
    bias = student.call("alibi_bias", case.num_heads, case.q_len)
    bias = checks.check_tensor(bias, what=f"alibi_bias({case.num_heads}, {case.q_len})",
                               shape=(case.num_heads, case.q_len, case.q_len))
    checks.assert_close(bias.transpose(-1, -2), bias, tolerances.alibi(case.q_len)[torch.float32],
                        what="alibi_bias transposed vs alibi_bias", hint="use |pos_i - j|, the absolute distance")


@pytest.mark.points(2)
@pytest.mark.task("alibi_bias")
@given(case=strategies.alibi_cases())
def test_alibi_bias_matches_reference(student, reference, case):
    """alibi_bias(H, q_len, k_len) equals -slope_h * |k_len - q_len + i - j|, with and without a cache."""
    bias = student.call("alibi_bias", case.num_heads, case.q_len, case.k_len)
    bias = checks.check_tensor(bias, what=f"alibi_bias({case.num_heads}, {case.q_len}, {case.k_len})",
                               shape=(case.num_heads, case.q_len, case.k_len))
    expected = reference.alibi_bias(case.num_heads, case.q_len, case.k_len)
    checks.assert_close(bias.float(), expected, tolerances.alibi(case.k_len)[torch.float32], what="alibi bias",
                        hint="query i sits at position k_len - q_len + i; multiply |distance| by -slope_h")


@pytest.mark.points(1)
@pytest.mark.task("alibi_bias")
@given(case=strategies.mha_cases(masks=("causal",), cross=False))
def test_attention_with_alibi_matches_reference(student, reference, attention_reference, case):
    """Your chapter 02 MultiHeadAttention with bias=alibi_bias(...) equals the reference pair."""
    state = mha_state(attention_reference, case)
    inputs = case.inputs()
    bias = student.call("alibi_bias", case.num_heads, case.q_len)
    bias = checks.check_tensor(bias, what="alibi_bias", shape=(case.num_heads, case.q_len, case.q_len))
    call = {"fn": "self.forward", "args": [inputs["query"]],
            "kwargs": {"mask": inputs["mask"], "bias": bias.to(case.dtype), "need_weights": True}}
    result = student.module("MultiHeadAttention", case.init, module=ATTENTION, state_dict=state, dtype=case.dtype,
                            calls=[call])
    out, weights = result.output
    ref_bias = reference.alibi_bias(case.num_heads, case.q_len).double()
    ref_out, ref_weights = reference_mha(attention_reference, case, state, inputs["query"], mask=inputs["mask"],
                                         bias=ref_bias, need_weights=True)
    checks.check_tensor(out, what="out", dtype=case.dtype)
    checks.assert_close(weights, ref_weights, tolerances.LAYER[case.dtype], what="attention weights with ALiBi",
                        hint="the bias (H, T, S) is added to the scores after the 1/sqrt(d_k) scaling")
    checks.assert_close(out, ref_out, tolerances.LAYER[case.dtype], what="attention output with ALiBi")
