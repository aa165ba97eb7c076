"""Chapter 04 hidden tests: activations against PyTorch's, layers against the reference.

Activations are compared with torch's own functions evaluated in float64 on the same inputs;
layers with the reference in float64 under the same `state_dict`, on inputs with 0 to 3 leading
dims (the handout's `(..., D)`). Dropout is checked against the student's own layer with
dropout=0, so a bug elsewhere in the layer never reads as a dropout bug. Failure messages show
the student's own values, the size and place of the error and the shrunk case, never the
expected values or this file's source.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from graders import checks, strategies, tolerances
from graders.strategies import randn

TASKS = ("relu", "silu", "gelu", "FeedForward", "swiglu_hidden_dim", "SwiGLU", "feedforward_parameter_count",
         "swiglu_parameter_count")
SECTIONS = {"relu": "relu", "silu": "silu", "gelu": "gelu", "FeedForward": "feedforward",
            "swiglu_hidden_dim": "hidden-dim", "SwiGLU": "swiglu", "feedforward_parameter_count": "parameter-count",
            "swiglu_parameter_count": "parameter-count"}
INF = float("inf")
# Dropout rates for the training-mode checks: 0.5 alone would not tell p from 1 - p.
DROPOUT_PS = (0.2, 0.5, 0.8)

# name -> (how the student's function is called, torch's reference function)
ACTIVATIONS = {
    "relu": (("relu", {}), F.relu),
    "silu": (("silu", {}), F.silu),
    "gelu": (("gelu", {}), F.gelu),
    "gelu_tanh": (("gelu", {"approximate": "tanh"}), lambda x: F.gelu(x, approximate="tanh")),
}
HINTS = {
    "relu": "max(x, 0)",
    "silu": "x * sigmoid(x)",
    "gelu": "0.5 * x * (1 + erf(x / sqrt(2)))",
    "gelu_tanh": "0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))",
}
# The mathematical limits at -inf and +inf; torch's own kernels give NaN for some of them
# (x * sigmoid(x) at -inf is -inf * 0), so NaN is accepted there too, a wrong value is not.
LIMITS = {"relu": (0.0, INF), "silu": (0.0, INF), "gelu": (0.0, INF), "gelu_tanh": (0.0, INF)}


def task_of(name: str) -> str:
    return "gelu" if name.startswith("gelu") else name


def activation_param(name: str):
    return pytest.param(name, marks=pytest.mark.task(task_of(name)), id=name)


def call_activation(student, name: str, x: torch.Tensor) -> torch.Tensor:
    (fn, kwargs), _ = ACTIVATIONS[name]
    what = f"{fn}(x{', approximate=' + repr(kwargs['approximate']) if kwargs else ''})"
    return checks.check_tensor(student.call(fn, x, **kwargs), what=what, shape=tuple(x.shape), dtype=x.dtype)


# --- activations --------------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.parametrize("name", [activation_param(n) for n in ACTIVATIONS])
@given(case=strategies.activation_cases())
def test_activation_matches_torch(student, name, case):
    """The activation equals torch's (in float64) over inputs up to +-1e4, in float32, float64 and half precision."""
    x = case.x()
    y = call_activation(student, name, x)
    _, reference = ACTIVATIONS[name]
    checks.assert_close(y, reference(x.double()), tolerances.activation(case.dtype), what=f"{name}(x)",
                        scale=x.double().abs().clamp_min(1.0), hint=HINTS[name])


@pytest.mark.points(1)
@pytest.mark.parametrize("name", [activation_param(n) for n in ACTIVATIONS])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_activation_at_infinity(student, name, dtype):
    """At -inf the activation gives its limit 0, at +inf its limit +inf (NaN is tolerated, as torch's kernels give)."""
    x = torch.tensor([-INF, INF], dtype=dtype)
    y = call_activation(student, name, x)
    for value, limit, where in zip(y.tolist(), LIMITS[name], ("-inf", "+inf")):
        if not (math.isnan(value) or value == limit):
            checks.fail(f"{name}({where}) returned {value}; its limit there is {limit}, so anything else (a finite "
                        "value or the other infinity) means the formula breaks for large inputs")


