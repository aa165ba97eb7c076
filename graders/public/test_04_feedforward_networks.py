"""Chapter 04 public tests: properties you can check yourself, and golden values.

These run without the reference solution. Golden values live in
`graders/snapshots/04_feedforward_networks/` and are shown when a test fails. Your
instructor's hidden tests check much more (the activations over wide ranges, at +-inf and in
half precision, their gradients, both layers against a reference over many shapes, dropout,
and Llama's width rule from d_model 64 to 8192).
"""

from __future__ import annotations

import pytest
import torch

from graders import checks, tolerances
from graders.strategies import randn

TASKS = ("relu", "silu", "gelu", "FeedForward", "swiglu_hidden_dim", "SwiGLU", "feedforward_parameter_count",
         "swiglu_parameter_count")
SECTIONS = {"relu": "relu", "silu": "silu", "gelu": "gelu", "FeedForward": "feedforward",
            "swiglu_hidden_dim": "hidden-dim", "SwiGLU": "swiglu", "feedforward_parameter_count": "parameter-count",
            "swiglu_parameter_count": "parameter-count"}
INF = float("inf")


@pytest.mark.points(0)
@pytest.mark.task("static")
def test_no_banned_apis(static_scan, chapter):
    """The module parses and calls none of the chapter's banned APIs (F.relu, F.gelu, F.silu, nn.GELU, ...)."""
    checks.static_clean(static_scan, chapter.module)


# --- activations --------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("relu")
def test_relu_examples(student):
    """relu keeps positives (inf too) and zeroes the rest (-inf too)."""
    x = torch.tensor([-INF, -1e4, -2.0, 0.0, 3.0, 1e4, INF])
    y = checks.check_tensor(student.call("relu", x), what="relu(x)", shape=(7,), dtype=torch.float32)
    checks.assert_equal(y, torch.tensor([0.0, 0.0, 0.0, 0.0, 3.0, 1e4, INF]), what="relu(x)", reveal=True)


@pytest.mark.points(1)
@pytest.mark.task("silu")
def test_silu_examples(student):
    """silu(x) = x * sigmoid(x): silu(0) = 0, silu(1) = 0.7311, silu(-1) = -0.2689."""
    x = torch.tensor([-1.0, 0.0, 1.0, 5.0], dtype=torch.float64)
    expected = x / (1 + torch.exp(-x))
    y = checks.check_tensor(student.call("silu", x), what="silu(x)", shape=(4,), dtype=torch.float64)
    checks.assert_close(y, expected, tolerances.activation(torch.float64), what="silu(x)", reveal=True)


@pytest.mark.points(1)
@pytest.mark.task("gelu")
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_golden(student, snapshot, approximate):
    """gelu(x, approximate) on fixed x in [-6, 6] matches the golden values (exact erf form, and tanh)."""
    x = snapshot.inputs(x=torch.linspace(-6.0, 6.0, 25))["x"]
    y = checks.check_tensor(student.call("gelu", x, approximate=approximate), what=f"gelu(x, {approximate!r})",
                            shape=(25,), dtype=torch.float32)
    snapshot.assert_match({"gelu": y}, {torch.float32: tolerances.activation(torch.float32)})


@pytest.mark.points(1)
@pytest.mark.task("gelu")
def test_gelu_tanh_is_close_to_exact(student):
    """The tanh approximation stays within 5e-4 of the exact GELU on [-6, 6], and is not identical to it."""
    x = torch.linspace(-6.0, 6.0, 241, dtype=torch.float64)
    exact = checks.check_tensor(student.call("gelu", x), what="gelu(x)", shape=(241,))
    approx = checks.check_tensor(student.call("gelu", x, approximate="tanh"), what="gelu(x, 'tanh')", shape=(241,))
    gap = (exact - approx).abs().max().item()
    if not 1e-6 < gap < 5e-4:
        checks.fail(f"the largest gap between gelu(x) and gelu(x, 'tanh') on [-6, 6] is {gap:.3g}; the tanh "
                    "approximation differs from the erf form by at most 4.7e-4 (near x = +-2.7), and by more than 1e-6")


# --- FeedForward --------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("FeedForward")
def test_feedforward_parameter_names(student):
    """FeedForward(8) has fc1 (32, 8) and fc2 (8, 32) with biases: d_ff defaults to 4 * d_model."""
    result = student.module("FeedForward", {"d_model": 8}, calls=[], state_dict_shapes=True)
    expected = {"fc1.weight": [32, 8], "fc1.bias": [32], "fc2.weight": [8, 32], "fc2.bias": [8]}
    if result.state_dict_shapes != expected:
        checks.fail(f"state_dict shapes are {result.state_dict_shapes}, expected {expected}")


