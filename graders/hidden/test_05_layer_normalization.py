"""Chapter 05 hidden tests: PyTorch's norms and the reference as oracles, and the properties.

Expected values come from `torch.nn.functional`'s norms (and the reference) in float64 on the
same inputs and parameters; failure messages show the student's own values, the size and
place of the error and the shrunk case, never the expected values or this file's source.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from graders import checks, strategies, tolerances
from graders.strategies import randn

TASKS = ("LayerNorm", "RMSNorm", "BatchNorm", "ResidualBlock")
SECTIONS = {"LayerNorm": "layernorm", "RMSNorm": "rmsnorm", "BatchNorm": "batchnorm", "ResidualBlock": "residual"}


def norm_state(case: strategies.NormCase, kind: str) -> dict[str, torch.Tensor]:
    if not case.affine:
        return {}
    params = case.params()
    return {"weight": params["weight"], "bias": params["bias"]} if kind == "LayerNorm" and case.bias else \
        {"weight": params["weight"]}


def layernorm_init(case: strategies.NormCase) -> dict:
    return {"normalized_shape": list(case.features), "eps": case.eps, "elementwise_affine": case.affine,
            "bias": case.bias}


def expected_layernorm(case, x: torch.Tensor, state: dict) -> torch.Tensor:
    weight, bias = state.get("weight"), state.get("bias")
    return F.layer_norm(x.double(), case.features, None if weight is None else weight.double(),
                        None if bias is None else bias.double(), case.eps)


def expected_rmsnorm(case, x: torch.Tensor, state: dict) -> torch.Tensor:
    weight = state.get("weight")
    return F.rms_norm(x.double(), case.features, None if weight is None else weight.double(), case.eps)


def run_norm(student, kind: str, init: dict, state: dict, x: torch.Tensor, **kwargs):
    # Half-precision inputs go to a float32 module: the contract computes in float32 anyway.
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return student.module(kind, init, state_dict=state or None, dtype=dtype,
                          calls=[{"fn": "self.forward", "args": [x]}], **kwargs)


# --- LayerNorm ----------------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.task("LayerNorm")
@given(case=strategies.norm_cases(max_trailing=2))
def test_layernorm_matches_torch(student, case):
    """LayerNorm equals F.layer_norm over shapes (one or two normalized dims), eps, affine, bias and dtypes."""
    x = case.x()
    state = norm_state(case, "LayerNorm")
    y = checks.check_tensor(run_norm(student, "LayerNorm", layernorm_init(case), state, x).output,
                            what="LayerNorm(x)", shape=tuple(x.shape), dtype=x.dtype)
    checks.assert_close(y, expected_layernorm(case, x, state), tolerances.norm(case.dtype), what="LayerNorm(x)",
                        hint="mean and biased variance (divide by n) over the normalized dims; eps inside the root")


@pytest.mark.points(1)
@pytest.mark.task("LayerNorm")
@given(case=strategies.norm_cases(dtypes_=(torch.float64,)), a=st.sampled_from((0.01, 0.5, 7.0, 1000.0)),
       spreads=st.sampled_from((-30.0, 0.0, 3.0)))
def test_layernorm_invariant_to_shift_and_scale(student, case, a, spreads):
    """LayerNorm(a * x + b) == LayerNorm(x) for a > 0 and any shift b (eps negligible)."""
    x = case.x()
    b = spreads * a * case.scale  # a shift of a few spreads: further out, float64's x - mean itself loses digits
    init = layernorm_init(case) | {"eps": 1e-30}  # eps negligible next to any variance here
    calls = [{"fn": "self.forward", "args": [x]}, {"fn": "self.forward", "args": [a * x + b]}]
    result = student.module("LayerNorm", init, dtype=torch.float64, calls=calls)
    plain, moved = (checks.check_tensor(o, what="LayerNorm(x)", shape=tuple(x.shape)) for o in result.outputs)
    checks.assert_close(moved, plain, tolerances.norm(torch.float64), what=f"LayerNorm({a:g} * x + {b:g}) vs LayerNorm(x)",
                        hint="subtracting the row's mean removes b; dividing by its standard deviation removes a")


@pytest.mark.points(1)
@pytest.mark.task("LayerNorm")
@given(case=strategies.norm_cases(dtypes_=(torch.float64,), max_trailing=2))
def test_layernorm_normalizes_before_affine(student, case):
    """Without the affine part, every normalized slice has mean 0 and biased variance var / (var + eps)."""
    x = case.x()
    init = layernorm_init(case) | {"elementwise_affine": False}
    y = checks.check_tensor(student.module("LayerNorm", init, dtype=torch.float64,
                                           calls=[{"fn": "self.forward", "args": [x]}]).output,
                            what="LayerNorm(x)", shape=tuple(x.shape))
    dims = tuple(range(-len(case.features), 0))
    var = x.var(dim=dims, unbiased=False)
    checks.assert_close(y.mean(dim=dims), torch.zeros_like(var), tolerances.norm(torch.float64), what="slice means")
    checks.assert_close(y.var(dim=dims, unbiased=False), var / (var + case.eps), tolerances.norm(torch.float64),
                        what="slice variances (biased, over the normalized dims)",
                        hint="normalize over the last len(normalized_shape) dims of each position, never the batch")


# --- RMSNorm ------------------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.task("RMSNorm")
@given(case=strategies.norm_cases())
def test_rmsnorm_matches_torch(student, case):
    """RMSNorm equals F.rms_norm over shapes, eps, affine and dtypes (half precision computed in float32)."""
    x = case.x()
    state = norm_state(case, "RMSNorm")
    init = {"d_model": case.features[0], "eps": case.eps, "elementwise_affine": case.affine}
    y = checks.check_tensor(run_norm(student, "RMSNorm", init, state, x).output, what="RMSNorm(x)",
                            shape=tuple(x.shape), dtype=x.dtype)
    checks.assert_close(y, expected_rmsnorm(case, x, state), tolerances.norm(case.dtype), what="RMSNorm(x)",
                        hint="x * rsqrt(mean(x^2) + eps) * weight: no mean subtracted, no bias")


@pytest.mark.points(1)
@pytest.mark.task("RMSNorm")
@given(case=strategies.norm_cases(dtypes_=(torch.float64,)), a=st.sampled_from((0.01, 0.5, 7.0, 1000.0)))
def test_rmsnorm_invariant_to_positive_scaling(student, case, a):
    """RMSNorm(a * x) == RMSNorm(x) for a > 0, and its root mean square is 1 (eps negligible, no weight)."""
    x = case.x()
    init = {"d_model": case.features[0], "eps": 1e-30, "elementwise_affine": False}
    result = student.module("RMSNorm", init, dtype=torch.float64,
                            calls=[{"fn": "self.forward", "args": [x]}, {"fn": "self.forward", "args": [a * x]}])
    plain, scaled = (checks.check_tensor(o, what="RMSNorm(x)", shape=tuple(x.shape)) for o in result.outputs)
    checks.assert_close(scaled, plain, tolerances.norm(torch.float64), what=f"RMSNorm({a:g} * x) vs RMSNorm(x)")
    rms = plain.pow(2).mean(dim=-1).sqrt()
    checks.assert_close(rms, torch.ones_like(rms), tolerances.norm(torch.float64), what="root mean square of RMSNorm(x)",
                        hint="divide by sqrt(mean(x^2)), not by a standard deviation around the mean")


# --- both: half precision, constant rows, gradients ---------------------------------------------

NORMS = [pytest.param("LayerNorm", marks=pytest.mark.task("LayerNorm"), id="LayerNorm"),
         pytest.param("RMSNorm", marks=pytest.mark.task("RMSNorm"), id="RMSNorm")]


def plain_init(kind: str, width: int) -> dict:
    return {"normalized_shape": width} if kind == "LayerNorm" else {"d_model": width}


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", NORMS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@given(seed=strategies.seeds(), scale=st.sampled_from((300.0, 1000.0, 3e4)))
def test_half_precision_large_inputs(student, kind, dtype, seed, scale):
    """Half-precision rows with |x| up to 3e4 (whose squares overflow float16) normalize correctly, in x's dtype."""
    x = randn((3, 16), seed=seed, dtype=torch.float64, scale=scale).clamp(-6e4, 6e4).to(dtype)
    y = checks.check_tensor(run_norm(student, kind, plain_init(kind, 16), {}, x).output, what=f"{kind}(x)",
                            shape=(3, 16), dtype=dtype)
    checks.assert_finite(y, what=f"{kind}(x) for {str(dtype).removeprefix('torch.')} x of size {scale:g}")
    expected = (F.layer_norm(x.double(), (16,), eps=1e-5) if kind == "LayerNorm" else
                F.rms_norm(x.double(), (16,), eps=1e-6))
    tol = tolerances.norm(dtype)
    hint = ""
    if not torch.allclose(y.double(), expected, rtol=tol.rtol, atol=tol.atol):
        # Name the half-precision path only when the same values in float32 come out right.
        wide = run_norm(student, kind, plain_init(kind, 16), {}, x.float()).output
        wide = checks.check_tensor(wide, what=f"{kind}(x.float())", shape=(3, 16))
        f32 = tolerances.norm(torch.float32)
        if torch.allclose(wide.double(), expected, rtol=f32.rtol, atol=f32.atol):
            hint = ("the same values in float32 come out right: compute the statistics in float32 (x.float()) and "
                    "return in x's dtype")
    checks.assert_close(y, expected, tol, what=f"{kind}(x) in {str(dtype).removeprefix('torch.')}", hint=hint)


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", NORMS)
@given(value=st.sampled_from((0.0, 1.0, -250.0, 1e4)), width=st.integers(1, 16))
def test_constant_rows_stay_finite(student, kind, value, width):
    """A row whose entries are all equal (variance 0), or all 0, gives a finite output (eps keeps the root positive)."""
    x = torch.full((2, width), value)
    y = checks.check_tensor(run_norm(student, kind, plain_init(kind, width), {}, x).output, what=f"{kind}(x)",
                            shape=(2, width))
    checks.assert_finite(y, what=f"{kind} of rows all equal to {value:g}")


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", NORMS)
@given(case=strategies.norm_cases(dtypes_=(torch.float64,)))
def test_gradients_pass_a_numerical_check(student, kind, case):
    """Your autograd gradient (input and weight) matches central differences of your own forward, and the true gradient."""
    x = randn((2, case.features[0]), seed=case.seed, dtype=torch.float64, scale=case.scale) + case.offset
    init = plain_init(kind, case.features[0]) | {"eps": case.eps}
    upstream = randn(tuple(x.shape), seed=case.seed + 1, dtype=torch.float64)
    h = 1e-6 * max(1.0, float(x.abs().max()))
    bumps = []
    for i in range(x.numel()):
        for sign in (1.0, -1.0):
            moved = x.clone()
            moved.view(-1)[i] += sign * h
            bumps.append({"fn": "self.forward", "args": [moved]})
    calls = [{"fn": "self.forward", "args": [x]}, *bumps]
    result = student.module(kind, init, dtype=torch.float64, calls=calls, upstream=upstream, output=())
    outputs = [checks.check_tensor(o, what=f"{kind}(x)", shape=tuple(x.shape)) for o in result.outputs[1:]]
    numeric = torch.tensor([((outputs[2 * i] - outputs[2 * i + 1]) * upstream).sum().item() / (2 * h)
                            for i in range(x.numel())], dtype=torch.float64).reshape(x.shape)
    analytic = result.input_grads.get("0")
    if analytic is None:
        checks.fail(f"{kind}: no gradient reached x; build the output from differentiable torch operations")
    # Central differences are exact to O(h^2) with rounding eps / h: 1e-5 relative is their accuracy here.
    finite_differences = tolerances.Tolerance(rtol=1e-5, atol=1e-5 * float(upstream.abs().sum()),
                                              reason="central differences with h = 1e-6 * max|x|")
    checks.assert_close(analytic, numeric, finite_differences, what=f"d <upstream, {kind}(x)> / dx, autograd vs "
                        "central differences of your forward", hint="a non-differentiable step (.item(), a Python "
                        "float, torch.no_grad) in forward breaks the gradient")
    leaf = x.clone().requires_grad_(True)
    reference = (F.layer_norm(leaf, (case.features[0],), eps=case.eps) if kind == "LayerNorm" else
                 F.rms_norm(leaf, (case.features[0],), eps=case.eps))
    (expected,) = torch.autograd.grad(reference, leaf, upstream)
    checks.assert_close(analytic, expected, tolerances.norm_grad(torch.float64), what=f"d <upstream, {kind}(x)> / dx")


