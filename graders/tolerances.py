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
