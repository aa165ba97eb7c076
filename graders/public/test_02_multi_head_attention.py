"""Chapter 02 public tests: properties you can check yourself, and golden values.

These run without the reference solution. Golden values live in
`graders/snapshots/02_multi_head_attention/` and are shown when a test fails. Your
instructor's hidden tests check much more (differential tests against a reference, in
float64, over many shapes, masks and head layouts).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from graders import checks, strategies, tolerances
from graders.strategies import randn

TASKS = ("softmax", "scaled_dot_product_attention", "causal_mask", "KVCache", "MultiHeadAttention")
SECTIONS = {"softmax": "softmax", "scaled_dot_product_attention": "scaled-dot-product-attention",
            "causal_mask": "masks", "KVCache": "kv-cache", "MultiHeadAttention": "splitting-heads"}


@pytest.mark.points(0)
@pytest.mark.task("static")
def test_no_banned_apis(static_scan, chapter):
    """The module parses and calls none of the chapter's banned APIs."""
    checks.static_clean(static_scan, chapter.module)


# --- softmax ----------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("softmax")
@given(case=strategies.softmax_cases())
def test_softmax_sums_to_one(student, case):
    """softmax is non-negative and sums to 1 along `dim`, keeping shape and dtype."""
    x = case.logits()
    y = checks.check_tensor(student.call("softmax", x, dim=case.dim), what="softmax(x)",
                            shape=tuple(x.shape), dtype=x.dtype)
    if (y < 0).any():
        checks.fail(f"softmax(x): negative probability {y.min().item():.3g}")
    checks.assert_close(y.sum(dim=case.dim), torch.ones_like(y.sum(dim=case.dim)),
                        tolerances.SUM_TO_ONE[x.dtype], what="sum of softmax(x) along dim", reveal=True)


@pytest.mark.points(1)
@pytest.mark.task("softmax")
def test_softmax_golden(student, snapshot):
    """softmax of a fixed tensor, with a -inf entry and a fully -inf row, matches the golden values."""
    x = randn((3, 5), seed=2, scale=3.0)
    x[0, 1] = float("-inf")
    x[2, :] = float("-inf")
    inputs = snapshot.inputs(x=x)
    snapshot.assert_match({"softmax": student.call("softmax", inputs["x"], dim=-1)}, tolerances.ATTENTION)


@pytest.mark.points(1)
@pytest.mark.task("softmax")
def test_softmax_large_logits(student):
    """Logits of 1e4 give finite probabilities (subtract the max before exp)."""
    x = torch.tensor([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4]])
    y = student.call("softmax", x, dim=-1)
    checks.assert_finite(checks.check_tensor(y, what="softmax([1e4, 0, -1e4])", shape=(2, 3)), what="softmax")
    checks.assert_close(y, torch.tensor([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]]), tolerances.ATTENTION[torch.float32],
                        what="softmax of large logits", reveal=True)


@pytest.mark.points(1)
@pytest.mark.task("softmax")
def test_softmax_rows_are_normalized_on_their_own(student):
    """A row 1000 below the others still gets its own softmax: [-1000, -999] -> [0.2689, 0.7311], not 0 or NaN."""
    x = torch.tensor([[0.0, 1.0], [-1000.0, -999.0]])
    y = checks.check_tensor(student.call("softmax", x, dim=-1), what="softmax([[0, 1], [-1000, -999]])", shape=(2, 2))
    checks.assert_close(y, torch.tensor([[0.268941, 0.731059], [0.268941, 0.731059]]),
                        tolerances.ATTENTION[torch.float32], what="softmax([[0, 1], [-1000, -999]])", reveal=True,
                        hint="subtract each slice's own max (amax along dim, keepdim=True), not the whole tensor's")


@pytest.mark.points(1)
@pytest.mark.task("softmax")
def test_softmax_gradient(student):
    """d <g, softmax(x)> / dx is y * (g - sum(g * y)) along dim: the gradient flows through the normalizing sum too."""
    x = randn((3, 5), seed=3, scale=2.0, dtype=torch.float64)
    g = randn((3, 5), seed=4, dtype=torch.float64)
    result = student.call_with_grad("softmax", (x,), {"dim": -1}, upstream=g)
    got = result.input_grads.get("0")
    if got is None:
        checks.fail("softmax's output does not depend on x through autograd (detached?)")
    y = torch.exp(x - x.amax(dim=-1, keepdim=True))
    y = y / y.sum(dim=-1, keepdim=True)
    expected = y * (g - (g * y).sum(dim=-1, keepdim=True))
    checks.assert_close(got, expected, tolerances.ATTENTION_GRAD[torch.float64], what="d <g, softmax(x)> / dx",
                        reveal=True, hint="never detach the sum you divide by (the max shift may be detached)")