@pytest.mark.points(1)
@pytest.mark.parametrize("name", [activation_param(n) for n in ACTIVATIONS])
@given(case=strategies.activation_cases(dtypes_=(torch.float64,), scales=(1.0, 4.0, 30.0)))
def test_activation_gradient_matches_autograd(student, name, case):
    """d activation / dx through your formula equals the derivative of torch's function."""
    x = case.x()
    upstream = torch.ones_like(x)
    (fn, kwargs), reference = ACTIVATIONS[name]
    result = student.call_with_grad(fn, (x,), kwargs, upstream=upstream)
    grad = result.input_grads.get("0")
    if grad is None:
        checks.fail(f"{fn}: no gradient reached x; build the output from differentiable torch operations")
    leaf = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(reference(leaf), leaf, upstream)
    checks.assert_close(grad, expected, tolerances.activation_grad(torch.float64), what=f"d {name}(x) / dx",
                        scale=x.abs().clamp_min(1.0), hint=HINTS[name])


@pytest.mark.points(1)
@pytest.mark.task("gelu")
def test_gelu_tanh_constants(student):
    """The tanh form uses sqrt(2/pi) and 0.044715: at x = +-1, +-2, +-3 it matches torch's tanh GELU to 1e-6."""
    x = torch.tensor([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    y = call_activation(student, "gelu_tanh", x)
    expected = F.gelu(x, approximate="tanh")
    off = (y - expected).abs() > 1e-6
    if off.any():
        exact_gap = (y - F.gelu(x)).abs().max().item()
        more = " (it is the exact erf GELU, not the tanh approximation)" if exact_gap < 1e-9 else ""
        checks.fail(f"gelu(x, approximate='tanh') is more than 1e-6 from torch's tanh GELU at {int(off.sum())} of "
                    f"the six points x = +-1, +-2, +-3{more}; the constants are sqrt(2 / pi) = 0.7978845608 and "
                    "0.044715")


@pytest.mark.points(1)
@pytest.mark.task("gelu")
@given(approximate=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=6))
def test_gelu_rejects_any_other_approximate(student, approximate):
    """Any approximate other than "none" and "tanh" raises ValueError; those two compute."""
    checks.expect_value_error(lambda: student.call("gelu", torch.zeros(3), approximate=approximate),
                              what=f"gelu(x, approximate={approximate!r})", valid=approximate in ("none", "tanh"))


# --- FeedForward and SwiGLU ---------------------------------------------------------------------


def reference_module(reference, case: strategies.FFNCase, state: dict) -> torch.nn.Module:
    module = getattr(reference, case.cls)(**case.init).double().eval()
    module.load_state_dict({k: v.double() for k, v in state.items()})
    return module


def state_for(reference, case: strategies.FFNCase) -> dict[str, torch.Tensor]:
    """The reference's own initialisation under the case's seed, in the case's dtype."""
    torch.manual_seed(case.seed)
    module = getattr(reference, case.cls)(**case.init)
    return {k: v.detach().to(case.dtype).clone() for k, v in module.state_dict().items()}


def layer_task(kind: str) -> str:
    return "FeedForward" if kind == "feedforward" else "SwiGLU"


def layer_param(kind: str):
    return pytest.param(kind, marks=pytest.mark.task(layer_task(kind)), id=kind)


@pytest.mark.points(3)
@pytest.mark.parametrize("kind", [layer_param("feedforward"), layer_param("swiglu")])
@given(data=st.data())
def test_layer_matches_reference(student, reference, kind, data):
    """The layer's output equals the reference's under the same state_dict, over widths, activations, biases, dtypes."""
    case = data.draw(strategies.ffn_cases(kinds=(kind,)), label="case")
    state = state_for(reference, case)
    x = case.x()
    result = student.module(case.cls, case.init, state_dict=state, dtype=case.dtype,
                            calls=[{"fn": "self.forward", "args": [x]}])
    out = checks.check_tensor(result.output, what="forward(x)", shape=tuple(x.shape), dtype=case.dtype)
    expected = reference_module(reference, case, state)(x.double())
    hint = ("fc2(act(fc1(x))), with the activation named by `activation`" if kind == "feedforward" else
            "w2(silu(w1(x)) * w3(x)): the SiLU acts on the gate w1")
    checks.assert_close(out, expected, tolerances.FFN[case.dtype], what=f"{case.cls} output", hint=hint)


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [layer_param("feedforward"), layer_param("swiglu")])
@given(data=st.data())
def test_layer_gradients_match_reference(student, reference, kind, data):
    """Gradients for the input and every parameter equal the reference's."""
    case = data.draw(strategies.ffn_cases(kinds=(kind,), dtype=torch.float64), label="case")
    state = state_for(reference, case)
    x = case.x()
    upstream = randn(tuple(x.shape), seed=case.seed + 1, dtype=torch.float64)
    result = student.module(case.cls, case.init, state_dict=state, dtype=torch.float64,
                            calls=[{"fn": "self.forward", "args": [x]}], upstream=upstream, output=())
    module = reference_module(reference, case, state)
    leaf = x.clone().requires_grad_(True)
    names = [n for n, _ in module.named_parameters()]
    grads = torch.autograd.grad(module(leaf), [leaf, *module.parameters()], upstream)
    checks.assert_close(result.input_grads.get("0"), grads[0], tolerances.FFN_GRAD[torch.float64], what="d loss / d x")
    for name, grad in zip(names, grads[1:]):
        got = result.param_grads.get(name)
        if got is None:
            checks.fail(f"no gradient for parameter {name}: is it used in forward?")
        checks.assert_close(got, grad, tolerances.FFN_GRAD[torch.float64], what=f"d loss / d {name}")


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [layer_param("feedforward"), layer_param("swiglu")])
@given(data=st.data())
def test_layer_dropout_only_in_training(student, reference, kind, data):
    """Dropout acts in training mode only, on the output: each entry 0 or the dropout-free output / (1 - p)."""
    case = data.draw(strategies.ffn_cases(kinds=(kind,), dtype=torch.float64), label="case")
    p = data.draw(st.sampled_from(DROPOUT_PS), label="p")
    state = state_for(reference, case)
    x = case.x()

    def forward(dropout: float, train: bool) -> torch.Tensor:
        # The student's own layer with and without dropout: whatever else it gets wrong, the two agree.
        result = student.module(case.cls, case.init | {"dropout": dropout}, state_dict=state, dtype=torch.float64,
                                train=train, seed=case.seed, calls=[{"fn": "self.forward", "args": [x]}])
        mode = "training" if train else "eval"
        return checks.check_tensor(result.output, what=f"forward(x) in {mode} mode with dropout={dropout}",
                                   shape=tuple(x.shape))

    tol = tolerances.dropout_kept(torch.float64)
    free, evaluated = forward(0.0, False), forward(p, False)
    changed = (evaluated - free).abs() > tol.atol + tol.rtol * free.abs()
    if changed.any():
        checks.fail(f"in eval mode, dropout={p} changes {int(changed.sum())} of {free.numel()} outputs against the "
                    "same layer with dropout=0: dropout acts only in training mode (nn.Dropout follows "
                    "self.training; F.dropout needs training=self.training)")
    free_train = forward(0.0, True)
    if ((free_train - free).abs() > tol.atol + tol.rtol * free.abs()).any():
        checks.fail("with dropout=0 the layer's output in training mode differs from its output in eval mode: "
                    "nothing but dropout may depend on the mode")
    checks.assert_dropped_or_scaled(forward(p, True), free_train, p, tol,
                                    what=f"forward(x) in training mode with dropout={p}, against the same layer with "
                                         "dropout=0",
                                    hint="dropout acts on the layer's output, after the last linear layer (not on the "
                                         "hidden units inside it), and scales what it keeps by 1 / (1 - p)")


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", [layer_param("feedforward"), layer_param("swiglu")])
@given(data=st.data())
def test_layer_is_position_wise(student, reference, kind, data):
    """Each position is transformed on its own: permuting positions permutes the outputs the same way."""
    case = data.draw(strategies.ffn_cases(kinds=(kind,), dtype=torch.float64, min_positions=2), label="case")
    order = list(data.draw(st.permutations(range(case.positions)), label="order"))
    state = state_for(reference, case)
    x = case.x()
    rows = x.reshape(case.positions, case.d_model)  # (N, D): every D-vector of x, in order
    shuffled = rows[order].reshape(x.shape)
    result = student.module(case.cls, case.init, state_dict=state, dtype=torch.float64,
                            calls=[{"fn": "self.forward", "args": [x]}, {"fn": "self.forward", "args": [shuffled]}])
    plain, permuted = (checks.check_tensor(o, what="forward(x)", shape=tuple(x.shape)) for o in result.outputs)
    checks.assert_close(permuted, plain.reshape(case.positions, case.d_model)[order].reshape(x.shape),
                        tolerances.FFN[torch.float64],
                        what=f"forward(x with its {case.positions} positions permuted) vs forward(x) permuted",
                        hint="a feed-forward layer never mixes positions: act on the last dimension only")