def affine_leaves(state: dict) -> dict[str, torch.Tensor]:
    """The affine parameters of `state` as float64 leaves, by their state_dict names."""
    return {name: state[name].double().clone().requires_grad_(True) for name in ("weight", "bias") if name in state}


GRAD_SCALE_TEXT = "max(1, max|x| max|g| / std**2 over each normalized group)"


def grad_scale(x: torch.Tensor, upstream: torch.Tensor, dims: tuple[int, ...], eps: float, *,
               centered: bool = True) -> torch.Tensor:
    """How much a norm's input gradient amplifies rounding, per normalized group (broadcast to x).

    x - mean(x) rounds by about eps64 * max|x| wherever it is computed; y = (x - mean) / std
    carries that error over std, and dx = (g - mean(g) - y * mean(g * y)) / std once more, so two
    correct float64 implementations differ by about eps64 * max|x| * max|g| / std**2: tens at
    offset 0, hundreds at 30 spreads from 0, and far more where a group of a few values draws a
    std far below its offset (two nearly equal values). A gradient that skips the statistics is
    off by about max|g| / std: with std >= sqrt(eps) and |x| <= 1e3 here, over 1e5 times the allowed error.
    RMSNorm (`centered=False`) subtracts no mean: its std is the root mean square.
    """
    second = x.var(dim=dims, unbiased=False, keepdim=True) if centered else x.pow(2).mean(dim=dims, keepdim=True)
    std = (second + eps).sqrt()
    conditioning = x.abs().amax(dim=dims, keepdim=True) * upstream.abs().amax(dim=dims, keepdim=True) / std ** 2
    return conditioning.clamp_min(1.0).expand_as(x)


