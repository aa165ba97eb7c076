"""Look at what your attention heads do.

Two helpers you can call on your own chapter 02 module:

* ``attention_weights(module, x, mask=None)`` runs ``module(x, mask=mask, need_weights=True)``
  in eval mode, without gradients, and returns the weights ``(B, H, T, S)``;
* ``plot_attention_heads(weights, tokens=None, title=None, path=None)`` draws one heatmap per
  head (rows: query positions, columns: key positions) and returns the matplotlib ``Figure``;
  with ``path`` it also saves it (the format follows the suffix: ``.png``, ``.svg``, ``.pdf``).

Figures are built with ``matplotlib.figure.Figure`` directly, not ``pyplot``: nothing opens a
window, no global figure list grows, and it works on a machine without a display.

Notation: B batch, H heads, T query length, S key length.

Example (from the repository root, with your ``assignments/`` on ``sys.path``)::

    import sys, torch
    sys.path.insert(0, "assignments")
    from multi_head_attention import MultiHeadAttention, causal_mask
    from graders.viz import attention_weights, plot_attention_heads

    torch.manual_seed(0)
    mha = MultiHeadAttention(d_model=32, num_heads=4)
    x = torch.randn(1, 6, 32)                                   # (B, T, D)
    w = attention_weights(mha, x, mask=causal_mask(6))          # (1, 4, 6, 6)
    plot_attention_heads(w, tokens="the cat sat on the mat".split(),
                         title="my heads", path="heads.png")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from os import PathLike

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

__all__ = ["attention_weights", "plot_attention_heads"]


def attention_weights(module: nn.Module, x: Tensor, mask: Tensor | None = None) -> Tensor:
    """Return the attention weights ``(B, H, T, S)`` of ``module`` on ``x``.

    Calls ``module(x, mask=mask, need_weights=True)`` under ``torch.no_grad()`` with the module
    in eval mode (so attention dropout is off), then restores the module's previous mode.

    Args:
        module: a chapter 02 ``MultiHeadAttention`` (anything with that ``forward`` signature).
        x: input ``(B, T, D)``; self-attention, so keys and values are ``x`` too.
        mask: optional boolean mask broadcastable to ``(B, H, T, S)``, True = may attend.

    Returns:
        The weights, detached, on the CPU, as float32 ``(B, H, T, S)``.

    Raises:
        ValueError: if the module returns no weights or weights that are not 4-D.
    """
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            _, weights = module(x, mask=mask, need_weights=True)
    finally:
        module.train(was_training)
    if weights is None or weights.dim() != 4:
        shape = None if weights is None else tuple(weights.shape)
        raise ValueError(f"expected weights of shape (B, H, T, S) from need_weights=True, got {shape}")
    return weights.detach().float().cpu()


def _grid(num_heads: int) -> tuple[int, int]:
    """Rows and columns of a near-square grid with at most four columns."""
    cols = min(num_heads, 4)
    return math.ceil(num_heads / cols), cols


def plot_attention_heads(
    weights: Tensor,
    tokens: Sequence[str] | None = None,
    title: str | None = None,
    path: str | PathLike[str] | None = None,
) -> Figure:
    """Draw one heatmap per attention head.

    Args:
        weights: ``(H, T, S)`` or ``(B, H, T, S)``; with a batch axis only batch element 0 is
            drawn. Values are read as probabilities: the colour scale runs from 0 to 1, so
            heads can be compared with each other.
        tokens: optional labels, one per key (``S`` of them). The last ``T`` of them label
            the queries: the query in row ``i`` sits at position ``S - T + i``, as with a
            KV cache (for self-attention without a cache ``T == S`` and the labels match).
        title: optional title over the whole figure.
        path: optional file to save to (PNG, SVG, PDF, ... by suffix).

    Returns:
        The ``matplotlib.figure.Figure`` (show it in a notebook by leaving it as the last
        expression of a cell).

    Raises:
        ValueError: if ``weights`` is not 3-D or 4-D, or ``tokens`` has the wrong length.
    """
    if weights.dim() == 4:
        weights = weights[0]  # (H, T, S)
    if weights.dim() != 3:
        raise ValueError(f"weights must be (H, T, S) or (B, H, T, S), got shape {tuple(weights.shape)}")
    w = weights.detach().float().cpu()  # (H, T, S)
    num_heads, q_len, k_len = w.shape
    if tokens is not None:
        tokens = [str(t) for t in tokens]
        if len(tokens) != k_len:
            raise ValueError(f"tokens must have S={k_len} labels (one per key), got len(tokens)={len(tokens)}")
    rows, cols = _grid(num_heads)
    cell = 2.4 if max(q_len, k_len) <= 12 else 3.2  # inches per heatmap
    fig = Figure(figsize=(cols * cell + 0.9, rows * cell + (0.5 if title else 0.2)), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    image = None
    for h in range(rows * cols):
        ax = axes[h // cols][h % cols]
        if h >= num_heads:
            ax.set_axis_off()  # empty cell of the grid
            continue
        image = ax.imshow(w[h].numpy(), vmin=0.0, vmax=1.0, cmap="viridis", interpolation="nearest")
        ax.set_title(f"head {h}", fontsize=10)
        if h // cols == rows - 1 or h + cols >= num_heads:
            ax.set_xlabel("key position")
        if h % cols == 0:
            ax.set_ylabel("query position")
        if tokens is not None:
            ax.set_xticks(range(k_len), tokens, rotation=90, fontsize=8)
            ax.set_yticks(range(q_len), tokens[k_len - q_len :], fontsize=8)
        else:
            step = max(1, math.ceil(max(q_len, k_len) / 8))  # at most ~8 ticks per axis
            ax.set_xticks(range(0, k_len, step))
            ax.set_yticks(range(0, q_len, step))
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="attention weight")
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
