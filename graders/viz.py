"""Look at what your attention heads do.

Two helpers you can call on your own chapter 02 module:

* ``attention_weights(module, x, mask=None)`` runs ``module(x, mask=mask, need_weights=True)``
  in eval mode, without gradients, and returns the weights ``(B, H, T, S)``;
* ``plot_attention_heads(weights, tokens=None, title=None, path=None)`` draws one heatmap per
  head (rows: query positions, columns: key positions) and returns the matplotlib ``Figure``;
  with ``path`` it also saves it (the format follows the suffix: ``.png``, ``.svg``, ``.pdf``).

Two more for a whole model built on ``nn.MultiheadAttention``, such as chapter 01's
``Transformer``:

* ``layer_attention_maps(model, *args, **kwargs)`` runs ``model(*args, **kwargs)`` in eval mode,
  without gradients, and returns the per-head weights ``(B, H, T, S)`` of every
  ``nn.MultiheadAttention`` inside it, keyed by the module's qualified name
  (``encoder_layers.0.self_attn``, ``decoder_layers.1.cross_attn``). It only adds hooks for the
  length of the call: the layers may ask for ``need_weights=False``, the hooks ask for the
  weights anyway, and the model is left as it was;
* ``plot_attention_grid(maps, names=None, tokens_q=None, tokens_k=None, title=None, path=None,
  example=0)`` draws those maps as a grid, one row per attention module, one column per head.

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

and for your chapter 01 model::

    from transformer_full import Transformer
    from graders.viz import layer_attention_maps, plot_attention_grid

    model = Transformer(vocab_size=100, d_model=32, num_heads=4, num_layers=2, d_ff=64)
    src, tgt = torch.randint(0, 100, (1, 7)), torch.randint(0, 100, (1, 5))
    maps = layer_attention_maps(model, src, tgt)    # {"decoder_layers.0.cross_attn": (1, 4, 5, 7), ...}
    plot_attention_grid(maps, names=[n for n in maps if "cross" in n], path="cross.png")
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from os import PathLike

import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

__all__ = ["attention_weights", "layer_attention_maps", "plot_attention_grid", "plot_attention_heads"]


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


# --------------------------------------------------------------------------------------
# a whole model: every nn.MultiheadAttention inside it
# --------------------------------------------------------------------------------------


def _ask_for_weights(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Forward pre-hook: the same call, with ``need_weights=True, average_attn_weights=False``.

    A layer may pass either flag by position or by keyword; binding the call to the signature
    finds it either way, and ``bound.args`` / ``bound.kwargs`` rebuild a valid call from it.
    """
    bound = inspect.signature(module.forward).bind(*args, **kwargs)
    bound.arguments["need_weights"] = True
    bound.arguments["average_attn_weights"] = False  # one map per head, not their mean
    return bound.args, bound.kwargs


def _recorder(name: str, maps: dict[str, Tensor]) -> Callable[[nn.Module, tuple, tuple], None]:
    """A forward hook that stores the weights of each call under ``name`` (a later call of the
    same module replaces an earlier one)."""

    def record(module: nn.Module, args: tuple, output: tuple[Tensor, Tensor | None]) -> None:
        weights = output[1]  # (B, H, T, S), or (H, T, S) for an unbatched call
        if weights is None:
            raise ValueError(f"{name} returned no attention weights despite need_weights=True")
        maps[name] = weights.detach().float().cpu()

    return record


@torch.no_grad()
def _call_without_grad(model: nn.Module, args: tuple, kwargs: dict) -> None:
    """``model(*args, **kwargs)`` with autograd off (its output is not needed: the hooks keep the weights)."""
    model(*args, **kwargs)


def layer_attention_maps(model: nn.Module, *args, **kwargs) -> dict[str, Tensor]:
    """The per-head attention weights of every ``nn.MultiheadAttention`` inside ``model``.

    Runs ``model(*args, **kwargs)`` once, in eval mode (dropout off) and without gradients, with
    two hooks on each attention module: one that turns the call into
    ``need_weights=True, average_attn_weights=False`` (whatever the layer asked for, by position
    or by keyword), one that records the weights it returns. Nothing in the model is edited:
    the hooks are removed and every submodule's training flag is restored afterwards, even when
    the call raises.

    Args:
        model: any ``nn.Module`` holding ``nn.MultiheadAttention`` submodules, e.g. chapter 01's
            ``Transformer`` (whose layers call their attention with ``need_weights=False``).
        *args, **kwargs: what ``model``'s forward takes, e.g. ``src, tgt`` for a ``Transformer``.

    Returns:
        ``{qualified name: weights}`` in the order of ``model.named_modules()``, e.g.
        ``encoder_layers.0.self_attn``, ``decoder_layers.1.cross_attn``. Each weights tensor is
        ``(B, H, T, S)`` (``(H, T, S)`` for an unbatched call), float32, detached, on the CPU;
        each row, one query, sums to 1 over its keys. A module called more than once in the
        run (say, by a generation loop) keeps its *last* call; a module the run never called is
        absent.

    Raises:
        ValueError: if ``model`` holds no ``nn.MultiheadAttention``.
    """
    attention = {name: m for name, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)}
    if not attention:
        raise ValueError(f"{type(model).__name__} holds no nn.MultiheadAttention submodule")
    modes = {m: m.training for m in model.modules()}  # per module: eval() would flatten a mix
    recorded: dict[str, Tensor] = {}
    handles = []
    try:
        for name, module in attention.items():
            handles.append(module.register_forward_pre_hook(_ask_for_weights, with_kwargs=True))
            handles.append(module.register_forward_hook(_recorder(name, recorded)))
        model.eval()
        _call_without_grad(model, args, kwargs)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    return {name: recorded[name] for name in attention if name in recorded}