@pytest.mark.points(1)
@pytest.mark.parametrize("kind", NORMS)
@given(case=strategies.norm_cases(dtypes_=(torch.float64,), max_trailing=2))
def test_gradients_match_torch_for_input_and_parameters(student, kind, case):
    """d loss / d x, d loss / d weight and d loss / d bias equal F.layer_norm's (F.rms_norm's) in float64."""
    case = case if kind == "LayerNorm" else replace(case, features=case.features[:1], bias=False)
    x = case.x()
    state = norm_state(case, kind)
    init = layernorm_init(case) if kind == "LayerNorm" else {"d_model": case.features[0], "eps": case.eps,
                                                             "elementwise_affine": case.affine}
    upstream = randn(tuple(x.shape), seed=case.seed + 3, dtype=torch.float64)
    result = student.module(kind, init, state_dict={k: v.double() for k, v in state.items()} or None,
                            dtype=torch.float64, calls=[{"fn": "self.forward", "args": [x]}], upstream=upstream,
                            output=())
    leaf = x.clone().requires_grad_(True)
    params = affine_leaves(state)
    if kind == "LayerNorm":
        y = F.layer_norm(leaf, case.features, params.get("weight"), params.get("bias"), case.eps)
    else:
        y = F.rms_norm(leaf, case.features, params.get("weight"), case.eps)
    expected = torch.autograd.grad(y, [leaf, *params.values()], upstream)
    got = result.input_grads.get("0")
    if got is None:
        checks.fail(f"{kind}: no gradient reached x; build the output from differentiable torch operations")
    # Name the statistics only when the forward pass itself is right: then the gradient alone is wrong.
    out = checks.check_tensor(result.output, what=f"{kind}(x)", shape=tuple(x.shape))
    forward_right = torch.allclose(out, y.detach(), rtol=tolerances.norm(torch.float64).rtol,
                                   atol=tolerances.norm(torch.float64).atol)
    dims = tuple(range(-len(case.features), 0))
    checks.assert_close(got, expected[0], tolerances.norm_grad(torch.float64), what=f"d loss / d x through {kind}",
                        scale=grad_scale(x, upstream, dims, case.eps, centered=kind == "LayerNorm"),
                        scale_text=GRAD_SCALE_TEXT,
                        hint="your output is right but not its gradient: each row's statistics are functions of x, "
                        "so the gradient flows through them too (no .detach() or torch.no_grad() on them)"
                        if forward_right else "")
    for name, grad in zip(params, expected[1:]):
        got = result.param_grads.get(name)
        if got is None:
            checks.fail(f"{kind}: no gradient for {name}; is it used in forward?")
        checks.assert_close(got, grad, tolerances.norm_grad(torch.float64), what=f"d loss / d {name} of {kind}")


