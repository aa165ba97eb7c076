"""Named tolerances, per dtype, each with its reason. Suites never write a bare number.

A comparison passes when, element by element, |actual - expected| <= atol + rtol * |expected|
(`torch.isclose`'s rule). Expected values come from the reference computed in float64 from
the same inputs, so the budget below is the student's own float32 rounding, not ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float
    reason: str


def _eps(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps


# Attention on the course's shapes is a few dot products of length <= 64 and a softmax over
# <= 64 keys; each output element accumulates O(sqrt(n)) rounding errors of size eps, and a
# student may sum in another order (einsum vs matmul vs a loop). 64 eps covers that with room;
# a real bug (wrong scale, wrong axis, wrong head order) is off by >= 1e-2.
ATTENTION = {
    torch.float32: Tolerance(rtol=64 * _eps(torch.float32), atol=64 * _eps(torch.float32),
                             reason="float32 rounding of length<=64 dot products and a softmax"),
    torch.float64: Tolerance(rtol=64 * _eps(torch.float64), atol=64 * _eps(torch.float64),
                             reason="float64 rounding of the same sums"),
}

# Gradients go through one more matmul and the softmax Jacobian: twice the forward budget.
ATTENTION_GRAD = {
    dtype: Tolerance(rtol=2 * tol.rtol, atol=2 * tol.atol, reason="one more product than the forward pass")
    for dtype, tol in ATTENTION.items()
}

# A layer (four projections of width <= 64 around attention) in float32.
LAYER = {
    torch.float32: Tolerance(rtol=256 * _eps(torch.float32), atol=256 * _eps(torch.float32),
                             reason="four length<=64 projections around attention, summed in any order"),
    torch.float64: Tolerance(rtol=256 * _eps(torch.float64), atol=256 * _eps(torch.float64),
                             reason="the same in float64"),
}

# Comparisons with PyTorch's own kernels, which use fused or blocked algorithms.
TORCH_KERNEL = {
    torch.float32: Tolerance(rtol=1e-5, atol=1e-5, reason="PyTorch's fused kernels sum in blocks, in float32"),
    torch.float64: Tolerance(rtol=1e-10, atol=1e-10, reason="PyTorch's fused kernels in float64"),
}

# Probabilities that must sum to one: a sum of <= 64 terms in [0, 1].
SUM_TO_ONE = {
    torch.float32: Tolerance(rtol=0.0, atol=64 * _eps(torch.float32), reason="a sum of <= 64 probabilities"),
    torch.float64: Tolerance(rtol=0.0, atol=64 * _eps(torch.float64), reason="a sum of <= 64 probabilities"),
}

# The same computation done two ways by the student's own code (e.g. one pass vs token by
# token through a cache): the sums run over different lengths, so not bit-identical.
SELF_CONSISTENCY = LAYER


def shifted_logits(dtype: torch.dtype, shift: float) -> Tolerance:
    """Comparing softmax(x + c) with softmax(x): adding c rounds every logit by up to |c| * eps / 2,
    which moves each probability by that much relative to itself; 8 such roundings of room."""
    budget = 8 * (abs(shift) + 1.0) * _eps(dtype)
    return Tolerance(rtol=budget, atol=budget, reason=f"x + {shift:g} rounds each logit by |c| * eps")


# --- chapter 01: architectures ----------------------------------------------------------------

# A layer built from the same torch.nn blocks as the reference (nn.MultiheadAttention,
# nn.Linear, nn.LayerNorm), compared in float64: a student may add the residual in another
# order or run attention through another kernel path; a few layers deep, 1024 eps64 (2e-13)
# leaves room. A wiring bug (a missing residual, a norm in the wrong place, a wrong mask) moves
# the outputs by 1e-2 or more.
ARCH_LAYER = Tolerance(rtol=1024 * _eps(torch.float64), atol=1024 * _eps(torch.float64),
                       reason="float64 through the same torch.nn blocks, summed in another order")


def architecture(max_len: int) -> Tolerance:
    """A whole float64 model: the layers' budget, plus its sinusoidal position table, which a
    correct model may hold in float32 (the reference does: a float32 buffer, as torch's default
    dtype gives) or in float64. The two tables differ by the float32 rounding of sines and
    cosines of angles up to `max_len` rad (see `angles`); each entry is added once to the
    stream and carried through a few layers and the tied output layer, whose gain with the
    course's weights stays below 16."""
    table = angles(float(max_len))[torch.float64].atol
    return Tolerance(rtol=ARCH_LAYER.rtol + 16 * table, atol=ARCH_LAYER.atol + 16 * table,
                     reason=f"float64 layers plus a position table for {max_len} positions that may be float32")


