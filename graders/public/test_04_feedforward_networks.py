"""Chapter 04 public tests: properties you can check yourself, and golden values.

These run without the reference solution. Golden values live in
`graders/snapshots/04_feedforward_networks/` and are shown when a test fails. The layers are
checked for their cheap promises here: defaults, parameter names with and without biases,
`(..., D)` inputs of any number of leading dims, and dropout (off in eval mode; in training
mode on the output, each entry 0 or the dropout-free output / (1 - p)). Your instructor's
hidden tests check much more (the activations over wide ranges, at +-inf and in half
precision, their gradients, both layers against a reference over many shapes and rates, and
Llama's width rule from d_model 64 to 8192).
"""

from __future__ import annotations

import pytest
import torch

from graders import checks, tolerances
from graders.strategies import randn
from graders.tolerances import DROPOUT_P

TASKS = ("relu", "silu", "gelu", "FeedForward", "swiglu_hidden_dim", "SwiGLU", "feedforward_parameter_count",
         "swiglu_parameter_count")
SECTIONS = {"relu": "relu", "silu": "silu", "gelu": "gelu", "FeedForward": "feedforward",
            "swiglu_hidden_dim": "hidden-dim", "SwiGLU": "swiglu", "feedforward_parameter_count": "parameter-count",
            "swiglu_parameter_count": "parameter-count"}
INF = float("inf")
# One layer of each kind with fixed weights (d_model 6, d_ff 10), for the shape and dropout checks.
LAYERS = {
    "feedforward": ("FeedForward", {"d_model": 6, "d_ff": 10, "activation": "gelu"},
                    {"fc1.weight": (10, 6), "fc1.bias": (10,), "fc2.weight": (6, 10), "fc2.bias": (6,)}),
    "swiglu": ("SwiGLU", {"d_model": 6, "d_ff": 10}, {"w1.weight": (10, 6), "w3.weight": (10, 6), "w2.weight": (6, 10)}),
}


def layer_param(kind: str):
    return pytest.param(kind, marks=pytest.mark.task(LAYERS[kind][0]), id=kind)


def layer_state(kind: str) -> dict[str, torch.Tensor]:
    _, _, shapes = LAYERS[kind]
    return {name: randn(shape, seed=20 + i, scale=0.5) for i, (name, shape) in enumerate(shapes.items())}


def run_layer(student, kind: str, x: torch.Tensor, *, dropout: float = 0.0, train: bool = False) -> torch.Tensor:
    """The layer's forward(x), with its fixed weights, built with `dropout`, in training or eval mode."""
    cls, init, _ = LAYERS[kind]
    result = student.module(cls, init | {"dropout": dropout}, state_dict=layer_state(kind), train=train,
                            calls=[{"fn": "self.forward", "args": [x]}])
    mode = "training" if train else "eval"
    return checks.check_tensor(result.output, what=f"{cls} forward(x) in {mode} mode with dropout={dropout}",
                               shape=tuple(x.shape), dtype=x.dtype)


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
@pytest.mark.task("silu")
def test_silu_large_inputs(student):
    """silu saturates without overflowing: silu(x) = x for x >= 100 and about 0 for x <= -100, never NaN."""
    x = torch.tensor([-1e4, -100.0, 100.0, 1e4])
    expected = x.double() / (1 + torch.exp(-x.double()))
    y = checks.check_tensor(student.call("silu", x), what="silu(x)", shape=(4,), dtype=torch.float32)
    checks.assert_close(y, expected, tolerances.activation(torch.float32), what="silu(x)", reveal=True,
                        scale=x.double().abs(), hint="exp(x) overflows to inf for large x: use torch.sigmoid")


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
def test_gelu_rejects_unknown_approximate(student):
    """gelu(x, approximate="fast") raises ValueError: the only forms are "none" and "tanh"."""
    checks.expect_value_error(lambda: student.call("gelu", torch.zeros(3), approximate="fast"),
                              what='gelu(x, approximate="fast")')


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
def test_feedforward_without_bias(student):
    """FeedForward(8, 16, bias=False) has fc1.weight (16, 8) and fc2.weight (8, 16) and no biases."""
    result = student.module("FeedForward", {"d_model": 8, "d_ff": 16, "bias": False}, calls=[],
                            state_dict_shapes=True)
    expected = {"fc1.weight": [16, 8], "fc2.weight": [8, 16]}
    if result.state_dict_shapes != expected:
        checks.fail(f"state_dict shapes are {result.state_dict_shapes}, expected {expected}: bias=False means "
                    "nn.Linear(..., bias=False) for fc1 and fc2")


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
def test_swiglu_with_bias(student):
    """SwiGLU(8, 16, bias=True) gives w1, w3 and w2 each a bias: w1.bias, w3.bias (16,) and w2.bias (8,)."""
    result = student.module("SwiGLU", {"d_model": 8, "d_ff": 16, "bias": True}, calls=[], state_dict_shapes=True)
    expected = {"w1.weight": [16, 8], "w1.bias": [16], "w2.weight": [8, 16], "w2.bias": [8], "w3.weight": [16, 8],
                "w3.bias": [16]}
    if result.state_dict_shapes != expected:
        checks.fail(f"state_dict shapes are {result.state_dict_shapes}, expected {expected}")