@pytest.mark.points(1)
@pytest.mark.task("FeedForward")
@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_tanh", "silu"])
def test_feedforward_golden(student, snapshot, activation):
    """FeedForward(6, 10, activation) with fixed weights matches the golden output."""
    shapes = {"fc1.weight": (10, 6), "fc1.bias": (10,), "fc2.weight": (6, 10), "fc2.bias": (6,)}
    t = snapshot.inputs(x=randn((2, 3, 6), seed=5), **{n: randn(s, seed=i, scale=0.5) for i, (n, s) in
                                                        enumerate(shapes.items())})
    result = student.module("FeedForward", {"d_model": 6, "d_ff": 10, "activation": activation},
                            state_dict={n: t[n] for n in shapes}, calls=[{"fn": "self.forward", "args": [t["x"]]}])
    snapshot.assert_match({"out": result.output}, tolerances.FFN)


@pytest.mark.points(1)
@pytest.mark.task("FeedForward")
def test_feedforward_rejects_unknown_activation(student):
    """FeedForward(4, activation="swish") raises ValueError (the names are relu, gelu, gelu_tanh, silu)."""
    checks.expect_value_error(lambda: student.module("FeedForward", {"d_model": 4, "activation": "swish"}, calls=[]),
                              what='FeedForward(4, activation="swish")')


# --- SwiGLU -------------------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("swiglu_hidden_dim")
@pytest.mark.parametrize(("args", "expected"), [((4096,), 11008), ((512,), 1536), ((8192, 4096, 1.3), 28672)])
def test_swiglu_hidden_dim_examples(student, args, expected):
    """Llama 7B: swiglu_hidden_dim(4096) = 11008; Llama 2 70B: (8192, 4096, 1.3) = 28672."""
    got = student.call("swiglu_hidden_dim", *args)
    if got != expected:
        checks.fail(f"swiglu_hidden_dim{args} returned {got!r}, expected {expected}")


@pytest.mark.points(1)
@pytest.mark.task("SwiGLU")
def test_swiglu_parameter_names(student):
    """SwiGLU(8, 16) has w1, w3 (16, 8) and w2 (8, 16), no biases by default."""
    result = student.module("SwiGLU", {"d_model": 8, "d_ff": 16}, calls=[], state_dict_shapes=True)
    expected = {"w1.weight": [16, 8], "w2.weight": [8, 16], "w3.weight": [16, 8]}
    if result.state_dict_shapes != expected:
        checks.fail(f"state_dict shapes are {result.state_dict_shapes}, expected {expected}")


@pytest.mark.points(1)
@pytest.mark.task("SwiGLU")
def test_swiglu_golden(student, snapshot):
    """SwiGLU(6, 10) with fixed weights matches the golden output: w2(silu(w1 x) * w3 x)."""
    shapes = {"w1.weight": (10, 6), "w2.weight": (6, 10), "w3.weight": (10, 6)}
    t = snapshot.inputs(x=randn((2, 3, 6), seed=8), **{n: randn(s, seed=10 + i, scale=0.5) for i, (n, s) in
                                                        enumerate(shapes.items())})
    result = student.module("SwiGLU", {"d_model": 6, "d_ff": 10}, state_dict={n: t[n] for n in shapes},
                            calls=[{"fn": "self.forward", "args": [t["x"]]}])
    snapshot.assert_match({"out": result.output}, tolerances.FFN, hint="the SiLU acts on w1(x), the gate")


# --- parameter counts ---------------------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("feedforward_parameter_count")
def test_feedforward_parameter_count_example(student):
    """The 2017 base model's FFN, d_model 512 and d_ff 2048, has 2,099,712 parameters."""
    got = student.call("feedforward_parameter_count", 512, 2048)
    if got != 2 * 512 * 2048 + 2048 + 512:
        checks.fail(f"feedforward_parameter_count(512, 2048) returned {got!r}, expected {2 * 512 * 2048 + 2048 + 512}")


@pytest.mark.points(1)
@pytest.mark.task("swiglu_parameter_count")
def test_swiglu_parameter_count_example(student):
    """One Llama 7B FFN: swiglu_parameter_count(4096, 11008) = 3 * 4096 * 11008."""
    got = student.call("swiglu_parameter_count", 4096, 11008)
    if got != 3 * 4096 * 11008:
        checks.fail(f"swiglu_parameter_count(4096, 11008) returned {got!r}, expected {3 * 4096 * 11008} "
                    f"({3 * 4096 * 11008 / 1e6:.1f} M: three matrices, no biases)")