# The public golden values: the same models in float32 (torch's default), widths <= 16, through
# at most two layers each way; float32 rounding of every product and sum, about 1e-6 relative,
# grows through the layer norms; 1e-4 keeps a wrong wiring (>= 1e-2) apart.
ARCH_FLOAT32 = Tolerance(rtol=1e-4, atol=1e-5, reason="float32 models of width <= 16, two layers deep")


# --- chapter 03: positions ------------------------------------------------------------------


def angles(max_angle: float, *, scale: float = 1.0) -> dict[torch.dtype, Tolerance]:
    """sin/cos of angles up to `max_angle` radians (position times frequency), multiplying values
    of size up to `scale`.

    Many correct implementations compute the angles, and their sines and cosines, in float32,
    torch's default dtype, even for float64 inputs (a float32 `inv_freq` buffer, a cached float32
    cos/sin table, `positions.float()`). The angle p * theta is then off by up to about
    |p * theta| * eps32 (a few roundings, and `exp(-log(base) * 2i/d)` adds at most another
    |p| / e * eps32), so that part of the budget grows with the position: 4 roundings of the
    largest angle. On top: 8 eps32 for float32 sines and cosines, and 16 eps of the output's
    dtype for the rotation's products and sums. A real bug (a wrong exponent, swapped sin/cos, a
    flipped sign, mixed pairs, half-precision angles) is off by O(1) at every position.
    """
    trig = 4 * max_angle * _eps(torch.float32) + 8 * _eps(torch.float32)
    reason = f"angles up to {max_angle:g} rad may be rounded in float32, an error that grows with position"
    return {
        dtype: Tolerance(rtol=0.0, atol=scale * (trig + 16 * _eps(dtype)), reason=reason)
        for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    }


# ALiBi's slopes are powers of two with exponents -8k/n, k <= 64. The reference rounds each once
# from float64; a student may build them in float32 as a running product (slope_k = start ** k,
# or a cumprod), one rounding per head: up to 64 roundings.
SLOPES = {
    dtype: Tolerance(rtol=64 * _eps(torch.float32), atol=0.0, reason="up to 64 float32 roundings of 2 ** (-8k/n)")
    for dtype in (torch.float32, torch.float64)
}


def alibi(max_distance: int) -> dict[torch.dtype, Tolerance]:
    """-slope * distance: the slope's float32 rounding scaled by a distance up to `max_distance`."""
    return {
        dtype: Tolerance(rtol=66 * _eps(torch.float32), atol=0.0,
                         reason=f"a float32 slope (64 roundings) times a distance up to {max_distance} (2 more)")
        for dtype in (torch.float32, torch.float64)
    }


# An encoding added to activations: one addition on top of the table's own error, for tables
# of at most 64 positions (angles <= 64 rad).
ADDED_TABLE = angles(64.0, scale=2.0)


def rope_attention(max_angle: float) -> dict[torch.dtype, Tolerance]:
    """Attention whose queries and keys were rotated by RoPE: the layer's own budget, plus the
    rotation's angle error (float32 angles are allowed, see `angles`) carried into the scores
    and through the output projection; with the course's weights that gain stays below 16."""
    rotation = angles(max_angle)
    return {
        dtype: Tolerance(rtol=LAYER[dtype].rtol + 16 * rotation[dtype].atol,
                         atol=LAYER[dtype].atol + 16 * rotation[dtype].atol,
                         reason=f"a layer around attention, plus RoPE angles up to {max_angle:g} rad rounded in float32")
        for dtype in (torch.float32, torch.float64)
    }