# --- scaled dot-product attention -----------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.task("scaled_dot_product_attention")
def test_attention_golden(student, snapshot):
    """Attention on fixed q, k, v under a causal mask matches the golden output and weights."""
    case = strategies.AttentionCase(lead=(2, 2), q_len=3, k_len=5, d_k=4, d_v=3, mask="causal", bias=False,
                                    dtype=torch.float32, seed=7)
    t = snapshot.inputs(**{k: v for k, v in case.tensors().items() if v is not None})
    out, weights = student.call("scaled_dot_product_attention", t["q"], t["k"], t["v"], mask=t["mask"])
    snapshot.assert_match({"out": out, "weights": weights}, tolerances.ATTENTION)


@pytest.mark.points(1)
@pytest.mark.task("scaled_dot_product_attention")
@given(case=strategies.attention_cases(masks=("none", "causal", "padding", "random")))
def test_attention_shapes_and_masked_zeros(student, case):
    """out is (..., Tq, Dv), weights (..., Tq, Tk) in the input dtype; masked weights are exactly 0."""
    t = case.tensors()
    out, weights = student.call("scaled_dot_product_attention", t["q"], t["k"], t["v"], mask=t["mask"], bias=t["bias"])
    checks.check_tensor(out, what="out", shape=(*case.lead, case.q_len, case.d_v), dtype=case.dtype)
    checks.check_tensor(weights, what="weights", shape=(*case.lead, case.q_len, case.k_len), dtype=case.dtype)
    if t["mask"] is not None:
        masked = ~t["mask"].expand_as(weights)
        checks.assert_equal(weights[masked], torch.zeros(int(masked.sum()), dtype=case.dtype),
                            what="weights where the mask is False", reveal=True)


@pytest.mark.points(1)
@pytest.mark.task("scaled_dot_product_attention")
def test_attention_uses_sqrt_dk(student):
    """With one query and two keys, the weights reveal a 1/sqrt(Dk) scaling of the scores."""
    d_k = 16
    q = torch.zeros(1, d_k)
    q[0, 0] = 1.0
    k = torch.zeros(2, d_k)
    k[0, 0] = 8.0  # score 8 before scaling; the other key scores 0
    _, weights = student.call("scaled_dot_product_attention", q, k, torch.eye(2, 3)[:, :3])
    w = checks.check_tensor(weights, what="weights", shape=(1, 2))
    implied = math.log(w[0, 0].item() / w[0, 1].item()) / 8.0 if (w > 0).all() else float("nan")
    if not math.isclose(implied, 1 / math.sqrt(d_k), rel_tol=1e-4):
        checks.fail(f"the weights imply scores multiplied by {implied:.4g}; attention scales by 1/sqrt(Dk) = "
                    f"{1 / math.sqrt(d_k):.4g} for Dk = {d_k}")


@pytest.mark.points(1)
@pytest.mark.task("scaled_dot_product_attention")
@pytest.mark.parametrize("d_k", [1, 4, 64])
def test_attention_bias_added_after_scaling(student, d_k):
    """With all scores 0 and a bias of [log 3, 0], the weights are [0.75, 0.25] whatever Dk is."""
    q = torch.zeros(1, 1, d_k)
    k = torch.zeros(1, 2, d_k)
    bias = torch.tensor([[math.log(3.0), 0.0]])
    _, weights = student.call("scaled_dot_product_attention", q, k, torch.eye(2)[None], bias=bias)
    checks.assert_close(checks.check_tensor(weights, what="weights", shape=(1, 1, 2)), torch.tensor([[[0.75, 0.25]]]),
                        tolerances.ATTENTION[torch.float32], what=f"weights with a bias, Dk={d_k}", reveal=True,
                        hint="the bias is added after the 1/sqrt(Dk) scaling, so it is never rescaled")