# --- BatchNorm ----------------------------------------------------------------------------------


def channels_first(x: torch.Tensor) -> torch.Tensor:
    """(..., C) -> (N, C) for F.batch_norm, which wants the channel second."""
    return x.reshape(-1, x.shape[-1])


@pytest.mark.points(2)
@pytest.mark.task("BatchNorm")
@given(case=strategies.norm_cases(dtypes_=(torch.float32, torch.float64), min_count=2),
       steps=st.integers(1, 4), momentum=st.sampled_from((0.1, 0.01, 0.5)))
def test_batchnorm_training_matches_torch(student, case, steps, momentum):
    """In training, each step's output and the running statistics after it equal nn.BatchNorm1d's (channels last)."""
    channels = case.features[0]
    xs = [randn((*case.lead, channels), seed=case.seed + k, dtype=case.dtype, scale=case.scale) + case.offset
          for k in range(steps)]
    init = {"num_features": channels, "eps": case.eps, "momentum": momentum}
    result = student.module("BatchNorm", init, dtype=case.dtype, train=True,
                            calls=[{"fn": "self.forward", "args": [x]} for x in xs],
                            attrs=("self.running_mean", "self.running_var"))
    mean, var = torch.zeros(channels, dtype=torch.float64), torch.ones(channels, dtype=torch.float64)
    for k, (x, out) in enumerate(zip(xs, result.outputs)):
        expected = F.batch_norm(channels_first(x.double()), mean, var, torch.ones(channels, dtype=torch.float64),
                                torch.zeros(channels, dtype=torch.float64), training=True, momentum=momentum,
                                eps=case.eps).reshape(x.shape)  # updates mean and var in place
        checks.assert_close(out, expected, tolerances.norm(case.dtype), what=f"output of training step {k + 1}",
                            hint="normalize with the batch's mean and biased variance over every dim but the last")
    checks.assert_close(result.attrs["self.running_mean"], mean, tolerances.norm(case.dtype),
                        what=f"running_mean after {steps} steps (momentum {momentum})",
                        hint="running = (1 - momentum) * running + momentum * batch_mean")
    checks.assert_close(result.attrs["self.running_var"], var, tolerances.norm(case.dtype),
                        what=f"running_var after {steps} steps (momentum {momentum})",
                        hint="the running variance takes the unbiased batch variance (divide by n - 1)")