@pytest.mark.points(1)
@pytest.mark.task("FeedForward")
@given(name=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10))
def test_feedforward_rejects_unknown_activations(student, name):
    """Any activation name other than relu, gelu, gelu_tanh, silu raises ValueError; those four build."""
    valid = name in strategies.FFN_ACTIVATIONS
    checks.expect_value_error(lambda: student.module("FeedForward", {"d_model": 4, "activation": name}, calls=[]),
                              what=f"FeedForward(4, activation={name!r})", valid=valid)


@pytest.mark.points(1)
@pytest.mark.task("SwiGLU")
@given(case=strategies.ffn_cases(kinds=("swiglu",), dtype=torch.float64))
def test_swiglu_gate_is_w1(student, reference, case):
    """w1 is the gate, w3 enters linearly: doubling w3 doubles the output less w2's bias; w1 = 0 leaves that bias."""
    state = state_for(reference, case)
    doubled = {k: 2 * v if k.startswith("w3.") else v for k, v in state.items()}
    closed = {k: torch.zeros_like(v) if k.startswith("w1.") else v for k, v in state.items()}
    x = case.x()
    result = student.module(case.cls, case.init, state_dict=state, dtype=torch.float64,
                            calls=[{"fn": "self.forward", "args": [x]}])
    out = checks.check_tensor(result.output, what="forward(x)", shape=tuple(x.shape))
    b2 = state["w2.bias"].double() if "w2.bias" in state else torch.zeros(case.d_model, dtype=torch.float64)
    hint = "w1 is the gate: silu(w1(x)) multiplies w3(x), the up projection, which has no activation"
    result = student.module(case.cls, case.init, state_dict=doubled, dtype=torch.float64,
                            calls=[{"fn": "self.forward", "args": [x]}])
    twice = checks.check_tensor(result.output, what="forward(x) with w3 doubled", shape=tuple(x.shape))
    checks.assert_close(twice - b2, 2 * (out - b2), tolerances.FFN[torch.float64],
                        what="forward(x) - w2.bias with w3 doubled, against twice that with w3 as loaded", hint=hint)
    result = student.module(case.cls, case.init, state_dict=closed, dtype=torch.float64,
                            calls=[{"fn": "self.forward", "args": [x]}])
    shut = checks.check_tensor(result.output, what="forward(x) with w1 = 0", shape=tuple(x.shape))
    checks.assert_close(shut, b2.expand_as(shut), tolerances.FFN[torch.float64],
                        what="forward(x) with w1 = 0 (silu(0) = 0 closes every gate: w2's bias alone)", hint=hint)