def _labels_for(tokens: Sequence[str] | Mapping[str, Sequence[str]] | None, name: str,
                length: int, axis: str) -> list[str] | None:
    """The tick labels of one axis of module ``name``'s maps: the shared sequence, or the
    mapping's entry for ``name`` (None: numbered ticks)."""
    if isinstance(tokens, Mapping):
        tokens = tokens.get(name)
    if tokens is None:
        return None
    labels = [str(t) for t in tokens]
    if len(labels) != length:
        raise ValueError(f"{name}: tokens_{axis} must have {length} labels, got {len(labels)}")
    return labels


def _set_ticks(ax, labels: list[str] | None, length: int, axis: str) -> None:
    """Token labels on one axis (``"x"`` keys, ``"y"`` queries), else at most ~8 numbered ticks."""
    setter = ax.set_xticks if axis == "x" else ax.set_yticks
    if labels is not None:
        setter(range(length), labels, **({"rotation": 90} if axis == "x" else {}))
    else:
        setter(range(0, length, max(1, math.ceil(length / 8))))


def _row_label(name: str) -> str:
    """A row's label: the module's qualified name broken after its last dot (so that a long one,
    ``decoder_layers.1.cross_attn``, fits beside its row), then what the rows of its maps are."""
    parent, dot, child = name.rpartition(".")
    return f"{parent}{dot}\n{child}\nquery" if dot else f"{name}\nquery"


def plot_attention_grid(
    maps: Mapping[str, Tensor],
    *,
    names: Sequence[str] | None = None,
    tokens_q: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    tokens_k: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
    title: str | None = None,
    path: str | PathLike[str] | None = None,
    example: int = 0,
) -> Figure:
    """Draw attention maps as a grid: one row per attention module, one column per head.

    Args:
        maps: ``{name: weights}`` as ``layer_attention_maps`` returns it; each ``(B, H, T, S)``
            or ``(H, T, S)``, a tensor or anything ``torch.as_tensor`` takes (nested lists read
            back from a JSON file). Modules may differ in ``T``, ``S`` and head count.
        names: the modules to draw, top to bottom (default: every one, in ``maps``' order).
        tokens_q: labels of the query rows (``T``), either one sequence for every module or a
            mapping ``{name: labels}`` (a module without an entry gets numbered ticks): the
            encoder reads the source, a decoder's self- and cross-attention the target.
        tokens_k: labels of the key columns (``S``), the same way (a cross-attention's keys are
            the source).
        title: optional title over the whole figure.
        path: optional file to save to (PNG, SVG, PDF, ... by suffix).
        example: the batch element drawn, for 4-D maps.

    Returns:
        The ``matplotlib.figure.Figure``; the colour scale runs from 0 to 1 in every cell, so
        heads and layers compare directly. A row's heads share its query labels, shown once at
        its left. Its text has matplotlib's sizes (``rcParams``: ``xtick.labelsize``,
        ``axes.titlesize``, ...): draw and save it inside ``matplotlib.rc_context`` to change them.

    Raises:
        KeyError: a name that ``maps`` does not hold.
        ValueError: no module to draw, a map that is not 3-D or 4-D, ``example`` out of range,
            labels of the wrong length.
    """
    names = list(maps) if names is None else list(names)
    if not names:
        raise ValueError("no attention maps to draw")
    grids = {}
    for name in names:
        w = torch.as_tensor(maps[name]).detach().float().cpu()  # (B, H, T, S) or (H, T, S)
        if w.dim() == 4:
            if not -w.shape[0] <= example < w.shape[0]:
                raise ValueError(f"example={example} is out of range for {name}'s batch of {w.shape[0]}")
            w = w[example]  # (H, T, S)
        if w.dim() != 3:
            raise ValueError(f"{name}: maps must be (H, T, S) or (B, H, T, S), got shape {tuple(w.shape)}")
        grids[name] = w
    rows, cols = len(names), max(w.shape[0] for w in grids.values())
    longest = max(max(w.shape[1:]) for w in grids.values())
    cell = 1.9 if longest <= 12 else 2.8  # inches per heatmap
    fig = Figure(figsize=(cols * cell + 1.6, rows * cell + (0.5 if title else 0.2)), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    image = None
    for r, name in enumerate(names):
        w = grids[name]  # (H, T, S)
        num_heads, q_len, k_len = w.shape
        labels_q = _labels_for(tokens_q, name, q_len, "q")
        labels_k = _labels_for(tokens_k, name, k_len, "k")
        for h in range(cols):
            ax = axes[r][h]
            if h >= num_heads:
                ax.set_axis_off()  # this module has fewer heads than the widest row
                continue
            image = ax.imshow(w[h].numpy(), vmin=0.0, vmax=1.0, cmap="viridis", interpolation="nearest")
            _set_ticks(ax, labels_k, k_len, "x")
            _set_ticks(ax, labels_q, q_len, "y")
            if h > 0:  # a row's heads share its queries: their labels once, left of the row
                ax.tick_params(axis="y", labelleft=False)
            if r == 0:
                ax.set_title(f"head {h}")
        axes[r][0].set_ylabel(_row_label(name))
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="attention weight")
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