# --- chapter 04: activations and feed-forward layers ------------------------------------------

HALF_DTYPES = (torch.float16, torch.bfloat16)


def activation(dtype: torch.dtype) -> Tolerance:
    """An activation computed in `dtype` from its formula, against torch's function in float64.

    Each activation is x * g(x) with g in [0, 1] (g = 1[x > 0], sigmoid(x), Phi(x)); rounding g
    to `dtype` costs about eps * |x| in absolute terms, even where the value itself is 0 (in
    float32, 1 + erf(x / sqrt(2)) cancels to 0 for x < -5.5), so the absolute part of the budget
    is scaled by max(1, |x|) (`checks.assert_close(..., scale=...)`). 8 roundings of room, for
    erf/tanh/exp kernels and any order of operations; a real bug (a wrong constant, sigmoid(x)
    for Phi(x), a missing 1/sqrt(2)) is off by > 1e-3 * |x| on ordinary inputs.
    """
    # Constants written to 10 significant digits (sqrt(2/pi) = 0.7978845608) are correct code:
    # a floor of 1e-9 accepts them in float64, where 8 eps alone would not.
    budget = max(8 * _eps(dtype), 1e-9)
    return Tolerance(rtol=budget, atol=budget, reason=f"rounding of x * g(x) in {str(dtype).removeprefix('torch.')}")


def activation_grad(dtype: torch.dtype) -> Tolerance:
    """Derivatives by autograd through the student's formula: a few more roundings than the value."""
    budget = max(32 * _eps(dtype), 4e-9)  # the same 10-digit constants, through the chain rule
    return Tolerance(rtol=budget, atol=budget,
                     reason=f"autograd through the formula's operations in {str(dtype).removeprefix('torch.')}")


# Two linear layers (sums of <= 64 products each, in any order: matmul, einsum, a loop) around an
# activation computed from its formula, which rounds a few more times: 256 eps in float32. In
# float64 the activation's own floor (a 10-digit constant, 1e-9 relative, see `activation`)
# passes through fc2's sum of <= 64 terms: 16 times that floor. The smallest bug among the
# project's mutants (the exact GELU where the tanh form is asked for) is off by 6e-4 on the
# public golden layer, 10 times the float32 budget for outputs of size 1.
FFN = {
    torch.float32: Tolerance(rtol=256 * _eps(torch.float32), atol=256 * _eps(torch.float32),
                             reason="two length<=64 linear layers around an activation, summed in any order"),
    torch.float64: Tolerance(rtol=16e-9, atol=16e-9, reason="an activation's 1e-9 floor, through a sum of <= 64 terms"),
}
FFN_GRAD = {dtype: Tolerance(rtol=4 * tol.rtol, atol=4 * tol.atol, reason="the chain rule through both layers")
            for dtype, tol in FFN.items()}


def dropout_kept(dtype: torch.dtype) -> Tolerance:
    """A layer's output with dropout against the same module's dropout-free output: equal in eval
    mode; in training mode a kept entry is the dropout-free one divided by (1 - p). The module is
    the same, so only the scaling differs, one or two roundings (nn.Dropout multiplies by
    1 / (1 - p); a student may divide by (1 - p) or scale the mask first). 8 eps of room. Dropout
    in eval mode, or placed before fc2 (or w2), moves entries by O(1)."""
    return Tolerance(rtol=8 * _eps(dtype), atol=8 * _eps(dtype),
                     reason=f"the same layer's output, rescaled by 1 / (1 - p) at most, in "
                            f"{str(dtype).removeprefix('torch.')}")