# --- Llama's width rule and the parameter counts ------------------------------------------------


def llama_width(d_model: int, multiple_of: int, multiplier: float | None) -> int:
    """Llama's `FeedForward.__init__` rule, written independently of the reference."""
    hidden = int(2 * (4 * d_model) / 3)
    if multiplier is not None:
        hidden = int(multiplier * hidden)
    return -(-hidden // multiple_of) * multiple_of


@pytest.mark.points(2)
@pytest.mark.task("swiglu_hidden_dim")
@given(d_model=st.integers(64, 8192), multiple_of=st.sampled_from((1, 32, 64, 256, 1024, 4096)),
       multiplier=st.sampled_from((None, 1.0, 1.3, 1.5, 0.75)))
def test_swiglu_hidden_dim_rule(student, d_model, multiple_of, multiplier):
    """swiglu_hidden_dim follows Llama's rule for d_model 64..8192, any multiple_of, with and without a multiplier."""
    got = student.call("swiglu_hidden_dim", d_model, multiple_of, multiplier)
    want = llama_width(d_model, multiple_of, multiplier)
    if not isinstance(got, int) or isinstance(got, bool):
        checks.fail(f"swiglu_hidden_dim({d_model}, {multiple_of}, {multiplier}) returned {got!r}, not an int")
    if got % multiple_of != 0:
        checks.fail(f"swiglu_hidden_dim({d_model}, {multiple_of}, {multiplier}) = {got} is not a multiple of "
                    f"{multiple_of}")
    if got != want:
        direction = "too small: round up, not down" if got < want else "too large"
        checks.fail(f"swiglu_hidden_dim({d_model}, {multiple_of}, {multiplier}) = {got} is {direction}; "
                    "take int(2 * 4 * d_model / 3), scale by the multiplier (truncating), then round up to "
                    "the next multiple of multiple_of")


@pytest.mark.points(1)
@pytest.mark.task("SwiGLU")
@given(d_model=st.integers(1, 24), multiple_of=st.sampled_from((1, 8, 32)))
def test_swiglu_default_width(student, d_model, multiple_of):
    """SwiGLU(d_model, multiple_of=m) without d_ff uses swiglu_hidden_dim(d_model, m) for w1, w3 and w2."""
    width = llama_width(d_model, multiple_of, None)
    result = student.module("SwiGLU", {"d_model": d_model, "multiple_of": multiple_of}, calls=[],
                            state_dict_shapes=True)
    expected = {"w1.weight": [width, d_model], "w2.weight": [d_model, width], "w3.weight": [width, d_model]}
    if result.state_dict_shapes != expected:
        checks.fail(f"SwiGLU({d_model}, multiple_of={multiple_of}) has state_dict shapes {result.state_dict_shapes}; "
                    f"its default hidden width is swiglu_hidden_dim({d_model}, {multiple_of})")


@pytest.mark.points(1)
@pytest.mark.parametrize(("fn", "kind"), [pytest.param("feedforward_parameter_count", "feedforward",
                                                       marks=pytest.mark.task("feedforward_parameter_count"),
                                                       id="feedforward"),
                                          pytest.param("swiglu_parameter_count", "swiglu",
                                                       marks=pytest.mark.task("swiglu_parameter_count"), id="swiglu")])
@given(d_model=st.integers(1, 64), d_ff=st.integers(1, 256), bias=st.booleans())
def test_parameter_count_matches_the_module(student, reference, fn, kind, d_model, d_ff, bias):
    """The closed-form count equals the number of parameters of the built module, with and without biases."""
    cls = reference.FeedForward if kind == "feedforward" else reference.SwiGLU
    actual = sum(p.numel() for p in cls(d_model, d_ff, bias=bias).parameters())
    got = student.call(fn, d_model, d_ff, bias=bias)
    if got != actual:
        kind_of = "" if isinstance(got, int) and not isinstance(got, bool) else f" (a {type(got).__name__}, not an int)"
        checks.fail(f"{fn}({d_model}, {d_ff}, bias={bias}) returned {got!r}{kind_of}, but the module has a different "
                    "number of parameters; count every weight matrix and, with bias=True, every bias vector")
