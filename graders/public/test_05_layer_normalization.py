"""Chapter 05 public tests: properties you can check yourself, and golden values.

These run without the reference solution. Golden values live in
`graders/snapshots/05_layer_normalization/` and are shown when a test fails. Your instructor's
hidden tests check much more (PyTorch's own norms over shapes, eps and dtypes including half
precision, invariances, gradients checked numerically, BatchNorm's running statistics over
several steps, and where the norm sits in a residual block).
"""

from __future__ import annotations

import pytest
import torch

from graders import checks, tolerances
from graders.strategies import randn

TASKS = ("LayerNorm", "RMSNorm", "BatchNorm", "ResidualBlock")
SECTIONS = {"LayerNorm": "layernorm", "RMSNorm": "rmsnorm", "BatchNorm": "batchnorm", "ResidualBlock": "residual"}


@pytest.mark.points(0)
@pytest.mark.task("static")
def test_no_banned_apis(static_scan, chapter):
    """The module parses and calls none of the chapter's banned APIs (F.layer_norm, nn.LayerNorm, ...)."""
    checks.static_clean(static_scan, chapter.module)


@pytest.mark.points(1)
@pytest.mark.task("LayerNorm")
def test_layernorm_parameters(student):
    """LayerNorm(6) has weight (6,) = ones and bias (6,) = zeros; elementwise_affine=False has none."""
    result = student.module("LayerNorm", {"normalized_shape": 6}, calls=[], state_dict_shapes=True,
                            attrs=("self.weight", "self.bias"))
    if result.state_dict_shapes != {"weight": [6], "bias": [6]}:
        checks.fail(f"state_dict shapes are {result.state_dict_shapes}, expected {{'weight': [6], 'bias': [6]}}")
    checks.assert_equal(result.attrs["self.weight"], torch.ones(6), what="initial weight", reveal=True)
    checks.assert_equal(result.attrs["self.bias"], torch.zeros(6), what="initial bias", reveal=True)
    plain = student.module("LayerNorm", {"normalized_shape": 6, "elementwise_affine": False}, calls=[],
                           state_dict_shapes=True)
    if plain.state_dict_shapes:
        checks.fail(f"LayerNorm(6, elementwise_affine=False) has parameters {plain.state_dict_shapes}")


@pytest.mark.points(1)
@pytest.mark.task("LayerNorm")
def test_layernorm_golden(student, snapshot):
    """LayerNorm(8) with fixed weight and bias on fixed x matches the golden output."""
    t = snapshot.inputs(x=randn((2, 3, 8), seed=1, scale=3.0), weight=randn((8,), seed=2) + 1, bias=randn((8,), seed=3))
    result = student.module("LayerNorm", {"normalized_shape": 8}, state_dict={"weight": t["weight"], "bias": t["bias"]},
                            calls=[{"fn": "self.forward", "args": [t["x"]]}])
    snapshot.assert_match({"out": result.output}, {torch.float32: tolerances.norm(torch.float32)})


@pytest.mark.points(1)
@pytest.mark.task("LayerNorm")
def test_layernorm_rows_have_zero_mean_unit_variance(student):
    """Without the affine part, each row of the output has mean 0 and (biased) variance 1."""
    x = randn((4, 16), seed=4, scale=5.0, dtype=torch.float64) + 2.0
    result = student.module("LayerNorm", {"normalized_shape": 16, "eps": 1e-12, "elementwise_affine": False},
                            dtype=torch.float64, calls=[{"fn": "self.forward", "args": [x]}])
    y = checks.check_tensor(result.output, what="LayerNorm(x)", shape=(4, 16))
    tol = tolerances.norm(torch.float64)
    checks.assert_close(y.mean(dim=-1), torch.zeros(4, dtype=torch.float64), tol, what="row means", reveal=True)
    checks.assert_close(y.var(dim=-1, unbiased=False), torch.ones(4, dtype=torch.float64), tol,
                        what="row variances (divide by n)", reveal=True)


