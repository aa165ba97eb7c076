"""Chapter 02 hidden tests: differential tests against the reference, and properties.

Expected values come from the reference run in float64 on the same inputs; failure messages
show the student's own values, the size and place of the error and the shrunk case, never
the expected values or this file's source.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from graders import checks, strategies, tolerances
from graders.strategies import randn
from graders.tolerances import DROPOUT_P

TASKS = ("softmax", "scaled_dot_product_attention", "causal_mask", "KVCache", "MultiHeadAttention")
SECTIONS = {"softmax": "softmax", "scaled_dot_product_attention": "scaled-dot-product-attention",
            "causal_mask": "masks", "KVCache": "kv-cache", "MultiHeadAttention": "splitting-heads"}
NO_EMPTY_ROWS = ("none", "causal", "padding", "random")  # masks that leave every query a key


def _double(t):
    return None if t is None else (t.double() if t.is_floating_point() else t)


def reference_attention(reference, t: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference operator in float64 on the case's tensors."""
    return reference.scaled_dot_product_attention(_double(t["q"]), _double(t["k"]), _double(t["v"]),
                                                  mask=t["mask"], bias=_double(t["bias"]))


def state_dict_for(reference, init: dict, seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Weights for a case: the reference's own initialisation under a fixed seed."""
    torch.manual_seed(seed)
    module = reference.MultiHeadAttention(**init)
    return {k: v.detach().to(dtype).clone() for k, v in module.state_dict().items()}


def reference_module(reference, init: dict, state: dict) -> torch.nn.Module:
    """The reference layer in float64, in eval mode, with the given weights."""
    module = reference.MultiHeadAttention(**init).double().eval()
    module.load_state_dict({k: v.double() for k, v in state.items()})
    return module


def reference_mha(reference, init: dict, state: dict, **kwargs):
    """The reference layer's (out, weights) in float64 for these forward arguments."""
    module = reference_module(reference, init, state)
    return module(**{k: _double(v) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()})


def student_mha(student, case, state, calls, **kwargs):
    return student.module("MultiHeadAttention", case.init, state_dict=state, calls=calls,
                          dtype=case.dtype, **kwargs)


def forward_call(inputs: dict, **extra) -> dict:
    # value is passed whenever key is: the contract leaves value's default with a key open.
    kwargs = {"key": inputs["key"], "value": inputs["key"], "mask": inputs["mask"], "need_weights": True, **extra}
    return {"fn": "self.forward", "args": [inputs["query"]], "kwargs": kwargs}


# --- softmax ----------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.task("softmax")
@given(case=strategies.softmax_cases())
def test_softmax_matches_reference(student, reference, case):
    """softmax equals the float64 reference along any dim, with -inf entries, in the input dtype."""
    x = case.logits()
    y = checks.check_tensor(student.call("softmax", x, dim=case.dim), what="softmax(x)",
                            shape=tuple(x.shape), dtype=x.dtype)
    checks.assert_close(y, reference.softmax(x.double(), dim=case.dim), tolerances.ATTENTION[x.dtype],
                        what="softmax(x)")


@pytest.mark.points(1)
@pytest.mark.task("softmax")
@given(case=strategies.softmax_cases(), shift=st.sampled_from((-1e4, -30.0, 30.0, 1e4)))
def test_softmax_shift_invariant(student, case, shift):
    """softmax(x + c) == softmax(x): adding a constant (even 1e4) to every logit changes nothing."""
    x = case.logits().double()  # float64, so even x + 1e4 keeps differences to ~1e-12
    plain = student.call("softmax", x, dim=case.dim)
    shifted = student.call("softmax", x + shift, dim=case.dim)
    checks.assert_finite(checks.check_tensor(shifted, what="softmax(x + c)", shape=tuple(x.shape)),
                         what=f"softmax(x + {shift:g})")
    checks.assert_close(shifted, plain, tolerances.shifted_logits(torch.float64, shift),
                        what=f"softmax(x + {shift:g}) vs softmax(x)")


@pytest.mark.points(1)
@pytest.mark.task("softmax")
@given(case=strategies.softmax_cases(max_dims=2), data=st.data())
def test_softmax_slices_independent(student, case, data):
    """Each slice is normalized on its own: offsetting slices by different amounts (up to 1e4) changes nothing."""
    x = case.logits().double()
    offsets_shape = list(x.shape)
    offsets_shape[case.dim] = 1
    count = math.prod(offsets_shape)
    offsets = torch.tensor(data.draw(st.lists(st.sampled_from((-1e4, -100.0, 0.0, 100.0, 1e4)), min_size=count,
                                              max_size=count), label="offsets"), dtype=torch.float64)
    plain = student.call("softmax", x, dim=case.dim)
    moved = x + offsets.reshape(offsets_shape)
    shifted = checks.check_tensor(student.call("softmax", moved, dim=case.dim), what="softmax(x + per-slice offsets)",
                                  shape=tuple(x.shape))
    # The hint names a cause only when the output is exactly what that cause computes.
    hint = ""
    for wrong, cause in ((moved - moved.max(), "subtract each slice's own max, not one max over the whole tensor"),
                         (moved, "subtract each slice's max before exp: exp overflows past about 709")):
        e = wrong.exp()
        if torch.allclose(shifted, e / e.sum(dim=case.dim, keepdim=True), equal_nan=True):
            hint = cause
            break
    checks.assert_close(shifted, plain, tolerances.shifted_logits(torch.float64, 1e4),
                        what="softmax(x + a different offset per slice) vs softmax(x)", hint=hint)


def in_float64(case: strategies.SoftmaxCase) -> strategies.SoftmaxCase:
    return replace(case, dtype=torch.float64)


@pytest.mark.points(1)
@pytest.mark.task("softmax")
@given(case=strategies.softmax_cases().map(in_float64))
def test_softmax_gradient_matches_reference(student, reference, case):
    """d <upstream, softmax(x)> / dx equals the float64 reference's along any dim, with -inf entries (gradient 0
    there): the gradient flows through each slice's sum, and the max shift cancels out of it."""
    x = case.logits()
    upstream = randn(case.shape, seed=case.seed + 5, dtype=torch.float64)
    result = student.call_with_grad("softmax", (x,), {"dim": case.dim}, upstream=upstream)
    got = result.input_grads.get("0")
    if got is None:
        checks.fail("no gradient reached x: build softmax from differentiable torch operations")
    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(reference.softmax(leaf, dim=case.dim), leaf, upstream)
    tol = tolerances.ATTENTION_GRAD[torch.float64]
    # Name the sum only when the forward output itself is right: then only the gradient is wrong.
    out = checks.check_tensor(result.output, what="softmax(x)", shape=tuple(x.shape))
    forward_right = torch.allclose(out, reference.softmax(x, dim=case.dim), rtol=tol.rtol, atol=tol.atol)
    checks.assert_close(got, expected, tol, what="d <upstream, softmax(x)> / dx",
                        hint="your softmax is right but not its gradient: the slice's sum is a function of x, so "
                        "no .detach(), .item() or torch.no_grad() on it" if forward_right else "")


@pytest.mark.points(1)
@pytest.mark.task("softmax")
@given(rows=st.integers(1, 4), cols=st.integers(1, 6), dtype=strategies.dtypes())
def test_softmax_all_neg_inf_row_is_zero(student, rows, cols, dtype):
    """A slice that is -inf everywhere (a fully masked row) gives zeros, not NaN."""
    x = torch.full((rows, cols), float("-inf"), dtype=dtype)
    y = checks.check_tensor(student.call("softmax", x, dim=-1), what="softmax(all -inf)", shape=(rows, cols))
    checks.assert_equal(y, torch.zeros(rows, cols, dtype=dtype), what="softmax of an all -inf row",
                        hint="a fully masked row has no key to attend to: its weights are 0")


# --- scaled dot-product attention -----------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.task("scaled_dot_product_attention")
@given(case=strategies.attention_cases())
def test_attention_matches_reference(student, reference, case):
    """Output and weights equal the float64 reference over shapes, dtypes, masks and biases."""
    t = case.tensors()
    out, weights = student.call("scaled_dot_product_attention", t["q"], t["k"], t["v"], mask=t["mask"], bias=t["bias"])
    ref_out, ref_weights = reference_attention(reference, t)
    checks.check_tensor(out, what="out", dtype=case.dtype)
    checks.assert_close(weights, ref_weights, tolerances.ATTENTION[case.dtype], what="weights")
    checks.assert_close(out, ref_out, tolerances.ATTENTION[case.dtype], what="out")


@pytest.mark.points(1)
@pytest.mark.task("scaled_dot_product_attention")
@given(case=strategies.attention_cases(masks=NO_EMPTY_ROWS))
def test_attention_weights_rows_sum_to_one(student, case):
    """Every row of weights with at least one visible key sums to 1."""
    t = case.tensors()
    _, weights = student.call("scaled_dot_product_attention", t["q"], t["k"], t["v"], mask=t["mask"], bias=t["bias"])
    w = checks.check_tensor(weights, what="weights", shape=(*case.lead, case.q_len, case.k_len))
    checks.assert_close(w.sum(-1), torch.ones(w.shape[:-1], dtype=w.dtype), tolerances.SUM_TO_ONE[case.dtype],
                        what="row sums of weights")


@pytest.mark.points(1)
@pytest.mark.task("scaled_dot_product_attention")
@given(case=strategies.attention_cases(masks=("causal", "padding", "random", "fully_masked_row")))
def test_attention_masked_weights_exactly_zero(student, case):
    """Where the mask is False the weight is exactly 0 (the score became -inf before the softmax)."""
    t = case.tensors()
    _, weights = student.call("scaled_dot_product_attention", t["q"], t["k"], t["v"], mask=t["mask"], bias=t["bias"])
    w = checks.check_tensor(weights, what="weights", shape=(*case.lead, case.q_len, case.k_len))
    masked = ~t["mask"].expand_as(w)
    checks.assert_equal(w[masked], torch.zeros(int(masked.sum()), dtype=w.dtype),
                        what="weights where the mask is False (flattened)")


@pytest.mark.points(1)
@pytest.mark.task("scaled_dot_product_attention")
@given(case=strategies.attention_cases(masks=("fully_masked_row",)))
def test_attention_fully_masked_row_is_zero(student, case):
    """A query with every key masked gets zero weights and a zero output, never NaN."""
    t = case.tensors()
    out, weights = student.call("scaled_dot_product_attention", t["q"], t["k"], t["v"], mask=t["mask"], bias=t["bias"])
    empty = ~t["mask"].any(-1)  # (B, 1, Tq): rows with no visible key
    out = checks.check_tensor(out, what="out", shape=(*case.lead, case.q_len, case.d_v))
    w = checks.check_tensor(weights, what="weights", shape=(*case.lead, case.q_len, case.k_len))
    checks.assert_finite(out, what="out")
    rows_out = out[empty.expand(out.shape[:-1])]
    checks.assert_equal(rows_out, torch.zeros_like(rows_out), what="out for fully masked queries")
    rows_w = w[empty.expand(w.shape[:-1])]
    checks.assert_equal(rows_w, torch.zeros_like(rows_w), what="weights of fully masked queries")


@pytest.mark.points(1)
@pytest.mark.task("scaled_dot_product_attention")
@given(case=strategies.attention_cases(masks=("none", "padding", "random"), dtype=torch.float64), data=st.data())
def test_attention_key_permutation_equivariant(student, case, data):
    """Permuting the keys and values (and the mask's columns) permutes the weights and leaves out unchanged."""
    t = case.tensors()
    perm = torch.tensor(data.draw(st.permutations(range(case.k_len)), label="permutation"))
    bias = t["bias"]
    mask = t["mask"]
    out, weights = student.call("scaled_dot_product_attention", t["q"], t["k"], t["v"], mask=mask, bias=bias)
    out_p, weights_p = student.call(
        "scaled_dot_product_attention", t["q"], t["k"][..., perm, :], t["v"][..., perm, :],
        mask=None if mask is None else mask[..., perm], bias=None if bias is None else bias[..., perm])
    checks.check_tensor(weights, what="weights", shape=(*case.lead, case.q_len, case.k_len))
    checks.assert_close(out_p, out, tolerances.ATTENTION[torch.float64], what="out after permuting keys")
    checks.assert_close(weights_p, weights[..., perm], tolerances.ATTENTION[torch.float64],
                        what="weights after permuting keys (vs your weights permuted)")


@pytest.mark.points(1)
@pytest.mark.task("scaled_dot_product_attention")
@given(case=strategies.attention_cases(masks=NO_EMPTY_ROWS, bias=False, dtype=torch.float64),
       shift=st.sampled_from((-50.0, 7.5, 1e3)))
def test_attention_invariant_to_constant_score_shift(student, case, shift):
    """Adding the same constant to every score (as a bias) changes nothing."""
    t = case.tensors()
    out, _ = student.call("scaled_dot_product_attention", t["q"], t["k"], t["v"], mask=t["mask"])
    shifted, _ = student.call("scaled_dot_product_attention", t["q"], t["k"], t["v"], mask=t["mask"],
                              bias=torch.full((case.q_len, case.k_len), shift, dtype=torch.float64))
    checks.assert_close(shifted, out, tolerances.shifted_logits(torch.float64, shift),
                        what=f"out with every score + {shift:g}")


@pytest.mark.points(1)
@pytest.mark.task("scaled_dot_product_attention")
@given(case=strategies.attention_cases(masks=NO_EMPTY_ROWS, bias=False, dtype=torch.float32))
def test_attention_stable_with_huge_logits(student, case):
    """Scores around 1e4 give finite weights that sum to 1 and out == weights @ v."""
    t = case.tensors()
    q = t["q"] * (1e4 * math.sqrt(case.d_k) / max(case.d_k, 1))  # scores of order 1e4
    out, weights = student.call("scaled_dot_product_attention", q, t["k"], t["v"], mask=t["mask"])
    w = checks.check_tensor(weights, what="weights", shape=(*case.lead, case.q_len, case.k_len))
    checks.assert_finite(w, what="weights with scores ~1e4")
    checks.assert_finite(checks.check_tensor(out, what="out"), what="out with scores ~1e4")
    checks.assert_close(w.sum(-1), torch.ones(w.shape[:-1]), tolerances.SUM_TO_ONE[torch.float32],
                        what="row sums of weights with scores ~1e4")


@pytest.mark.points(1)
@pytest.mark.task("scaled_dot_product_attention")
@given(case=strategies.attention_cases(masks=NO_EMPTY_ROWS))
def test_attention_agrees_with_torch(student, case):
    """Where conventions meet, the output equals torch.nn.functional.scaled_dot_product_attention."""
    t = case.tensors()
    out, _ = student.call("scaled_dot_product_attention", t["q"], t["k"], t["v"], mask=t["mask"], bias=t["bias"])
    attn_mask = t["bias"]
    if t["mask"] is not None:  # PyTorch takes one float mask: -inf where not allowed, plus the bias
        blocked = torch.zeros(t["mask"].shape, dtype=case.dtype).masked_fill(~t["mask"], float("-inf"))
        attn_mask = blocked if attn_mask is None else attn_mask + blocked
    expected = F.scaled_dot_product_attention(t["q"].double(), t["k"].double(), t["v"].double(),
                                              attn_mask=_double(attn_mask))
    checks.assert_close(out, expected, tolerances.ATTENTION[case.dtype], what="out vs PyTorch's kernel")


@pytest.mark.points(2)
@pytest.mark.task("scaled_dot_product_attention")
@given(case=strategies.attention_cases(masks=NO_EMPTY_ROWS))
def test_attention_gradients_match_reference(student, reference, case):
    """Gradients with respect to q, k and v equal the reference's (backpropagating a random upstream)."""
    t = case.tensors()
    upstream = randn((*case.lead, case.q_len, case.d_v), seed=case.seed + 9, dtype=case.dtype)
    result = student.call_with_grad("scaled_dot_product_attention", (t["q"], t["k"], t["v"]),
                                    {"mask": t["mask"], "bias": t["bias"]}, upstream=upstream, output=(0,),
                                    wrt=(0, 1, 2))
    leaves = [_double(t[n]).requires_grad_(True) for n in ("q", "k", "v")]
    ref_out, _ = reference.scaled_dot_product_attention(*leaves, mask=t["mask"], bias=_double(t["bias"]))
    expected = torch.autograd.grad(ref_out, leaves, upstream.double())
    for index, (name, grad) in enumerate(zip("qkv", expected)):
        got = result.input_grads.get(str(index))
        if got is None:
            checks.fail(f"no gradient reached {name}: is the computation detached from the inputs?")
        checks.assert_close(got, grad, tolerances.ATTENTION_GRAD[case.dtype], what=f"d loss / d {name}")


@pytest.mark.points(1)
@pytest.mark.task("scaled_dot_product_attention")
@given(case=strategies.attention_cases(masks=NO_EMPTY_ROWS, dtype=torch.float64), p=st.sampled_from((0.25, 0.5)))
def test_attention_dropout_is_inverted(student, reference, case, p):
    """With dropout_p=p each weight is 0 or its undropped value / (1 - p), and out == weights @ v."""
    t = case.tensors()
    out, weights = student.call("scaled_dot_product_attention", t["q"], t["k"], t["v"], mask=t["mask"],
                                bias=t["bias"], dropout_p=p)
    _, clean = reference_attention(reference, t)
    w = checks.check_tensor(weights, what="weights", shape=tuple(clean.shape))
    kept = w != 0
    tol = tolerances.ATTENTION[torch.float64]
    # Name the scaling only when the kept weights are the undropped ones, unscaled.
    unscaled = torch.allclose(w[kept], clean[kept], rtol=tol.rtol, atol=tol.atol)
    checks.assert_close(w[kept], clean[kept] / (1 - p), tol,
                        what=f"kept weights (they should be scaled by 1/(1-p) = {1 / (1 - p):g})",
                        hint="your kept weights are not rescaled: inverted dropout divides them by 1 - p, so each "
                        "weight's expected value is unchanged" if unscaled else "")
    # Name dropout only when out is the undropped weights times v.
    undropped = torch.allclose(out, clean @ t["v"].double(), rtol=tol.rtol, atol=tol.atol)
    checks.assert_close(out, w @ t["v"], tol, what="out vs your weights @ v",
                        hint="your out uses the weights before dropout: the dropped weights are the ones that "
                        "multiply v" if undropped else "")


@pytest.mark.points(1)
@pytest.mark.task("scaled_dot_product_attention")
@given(p=st.sampled_from((0.1, 0.25, 0.75)), seed=strategies.seeds())
def test_attention_dropout_rate(student, p, seed):
    """With dropout_p=p, a fraction p of the weights is dropped (within 6 standard deviations, over 8192 weights)."""
    case = strategies.AttentionCase(lead=(2, 4), q_len=32, k_len=32, d_k=4, d_v=2, mask="none", bias=False,
                                    dtype=torch.float64, seed=seed)
    t = case.tensors()
    _, weights = student.call("scaled_dot_product_attention", t["q"], t["k"], t["v"], dropout_p=p)
    w = checks.check_tensor(weights, what="weights", shape=(2, 4, 32, 32))
    dropped = (w == 0).double().mean().item()
    sigma = math.sqrt(p * (1 - p) / w.numel())
    if abs(dropped - p) > 6 * sigma:
        checks.fail(f"with dropout_p={p} you dropped a fraction {dropped:.3f} of the weights; each weight should be "
                    f"dropped with probability p (kept with 1 - p)")


@pytest.mark.points(1)
@pytest.mark.task("scaled_dot_product_attention")
@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_attention_rejects_bad_dropout(student, p):
    """dropout_p outside [0, 1] raises ValueError."""
    q = torch.zeros(1, 2, 3)
    checks.expect_value_error(lambda: student.call("scaled_dot_product_attention", q, q, q, dropout_p=p),
                              what=f"scaled_dot_product_attention(..., dropout_p={p})")


# --- causal mask ---------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.task("causal_mask")
@given(q_len=st.integers(1, 12), extra=st.integers(0, 12), default=st.booleans())
def test_causal_mask_definition(student, q_len, extra, default):
    """causal_mask(q_len, k_len)[i, j] is True exactly when j <= k_len - q_len + i (bool, (q_len, k_len))."""
    k_len = q_len if default else q_len + extra
    mask = student.call("causal_mask", q_len) if default else student.call("causal_mask", q_len, k_len)
    checks.check_tensor(mask, what=f"causal_mask({q_len}, {k_len})", shape=(q_len, k_len), dtype=torch.bool)
    i = torch.arange(q_len)[:, None]
    j = torch.arange(k_len)[None, :]
    checks.assert_equal(mask, j <= k_len - q_len + i, what=f"causal_mask({q_len}, {k_len})",
                        hint="with a cache, query i sits at position k_len - q_len + i")


# --- KV cache ------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("KVCache")
@given(chunks=st.integers(1, 8).flatmap(strategies.chunkings), heads=st.integers(1, 3), seed=strategies.seeds())
def test_kv_cache_accumulates(student, chunks, heads, seed):
    """After updates with chunks of sizes n1, n2, ..., length is their sum and update returns every position in order."""
    ks = [randn((2, heads, n, 3), seed=seed + i) for i, n in enumerate(chunks)]
    vs = [randn((2, heads, n, 3), seed=seed + 100 + i) for i, n in enumerate(chunks)]
    result = student.run(objects={"cache": {"cls": "KVCache"}}, attrs=["cache.length"],
                         calls=[{"fn": "cache.update", "args": [k, v]} for k, v in zip(ks, vs)])
    k_all, v_all = result.outputs[-1]
    checks.assert_equal(k_all, torch.cat(ks, dim=-2), what="keys returned by the last update")
    checks.assert_equal(v_all, torch.cat(vs, dim=-2), what="values returned by the last update")
    if result.attrs["cache.length"] != sum(chunks):
        checks.fail(f"cache.length is {result.attrs['cache.length']} after chunks {chunks}, not {sum(chunks)}")


# --- multi-head attention --------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.task("MultiHeadAttention")
@given(case=strategies.mha_cases())
def test_mha_matches_reference(student, reference, case):
    """Output and per-head weights equal the reference's, over head layouts (MHA, GQA, MQA), masks, bias, dtypes."""
    state = state_dict_for(reference, case.init, case.seed, case.dtype)
    inputs = case.inputs()
    result = student_mha(student, case, state, [forward_call(inputs)])
    out, weights = result.output
    ref_out, ref_weights = reference_mha(reference, case.init, state, need_weights=True, **inputs)
    checks.check_tensor(out, what="out", dtype=case.dtype)
    checks.assert_close(weights, ref_weights, tolerances.LAYER[case.dtype], what="weights (B, H, T, S)",
                        hint="query head h reads key/value head h // (num_heads // num_kv_heads)")
    checks.assert_close(out, ref_out, tolerances.LAYER[case.dtype], what="out (B, T, D)")


def pair_weights(state: dict, case, inputs: dict) -> torch.Tensor:
    """Attention weights of every (query head, kv head) pair, (H, Hkv, B, T, S), in float64.

    Used only to explain a head-order bug: it shows which kv head each of the student's
    query heads actually read.
    """
    w = {k: v.double() for k, v in state.items()}
    x = inputs["query"].double()
    memory = x if inputs["key"] is None else inputs["key"].double()
    head_dim = case.d_model // case.num_heads
    q = F.linear(x, w["q_proj.weight"], w.get("q_proj.bias")).unflatten(-1, (case.num_heads, head_dim))
    k = F.linear(memory, w["k_proj.weight"], w.get("k_proj.bias")).unflatten(-1, (case.num_kv_heads, head_dim))
    scores = torch.einsum("bthd,bsgd->hgbts", q, k) / math.sqrt(head_dim)  # (H, Hkv, B, T, S)
    if inputs["mask"] is not None:
        mask = inputs["mask"].expand(case.batch, 1, case.q_len, case.kv_len)[:, 0]  # (B, T, S)
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


@pytest.mark.points(2)
@pytest.mark.task("MultiHeadAttention")
# Two or more keys, so that different kv heads give different weights.
@given(case=strategies.mha_cases(masks=("none", "causal"), layouts=("gqa",), dtype=torch.float64, min_len=2))
def test_mha_query_head_reads_kv_head_h_div_r(student, reference, case):
    """With grouped-query attention, query head h attends with key/value head h // (num_heads // num_kv_heads)."""
    state = state_dict_for(reference, case.init, case.seed, case.dtype)
    inputs = case.inputs()
    _, weights = student_mha(student, case, state, [forward_call(inputs)]).output
    weights = checks.check_tensor(weights, what="weights", shape=(case.batch, case.num_heads, case.q_len, case.kv_len))
    pairs = pair_weights(state, case, inputs)  # (H, Hkv, B, T, S)
    group = case.num_heads // case.num_kv_heads
    tol = tolerances.LAYER[torch.float64]
    for h in range(case.num_heads):
        mine = weights[:, h].double()  # (B, T, S)
        matches = [g for g in range(case.num_kv_heads)
                   if torch.allclose(mine, pairs[h, g], rtol=tol.rtol, atol=tol.atol)]
        if h // group not in matches:
            read = f"reads key/value head {matches[0]}" if matches else "matches no key/value head"
            checks.fail(f"with num_heads={case.num_heads}, num_kv_heads={case.num_kv_heads}: query head {h} {read}; "
                        f"it should read head {h // group} (= {h} // {group}). Repeat each kv head {group} times "
                        "in place (0,0,1,1,...), not the whole set (0,1,0,1,...).")


@pytest.mark.points(2)
@pytest.mark.task("MultiHeadAttention")
@given(case=strategies.mha_cases(masks=NO_EMPTY_ROWS))
def test_mha_gradients_match_reference(student, reference, case):
    """Gradients for the input and for every parameter equal the reference's."""
    state = state_dict_for(reference, case.init, case.seed, case.dtype)
    inputs = case.inputs()
    upstream = randn((case.batch, case.q_len, case.d_model), seed=case.seed + 5, dtype=case.dtype)
    call = forward_call(inputs, need_weights=False)
    result = student_mha(student, case, state, [call], upstream=upstream, output=(0,), wrt=(0,))
    module = reference_module(reference, case.init, state)
    x = _double(inputs["query"]).requires_grad_(True)
    ref_out, _ = module(x, key=_double(inputs["key"]), value=_double(inputs["key"]), mask=inputs["mask"])
    names = [n for n, _ in module.named_parameters()]
    grads = torch.autograd.grad(ref_out, [x, *module.parameters()], upstream.double())
    checks.assert_close(result.input_grads.get("0"), grads[0], tolerances.LAYER[case.dtype], what="d loss / d query")
    for name, grad in zip(names, grads[1:]):
        got = result.param_grads.get(name)
        if got is None:
            checks.fail(f"no gradient for parameter {name}: is it used in forward?")
        checks.assert_close(got, grad, tolerances.LAYER[case.dtype], what=f"d loss / d {name}")


@pytest.mark.points(1)
@pytest.mark.task("MultiHeadAttention")
@given(case=strategies.mha_cases(masks=("none", "causal", "padding"), layouts=("mha",), dtype=torch.float64))
def test_mha_agrees_with_torch_multihead_attention(student, case):
    """With as many kv heads as heads, the layer equals nn.MultiheadAttention given the same weights."""
    torch.manual_seed(case.seed)
    torch_mha = torch.nn.MultiheadAttention(case.d_model, case.num_heads, bias=case.bias, batch_first=True).double()
    d = case.d_model
    w_q, w_k, w_v = torch_mha.in_proj_weight.detach().split(d)
    state = {"q_proj.weight": w_q, "k_proj.weight": w_k, "v_proj.weight": w_v,
             "out_proj.weight": torch_mha.out_proj.weight.detach()}
    if case.bias:
        b_q, b_k, b_v = torch_mha.in_proj_bias.detach().split(d)
        state |= {"q_proj.bias": b_q, "k_proj.bias": b_k, "v_proj.bias": b_v, "out_proj.bias": torch_mha.out_proj.bias.detach()}
    inputs = case.inputs()
    result = student_mha(student, case, state, [forward_call(inputs)])
    out, weights = result.output
    key = inputs["query"] if inputs["key"] is None else inputs["key"]
    mask = inputs["mask"]
    blocked = None
    if mask is not None:  # PyTorch's boolean attn_mask means True = NOT allowed, shaped (B*H, T, S)
        full = mask.expand(case.batch, case.num_heads, case.q_len, case.kv_len)
        blocked = ~full.reshape(case.batch * case.num_heads, case.q_len, case.kv_len)
    expected, expected_weights = torch_mha(inputs["query"], key, key, attn_mask=blocked, need_weights=True,
                                           average_attn_weights=False)
    checks.assert_close(weights, expected_weights.detach(), tolerances.TORCH_KERNEL[torch.float64],
                        what="weights vs nn.MultiheadAttention")
    checks.assert_close(out, expected.detach(), tolerances.TORCH_KERNEL[torch.float64],
                        what="out vs nn.MultiheadAttention")


@pytest.mark.points(1)
@pytest.mark.task("MultiHeadAttention")
@given(case=strategies.mha_cases(masks=("causal",), cross=False, dtype=torch.float64), data=st.data())
def test_mha_no_future_dependence(student, reference, case, data):
    """Under a causal mask, changing tokens after position t leaves outputs up to t unchanged."""
    state = state_dict_for(reference, case.init, case.seed, case.dtype)
    inputs = case.inputs()
    t = data.draw(st.integers(0, case.q_len - 1), label="t")
    changed = inputs["query"].clone()
    changed[:, t + 1:] = randn(changed[:, t + 1:].shape, seed=case.seed + 3, dtype=case.dtype)
    result = student_mha(student, case, state, [forward_call(inputs), forward_call({**inputs, "query": changed})])
    (out, _), (out_changed, _) = result.outputs
    checks.check_tensor(out, what="out", shape=(case.batch, case.q_len, case.d_model))
    checks.assert_close(out_changed[:, : t + 1], out[:, : t + 1], tolerances.LAYER[torch.float64],
                        what=f"out[:, :{t + 1}] after changing tokens from position {t + 1} on",
                        hint="a causal mask hides every later position")


@pytest.mark.points(2)
@pytest.mark.task("MultiHeadAttention")
@given(case=strategies.mha_cases(masks=("causal",), cross=False), data=st.data())
def test_mha_kv_cache_decoding_equals_full_pass(student, reference, case, data):
    """Feeding the sequence through a KVCache in chunks gives the full causal forward pass's outputs."""
    from graders.submission import obj

    chunks = data.draw(strategies.chunkings(case.q_len), label="chunks")
    state = state_dict_for(reference, case.init, case.seed, case.dtype)
    x = case.inputs()["query"]
    calls, start = [], 0
    for size in chunks:  # the mask for queries start..start+size-1 over keys 0..start+size-1
        i = torch.arange(size)[:, None]
        j = torch.arange(start + size)[None, :]
        calls.append({"fn": "self.forward", "args": [x[:, start:start + size]],
                      "kwargs": {"mask": j <= start + i, "kv_cache": obj("cache")}})
        start += size
    result = student_mha(student, case, state, calls, objects={"cache": {"cls": "KVCache"}}, attrs=("cache.length",))
    pieces = [checks.check_tensor(o[0], what="out of one chunk") for o in result.outputs]
    full, _ = reference_mha(reference, case.init, state, query=x, mask=strategies.make_mask(
        "causal", case.batch, case.q_len, case.q_len, seed=0))
    checks.assert_close(torch.cat(pieces, dim=1), full, tolerances.LAYER[case.dtype],
                        what=f"outputs decoded through the cache in chunks {chunks}",
                        hint="new queries and keys sit at positions cache.length ... cache.length + T - 1")
    if result.attrs["cache.length"] != case.q_len:
        checks.fail(f"cache.length is {result.attrs['cache.length']} after {case.q_len} positions")


@pytest.mark.points(1)
@pytest.mark.task("MultiHeadAttention")
@given(case=strategies.mha_cases(masks=NO_EMPTY_ROWS, dtype=torch.float64))
def test_mha_dropout_only_in_training(student, reference, case):
    """With dropout=0.5 the layer is deterministic in eval mode (equal to no dropout) and random in training mode."""
    init = case.init | {"dropout": 0.5}
    state = state_dict_for(reference, case.init, case.seed, case.dtype)
    inputs = case.inputs()
    evaluated = student.module("MultiHeadAttention", init, state_dict=state, calls=[forward_call(inputs)],
                               dtype=case.dtype, train=False)
    ref_out, _ = reference_mha(reference, case.init, state, **inputs)
    tol = tolerances.LAYER[torch.float64]
    out = checks.check_tensor(evaluated.output[0], what="out in eval mode", shape=tuple(ref_out.shape))
    if not torch.allclose(out, ref_out, rtol=tol.rtol, atol=tol.atol):
        # Blame dropout only when the same layer built with dropout=0 is right.
        free = student.module("MultiHeadAttention", case.init, state_dict=state, calls=[forward_call(inputs)],
                              dtype=case.dtype, train=False).output[0]
        free = checks.check_tensor(free, what="out with dropout=0", shape=tuple(ref_out.shape))
        hint = ("dropout is active only in training mode (self.training): with dropout=0 your layer is right, with "
                "dropout=0.5 in eval mode it is not" if torch.allclose(free, ref_out, rtol=tol.rtol, atol=tol.atol)
                else "")
        checks.assert_close(out, ref_out, tol, what="out in eval mode, dropout=0.5", hint=hint)
    trained = student.module("MultiHeadAttention", init, state_dict=state, calls=[forward_call(inputs)],
                             dtype=case.dtype, train=True, seed=case.seed)
    weights = checks.check_tensor(trained.output[1], what="weights in training mode")
    if case.kv_len * case.q_len * case.num_heads * case.batch >= 16 and not (weights == 0).any():
        checks.fail(f"in training mode with dropout=0.5 none of {weights.numel()} weights was dropped")


def grown(case: strategies.MHACase) -> strategies.MHACase:
    """`case` with 4 sequences of 8 queries and 8 keys: >= 144 unmasked weights to count."""
    return replace(case, batch=4, q_len=8, kv_len=8)


def output_from_weights(case, state: dict, value: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """out_proj(merge_heads(weights @ V)) in float64, V from v_proj as the contract lays the heads out
    (contiguous slices; query head h reads kv head h // R)."""
    def linear(x, name):
        bias = state.get(f"{name}.bias")
        return F.linear(x, state[f"{name}.weight"].double(), None if bias is None else bias.double())

    head_dim = case.d_model // case.num_heads
    v = linear(value.double(), "v_proj")  # (B, S, Hkv * Dh)
    v = v.view(v.shape[0], v.shape[1], case.num_kv_heads, head_dim).transpose(1, 2)  # (B, Hkv, S, Dh)
    v = v.repeat_interleave(case.num_heads // case.num_kv_heads, dim=1)  # (B, H, S, Dh)
    merged = (weights.double() @ v).transpose(1, 2).reshape(v.shape[0], -1, case.d_model)  # (B, T, D)
    return linear(merged, "out_proj")


@pytest.mark.points(1)
@pytest.mark.task("MultiHeadAttention")
@given(case=strategies.mha_cases(masks=NO_EMPTY_ROWS, dtype=torch.float64).map(grown))
def test_mha_dropout_acts_on_the_weights(student, reference, case):
    """In training mode the returned weights are 0 or your eval-mode weights / (1 - p), with a share p of zeros, and
    out is out_proj of those dropped weights times the values (dropout=0.25, need_weights=True)."""
    state = state_dict_for(reference, case.init, case.seed, case.dtype)
    inputs = case.inputs()
    result = student.module("MultiHeadAttention", case.init | {"dropout": DROPOUT_P}, state_dict=state,
                            dtype=case.dtype, train=True, seed=case.seed,
                            calls=[forward_call(inputs), {"fn": "self.eval", "discard": True}, forward_call(inputs)])
    shape = (case.batch, case.num_heads, case.q_len, case.kv_len)
    trained, evaluated = result.outputs[0], result.outputs[2]
    weights = checks.check_tensor(trained[1], what="weights in training mode", shape=shape)
    clean = checks.check_tensor(evaluated[1], what="weights in eval mode", shape=shape)
    hint = "dropout(softmax(scores)): the weights are dropped after the softmax, and those dropped weights multiply v"
    tol = tolerances.LAYER[torch.float64]
    checks.assert_dropped_or_scaled(weights, clean, DROPOUT_P, tol, hint=hint,
                                    what=f"weights in training mode with dropout={DROPOUT_P}, against yours in eval "
                                         "mode")
    value = inputs["key"] if inputs["key"] is not None else inputs["query"]
    out = checks.check_tensor(trained[0], what="out in training mode", shape=(case.batch, case.q_len, case.d_model))
    checks.assert_close(out, output_from_weights(case, state, value, weights), tol,
                        what="out in training mode vs out_proj(your returned weights @ v)", hint=hint)


@pytest.mark.points(1)
@pytest.mark.task("MultiHeadAttention")
@given(num_heads=st.integers(1, 8), num_kv_heads=st.integers(1, 8), head_dim=st.integers(1, 4))
def test_mha_rejects_bad_kv_heads(student, num_heads, num_kv_heads, head_dim):
    """num_kv_heads must be a positive divisor of num_heads; anything else raises ValueError."""
    init = {"d_model": num_heads * head_dim, "num_heads": num_heads, "num_kv_heads": num_kv_heads}
    checks.expect_value_error(lambda: student.module("MultiHeadAttention", init, calls=[]),
                              what=f"MultiHeadAttention({init})", valid=num_heads % num_kv_heads == 0)