@pytest.mark.points(1)
@pytest.mark.task("BatchNorm")
@given(case=strategies.norm_cases(dtypes_=(torch.float64,), min_count=2))
def test_batchnorm_training_gradients_match_torch(student, case):
    """In training mode, d loss / d x, d weight and d bias equal nn.BatchNorm1d's: the gradient flows through the
    batch's mean and variance too (float64)."""
    channels = case.features[0]
    x = randn((*case.lead, channels), seed=case.seed, dtype=torch.float64, scale=case.scale) + case.offset
    params = case.params()
    state = {"weight": params["weight"][:channels].double(), "bias": params["bias"][:channels].double(),
             "running_mean": torch.zeros(channels, dtype=torch.float64),
             "running_var": torch.ones(channels, dtype=torch.float64)}
    upstream = randn(tuple(x.shape), seed=case.seed + 3, dtype=torch.float64)
    result = student.module("BatchNorm", {"num_features": channels, "eps": case.eps}, state_dict=state,
                            dtype=torch.float64, train=True, calls=[{"fn": "self.forward", "args": [x]}],
                            upstream=upstream, output=())
    leaf = x.clone().requires_grad_(True)
    weight = state["weight"].clone().requires_grad_(True)
    bias = state["bias"].clone().requires_grad_(True)
    y = F.batch_norm(channels_first(leaf), None, None, weight, bias, training=True, eps=case.eps).reshape(x.shape)
    expected = torch.autograd.grad(y, [leaf, weight, bias], upstream)
    tol = tolerances.norm_grad(torch.float64)
    got = result.input_grads.get("0")
    if got is None:
        checks.fail("BatchNorm in training: no gradient reached x; build the output from differentiable torch "
                    "operations")
    # Name the statistics only when the forward pass itself is right: then the gradient alone is wrong.
    out = checks.check_tensor(result.output, what="BatchNorm(x) in training mode", shape=tuple(x.shape))
    forward_right = torch.allclose(out, y.detach(), rtol=tolerances.norm(torch.float64).rtol,
                                   atol=tolerances.norm(torch.float64).atol)
    hint = ("your output is right but not its gradient: the batch mean and variance are functions of x, so the "
            "gradient flows through them too (no .detach() or torch.no_grad() on them)" if forward_right else "")
    checks.assert_close(got, expected[0], tol, what="d loss / d x through BatchNorm in training mode", hint=hint,
                        scale=grad_scale(x, upstream, tuple(range(x.dim() - 1)), case.eps),
                        scale_text=GRAD_SCALE_TEXT)
    for name, grad in zip(("weight", "bias"), expected[1:]):
        got = result.param_grads.get(name)
        if got is None:
            checks.fail(f"BatchNorm: no gradient for {name}; is it used in forward?")
        checks.assert_close(got, grad, tol, what=f"d loss / d {name} of BatchNorm in training mode")