@pytest.mark.points(1)
@pytest.mark.task("LayerNorm")
def test_layernorm_over_two_trailing_dims(student):
    """LayerNorm((2, 4)) takes one mean and variance over each whole (2, 4) slice, not one per row of 4."""
    x = randn((3, 2, 4), seed=12, scale=5.0, dtype=torch.float64) + torch.tensor([[0.0], [10.0]], dtype=torch.float64)
    result = student.module("LayerNorm", {"normalized_shape": (2, 4), "eps": 1e-12, "elementwise_affine": False},
                            dtype=torch.float64, calls=[{"fn": "self.forward", "args": [x]}])
    y = checks.check_tensor(result.output, what="LayerNorm((2, 4))(x)", shape=(3, 2, 4))
    mean = x.mean(dim=(-2, -1), keepdim=True)
    expected = (x - mean) / (x.var(dim=(-2, -1), unbiased=False, keepdim=True) + 1e-12).sqrt()
    checks.assert_close(y, expected, tolerances.norm(torch.float64), what="LayerNorm((2, 4))(x)", reveal=True,
                        hint="the statistics run over every dim of normalized_shape, not only the last")


@pytest.mark.points(1)
@pytest.mark.task("LayerNorm")
def test_layernorm_keeps_half_precision(student):
    """A float16 input comes back as float16, finite and right even when its squared deviations overflow float16."""
    x = torch.tensor([[1000.0, -1000.0, 500.0, 0.0]], dtype=torch.float16)
    result = student.module("LayerNorm", {"normalized_shape": 4}, calls=[{"fn": "self.forward", "args": [x]}])
    y = checks.check_tensor(result.output, what="LayerNorm(x) for float16 x", shape=(1, 4), dtype=torch.float16)
    h = x.float()
    expected = (h - h.mean()) / (h.var(unbiased=False) + 1e-5).sqrt()
    checks.assert_close(y, expected, tolerances.norm(torch.float16), what="LayerNorm(x) in float16", reveal=True,
                        hint="compute the statistics in float32 (x.float()), return in x's dtype")