def uniform_attention_with_dropout(student, dropout_p: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out, weights, v) of attention with all scores 0 over 8 keys (every weight 1/8), 512 queries, under dropout."""
    q, k = torch.zeros(512, 4), torch.zeros(8, 4)
    v = randn((8, 3), seed=5)
    out, weights = student.call("scaled_dot_product_attention", q, k, v, dropout_p=dropout_p)
    out = checks.check_tensor(out, what=f"out with dropout_p={dropout_p}", shape=(512, 3))
    return out, checks.check_tensor(weights, what=f"weights with dropout_p={dropout_p}", shape=(512, 8)), v


@pytest.mark.points(1)
@pytest.mark.task("scaled_dot_product_attention")
def test_attention_dropout_scales_kept_weights(student):
    """With dropout_p=0.25 each weight 1/8 becomes 0 or (1/8) / 0.75 (inverted dropout), and out == weights @ v."""
    out, weights, v = uniform_attention_with_dropout(student, 0.25)
    kept = weights[weights != 0]
    checks.assert_close(kept, torch.full_like(kept, 1 / 6), tolerances.ATTENTION[torch.float32],
                        what="the kept weights (1/8 before dropout_p=0.25)", reveal=True,
                        hint="inverted dropout scales the kept weights by 1 / (1 - dropout_p)")
    checks.assert_close(out, weights @ v, tolerances.ATTENTION[torch.float32], what="out against weights @ v",
                        reveal=True, hint="weights are returned after dropout: the ones that multiplied v")


@pytest.mark.points(1)
@pytest.mark.task("scaled_dot_product_attention")
def test_attention_dropout_drops_a_fraction_p(student):
    """With dropout_p=0.25, about a quarter of the 4096 weights is 0 (within 6 standard deviations: 0.21 to 0.29)."""
    _, weights, _ = uniform_attention_with_dropout(student, 0.25)
    dropped = float((weights == 0).double().mean())
    bound = 6 * math.sqrt(0.25 * 0.75 / weights.numel())
    if abs(dropped - 0.25) > bound:
        checks.fail(f"dropout_p=0.25 zeroed a fraction {dropped:.3f} of the weights, expected 0.25 +- {bound:.3f}: "
                    "drop each weight with probability dropout_p (keep it with probability 1 - dropout_p)")


@pytest.mark.points(1)
@pytest.mark.task("scaled_dot_product_attention")
@pytest.mark.parametrize("dropout_p", [-0.1, 1.5])
def test_attention_rejects_dropout_outside_0_1(student, dropout_p):
    """dropout_p outside [0, 1] raises ValueError."""
    q = torch.zeros(1, 2)
    checks.expect_value_error(lambda: student.call("scaled_dot_product_attention", q, q, q, dropout_p=dropout_p),
                              what=f"scaled_dot_product_attention(..., dropout_p={dropout_p})")


# --- causal mask ---------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("causal_mask")
@pytest.mark.parametrize(("q_len", "k_len"), [(4, None), (2, 5), (1, 3)])
def test_causal_mask_examples(student, q_len, k_len):
    """causal_mask marks key j visible to query i exactly when j <= k_len - q_len + i."""
    mask = student.call("causal_mask", q_len, k_len)
    k = q_len if k_len is None else k_len
    expected = torch.tensor([[j <= k - q_len + i for j in range(k)] for i in range(q_len)])
    checks.assert_equal(checks.check_tensor(mask, what="causal_mask", dtype=torch.bool), expected,
                        what=f"causal_mask({q_len}, {k_len})", reveal=True)


@pytest.mark.points(1)
@pytest.mark.task("causal_mask")
def test_causal_mask_refuses_more_queries_than_keys(student):
    """causal_mask(3, 2) raises ValueError: query 0 would sit at position -1."""
    checks.expect_value_error(lambda: student.call("causal_mask", 3, 2), what="causal_mask(3, 2)")


# --- KV cache ------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("KVCache")
def test_kv_cache_appends(student):
    """A KVCache starts empty, and update appends along the time axis and returns everything."""
    empty = student.run(objects={"cache": {"cls": "KVCache"}}, attrs=["cache.length"], calls=[])
    if empty.attrs["cache.length"] != 0:
        checks.fail(f"KVCache().length before any update is {empty.attrs['cache.length']}, expected 0 "
                    "(length counts the cached positions, and an empty cache holds none)")
    k1, v1 = randn((1, 2, 3, 4), seed=1), randn((1, 2, 3, 4), seed=2)
    k2, v2 = randn((1, 2, 1, 4), seed=3), randn((1, 2, 1, 4), seed=4)
    result = student.run(objects={"cache": {"cls": "KVCache"}}, attrs=["cache.length"],
                         calls=[{"fn": "cache.update", "args": [k1, v1]}, {"fn": "cache.update", "args": [k2, v2]}])
    k_all, v_all = result.outputs[1]
    checks.assert_equal(k_all, torch.cat([k1, k2], dim=-2), what="keys after two updates", reveal=True)
    checks.assert_equal(v_all, torch.cat([v1, v2], dim=-2), what="values after two updates", reveal=True)
    if result.attrs["cache.length"] != 4:
        checks.fail(f"cache.length after 3 + 1 positions is {result.attrs['cache.length']}, expected 4")


# --- multi-head attention --------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("MultiHeadAttention")
@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
def test_mha_parameter_names(student, num_kv_heads):
    """The state_dict has the contract's names and shapes (q_proj, k_proj, v_proj, out_proj)."""
    d_model, heads = 16, 4
    kv = num_kv_heads * d_model // heads
    expected = {"q_proj.weight": [16, 16], "q_proj.bias": [16], "k_proj.weight": [kv, 16], "k_proj.bias": [kv],
                "v_proj.weight": [kv, 16], "v_proj.bias": [kv], "out_proj.weight": [16, 16], "out_proj.bias": [16]}
    result = student.module("MultiHeadAttention", {"d_model": d_model, "num_heads": heads, "num_kv_heads": num_kv_heads},
                            calls=[], state_dict_shapes=True)
    if result.state_dict_shapes != expected:
        checks.fail(f"state_dict shapes are {result.state_dict_shapes}, expected {expected}")


