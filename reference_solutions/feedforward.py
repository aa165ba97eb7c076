"""Chapter 04: the feed-forward network, the other half of every transformer block.

Attention mixes information across positions; the feed-forward network (FFN) then transforms
each position on its own: expand to a wider hidden layer, apply a nonlinearity, project back.
You write the activations from their formulas, the classic two-layer FFN, and the gated
SwiGLU variant that Llama, PaLM and most recent models use.

Notation used in the shape comments:
    B   batch size
    T   sequence length
    D   d_model
    F   the hidden width d_ff (4 * D for the classic FFN, about 8/3 * D for SwiGLU)

Conventions (the course contract):
    * every module works on ``(..., D)`` inputs and treats each position independently;
    * bad arguments (an unknown activation name) raise ValueError naming the argument and
      its value.

`F.relu`, `F.gelu`, `F.silu`, `torch.relu` and the `nn.ReLU`/`nn.GELU`/`nn.SiLU` modules are off
limits in this chapter: the grader scans your file for them. `torch.erf`, `torch.tanh`,
`torch.exp` and `torch.sigmoid` are the building blocks you may use.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu")


def relu(x: Tensor) -> Tensor:
    """ReLU(x) = max(x, 0), element by element, in ``x``'s dtype.

    Example:
        >>> relu(torch.tensor([-2.0, 0.0, 3.0]))
        tensor([0., 0., 3.])
    """
    ### BEGIN SOLUTION
    # hint: keep x where it is positive, 0 elsewhere (torch.where or clamp)
    return torch.where(x > 0, x, torch.zeros_like(x))
    ### END SOLUTION


def silu(x: Tensor) -> Tensor:
    """SiLU (also called Swish), x * sigmoid(x), element by element, in ``x``'s dtype.

    Example:
        >>> silu(torch.tensor([0.0, 1.0]))
        tensor([0.0000, 0.7311])
    """
    ### BEGIN SOLUTION
    # hint: x times torch.sigmoid(x)
    return x * torch.sigmoid(x)
    ### END SOLUTION


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU(x) = x * Phi(x), with Phi the standard normal CDF, element by element.

    ``approximate="none"`` is the exact form, ``0.5 * x * (1 + erf(x / sqrt(2)))``.
    ``approximate="tanh"`` is the approximation of the GELU paper used by BERT and GPT-2:
    ``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3)))``.

    Returns a tensor of ``x``'s shape and dtype.

    Raises:
        ValueError: if ``approximate`` is neither ``"none"`` nor ``"tanh"``.

    Example:
        >>> gelu(torch.tensor([-1.0, 0.0, 1.0]))
        tensor([-0.1587,  0.0000,  0.8413])
    """
    ### BEGIN SOLUTION
    # hint: the erf formula for "none", the tanh formula for "tanh" (constants as in the docstring)
    if approximate == "none":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
        return 0.5 * x * (1.0 + torch.tanh(inner))
    raise ValueError(f"approximate must be 'none' or 'tanh', got approximate={approximate!r}")
    ### END SOLUTION


class FeedForward(nn.Module):
    """The position-wise feed-forward network of "Attention Is All You Need" (and GPT-2).

    ``FFN(x) = dropout(fc2(act(fc1(x))))``: expand from ``d_model`` to ``d_ff``, apply the
    activation, project back. Every position is transformed independently, with the same
    weights.

    Submodules (their names are the ``state_dict`` keys the grader loads):
        fc1: ``Linear(d_model -> d_ff)``
        fc2: ``Linear(d_ff -> d_model)``

    Args:
        d_model: input and output width.
        d_ff: hidden width; default ``4 * d_model``.
        activation: one of ``"relu"``, ``"gelu"`` (exact), ``"gelu_tanh"``, ``"silu"``; use
            this module's own functions.
        dropout: dropout on the output, active only in training mode.
        bias: whether ``fc1`` and ``fc2`` have biases.

    Shapes:
        ``forward(x)``: ``(..., D) -> (..., D)``.

    Raises:
        ValueError: an unknown ``activation``.
    """

    def __init__(self, d_model: int, d_ff: int | None = None, activation: str = "gelu", dropout: float = 0.0,
                 bias: bool = True) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        # hint: validate activation against the four names; build fc1, fc2 (nn.Linear) and nn.Dropout
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got activation={activation!r}")
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.activation = activation
        self.fc1 = nn.Linear(d_model, d_ff, bias=bias)
        self.fc2 = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        # hint: fc1, then the named activation, then fc2, then dropout
        hidden = self.fc1(x)  # (..., F)
        if self.activation == "relu":
            hidden = relu(hidden)
        elif self.activation == "silu":
            hidden = silu(hidden)
        else:
            hidden = gelu(hidden, approximate="tanh" if self.activation == "gelu_tanh" else "none")
        return self.dropout(self.fc2(hidden))  # (..., D)
        ### END SOLUTION