@pytest.mark.points(1)
@pytest.mark.task("LayerNorm")
def test_layernorm_gradient_flows_through_the_statistics(student):
    """d <g, LayerNorm(x)> / dx is the formula's: (g - mean(g) - y * mean(g * y)) / std, mean and variance included."""
    x = randn((2, 6), seed=13, scale=2.0, dtype=torch.float64)
    g = randn((2, 6), seed=14, dtype=torch.float64)
    result = student.module("LayerNorm", {"normalized_shape": 6, "elementwise_affine": False}, dtype=torch.float64,
                            calls=[{"fn": "self.forward", "args": [x]}], upstream=g, output=())
    std = (x.var(dim=-1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    y = (x - x.mean(dim=-1, keepdim=True)) / std
    expected = (g - g.mean(dim=-1, keepdim=True) - y * (g * y).mean(dim=-1, keepdim=True)) / std
    checks.assert_close(result.input_grads.get("0"), expected, tolerances.norm_grad(torch.float64),
                        what="d <g, LayerNorm(x)> / dx", reveal=True,
                        hint="the mean and the variance depend on x: never detach them or compute them under no_grad")


@pytest.mark.points(1)
@pytest.mark.task("RMSNorm")
def test_rmsnorm_golden(student, snapshot):
    """RMSNorm(8) with a fixed weight on fixed x matches the golden output (no mean subtracted)."""
    t = snapshot.inputs(x=randn((2, 3, 8), seed=5, scale=3.0) + 1.0, weight=randn((8,), seed=6) + 1)
    result = student.module("RMSNorm", {"d_model": 8}, state_dict={"weight": t["weight"]},
                            calls=[{"fn": "self.forward", "args": [t["x"]]}])
    snapshot.assert_match({"out": result.output}, {torch.float32: tolerances.norm(torch.float32)})


@pytest.mark.points(1)
@pytest.mark.task("RMSNorm")
def test_rmsnorm_keeps_half_precision(student):
    """A float16 input comes back as float16, finite even at |x| = 1000 (its square overflows float16)."""
    x = torch.tensor([[1000.0, -1000.0, 500.0, 0.0]], dtype=torch.float16)
    result = student.module("RMSNorm", {"d_model": 4}, calls=[{"fn": "self.forward", "args": [x]}])
    y = checks.check_tensor(result.output, what="RMSNorm(x) for float16 x", shape=(1, 4), dtype=torch.float16)
    checks.assert_finite(y, what="RMSNorm(x) at |x| = 1000 in float16")
    expected = x.float() / x.float().pow(2).mean().sqrt()
    checks.assert_close(y, expected, tolerances.norm(torch.float16), what="RMSNorm(x) in float16", reveal=True,
                        hint="compute in float32 (x.float()), return in x's dtype")


@pytest.mark.points(1)
@pytest.mark.task("RMSNorm")
def test_rmsnorm_gradient_flows_through_the_root_mean_square(student):
    """d <g, RMSNorm(x)> / dx is (g - y * mean(g * y)) / rms(x): the root mean square depends on x too."""
    x = randn((2, 6), seed=17, scale=2.0, dtype=torch.float64)
    g = randn((2, 6), seed=18, dtype=torch.float64)
    result = student.module("RMSNorm", {"d_model": 6, "elementwise_affine": False}, dtype=torch.float64,
                            calls=[{"fn": "self.forward", "args": [x]}], upstream=g, output=())
    rms = (x.pow(2).mean(dim=-1, keepdim=True) + 1e-6).sqrt()
    y = x / rms
    expected = (g - y * (g * y).mean(dim=-1, keepdim=True)) / rms
    checks.assert_close(result.input_grads.get("0"), expected, tolerances.norm_grad(torch.float64),
                        what="d <g, RMSNorm(x)> / dx", reveal=True,
                        hint="never detach the root mean square or compute it under no_grad")


@pytest.mark.points(1)
@pytest.mark.task("RMSNorm")
def test_rmsnorm_eps_inside_the_root(student):
    """RMSNorm(4, eps=1) maps a row of ones to 1 / sqrt(1 + 1) = 0.7071: eps is added under the square root."""
    result = student.module("RMSNorm", {"d_model": 4, "eps": 1.0}, calls=[{"fn": "self.forward",
                                                                           "args": [torch.ones(1, 4)]}])
    y = checks.check_tensor(result.output, what="RMSNorm(4, eps=1)(ones)", shape=(1, 4))
    checks.assert_close(y, torch.full((1, 4), 0.5 ** 0.5), tolerances.norm(torch.float32),
                        what="RMSNorm(4, eps=1) on a row of ones", reveal=True,
                        hint="x * rsqrt(mean(x**2) + eps), not x / (sqrt(mean(x**2)) + eps)")


@pytest.mark.points(1)
@pytest.mark.parametrize("norm", [pytest.param(n, marks=pytest.mark.task(n)) for n in ("LayerNorm", "RMSNorm")])
def test_norm_accepts_any_leading_dims(student, norm):
    """forward maps (..., D) to (..., D): inputs (D,), (T, D) and (1, B, T, D) give the same rows as (B, T, D)."""
    x = randn((2, 3, 6), seed=17, scale=2.0)
    init = {"normalized_shape": 6} if norm == "LayerNorm" else {"d_model": 6}
    parts = {"(2, 3, 6)": x, "(6,)": x[1, 2], "(3, 6)": x[1], "(1, 2, 3, 6)": x[None]}
    result = student.module(norm, init, calls=[{"fn": "self.forward", "args": [part]} for part in parts.values()])
    batched = checks.check_tensor(result.outputs[0], what=f"{norm}(x) for x of shape (2, 3, 6)", shape=(2, 3, 6))
    for (shape, part), out, expected in zip(list(parts.items())[1:], result.outputs[1:],
                                            (batched[1, 2], batched[1], batched[None])):
        checks.assert_close(out, expected, tolerances.norm(torch.float32), reveal=True,
                            what=f"{norm}(x) for x of shape {shape} against the same rows of shape (2, 3, 6)",
                            hint="normalize over the last dim only, whatever comes before it: never unpack x.shape")


@pytest.mark.points(1)
@pytest.mark.task("BatchNorm")
def test_batchnorm_accepts_any_leading_dims(student):
    """In training, BatchNorm(4) on (B, T, 4), on its (B * T, 4) rows and on (1, B, T, 4) gives the same values: the
    statistics run over every dim but the last."""
    x = randn((3, 5, 4), seed=18, scale=2.0) + 1.0
    parts = {"(3, 5, 4)": x, "(15, 4)": x.reshape(15, 4), "(1, 3, 5, 4)": x[None]}
    outputs = []
    for shape, part in parts.items():
        result = student.module("BatchNorm", {"num_features": 4}, train=True,
                                calls=[{"fn": "self.forward", "args": [part]}])
        outputs.append(checks.check_tensor(result.output, what=f"BatchNorm(4)(x) for x of shape {shape}",
                                           shape=tuple(part.shape)))
    for shape, out in zip(list(parts)[1:], outputs[1:]):
        checks.assert_close(out.reshape(3, 5, 4), outputs[0], tolerances.norm(torch.float32), reveal=True,
                            what=f"BatchNorm(4)(x) in training for x of shape {shape} against shape (3, 5, 4)",
                            hint="mean and variance over every dim but the last (x.reshape(-1, C)), whatever the "
                                 "number of leading dims")


@pytest.mark.points(1)
@pytest.mark.task("BatchNorm")
def test_batchnorm_training_step_golden(student, snapshot):
    """One training step of BatchNorm(4) on (3, 5, 4): the output and the updated running statistics."""
    x = snapshot.inputs(x=randn((3, 5, 4), seed=7, scale=2.0) + 1.0)["x"]
    result = student.module("BatchNorm", {"num_features": 4}, train=True, calls=[{"fn": "self.forward", "args": [x]}],
                            attrs=("self.running_mean", "self.running_var"))
    snapshot.assert_match({"out": result.output, "running_mean": result.attrs["self.running_mean"],
                           "running_var": result.attrs["self.running_var"]},
                          {torch.float32: tolerances.norm(torch.float32)},
                          hint="running = (1 - momentum) * running + momentum * batch, with the unbiased batch variance")


@pytest.mark.points(1)
@pytest.mark.task("BatchNorm")
def test_fresh_batchnorm_in_eval_mode_uses_running_stats(student):
    """A fresh BatchNorm(4) in eval mode uses its running statistics (mean 0, variance 1): x / sqrt(1 + eps)."""
    x = randn((3, 5, 4), seed=8, scale=2.0) + 1.0
    result = student.module("BatchNorm", {"num_features": 4}, calls=[{"fn": "self.forward", "args": [x]}])
    y = checks.check_tensor(result.output, what="BatchNorm(4) in eval mode", shape=(3, 5, 4))
    checks.assert_close(y, x / (1 + 1e-5) ** 0.5, tolerances.norm(torch.float32), what="BatchNorm(4) in eval mode",
                        reveal=True, hint="in eval mode normalize with running_mean and running_var, not the batch's")


@pytest.mark.points(1)
@pytest.mark.task("BatchNorm")
def test_batchnorm_gradient_flows_through_the_batch_statistics(student):
    """In training, d <g, BatchNorm(x)> / dx is (g - mean(g) - y * mean(g * y)) / std over the batch dims."""
    x = randn((3, 4, 2), seed=15, scale=2.0, dtype=torch.float64)
    g = randn((3, 4, 2), seed=16, dtype=torch.float64)
    result = student.module("BatchNorm", {"num_features": 2}, dtype=torch.float64, train=True,
                            calls=[{"fn": "self.forward", "args": [x]}], upstream=g, output=())
    dims = (0, 1)
    std = (x.var(dim=dims, unbiased=False, keepdim=True) + 1e-5).sqrt()
    y = (x - x.mean(dim=dims, keepdim=True)) / std
    expected = (g - g.mean(dim=dims, keepdim=True) - y * (g * y).mean(dim=dims, keepdim=True)) / std
    checks.assert_close(result.input_grads.get("0"), expected, tolerances.norm_grad(torch.float64),
                        what="d <g, BatchNorm(x)> / dx in training mode", reveal=True,
                        hint="the batch mean and variance depend on x: never detach them in training")


def residual_block(student, init: dict, calls: list[dict], **kwargs):
    """ResidualBlock around an nn.Linear(6, 6) named `linear`, built with `init` (sublayer and d_model added)."""
    objects = {"linear": {"cls": "Linear", "module": "torch.nn", "init": {"in_features": 6, "out_features": 6}}}
    return student.module("ResidualBlock", {"sublayer": {"$obj": "linear"}, "d_model": 6} | init, objects=objects,
                          calls=calls, **kwargs)


@pytest.mark.points(1)
@pytest.mark.task("ResidualBlock")
@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm", "batchnorm"])
def test_residual_block_builds_the_named_norm(student, norm):
    """norm="layernorm" has norm.weight and norm.bias; "rmsnorm" norm.weight only; "batchnorm" also running stats."""
    expected = {"layernorm": {"norm.weight": [6], "norm.bias": [6]}, "rmsnorm": {"norm.weight": [6]},
                "batchnorm": {"norm.weight": [6], "norm.bias": [6], "norm.running_mean": [6], "norm.running_var": [6]}}
    got = residual_block(student, {"norm": norm}, calls=[], state_dict_shapes=True).state_dict_shapes
    got = {k: v for k, v in got.items() if k.startswith("norm.")}
    if got != expected[norm]:
        checks.fail(f'ResidualBlock(..., norm="{norm}") has norm entries {got}, expected {expected[norm]}')


@pytest.mark.points(1)
@pytest.mark.task("ResidualBlock")
def test_residual_block_dropout_acts_in_training_mode_only(student):
    """ResidualBlock(dropout=0.5) in eval mode equals the dropout-free block; in training mode it does not."""
    state = {"sublayer.weight": randn((6, 6), seed=10, scale=0.4), "sublayer.bias": randn((6,), seed=11),
             "norm.weight": torch.ones(6), "norm.bias": torch.zeros(6)}
    call = {"fn": "self.forward", "args": [randn((2, 3, 6), seed=9)]}

    def forward(dropout: float, train: bool = False) -> torch.Tensor:
        out = residual_block(student, {"dropout": dropout}, calls=[call], state_dict=state, train=train).output
        return checks.check_tensor(out, what=f"ResidualBlock(dropout={dropout})", shape=(2, 3, 6))

    free = forward(0.0)
    checks.assert_close(forward(0.5), free, tolerances.norm(torch.float32), what="ResidualBlock(dropout=0.5) in eval "
                        "mode", reveal=True,
                        hint="dropout acts only in training mode (nn.Dropout follows self.training)")
    if torch.allclose(forward(0.5, train=True), free):
        checks.fail("ResidualBlock(dropout=0.5) in training mode gives the dropout-free output: apply the dropout "
                    "to the sublayer's output")


@pytest.mark.points(1)
@pytest.mark.task("ResidualBlock")
def test_residual_block_drops_the_sublayer_output(student):
    """Pre-norm, dropout=0.5, training, a sublayer that outputs ones: out - x is 0 or 2."""
    x = randn((4, 8, 6), seed=19)
    state = {"sublayer.weight": torch.zeros(6, 6), "sublayer.bias": torch.ones(6), "norm.weight": torch.ones(6),
             "norm.bias": torch.zeros(6)}
    out = residual_block(student, {"dropout": 0.5}, calls=[{"fn": "self.forward", "args": [x]}], state_dict=state,
                         train=True).output
    update = checks.check_tensor(out, what="ResidualBlock(dropout=0.5) in training mode", shape=(4, 8, 6)) - x
    dropped, kept = update.abs() < 1e-5, (update - 2).abs() < 1e-5
    if not (dropped | kept).all() or dropped.all() or kept.all():
        checks.fail("with a sublayer that outputs ones, out - x should be 0 (dropped) or 2 (kept, scaled by "
                    "1 / (1 - p)) at every entry: x + dropout(sublayer(norm(x))), the dropout on the sublayer's output")


@pytest.mark.points(1)
@pytest.mark.task("ResidualBlock")
def test_post_norm_residual_block_never_drops_the_stream(student):
    """Post-norm, dropout=0.5, training, a sublayer that outputs 0: the output is norm(x) (only the sublayer drops)."""
    x = randn((4, 8, 6), seed=20, dtype=torch.float64)
    state = {"sublayer.weight": torch.zeros(6, 6), "sublayer.bias": torch.zeros(6), "norm.weight": torch.ones(6),
             "norm.bias": torch.zeros(6)}
    out = residual_block(student, {"dropout": 0.5, "prenorm": False}, calls=[{"fn": "self.forward", "args": [x]}],
                         state_dict=state, train=True, dtype=torch.float64).output
    expected = (x - x.mean(dim=-1, keepdim=True)) / (x.var(dim=-1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    checks.assert_close(checks.check_tensor(out, what="post-norm ResidualBlock in training mode", shape=(4, 8, 6)),
                        expected, tolerances.norm(torch.float64), what="post-norm output with a zero sublayer",
                        reveal=True,
                        hint="norm(x + dropout(sublayer(x))): the dropout acts on the sublayer's output, never on x")


@pytest.mark.points(1)
@pytest.mark.task("ResidualBlock")
@pytest.mark.parametrize("prenorm", [True, False])
def test_residual_block_golden(student, snapshot, prenorm):
    """ResidualBlock(Linear(6, 6), 6, prenorm=...) with fixed weights matches the golden output."""
    t = snapshot.inputs(x=randn((2, 3, 6), seed=9), w=randn((6, 6), seed=10, scale=0.4), b=randn((6,), seed=11))
    result = student.module("ResidualBlock", {"sublayer": {"$obj": "linear"}, "d_model": 6, "prenorm": prenorm},
                            objects={"linear": {"cls": "Linear", "module": "torch.nn", "init": {"in_features": 6,
                                                                                             "out_features": 6}}},
                            state_dict={"sublayer.weight": t["w"], "sublayer.bias": t["b"], "norm.weight": torch.ones(6),
                                        "norm.bias": torch.zeros(6)},
                            calls=[{"fn": "self.forward", "args": [t["x"]]}])
    snapshot.assert_match({"out": result.output}, {torch.float32: tolerances.norm(torch.float32)},
                          hint="pre-norm: x + sublayer(norm(x)); post-norm: norm(x + sublayer(x))")


@pytest.mark.points(1)
@pytest.mark.task("ResidualBlock")
def test_residual_block_rejects_unknown_norm(student):
    """ResidualBlock(..., norm="groupnorm") raises ValueError."""
    objects = {"linear": {"cls": "Linear", "module": "torch.nn", "init": {"in_features": 4, "out_features": 4}}}
    checks.expect_value_error(
        lambda: student.module("ResidualBlock", {"sublayer": {"$obj": "linear"}, "d_model": 4, "norm": "groupnorm"},
                               objects=objects, calls=[]),
        what='ResidualBlock(Linear(4, 4), 4, norm="groupnorm")')


# --- the cheap promises: parameters and errors ---------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.task("LayerNorm")
def test_layernorm_bias_false_has_weight_only(student):
    """LayerNorm((2, 3), bias=False) has a weight of shape (2, 3) and no bias."""
    result = student.module("LayerNorm", {"normalized_shape": (2, 3), "bias": False}, calls=[], state_dict_shapes=True)
    if result.state_dict_shapes != {"weight": [2, 3]}:
        checks.fail(f"state_dict shapes are {result.state_dict_shapes}, expected {{'weight': [2, 3]}}")


@pytest.mark.points(1)
@pytest.mark.task("RMSNorm")
def test_rmsnorm_parameters(student):
    """RMSNorm(6) has a weight (6,) of ones and no bias; elementwise_affine=False has no parameter at all."""
    result = student.module("RMSNorm", {"d_model": 6}, calls=[], state_dict_shapes=True, attrs=("self.weight",))
    if result.state_dict_shapes != {"weight": [6]}:
        checks.fail(f"state_dict shapes are {result.state_dict_shapes}, expected {{'weight': [6]}}")
    checks.assert_equal(result.attrs["self.weight"], torch.ones(6), what="initial weight", reveal=True)
    plain = student.module("RMSNorm", {"d_model": 6, "elementwise_affine": False}, calls=[], state_dict_shapes=True)
    if plain.state_dict_shapes:
        checks.fail(f"RMSNorm(6, elementwise_affine=False) has parameters {plain.state_dict_shapes}")


@pytest.mark.points(1)
@pytest.mark.task("BatchNorm")
def test_batchnorm_keeps_half_precision(student):
    """A bfloat16 batch far from zero is normalized in float32 and comes back as bfloat16 (training mode)."""
    # Near 100, bfloat16 values are 0.5 apart: a mean rounded to bfloat16 is off by up to 0.25 spreads.
    x = (randn((4, 8, 3), seed=21, dtype=torch.float64) + 100.0).to(torch.bfloat16)
    result = student.module("BatchNorm", {"num_features": 3}, train=True, calls=[{"fn": "self.forward", "args": [x]}])
    y = checks.check_tensor(result.output, what="BatchNorm(x) for bfloat16 x", shape=(4, 8, 3), dtype=torch.bfloat16)
    h = x.double()
    expected = (h - h.mean(dim=(0, 1))) / (h.var(dim=(0, 1), unbiased=False) + 1e-5).sqrt()
    checks.assert_close(y, expected, tolerances.norm(torch.bfloat16), what="BatchNorm(x) in bfloat16", reveal=True,
                        hint="compute the statistics in float32 (x.float()), return in x's dtype")


@pytest.mark.points(1)
@pytest.mark.task("BatchNorm")
def test_batchnorm_running_stats_stay_out_of_the_graph(student):
    """After a training step on an x that requires grad, running_mean and running_var do not require grad."""
    x = randn((3, 5, 4), seed=22, scale=2.0) + 1.0
    result = student.module("BatchNorm", {"num_features": 4}, train=True, calls=[{"fn": "self.forward", "args": [x]}],
                            upstream=torch.ones(3, 5, 4), output=(),
                            attrs=("self.running_mean.requires_grad", "self.running_var.requires_grad"))
    tracked = [name for name in ("running_mean", "running_var") if result.attrs[f"self.{name}.requires_grad"]]
    if tracked:
        checks.fail(f"after a training step, {' and '.join(tracked)} require grad: each step's graph stays attached "
                    "to the buffers (memory grows, and backward through a later eval output fails); update them from "
                    "mean.detach() and var.detach()")


@pytest.mark.points(1)
@pytest.mark.task("BatchNorm")
def test_batchnorm_refuses_one_value_per_channel_in_training(student):
    """BatchNorm(4) in training mode on a (1, 4) input raises ValueError (no variance); in eval mode it runs."""
    call = [{"fn": "self.forward", "args": [torch.ones(1, 4)]}]
    checks.expect_value_error(lambda: student.module("BatchNorm", {"num_features": 4}, calls=call, train=True),
                              what="BatchNorm(4) in training mode on one value per channel")
    checks.expect_value_error(lambda: student.module("BatchNorm", {"num_features": 4}, calls=call),
                              what="BatchNorm(4) in eval mode on one value per channel", valid=True)