@pytest.mark.points(2)
@pytest.mark.task("MultiHeadAttention")
@pytest.mark.parametrize("num_kv_heads", [4, 2])
def test_mha_golden(student, snapshot, num_kv_heads):
    """MultiHeadAttention with fixed weights (and GQA at 2 kv heads) matches the golden output."""
    init = {"d_model": 16, "num_heads": 4, "num_kv_heads": num_kv_heads}
    kv = num_kv_heads * 4
    shapes = {"q_proj.weight": (16, 16), "q_proj.bias": (16,), "k_proj.weight": (kv, 16), "k_proj.bias": (kv,),
              "v_proj.weight": (kv, 16), "v_proj.bias": (kv,), "out_proj.weight": (16, 16), "out_proj.bias": (16,)}
    weights = {name: randn(shape, seed=i, scale=0.3) for i, (name, shape) in enumerate(shapes.items())}
    t = snapshot.inputs(x=randn((2, 5, 16), seed=99), **weights)
    state = {name: t[name] for name in shapes}
    mask = torch.ones(5, 5, dtype=torch.bool).tril()
    result = student.module("MultiHeadAttention", init, state_dict=state,
                            calls=[{"fn": "self.forward", "args": [t["x"]], "kwargs": {"mask": mask, "need_weights": True}}])
    out, attn = result.output
    snapshot.assert_match({"out": out, "weights": attn}, tolerances.LAYER)


@pytest.mark.points(1)
@pytest.mark.task("MultiHeadAttention")
def test_mha_dropout_acts_in_training_mode_only(student):
    """MultiHeadAttention(dropout=0.5) in eval mode equals the dropout-free layer; in training mode it does not."""
    shapes = {"q_proj.weight": (16, 16), "q_proj.bias": (16,), "k_proj.weight": (16, 16), "k_proj.bias": (16,),
              "v_proj.weight": (16, 16), "v_proj.bias": (16,), "out_proj.weight": (16, 16), "out_proj.bias": (16,)}
    state = {name: randn(shape, seed=i, scale=0.3) for i, (name, shape) in enumerate(shapes.items())}
    call = {"fn": "self.forward", "args": [randn((2, 5, 16), seed=99)]}

    def forward(dropout: float, train: bool = False) -> torch.Tensor:
        out, _ = student.module("MultiHeadAttention", {"d_model": 16, "num_heads": 4, "dropout": dropout},
                                state_dict=state, calls=[call], train=train).output
        return checks.check_tensor(out, what=f"MultiHeadAttention(dropout={dropout}) output", shape=(2, 5, 16))

    free = forward(0.0)
    checks.assert_close(forward(0.5), free, tolerances.LAYER[torch.float32], what="MultiHeadAttention(dropout=0.5) "
                        "in eval mode", reveal=True, hint="dropout acts only in training mode (check self.training)")
    if torch.allclose(forward(0.5, train=True), free):
        checks.fail("MultiHeadAttention(dropout=0.5) in training mode gives the dropout-free output: pass "
                    "dropout_p=self.dropout to the attention when self.training")