@pytest.mark.points(1)
@pytest.mark.task("BatchNorm")
@given(case=strategies.norm_cases(dtypes_=(torch.float64,), min_count=2))
def test_batchnorm_eval_uses_running_statistics(student, case):
    """After two training steps, eval mode normalizes with the running statistics and leaves them unchanged."""
    channels = case.features[0]
    xs = [randn((*case.lead, channels), seed=case.seed + k, dtype=torch.float64, scale=case.scale) + case.offset
          for k in range(3)]
    torch.manual_seed(0)
    oracle = torch.nn.BatchNorm1d(channels, eps=case.eps).double()
    for x in xs[:2]:
        oracle(channels_first(x))
    oracle.eval()
    expected = oracle(channels_first(xs[2])).reshape(xs[2].shape)
    calls = [{"fn": "self.forward", "args": [x]} for x in xs[:2]]
    calls += [{"fn": "self.eval", "discard": True}, {"fn": "self.forward", "args": [xs[2]]}]
    result = student.module("BatchNorm", {"num_features": channels, "eps": case.eps}, dtype=torch.float64, train=True,
                            calls=calls, attrs=("self.running_mean",))
    checks.assert_close(result.outputs[3], expected.detach(), tolerances.norm(torch.float64), what="output in eval mode",
                        hint="eval mode uses running_mean and running_var, not the batch's statistics")
    checks.assert_close(result.attrs["self.running_mean"], oracle.running_mean, tolerances.norm(torch.float64),
                        what="running_mean after an eval-mode call", hint="eval mode never updates the statistics")


@pytest.mark.points(1)
@pytest.mark.task("BatchNorm")
@given(channels=st.integers(1, 8), lead=st.sampled_from(((1,), (1, 1))))
def test_batchnorm_batch_of_one(student, channels, lead):
    """One value per channel: ValueError in training (no variance to take); a finite output in eval mode."""
    x = torch.randn(*lead, channels, generator=strategies.generator(channels))
    init = {"num_features": channels}
    checks.expect_value_error(
        lambda: student.module("BatchNorm", init, train=True, calls=[{"fn": "self.forward", "args": [x]}]),
        what=f"BatchNorm({channels}) in training on an input of shape {tuple(x.shape)}")
    result = student.module("BatchNorm", init, train=False, calls=[{"fn": "self.forward", "args": [x]}])
    checks.assert_finite(checks.check_tensor(result.output, what="BatchNorm(x) in eval mode", shape=tuple(x.shape)),
                         what="BatchNorm(x) in eval mode on a batch of one")


# --- ResidualBlock ------------------------------------------------------------------------------


def linear_object(width: int) -> dict:
    return {"linear": {"cls": "Linear", "module": "torch.nn", "init": {"in_features": width, "out_features": width}}}


