"""Chapter 05: normalization layers, and where they sit in a residual block.

A deep network trains well when the activations entering each layer keep a steady scale.
Normalization layers enforce that: subtract a mean, divide by a standard deviation, then let
the model rescale with learned parameters. They differ in *which* numbers share the statistics:

    * BatchNorm: each feature over the batch (and sequence); different in training and eval;
    * LayerNorm: each position over its own features; the same in training and eval;
    * RMSNorm: like LayerNorm without the mean, only the root mean square (Llama, T5).

Then `ResidualBlock` places a norm before the sublayer (pre-norm, GPT-2 onwards) or after the
residual sum (post-norm, the 2017 paper).

Notation used in the shape comments:
    B   batch size
    T   sequence length
    D   d_model (the normalized features); C for BatchNorm's channels (the last dim)

Conventions (the course contract):
    * every norm works on ``(..., D)`` inputs, statistics in the last dims (or, for BatchNorm,
      in all dims but the last);
    * half-precision inputs (float16, bfloat16) are normalized in float32 and returned in
      their own dtype;
    * bad arguments raise ValueError naming the argument and its value.

`F.layer_norm`, `F.rms_norm`, `F.batch_norm` and the `nn.LayerNorm`/`nn.RMSNorm`/`nn.BatchNorm*`
classes are off limits in this chapter: the grader scans your file for them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

HALF = (torch.float16, torch.bfloat16)
NORMS = ("layernorm", "rmsnorm", "batchnorm")


class LayerNorm(nn.Module):
    """Layer normalization (Ba et al., 2016), equal to ``nn.LayerNorm``.

    Each position is normalized over its last ``len(normalized_shape)`` dims: subtract the
    mean, divide by ``sqrt(var + eps)`` with the *biased* variance (divide by n, not n - 1),
    then ``* weight + bias``.

    Parameters (``state_dict`` keys): ``weight`` (ones) and ``bias`` (zeros), both of shape
    ``normalized_shape``; none when ``elementwise_affine=False``; no ``bias`` when
    ``bias=False``.

    Args:
        normalized_shape: an int ``D`` or a tuple of trailing dims.
        eps: added to the variance inside the square root.
        elementwise_affine: learn ``weight`` (and ``bias``).
        bias: learn ``bias`` (only with ``elementwise_affine``).

    Shapes:
        ``forward(x)``: ``(..., *normalized_shape)``, same shape and dtype out.
    """

    def __init__(self, normalized_shape: int | tuple[int, ...], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        # hint: store the shape as a tuple and eps; weight = ones, bias = zeros (nn.Parameter), or None
        self.normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(self.normalized_shape)) if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(self.normalized_shape)) if elementwise_affine and bias else None
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        # hint: mean and biased variance over the last len(normalized_shape) dims (float32 for half inputs)
        dims = tuple(range(-len(self.normalized_shape), 0))
        h = x.float() if x.dtype in HALF else x
        mean = h.mean(dim=dims, keepdim=True)  # (..., 1, ..., 1)
        var = h.var(dim=dims, keepdim=True, unbiased=False)  # (..., 1, ..., 1)
        y = (h - mean) * torch.rsqrt(var + self.eps)  # same shape as x
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype)
        ### END SOLUTION


class RMSNorm(nn.Module):
    """Root-mean-square normalization (Zhang and Sennrich, 2019), as in Llama.

    ``x * rsqrt(mean(x**2) + eps) * weight`` over the last dim: no mean is subtracted and there
    is no bias. Half-precision inputs are normalized in float32 and returned in their dtype.

    Parameters: ``weight`` (ones, shape ``(d_model,)``), absent when
    ``elementwise_affine=False``.

    Shapes:
        ``forward(x)``: ``(..., D)``, same shape and dtype out.
    """

    def __init__(self, d_model: int, eps: float = 1e-6, elementwise_affine: bool = True) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        # hint: keep eps; weight = nn.Parameter(ones(d_model)) or None
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model)) if elementwise_affine else None
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        # hint: in float32 for half inputs: x * rsqrt(mean(x**2, last dim) + eps), times weight, back to x's dtype
        h = x.float() if x.dtype in HALF else x
        y = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., D)
        if self.weight is not None:
            y = y * self.weight
        return y.to(x.dtype)
        ### END SOLUTION


class BatchNorm(nn.Module):
    """Batch normalization (Ioffe and Szegedy, 2015) over every dim but the last.

    For ``x`` of shape ``(..., C)``, each channel ``c`` is normalized with the mean and the
    biased variance of all of ``x[..., c]``. This is ``nn.BatchNorm1d`` with the channel last
    (``nn.BatchNorm1d`` wants ``(B, C)`` or ``(B, C, T)``).

    Training mode: normalize with the batch's statistics, and update the running ones:
    ``running = (1 - momentum) * running + momentum * batch``, where the running variance takes
    the *unbiased* batch variance (divide by n - 1). Eval mode: normalize with the running
    statistics and change nothing.

    Parameters: ``weight`` (ones) and ``bias`` (zeros), shape ``(C,)``. Buffers:
    ``running_mean`` (zeros) and ``running_var`` (ones), shape ``(C,)``.

    Raises:
        ValueError: in training mode, when each channel has a single value (no variance),
        as ``nn.BatchNorm1d`` does.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        # hint: weight, bias as nn.Parameter; running_mean, running_var with register_buffer
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        # hint: training: batch mean/var over all dims but the last, update the running stats (unbiased var); eval: running stats
        h = x.float() if x.dtype in HALF else x
        if self.training:
            dims = tuple(range(h.dim() - 1))  # every dim but the channels
            count = h.numel() // h.shape[-1]  # values per channel
            if count < 2:
                raise ValueError(f"BatchNorm needs more than 1 value per channel in training, got input shape "
                                 f"{tuple(x.shape)}")
            mean = h.mean(dim=dims)  # (C,)
            var = h.var(dim=dims, unbiased=False)  # (C,)
            # the running statistics are buffers, not part of the graph: update them from detached values
            unbiased = var.detach() * count / (count - 1)  # (C,) what nn.BatchNorm1d keeps
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean.detach().to(self.running_mean.dtype))
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased.to(self.running_var.dtype))
        else:
            mean, var = self.running_mean.to(h.dtype), self.running_var.to(h.dtype)  # (C,) each
        y = (h - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias  # (..., C)
        return y.to(x.dtype)
        ### END SOLUTION


class ResidualBlock(nn.Module):
    """A sublayer (attention, an FFN) wrapped in a residual connection and a norm.

    * pre-norm (``prenorm=True``, GPT-2, Llama): ``x + dropout(sublayer(norm(x)))``; the
      residual path from input to output never passes through a norm.
    * post-norm (``prenorm=False``, the 2017 paper, BERT): ``norm(x + dropout(sublayer(x)))``.

    Submodules: ``norm`` (this module's ``LayerNorm(d_model)``, ``RMSNorm(d_model)`` or
    ``BatchNorm(d_model)``, chosen by ``norm``) and ``sublayer`` (the module passed in, kept as
    it is).

    Args:
        sublayer: any module mapping ``(..., D)`` to ``(..., D)``.
        d_model: the width D.
        norm: ``"layernorm"``, ``"rmsnorm"`` or ``"batchnorm"``.
        prenorm: where the norm sits.
        dropout: dropout on the sublayer's output, active only in training mode.

    Raises:
        ValueError: an unknown ``norm``.
    """

    def __init__(self, sublayer: nn.Module, d_model: int, norm: str = "layernorm", prenorm: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        # hint: validate norm; build self.norm from this module's classes; keep sublayer, prenorm and an nn.Dropout
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got norm={norm!r}")
        self.norm = {"layernorm": LayerNorm, "rmsnorm": RMSNorm, "batchnorm": BatchNorm}[norm](d_model)
        self.sublayer = sublayer
        self.prenorm = prenorm
        self.dropout = nn.Dropout(dropout)
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        # hint: pre-norm: x + drop(sublayer(norm(x))); post-norm: norm(x + drop(sublayer(x)))
        if self.prenorm:
            return x + self.dropout(self.sublayer(self.norm(x)))  # (..., D)
        return self.norm(x + self.dropout(self.sublayer(x)))  # (..., D)
        ### END SOLUTION