# How many of n outputs dropout zeroes is Binomial(n, p) for any correct mask (nn.Dropout's or a
# student's own torch.rand(...) < p): the count must lie within this many standard deviations,
# sqrt(n p (1 - p)), of n p (plus one entry, for tiny n). At 6 sigma a correct layer fails one
# case in 5e8, while dropping 1 - p of them instead of p is 1.5 sqrt(n) sigma off at p = 0.2
# (12 sigma for n = 64).
DROPOUT_SIGMAS = 6.0

# The dropout rate of the training-mode checks that use one rate: not 0.5, where keeping with
# probability p instead of 1 - p would look the same and a scale of 1 / p would equal 1 / (1 - p).
DROPOUT_P = 0.25


# --- chapter 05: normalization --------------------------------------------------------------------


def norm(dtype: torch.dtype) -> Tolerance:
    """A normalized output (values of order 1 to a few, times weight ~1 plus bias) against the
    float64 reference. Full precision: the mean and variance are sums of <= 256 terms (a few
    roundings each with pairwise summation), and an offset of up to 30 spreads costs a factor 30
    when the mean is subtracted: 1024 eps. Half precision: the contract computes in float32, so
    the result is float32-accurate and rounded once to the half dtype: 4 eps of that dtype.
    A real bug (the unbiased variance, eps outside the root, the wrong axis) is off by > 1e-2.
    """
    if dtype in (torch.float16, torch.bfloat16):
        return Tolerance(rtol=4 * _eps(dtype), atol=4 * _eps(dtype), reason="float32 math, rounded once to half")
    return Tolerance(rtol=1024 * _eps(dtype), atol=1024 * _eps(dtype),
                     reason="sums of <= 256 terms after subtracting a mean up to 30 spreads away")


def norm_grad(dtype: torch.dtype) -> Tolerance:
    """Gradients of a norm: the forward budget times 1/std (up to 10 for a spread of 0.1) and
    one more reduction: 16 times `norm`."""
    tol = norm(dtype)
    return Tolerance(rtol=16 * tol.rtol, atol=16 * tol.atol, reason="the forward budget through 1/std and a reduction")


# --- chapter 06 ---------------------------------------------------------------------------------

# A schedule is a few float operations; a student may compute it through float32 tensors
# (torch.cos on a tensor), which rounds at 2^-24 of max_lr even where the rate is near 0, so
# atol is multiplied by max_lr (assert_close's `scale`). Bugs (a warm-up off by one step, the
# cosine over the wrong span) move the rate by at least max_lr / 10^5 steps, 100 times more.
SCHEDULE = Tolerance(rtol=8 * _eps(torch.float32), atol=8 * _eps(torch.float32),
                     reason="a schedule computed in float32 or float64 (atol times max_lr)")


def cross_entropy(dtype: torch.dtype) -> Tolerance:
    """Cross-entropy of `dtype` logits against float64 F.cross_entropy. Its atol is multiplied by
    the largest |logit| (checks.assert_close's `scale`): the log-sum-exp adds back the row's max,
    so a rounding of eps * |max| survives the subtraction of the target's logit."""
    eps = _eps(torch.float32 if dtype in HALF_DTYPES else dtype)
    return Tolerance(rtol=64 * eps, atol=16 * eps,
                     reason="log-sum-exp in the logits' precision (float32 for half), eps * max|logit|, a mean")


# The global norm is a sum of <= a few thousand squares; the clipped gradients one product more.
CLIP = {
    torch.float32: Tolerance(rtol=64 * _eps(torch.float32), atol=1e-30, reason="a float32 sum of squares, a sqrt"),
    torch.float64: Tolerance(rtol=64 * _eps(torch.float64), atol=1e-300, reason="a float64 sum of squares, a sqrt"),
}

# AdamW against torch.optim.AdamW, both in float64, over <= 25 steps: each step rounds a few
# products, a sqrt and a division (torch also uses lerp and divides the sqrt, not v); errors
# add up over the steps to ~1e-13 relative. A wrong bias correction, eps placement or a decay
# coupled to the gradient moves the weights by >= 1e-8 relative on the cases drawn.
ADAMW = Tolerance(rtol=1e-11, atol=1e-14, reason="float64 updates over <= 25 steps, in another operation order")