def block_state(width: int, seed: int, norm: str) -> dict[str, torch.Tensor]:
    state = {"sublayer.weight": randn((width, width), seed=seed, scale=0.4, dtype=torch.float64),
             "sublayer.bias": randn((width,), seed=seed + 1, dtype=torch.float64),
             "norm.weight": randn((width,), seed=seed + 2, scale=0.3, dtype=torch.float64) + 1}
    if norm == "layernorm":
        state["norm.bias"] = randn((width,), seed=seed + 3, scale=0.3, dtype=torch.float64)
    return state


def expected_block(x: torch.Tensor, state: dict, norm: str, prenorm: bool) -> torch.Tensor:
    def normed(t):
        if norm == "layernorm":
            return F.layer_norm(t, t.shape[-1:], state["norm.weight"], state["norm.bias"], 1e-5)
        return F.rms_norm(t, t.shape[-1:], state["norm.weight"], 1e-6)

    def sub(t):
        return F.linear(t, state["sublayer.weight"], state["sublayer.bias"])

    return x + sub(normed(x)) if prenorm else normed(x + sub(x))


@pytest.mark.points(2)
@pytest.mark.task("ResidualBlock")
@given(width=st.integers(2, 12), norm=st.sampled_from(("layernorm", "rmsnorm")), prenorm=st.booleans(),
       seed=strategies.seeds(), lead=st.sampled_from(((3,), (2, 4))))
def test_residual_block_matches_formula(student, width, norm, prenorm, seed, lead):
    """Pre-norm is x + sublayer(norm(x)); post-norm is norm(x + sublayer(x)), with either norm."""
    x = randn((*lead, width), seed=seed + 9, dtype=torch.float64)
    state = block_state(width, seed, norm)
    init = {"sublayer": {"$obj": "linear"}, "d_model": width, "norm": norm, "prenorm": prenorm}
    result = student.module("ResidualBlock", init, objects=linear_object(width), state_dict=state, dtype=torch.float64,
                            calls=[{"fn": "self.forward", "args": [x]}])
    out = checks.check_tensor(result.output, what="block(x)", shape=tuple(x.shape))
    checks.assert_close(out, expected_block(x, state, norm, prenorm), tolerances.norm(torch.float64),
                        what=f"{'pre' if prenorm else 'post'}-norm block with {norm}",
                        hint="pre-norm: x + sublayer(norm(x)); post-norm: norm(x + sublayer(x))")


@pytest.mark.points(1)
@pytest.mark.task("ResidualBlock")
@given(width=st.integers(2, 12), prenorm=st.booleans(), seed=strategies.seeds())
def test_residual_block_wiring(student, width, prenorm, seed):
    """With a sublayer that outputs 0: pre-norm returns x itself (the residual skips the norm); post-norm returns norm(x)."""
    x = randn((3, width), seed=seed, dtype=torch.float64, scale=4.0) + 2.0
    state = {"sublayer.weight": torch.zeros(width, width, dtype=torch.float64),
             "sublayer.bias": torch.zeros(width, dtype=torch.float64),
             "norm.weight": torch.ones(width, dtype=torch.float64), "norm.bias": torch.zeros(width, dtype=torch.float64)}
    init = {"sublayer": {"$obj": "linear"}, "d_model": width, "prenorm": prenorm}
    result = student.module("ResidualBlock", init, objects=linear_object(width), state_dict=state, dtype=torch.float64,
                            calls=[{"fn": "self.forward", "args": [x]}])
    out = checks.check_tensor(result.output, what="block(x)", shape=tuple(x.shape))
    if prenorm:
        checks.assert_close(out, x, tolerances.norm(torch.float64), what="pre-norm block(x) with a zero sublayer",
                            hint="pre-norm adds the sublayer's output to x itself: the residual never passes a norm")
    else:
        checks.assert_close(out, F.layer_norm(x, (width,)), tolerances.norm(torch.float64),
                            what="post-norm block(x) with a zero sublayer",
                            hint="post-norm normalizes the sum x + sublayer(x)")