def swiglu_hidden_dim(d_model: int, multiple_of: int = 256, ffn_dim_multiplier: float | None = None) -> int:
    """The hidden width of a SwiGLU block by Llama's rule.

    Start from the classic ``4 * d_model``; take two thirds of it (a gated FFN has three
    matrices instead of two, so this keeps the parameter count about the same), truncated to an
    integer; multiply by ``ffn_dim_multiplier`` if given (truncating again); then round *up* to
    a multiple of ``multiple_of`` (hardware-friendly sizes).

    Example:
        >>> swiglu_hidden_dim(4096)  # Llama 7B
        11008
    """
    ### BEGIN SOLUTION
    # hint: int(2 * 4 * d_model / 3), then int(multiplier * that) if given, then round up to multiple_of
    hidden = int(2 * (4 * d_model) / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)
    ### END SOLUTION


class SwiGLU(nn.Module):
    """The gated feed-forward network of PaLM and Llama: ``w2(silu(w1(x)) * w3(x))``.

    ``w1(x)`` passes through SiLU and *gates* ``w3(x)`` element by element; ``w2`` projects the
    product back to ``d_model``.

    Submodules (their names are Llama's, and the ``state_dict`` keys the grader loads):
        w1: ``Linear(d_model -> d_ff)``, the gate
        w3: ``Linear(d_model -> d_ff)``, the up projection
        w2: ``Linear(d_ff -> d_model)``, the down projection

    Args:
        d_model: input and output width.
        d_ff: hidden width; default ``swiglu_hidden_dim(d_model, multiple_of)``.
        multiple_of: rounding for the default ``d_ff``.
        bias: whether the three linears have biases (Llama: none).
        dropout: dropout on the output, active only in training mode.

    Shapes:
        ``forward(x)``: ``(..., D) -> (..., D)``.
    """

    def __init__(self, d_model: int, d_ff: int | None = None, multiple_of: int = 256, bias: bool = False,
                 dropout: float = 0.0) -> None:
        super().__init__()
        ### BEGIN SOLUTION
        # hint: default d_ff from swiglu_hidden_dim; build w1, w3 (d_model -> d_ff), w2 (d_ff -> d_model), nn.Dropout
        d_ff = swiglu_hidden_dim(d_model, multiple_of) if d_ff is None else d_ff
        self.w1 = nn.Linear(d_model, d_ff, bias=bias)
        self.w3 = nn.Linear(d_model, d_ff, bias=bias)
        self.w2 = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)
        ### END SOLUTION

    def forward(self, x: Tensor) -> Tensor:
        ### BEGIN SOLUTION
        # hint: silu of the gate times the up projection, then w2, then dropout
        gated = silu(self.w1(x)) * self.w3(x)  # (..., F)
        return self.dropout(self.w2(gated))  # (..., D)
        ### END SOLUTION


def feedforward_parameter_count(d_model: int, d_ff: int, bias: bool = True) -> int:
    """Parameters of ``FeedForward(d_model, d_ff, bias=bias)``: two matrices and their biases.

    Example:
        >>> feedforward_parameter_count(512, 2048)
        2099712
    """
    ### BEGIN SOLUTION
    # hint: fc1 has d_model * d_ff weights (+ d_ff biases), fc2 d_ff * d_model (+ d_model)
    return 2 * d_model * d_ff + (d_ff + d_model if bias else 0)
    ### END SOLUTION


def swiglu_parameter_count(d_model: int, d_ff: int, bias: bool = False) -> int:
    """Parameters of ``SwiGLU(d_model, d_ff, bias=bias)``: three matrices and their biases.

    Example:
        >>> swiglu_parameter_count(4096, 11008)  # one Llama 7B block's FFN
        135266304
    """
    ### BEGIN SOLUTION
    # hint: w1 and w3 have d_model * d_ff weights each (+ d_ff biases), w2 d_ff * d_model (+ d_model)
    return 3 * d_model * d_ff + (2 * d_ff + d_model if bias else 0)
    ### END SOLUTION