@pytest.mark.points(1)
@pytest.mark.task("MultiHeadAttention")
def test_mha_dropout_drops_attention_weights_at_rate_p(student):
    """In training mode MultiHeadAttention(dropout=0.25) zeroes about a quarter of the returned attention weights."""
    x = randn((4, 32, 16), seed=60)
    _, weights = student.module("MultiHeadAttention", {"d_model": 16, "num_heads": 4, "dropout": 0.25}, train=True,
                                  calls=[{"fn": "self.forward", "args": [x], "kwargs": {"need_weights": True}}]).output
    weights = checks.check_tensor(weights, what="weights in training mode", shape=(4, 4, 32, 32))
    dropped = float((weights == 0).double().mean())
    bound = 6 * math.sqrt(0.25 * 0.75 / weights.numel())
    if abs(dropped - 0.25) > bound:
        checks.fail(f"dropout=0.25 zeroed a fraction {dropped:.3f} of the attention weights, expected 0.25 +- "
                    f"{bound:.3f}: pass dropout_p=self.dropout (the drop probability) to the attention, which drops "
                    "the weights, not the layer's output")


@pytest.mark.points(1)
@pytest.mark.task("MultiHeadAttention")
@given(d_model=st.integers(1, 12), num_heads=st.integers(0, 5))
def test_mha_rejects_indivisible_d_model(student, d_model, num_heads):
    """d_model not divisible by num_heads (or num_heads = 0) raises ValueError; divisible ones build."""
    checks.expect_value_error(
        lambda: student.module("MultiHeadAttention", {"d_model": d_model, "num_heads": num_heads}, calls=[]),
        what=f"MultiHeadAttention(d_model={d_model}, num_heads={num_heads})",
        valid=num_heads > 0 and d_model % num_heads == 0)


@pytest.mark.points(1)
@pytest.mark.task("MultiHeadAttention")
@pytest.mark.parametrize("num_kv_heads", [0, 3])
def test_mha_rejects_kv_heads_that_are_not_positive_divisors(student, num_kv_heads):
    """MultiHeadAttention(16, 4, num_kv_heads=0 or 3) raises ValueError: num_kv_heads must be a positive divisor of 4."""
    init = {"d_model": 16, "num_heads": 4, "num_kv_heads": num_kv_heads}
    checks.expect_value_error(lambda: student.module("MultiHeadAttention", init, calls=[]),
                              what=f"MultiHeadAttention(16, 4, num_kv_heads={num_kv_heads})")


@pytest.mark.points(1)
@pytest.mark.task("MultiHeadAttention")
def test_mha_bias_false_has_no_biases(student):
    """MultiHeadAttention(16, 4, bias=False) has the four projection weights and no bias in its state_dict."""
    result = student.module("MultiHeadAttention", {"d_model": 16, "num_heads": 4, "bias": False}, calls=[],
                            state_dict_shapes=True)
    expected = {f"{name}.weight": [16, 16] for name in ("q_proj", "k_proj", "v_proj", "out_proj")}
    if result.state_dict_shapes != expected:
        checks.fail(f"state_dict shapes are {result.state_dict_shapes}, expected {expected}")


@pytest.mark.points(1)
@pytest.mark.task("MultiHeadAttention")
def test_mha_self_attention_by_default_and_no_weights(student):
    """forward(x) equals forward(x, key=x, value=x) (self-attention), and without need_weights the weights are None."""
    shapes = {"q_proj.weight": (16, 16), "q_proj.bias": (16,), "k_proj.weight": (16, 16), "k_proj.bias": (16,),
              "v_proj.weight": (16, 16), "v_proj.bias": (16,), "out_proj.weight": (16, 16), "out_proj.bias": (16,)}
    state = {name: randn(shape, seed=40 + i, scale=0.3) for i, (name, shape) in enumerate(shapes.items())}
    x = randn((2, 3, 16), seed=50)
    result = student.module("MultiHeadAttention", {"d_model": 16, "num_heads": 4}, state_dict=state,
                            calls=[{"fn": "self.forward", "args": [x]},
                                   {"fn": "self.forward", "args": [x], "kwargs": {"key": x, "value": x}}])
    (short, weights), (full, _) = result.outputs
    if weights is not None:
        checks.fail("forward(...) without need_weights=True should return (out, None)")
    checks.assert_close(checks.check_tensor(short, what="forward(x)", shape=(2, 3, 16)), full,
                        tolerances.LAYER[torch.float32], what="forward(x) vs forward(x, key=x, value=x)",
                        reveal=True, hint="key defaults to query (self-attention)")