@pytest.mark.points(1)
@pytest.mark.task("ResidualBlock")
@given(width=st.integers(4, 12), prenorm=st.booleans(), seed=strategies.seeds())
def test_residual_block_dropout_only_in_training(student, width, prenorm, seed):
    """With dropout=0.5 the block equals the dropout-free formula in eval mode, and differs from it in training."""
    x = randn((4, width), seed=seed + 9, dtype=torch.float64)
    state = block_state(width, seed, "layernorm")
    init = {"sublayer": {"$obj": "linear"}, "d_model": width, "prenorm": prenorm, "dropout": 0.5}
    expected = expected_block(x, state, "layernorm", prenorm)

    def block(init: dict, train: bool) -> torch.Tensor:
        result = student.module("ResidualBlock", init, objects=linear_object(width), state_dict=state,
                                dtype=torch.float64, train=train, calls=[{"fn": "self.forward", "args": [x]}])
        return checks.check_tensor(result.output, what="block(x)", shape=tuple(x.shape))

    evaluated = block(init, False)
    tol = tolerances.norm(torch.float64)
    if not torch.allclose(evaluated, expected, rtol=tol.rtol, atol=tol.atol):
        # Blame dropout only when the same block without dropout is right.
        free = block(init | {"dropout": 0.0}, False)
        hint = "dropout acts only in training mode" if torch.allclose(free, expected, rtol=tol.rtol,
                                                                      atol=tol.atol) else ""
        checks.assert_close(evaluated, expected, tol, what="block(x) in eval mode, dropout=0.5", hint=hint)
    out = block(init, True)
    if torch.allclose(out, expected):
        checks.fail("in training mode with dropout=0.5 the block's output equals the dropout-free one; "
                    "apply dropout to the sublayer's output")


@pytest.mark.points(1)
@pytest.mark.task("ResidualBlock")
@given(width=st.integers(4, 12), prenorm=st.booleans(), seed=strategies.seeds(), p=st.sampled_from((0.25, 0.5)))
def test_residual_block_dropout_acts_on_the_sublayer_output(student, width, prenorm, seed, p):
    """In training mode, hooks on sublayer and norm show that only the sublayer's output is dropped: what is added
    to x is 0 or sublayer(...) / (1 - p) entry by entry, with a share p of zeros."""
    x = randn((6, 8, width), seed=seed + 9, dtype=torch.float64)
    state = block_state(width, seed, "layernorm")
    init = {"sublayer": {"$obj": "linear"}, "d_model": width, "prenorm": prenorm, "dropout": p}
    result = student.module("ResidualBlock", init, objects=linear_object(width), state_dict=state,
                            dtype=torch.float64, train=True, attrs=("seen",), calls=[
                                {"fn": "watch", "module": "$harness", "args": [{"$obj": "self"}, ["sublayer", "norm"]],
                                 "store": "seen"},
                                {"fn": "self.forward", "args": [x]}])
    seen = result.attrs["seen"]
    for name in ("sublayer", "norm"):
        if len(seen[name]) != 1:
            checks.fail(f"{name} ran {len(seen[name])} times in one forward pass; the block calls it once")
    branch = seen["sublayer"][0]["output"]
    if prenorm:  # x + dropout(sublayer(norm(x))): the output minus x is the dropped branch
        out = checks.check_tensor(result.outputs[1], what="block(x) in training mode", shape=tuple(x.shape))
        added = out - x
    else:  # norm(x + dropout(sublayer(x))): the norm's input minus x is the dropped branch
        if not seen["norm"][0]["args"]:
            checks.fail("norm was called without a positional input")
        added = seen["norm"][0]["args"][0] - x
    where = "x + dropout(sublayer(norm(x)))" if prenorm else "norm(x + dropout(sublayer(x)))"
    checks.assert_dropped_or_scaled(added, branch, p, tolerances.norm(torch.float64),
                                    what=f"what the {'pre' if prenorm else 'post'}-norm block adds to x in training "
                                         "mode",
                                    hint=f"{where}: dropout acts on the sublayer's output only, never on x or the sum")


@pytest.mark.points(1)
@pytest.mark.task("ResidualBlock")
@given(name=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10))
def test_residual_block_norm_names(student, name):
    """norm must be layernorm, rmsnorm or batchnorm; anything else raises ValueError."""
    init = {"sublayer": {"$obj": "linear"}, "d_model": 4, "norm": name}
    valid = name in ("layernorm", "rmsnorm", "batchnorm")
    checks.expect_value_error(lambda: student.module("ResidualBlock", init, objects=linear_object(4), calls=[]),
                              what=f"ResidualBlock(..., norm={name!r})", valid=valid)