@pytest.mark.points(1)
@pytest.mark.task("SwiGLU")
@pytest.mark.parametrize(("d_model", "multiple_of", "width"), [(8, 256, 256), (7, 5, 20)])
def test_swiglu_default_width(student, d_model, multiple_of, width):
    """Without d_ff, SwiGLU's hidden width is swiglu_hidden_dim(d_model, multiple_of), not 4 * d_model."""
    result = student.module("SwiGLU", {"d_model": d_model, "multiple_of": multiple_of}, calls=[],
                            state_dict_shapes=True)
    expected = {"w1.weight": [width, d_model], "w2.weight": [d_model, width], "w3.weight": [width, d_model]}
    if result.state_dict_shapes != expected:
        checks.fail(f"SwiGLU({d_model}, multiple_of={multiple_of}) has state_dict shapes {result.state_dict_shapes}, "
                    f"expected {expected}: swiglu_hidden_dim({d_model}, {multiple_of}) = {width}")


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


# --- both layers: (..., D) inputs and dropout ---------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [layer_param("feedforward"), layer_param("swiglu")])
def test_layer_accepts_any_leading_dims(student, kind):
    """forward maps (..., D) to (..., D): inputs (D,), (T, D) and (1, B, T, D) give the same values as (B, T, D)."""
    x = randn((2, 3, 6), seed=30)
    batched = run_layer(student, kind, x)  # (2, 3, 6)
    parts = {"x[1, 2], shape (6,)": (x[1, 2], batched[1, 2]), "x[1], shape (3, 6)": (x[1], batched[1]),
             "x[None], shape (1, 2, 3, 6)": (x[None], batched[None])}
    for what, (part, expected) in parts.items():
        checks.assert_close(run_layer(student, kind, part), expected, tolerances.FFN[torch.float32], reveal=True,
                            what=f"forward({what}) against forward(x) of shape (2, 3, 6)",
                            hint="act on the last dimension only (nn.Linear does), never unpack x.shape")


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [layer_param("feedforward"), layer_param("swiglu")])
def test_layer_dropout_off_in_eval(student, kind):
    """In eval mode dropout does nothing: the layer with dropout=0.5 gives the same output as with dropout=0."""
    x = randn((4, 8, 6), seed=31)
    checks.assert_close(run_layer(student, kind, x, dropout=0.5), run_layer(student, kind, x),
                        tolerances.dropout_kept(torch.float32), what="eval-mode output, dropout=0.5 vs dropout=0",
                        reveal=True, hint="dropout acts only in training mode: nn.Dropout follows self.training, "
                                          "F.dropout needs training=self.training")


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [layer_param("feedforward"), layer_param("swiglu")])
def test_layer_dropout_on_output_in_training(student, kind):
    """In training mode (dropout p = 0.25) each output is 0 or the dropout-free output / (1 - p), about p of them 0."""
    x = randn((4, 8, 6), seed=32)
    free = run_layer(student, kind, x, train=True)
    out = run_layer(student, kind, x, dropout=DROPOUT_P, train=True)
    checks.assert_dropped_or_scaled(out, free, DROPOUT_P, tolerances.dropout_kept(torch.float32), reveal=True,
                                    what=f"{kind} output in training mode with dropout={DROPOUT_P}, against yours "
                                         "with dropout=0",
                                    hint="dropout goes last, on the layer's output (not on the hidden units before "
                                         "fc2 or w2), and scales what it keeps by 1 / (1 - p)")


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


@pytest.mark.points(1)
@pytest.mark.parametrize(("fn", "args", "expected"), [
    pytest.param("feedforward_parameter_count", (512, 2048, False), 2 * 512 * 2048,
                 marks=pytest.mark.task("feedforward_parameter_count"), id="feedforward-no-bias"),
    pytest.param("swiglu_parameter_count", (4096, 11008, True), 3 * 4096 * 11008 + 2 * 11008 + 4096,
                 marks=pytest.mark.task("swiglu_parameter_count"), id="swiglu-bias"),
])
def test_parameter_count_bias_flag(student, fn, args, expected):
    """With bias flipped from its default, each linear layer's bias vector counts (d_ff for w1, w3; d_model for w2)."""
    d_model, d_ff, bias = args
    got = student.call(fn, d_model, d_ff, bias=bias)
    if got != expected:
        checks.fail(f"{fn}({d_model}, {d_ff}, bias={bias}) returned {got!r}, expected {expected}: every matrix, "
                    "and with bias=True one bias per output unit of each linear layer")