# One training step of a tiny float64 model: a forward, a backward and an update, in any order.
TRAIN_STEP = Tolerance(rtol=1e-10, atol=1e-13, reason="a float64 forward, backward and update, in any order")

# The same training step under bfloat16 autocast: the matmuls round to 8 significant bits, and a
# student may or may not compute the loss in float32; the loss stays within a few bf16 ulps.
TRAIN_STEP_BF16 = Tolerance(rtol=4 * 2.0 ** -8, atol=1e-3, reason="bfloat16 matmuls under autocast (8-bit mantissa)")

# A float32 trainer run against the reference's, step by step, over <= 30 steps: rounding in
# another order grows a little with each update, but stays far below any real difference.
TRAINING_RUN = Tolerance(rtol=1e-4, atol=1e-6, reason="float32 training runs of <= 30 steps, ops in another order")

# Scaling-law formulas in float64.
SCALING = Tolerance(rtol=1e-9, atol=0.0, reason="a few float64 powers and products")

# compute_optimal against a numerical minimization of the loss along C = 6ND (a golden-section
# search to 1e-10 in log N): the flat optimum makes the minimizer's N good to ~1e-5 relative.
COMPUTE_OPTIMAL = Tolerance(rtol=1e-4, atol=0.0, reason="a numerical minimizer of a flat curve")

# fit_chinchilla on noiseless synthetic losses: the parameters come back to a few parts in a
# thousand (A and B trade off against alpha and beta along a shallow valley).
FIT = {"E": 0.01, "alpha": 0.01, "beta": 0.01, "A": 0.1, "B": 0.1}  # relative


# --- chapter 07: the capstone GPT -------------------------------------------------------------


def gpt(block_size: int) -> Tolerance:
    """A whole float64 GPT of <= 2 blocks built from the student's own modules, against the
    reference's: the blocks' budget (as chapter 01's models, 1024 eps64), plus position inputs
    a correct student may compute in float32 (RoPE angles, the sinusoidal table, ALiBi's
    slopes: see `angles`), each carried through the blocks and the output layer with a gain
    below 16 for the weights drawn. A wiring bug (a missing residual, a norm in the wrong
    place, a wrong mask or position) moves the logits by 1e-2 or more."""
    table = angles(float(block_size))[torch.float64].atol
    return Tolerance(rtol=ARCH_LAYER.rtol + 16 * table, atol=ARCH_LAYER.atol + 16 * table,
                     reason=f"float64 blocks plus positions up to {block_size} that may be float32")


# The loss of a freshly initialized GPT (weights ~ N(0, 0.02)) on random tokens: the logits are
# close to 0 (std about 0.02 * sqrt(d_model) <= 0.2 for d_model <= 64), so the loss is
# ln(vocab_size) plus about half their variance (<= 0.02); 0.1 of room. The default
# nn.Embedding / nn.Linear initialization gives logits of std >= 1 and a loss far above it.
INITIAL_LOSS = Tolerance(rtol=0.0, atol=0.1, reason="logits of std <= 0.2 at initialization add <= 0.02 to ln(V)")

# The standard deviation of an initialized weight matrix with >= 1024 entries, against the one
# asked for: the sample estimate is off by about 1/sqrt(2n) <= 2.2% (5 sigma: 11%); 15% keeps
# 0.02 and 0.02 / sqrt(2 * n_layer) (at least 29% apart) distinguishable.
INIT_STD = Tolerance(rtol=0.15, atol=0.0, reason="a sample standard deviation over >= 1024 weights")

# The short training run: the student's float32 run and the reference's start from the same
# weights and see the same batches, so they differ only by rounding (another summation order
# in attention, the loss or AdamW), which a few hundred steps grow to about 1e-3 in the
# validation loss. 0.05 nats is far below what a training bug costs (a wrong schedule or
# update, a model bug: 0.2 and more).
TRAINING_MARGIN = Tolerance(rtol=0.0, atol=0.05, reason="float32 runs from the same weights, summed in another order")
