"""Generate every figure of the reading site into ``site/docs/figures/``.

Run from the repository root::

    python site/scripts/figures.py

The figures are build products, never committed: the site build (``nox -s site``) runs this
script before ``mkdocs build --strict``. Runs are reproducible byte for byte on one
installation: fixed seeds, no randomness outside them, and PNGs saved without the
``Software`` metadata entry (the matplotlib version). Everything runs on the CPU in a few
seconds.

The chapter 01 figures draw the encoder-decoder as the reference's ``Transformer`` wires it
(patches only, no model run), the three families' masks from the reference's
``padding_to_ignore`` and ``future_mask``, and where the Quick Start model's parameters are,
counted with ``count_parameters`` on models built on the ``meta`` device and checked against
``transformer_parameter_count`` (with the table of the derivation that the page includes).
The chapter 02 figures import the reference solution (``reference_solutions/`` goes on
``sys.path``, as the course's flat modules expect) and draw attention maps with the same
``graders.viz.plot_attention_heads`` that students call on their own module. The chapter 03
figures draw the reference's encodings; the length-extrapolation plot and its Markdown table
are redrawn from the experiment's committed results (``site/docs/results/``) with
``site/scripts/experiment_positional.py``'s own ``plot_results`` and ``table_markdown``.
The chapter 04 figures draw the reference's activations and its parameter counts; the FFN
ablation plot and table come, the same way, from ``site/scripts/experiment_ffn.py``.
The chapter 05 figures draw which elements share a norm's statistics, the two residual
wirings with the reference's ``ResidualBlock`` stacked at initialisation, the gradient-flow
plot and table from ``site/scripts/experiment_norm.py``, and the benchmark table from the
recorded ``nox -s bench`` run with ``graders.bench.norm_table_markdown``.
The chapter 06 figures draw the reference's two learning-rate schedules, the number formats
of mixed precision (with the gradients of the experiment's model at initialisation), the
scaling laws from the reference's ``chinchilla_loss``, ``kaplan_loss``, ``compute_optimal``
and ``training_flops`` (nothing is trained), and the warm-up experiment's plot and table from
``site/scripts/experiment_training.py``. The chapter 07 figures draw the capstone GPT from the
recorded ``cpu-tiny`` run's configuration (built on the ``meta`` device) and that run's loss
curves.

Sizes: every figure drawn here is at most the reading column's width, with no text under
READABLE_PT, so its text is shown at READABLE_PT CSS px or more (see COLUMN_PX); the
experiments' plots follow the same rule, from ``experiment_common``. Every PNG, wherever drawn,
is written to a temporary name, refused if its smallest text would be shown under READABLE_PT
px, and moved into place, so a site build running meanwhile never reads half a figure; the
smallest text of each (in the PNG's pixels) goes to ``text_sizes.json``, which the browser test
scales by the size the page shows the image at.

Structure: one function per figure, each returning the path it wrote (or the paths, when it
also writes a table that a page includes); ``FIGURES`` lists them in the order of the pages;
``main()`` runs them all.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import matplotlib
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyBboxPatch, Rectangle
from matplotlib.text import Text

ROOT = Path(__file__).resolve().parents[2]  # the repository root
OUT = ROOT / "site" / "docs" / "figures"
sys.path.insert(0, str(ROOT / "reference_solutions"))  # flat modules: `import multi_head_attention`
sys.path.insert(0, str(ROOT))  # `import graders.viz`
sys.path.insert(0, str(ROOT / "site" / "scripts"))  # `import experiment_positional` (03), `experiment_ffn` (04), ...
RESULTS = ROOT / "site" / "docs" / "results"  # committed results (JSON); each experiment names its own

import experiment_attention  # noqa: E402  (chapter 01; every experiment is redrawn by _redrawn)
import experiment_ffn  # noqa: E402  (chapter 04)
import experiment_norm  # noqa: E402  (chapter 05)
import experiment_positional  # noqa: E402  (chapter 03)
import experiment_training  # noqa: E402  (chapter 06)
import capstone_results  # noqa: E402  (chapter 07: the recorded cpu-tiny run, capstone_results.plot)
from experiment_common import (COLUMN_INCHES, COLUMN_PX, FONT_SIZES, READABLE_PT, SUPTITLE_PT, TEXT_PT,  # noqa: E402
                               TITLE_PT)
from feedforward import (FeedForward, feedforward_parameter_count, gelu, relu, silu,  # noqa: E402
                         swiglu_hidden_dim, swiglu_parameter_count)
from gpt import GPT, GPTConfig  # noqa: E402  (chapter 07: the capstone model, drawn from its config)
from multi_head_attention import MultiHeadAttention, causal_mask, softmax  # noqa: E402
from normalization import ResidualBlock  # noqa: E402
from positional_encoding import RotaryEmbedding, alibi_bias, alibi_slopes, sinusoidal_encoding  # noqa: E402
from training_loop import (CHINCHILLA, CHINCHILLA_REFIT, chinchilla_loss, compute_optimal,  # noqa: E402
                           cosine_schedule, cross_entropy, kaplan_loss, noam_schedule, training_flops)
from transformer_full import (DecoderOnly, EncoderOnly, Transformer, count_parameters, future_mask,  # noqa: E402
                              padding_to_ignore, transformer_parameter_count)

from graders import bench  # noqa: E402  (chapter 05's benchmark table)
from graders.viz import attention_weights, plot_attention_heads  # noqa: E402

SEED = 0
# Every figure is read in Material's content column, COLUMN_PX CSS px wide at a desktop width
# (both sidebars shown), and an image wider than the column is scaled down to it. A figure at
# most COLUMN_INCHES wide is therefore shown at 72 CSS px per inch or more, so a font size in
# points is at least its size on screen in CSS px: every figure is drawn at most that wide with
# no text under READABLE_PT (the rule, with the font sizes, is experiment_common's, shared with
# the experiments' plots). ``_save`` refuses a figure of this file that breaks either half of
# it, and ``_drawn`` any figure, wherever drawn, whose text would be shown under READABLE_PT px.
TEXT, TITLE, SUPTITLE = TEXT_PT, TITLE_PT, SUPTITLE_PT  # labels and annotations; axes titles; figure titles
DPI = 144  # twice the column's 72 px per inch: sharp on high-density screens and when zoomed
STYLE = FONT_SIZES | {"svg.hashsalt": "figures", "savefig.facecolor": "white"}
# The smallest text of every PNG written, in pixels of the PNG, and the floor in CSS px: the
# browser test (tests/test_site.py) scales the first by how large the page shows the image.
TEXT_SIZES = "text_sizes.json"
# One palette for every figure: matplotlib's default colour cycle, named once.
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]

_smallest_text_px: dict[str, float] = {}  # PNG name -> smallest text drawn in it (pixels of the PNG)


def _replace(path: Path, write: Callable[[Path], object]) -> Path:
    """Have ``write`` write a temporary file beside ``path``, then move it onto ``path`` in one
    step: other processes may build the site from this folder meanwhile, and must never read a
    half-written figure or table. Returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}{path.suffix}")  # mkdocs skips dot files
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _write_text(path: Path, text: str) -> Path:
    """Write a generated table (or other text) to ``path``, replacing it in one step."""
    return _replace(path, lambda temporary: temporary.write_text(text))


def _png_width(path: Path) -> int:
    """The width in pixels that a PNG's header (IHDR, the first chunk) records."""
    header = path.read_bytes()[:24]
    return int.from_bytes(header[16:20], "big")


def _drawn(path: Path, draw: Callable[[Path], object]) -> Path:
    """Have ``draw`` save one PNG to ``path`` (through ``_replace``), record the size of the
    smallest text it drew, and refuse it (ValueError, nothing written) when that text would be
    shown under READABLE_PT CSS px: the PNG at its own size, or scaled down to COLUMN_PX when
    wider. Figures drawn by the experiment scripts and other modules are saved inside them, out of
    reach of ``_save``: the record is taken at matplotlib's ``Text.draw``, the same for every
    figure, in pixels of the saved image (the renderer's DPI)."""
    sizes: list[float] = []
    original = Text.draw

    def recording(text: Text, renderer) -> None:
        if text.get_visible() and text.get_text().strip():
            sizes.append(renderer.points_to_pixels(text.get_fontsize()))
        original(text, renderer)

    def checked(temporary: Path) -> None:
        Text.draw = recording
        try:
            draw(temporary)
        finally:
            Text.draw = original
        width = _png_width(temporary)
        shown = min(sizes) * min(1.0, COLUMN_PX / width)
        if shown < READABLE_PT - 1e-6:
            raise ValueError(f"{path.name}: text of {min(sizes):.1f} px in a PNG {width} px wide is shown at "
                             f"{shown:.1f} px in the {COLUMN_PX} px column, under READABLE_PT = {READABLE_PT}")

    _replace(path, checked)
    _smallest_text_px[path.name] = round(min(sizes), 2)
    return path


def _redrawn(script: ModuleType) -> list[Path]:
    """An experiment's figure and table, redrawn from its committed results with the script's
    own ``plot_results`` and ``table_markdown``: its ``DEFAULT_RESULTS`` (the reference's run,
    the site's recorded result) drawn into ``OUT`` under the name of its ``DEFAULT_PLOT``, and
    the table beside it as ``<figure>_table.md``, which the page includes (pymdownx.snippets).
    Returns both paths: the table is a build product that ships with the figures."""
    results = json.loads(script.DEFAULT_RESULTS.read_text())
    figure = OUT / script.DEFAULT_PLOT.name
    path = _drawn(figure, lambda to: script.plot_results(results, to))
    return [path, _write_text(OUT / f"{figure.stem}_table.md", script.table_markdown(results) + "\n")]


def _figure(height: float, width: float = COLUMN_INCHES, **kwargs) -> Figure:
    """A constrained-layout Figure ``width`` x ``height`` inches (the column's width by default)."""
    return Figure(figsize=(width, height), layout="constrained", **kwargs)


def _save(fig: Figure, name: str) -> Path:
    """Write ``fig`` as ``OUT/name.png`` with no version-dependent metadata; return the path.
    Refuses a figure wider than the column or with text under READABLE_PT: it would be shown
    with text smaller than READABLE_PT CSS px."""
    if fig.get_figwidth() > COLUMN_INCHES + 1e-6:
        raise ValueError(f"{name}: {fig.get_figwidth():.2f} inches wide, the column holds {COLUMN_INCHES:.2f}")
    # "Software" would record the matplotlib version; without it the bytes depend only on
    # the drawing (and the installed renderer).
    path = _drawn(OUT / f"{name}.png", lambda to: fig.savefig(to, format="png", dpi=DPI, metadata={"Software": None}))
    smallest = _smallest_text_px[path.name] * 72 / DPI
    if smallest < READABLE_PT - 1e-6:
        raise ValueError(f"{name}: text of {smallest:g} pt, under READABLE_PT = {READABLE_PT}")
    return path


def _write_text_sizes() -> Path:
    """Write TEXT_SIZES: the floor in CSS px and each PNG's smallest text in its own pixels."""
    record = {"floor_px": READABLE_PT, "smallest_text_px": dict(sorted(_smallest_text_px.items()))}
    return _write_text(OUT / TEXT_SIZES, json.dumps(record, indent=1) + "\n")


# Block diagrams (chapters 01 and 05) are drawn from these: one fill colour per kind of part
# (chapter 05's sublayer boxes use the attention colour), a box and an arrow.
NORM_FILL, ATTENTION_FILL, FFN_FILL, EMBEDDING_FILL = "#dbe9f6", "#fde3c8", "#d9f0d3", "#e8dcf3"


def _box(ax, x: float, y: float, text: str, color: str, width: float = 1.5, height: float = 0.5) -> None:
    """A rounded box of ``width`` x ``height`` centred on (x, y), labelled ``text``."""
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.05", fc=color,
                                ec="black", lw=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=TEXT)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], color: str = "black") -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", color=color, lw=1.2,
                                                          shrinkA=0, shrinkB=0))


# --------------------------------------------------------------------------------------
# Chapter 01: transformer architecture
# --------------------------------------------------------------------------------------

def _residual(ax, x: float, branch_y: float, sum_y: float, side: float) -> None:
    """A skip connection: from the stream at ``branch_y`` out to ``x + side``, up, and into the
    side of the "add & norm" box centred at ``sum_y`` (boxes are 3.6 wide)."""
    ax.plot([x, x + side, x + side], [branch_y, branch_y, sum_y], color=COLORS[2], lw=2.2)
    _arrow(ax, (x + side, sum_y), (x + 1.85 * side / abs(side), sum_y), COLORS[2])


def architecture() -> Path:
    """The encoder-decoder of Vaswani et al. (2017) as the reference's ``Transformer`` wires it.

    Post-norm layers (``norm_first=False``, the default): every sublayer sits in a residual
    connection (green) followed by a LayerNorm ("add & norm"). One token embedding serves the
    source, the target and, transposed, the output layer. The encoder's output (``memory``)
    is the key and value of every decoder layer's cross-attention. Drawn with patches only; no
    model is run.
    """
    fig = _figure(9.6)
    ax = fig.subplots()
    ax.set_xlim(0, 14)
    ax.set_ylim(0, 15.4)
    ax.set_axis_off()
    enc, dec, width, h = 3.6, 9.6, 3.6, 0.56

    def stack(x: float, top: float, label: str, boxes: list[tuple[float, str, str]], side: float) -> float:
        """A frame from y = 3.2 to ``top`` holding ``boxes`` (centre y, text, fill), the stream
        drawn between them and a skip connection around every sublayer; returns the y where the
        stack's output leaves its last box."""
        ax.add_patch(FancyBboxPatch((x - 2.4, 3.2), 4.8, top - 3.2, boxstyle="round,pad=0.1", fc="#f4f4f4",
                                    ec="gray", lw=1.0))
        ax.text(x - 2.35, top + 0.2, label, ha="left", va="bottom", fontsize=TITLE, weight="bold")
        previous = 2.85  # the "+" of the positions
        for y, text, fill in boxes:
            _arrow(ax, (x, previous), (x, y - h / 2 - 0.05))
            _box(ax, x, y, text, fill, width=width, height=h)
            previous = y + h / 2 + 0.05
            if text != "add & norm":  # a sublayer: its skip starts just below it, ends at the next box
                _residual(ax, x, y - h / 2 - 0.3, y + 1.0, side)
        return previous

    for x, tokens, shape in [(enc, "source tokens src  (B, S)", "(B, S, D)"),
                             (dec, "target tokens tgt  (B, T)", "(B, T, D)")]:
        ax.text(x, 0.35, tokens, ha="center", va="center", fontsize=TEXT)
        _arrow(ax, (x, 0.6), (x, 1.5 - h / 2 - 0.05))
        _box(ax, x, 1.5, "token embedding E,  \u00d7 \u221aD", EMBEDDING_FILL, width=width, height=h)
        _arrow(ax, (x, 1.5 + h / 2 + 0.05), (x, 2.35))
        ax.text(x, 2.6, "+", ha="center", va="center", fontsize=13,
                bbox=dict(boxstyle="circle,pad=0.15", fc="white", ec="black"))
        side = -1 if x == enc else 1
        ax.text(x + side * 0.45, 2.6, "sinusoidal\npositions", ha="right" if side < 0 else "left", va="center",
                fontsize=TEXT)
        ax.text(x - side * 0.45, 2.6, shape, ha="left" if side < 0 else "right", va="center", fontsize=TEXT,
                color="gray")

    top = stack(enc, 8.0, "encoder \u00d7 L", [
        (3.95, "self-attention, padding mask", ATTENTION_FILL),
        (4.95, "add & norm", NORM_FILL),
        (6.15, "feed-forward (ReLU)", FFN_FILL),
        (7.15, "add & norm", NORM_FILL),
    ], side=-2.1)
    _arrow(ax, (enc, top), (enc, 8.75))
    ax.plot(enc, 8.8, "o", color="black", ms=4)
    ax.text(enc, 9.05, "memory  (B, S, D): the keys and values\nof every decoder layer's cross-attention",
            ha="center", va="bottom", fontsize=TEXT)

    top = stack(dec, 10.4, "decoder \u00d7 L", [
        (3.95, "causal self-attention", ATTENTION_FILL),
        (4.95, "add & norm", NORM_FILL),
        (6.15, "cross-attention, source padding", ATTENTION_FILL),
        (7.15, "add & norm", NORM_FILL),
        (8.35, "feed-forward (ReLU)", FFN_FILL),
        (9.35, "add & norm", NORM_FILL),
    ], side=2.1)
    # memory -> every decoder layer's cross-attention, as its keys and values
    ax.plot([enc, 6.6, 6.6], [8.8, 8.8, 6.15], color=COLORS[4], lw=2)
    _arrow(ax, (6.6, 6.15), (dec - width / 2 - 0.06, 6.15), COLORS[4])
    ax.text(6.7, 6.4, "K, V", ha="left", va="bottom", fontsize=TEXT, color=COLORS[4])
    ax.text(dec - 0.12, 5.5, "Q", ha="right", va="center", fontsize=TEXT, color=COLORS[4])

    _arrow(ax, (dec, top), (dec, 11.3 - h / 2 - 0.05))
    _box(ax, dec, 11.3, "output layer: h E\u1d40 (tied, no bias)", EMBEDDING_FILL, width=width, height=h)
    _arrow(ax, (dec, 11.3 + h / 2 + 0.05), (dec, 12.15))
    ax.text(dec, 12.4, "logits  (B, T, V)", ha="center", va="center", fontsize=TEXT)

    # One matrix E (V x D): both embeddings and the output layer.
    tied = dict(color=COLORS[4], lw=1.3, ls="--")
    ax.plot([enc + width / 2 + 0.05, dec - width / 2 - 0.05], [1.5, 1.5], **tied)
    ax.text((enc + dec) / 2, 1.6, "the same E", ha="center", va="bottom", fontsize=TEXT, color=COLORS[4])
    ax.plot([dec + width / 2 + 0.05, 12.9, 12.9, dec + width / 2 + 0.05], [1.5, 1.5, 11.3, 11.3], **tied)
    ax.text(13.1, 6.4, "the same E (V \u00d7 D), transposed: tied weights", ha="left", va="center", fontsize=TEXT,
            color=COLORS[4], rotation=90)

    ax.text(0.3, 15.1, "Post-norm, as in 2017 and the default here:\n"
            "    x = norm(x + sublayer(x))  in every \"add & norm\".\n"
            "Pre-norm (norm_first=True): x = x + sublayer(norm(x)),\n"
            "    and one more norm after each stack\n"
            "    (encoder_norm, decoder_norm).\n\n"
            "Green: the residual stream's skip connections.\n"
            "Dropout (after the embeddings and on every\n"
            "sublayer's output) is not drawn.",
            ha="left", va="top", fontsize=TEXT, linespacing=1.35)
    ax.set_title("The encoder-decoder transformer: Transformer(vocab_size, d_model, num_heads, num_layers, d_ff)",
                 fontsize=TITLE)
    return _save(fig, "01_architecture")


def family_masks() -> Path:
    """Who may attend to whom in each family, as the course's boolean masks (True = may attend).

    Built from the reference's ``padding_to_ignore`` and ``future_mask``, which produce
    ``nn.MultiheadAttention``'s convention (True = ignore); the figure inverts them back. One
    source sentence padded to 6 tokens (``attention_mask`` ``[1, 1, 1, 1, 0, 0]``) and its
    translation, 5 target tokens.
    """
    source = ["the", "cat", "sat", "down", "<pad>", "<pad>"]
    target = ["<s>", "le", "chat", "s'est", "assis"]
    attention_mask = torch.tensor([[1, 1, 1, 1, 0, 0]])  # (B, S), True (1) for real tokens
    ignore = padding_to_ignore(attention_mask)[0]  # (S,): True = pad, nn.MultiheadAttention's convention
    panels = [
        ("Encoder self-attention\n(BERT; T5's encoder):\nall real keys", ~ignore.expand(6, 6), source, source),
        ("Decoder self-attention\n(GPT; T5's decoder): causal,\nand no padding keys",
         ~(future_mask(6) | ignore), source, source),
        ("Cross-attention (T5): every\ndecoder query reads all\nreal source tokens", ~ignore.expand(5, 6), target,
         source),
    ]
    fig = _figure(5.0)
    for ax, (title, allowed, queries, keys) in zip(fig.subplots(1, 3), panels):
        ax.imshow(allowed.float().numpy(), cmap="Blues", vmin=-0.25, vmax=1.2)
        for i in range(len(queries)):
            for j in range(len(keys)):
                ax.text(j, i, "T" if allowed[i, j] else "F", ha="center", va="center", fontsize=TEXT,
                        color="white" if allowed[i, j] else "black")
        ax.set_xticks(range(len(keys)), keys, rotation=45, ha="right")
        ax.set_yticks(range(len(queries)), queries)
        ax.set_xlabel("key (source)" if queries is target else "key")
        ax.set_ylabel("query (target)" if queries is target else "query")
        ax.set_title(title, fontsize=TITLE)
    fig.suptitle("Attention masks of the three families: True (dark) = may attend;\n"
                 "source attention_mask = [1, 1, 1, 1, 0, 0]", fontsize=SUPTITLE)
    return _save(fig, "01_family_masks")


# The Quick Start model of the README: Transformer(10000, 512, 8, 6, 2048).
QUICK_START = dict(vocab_size=10_000, d_model=512, num_heads=8, num_layers=6, d_ff=2048)


def _parameters_by_part(model: torch.nn.Module) -> dict[str, int]:
    """``count_parameters`` of each kind of submodule, summed over the layers; the parts add
    up to the whole model (checked)."""
    stacks = [("encoder", model.encoder_layers), ("decoder", model.decoder_layers)] if isinstance(
        model, Transformer) else [("", model.layers)]
    parts = {"embedding": count_parameters(model.embedding)}
    for stack, layers in stacks:
        prefix = f"{stack} " if stack else ""
        parts[f"{prefix}self-attention"] = sum(count_parameters(layer.self_attn) for layer in layers)
        if stack == "decoder":
            parts["decoder cross-attention"] = sum(count_parameters(layer.cross_attn) for layer in layers)
        parts[f"{prefix}feed-forward"] = sum(count_parameters(layer.linear1) + count_parameters(layer.linear2)
                                             for layer in layers)
        parts[f"{prefix}norms"] = sum(count_parameters(module) for layer in layers for name, module in
                                      layer.named_children() if name.startswith("norm"))
    assert sum(parts.values()) == count_parameters(model), parts
    return parts


def attention_patterns() -> list[Path]:
    """The attention-patterns experiment's grid and table, from its committed results.

    ``site/scripts/experiment_attention.py`` trains a tiny encoder-decoder to reverse tokens and
    records every layer's and head's attention on a held-out sequence in
    ``site/docs/results/attention_patterns.json``; the site redraws it with the script's own
    ``plot_results`` and ``table_markdown``, as for the other chapters' experiments. Returns both
    paths.
    """
    return _redrawn(experiment_attention)


def parameter_count() -> list[Path]:
    """Where the Quick Start model's 49,258,496 parameters are, and the same layers as the other
    two families.

    The models are built on PyTorch's ``meta`` device: parameters with shapes and no storage,
    so counting a 49 M-parameter model costs no memory and no initialisation. Left: the
    encoder-decoder by part (``count_parameters`` of its submodules), checked against
    ``transformer_parameter_count``. Right: ``EncoderOnly``, ``DecoderOnly`` and ``Transformer``
    with the same arguments. Also writes the table of the derivation that the page includes.
    Returns both paths.
    """
    with torch.device("meta"):
        models = {"EncoderOnly\n(BERT-style)": EncoderOnly(**QUICK_START),
                  "DecoderOnly\n(GPT-style)": DecoderOnly(**QUICK_START),
                  "Transformer\n(encoder-\ndecoder)": Transformer(**QUICK_START)}
    parts = _parameters_by_part(models["Transformer\n(encoder-\ndecoder)"])
    total = sum(parts.values())
    V, D, L, F = (QUICK_START[k] for k in ("vocab_size", "d_model", "num_layers", "d_ff"))
    assert total == transformer_parameter_count(V, D, L, F) == 49_258_496

    fig = _figure(5.0)
    bars, families = fig.subplots(1, 2, width_ratios=[1.0, 1.0])
    fill = {"embedding": EMBEDDING_FILL, "self-attention": ATTENTION_FILL, "cross-attention": "#f6b98a",
            "feed-forward": FFN_FILL, "norms": NORM_FILL}

    def kind(part: str) -> str:
        return part.removeprefix("encoder ").removeprefix("decoder ")

    names = list(parts)
    bars.barh(names, [parts[n] / 1e6 for n in names], color=[fill[kind(n)] for n in names], edgecolor="black",
              lw=0.6, height=0.65)
    for row, name in enumerate(names):
        bars.text(parts[name] / 1e6 + 0.2, row, f"{parts[name]:,}  ({100 * parts[name] / total:.2f}%)",
                  va="center", fontsize=TEXT)
    bars.invert_yaxis()
    bars.set_xlim(0, 26.5)  # room for the labels right of the longest bars
    bars.set_xticks(range(0, 15, 5))
    bars.set_xlabel("parameters (millions)")
    bars.set_title(f"Transformer(10000, 512, 8, 6, 2048):\n{total:,} parameters by part", fontsize=TITLE)

    slots = [1.25 * column for column in range(len(models))]  # bar centres, wide enough for the labels
    for column, (label, model) in zip(slots, models.items()):
        bottom = 0.0
        by_part = _parameters_by_part(model)
        for part, count in by_part.items():
            families.bar(column, count / 1e6, bottom=bottom, color=fill[kind(part)], edgecolor="black", lw=0.6,
                         width=0.6)
            bottom += count / 1e6
        families.text(column, bottom + 0.6, f"{count_parameters(model):,}", ha="center", va="bottom", fontsize=TEXT)
    families.set_xticks(slots, list(models))
    families.set_ylim(0, 56)
    families.set_ylabel("parameters (millions)")
    spans = {"encoder": 0.0, "decoder": 0.0}  # where each stack sits in the encoder-decoder's bar
    for part, count in parts.items():
        for stack in spans:
            spans[stack] += count / 1e6 if part.startswith(stack) else 0.0
    start = parts["embedding"] / 1e6
    for stack, height in spans.items():
        families.plot([slots[-1] + 0.35] * 2, [start + 0.3, start + height - 0.3], color="black", lw=1)
        families.text(slots[-1] + 0.42, start + height / 2, f"{stack}\n{height:.1f} M", ha="left", va="center",
                      fontsize=TEXT)
        start += height
    families.set_xlim(-0.6, slots[-1] + 1.25)
    families.set_title("Three families, the same arguments\n(L = 6 per stack; colours as on the left)", fontsize=TITLE)
    path = _save(fig, "01_parameter_count")

    attention, feed_forward, norm = 4 * D * D + 4 * D, 2 * D * F + F + D, 2 * D  # one of each, with biases
    formulas = {  # part: (parameters in one layer, as the page writes it and as a number)
        "encoder self-attention": ("4D^2 + 4D", attention),
        "encoder feed-forward": ("2DF + F + D", feed_forward),
        "encoder norms": ("2 \\cdot 2D", 2 * norm),
        "decoder self-attention": ("4D^2 + 4D", attention),
        "decoder cross-attention": ("4D^2 + 4D", attention),
        "decoder feed-forward": ("2DF + F + D", feed_forward),
        "decoder norms": ("3 \\cdot 2D", 3 * norm),
    }
    rows = ["| part | in one layer | one layer | layers | total | share |",
            "|---|---|---:|---:|---:|---:|",
            f"| embedding $E$, shared with the output layer | $VD$ (once) | | | {parts['embedding']:,} | "
            f"{100 * parts['embedding'] / total:.2f}% |"]
    for name, (formula, one) in formulas.items():
        assert one * L == parts[name], name  # the formula agrees with the built model
        rows.append(f"| {name} | ${formula}$ | {one:,} | {L} | {parts[name]:,} | {100 * parts[name] / total:.2f}% |")
    rows.append(f"| **total** | $VD + L\\,(12D^2 + 4DF + 2F + 24D)$ | | | **{total:,}** | 100% |")
    return [path, _write_text(OUT / "01_parameter_table.md", "\n".join(rows) + "\n")]


# --------------------------------------------------------------------------------------
# Chapter 02: multi-head attention
# --------------------------------------------------------------------------------------


def attention_heads() -> Path:
    """Four heads with four different jobs, drawn with ``graders.viz`` under a causal mask.

    A randomly initialised layer attends almost uniformly, and training one on a toy task
    would make the picture depend on the optimizer and the number of steps. Instead we set
    the projections by hand so that each head implements one pattern found in trained
    language models, and the figure shows what "different heads learn different things"
    looks like:

    * head 0, previous token: q at position ``p`` is k at position ``p - 1`` (a rotation of
      the positional features), so the score peaks one step back;
    * head 1, first token (an "attention sink"): every query has the same constant q (the
      ``q_proj`` bias) and only the first token's k is non-zero;
    * head 2, same token: q and k are the token's one-hot identity, so a query attends to
      every earlier copy of itself;
    * head 3, recent tokens: a slow positional frequency whose score decreases with the
      distance, a soft window over the last few tokens.

    Input layout of ``x`` (d_model = 32, 4 heads of 8 dims):
    dims 0-7 positional features ``cos/sin(w_f p)`` with ``w_f = 2 pi f / 13``, f = 1..4;
    dims 8-15 token one-hot; dim 16 "is first token"; dims 17-18 ``cos/sin(2 pi p / 26)``.
    The value and output projections keep their seeded random init: they do not change the
    weights drawn here.
    """
    torch.manual_seed(SEED)
    tokens = "<s> the cat saw the dog and the dog saw the cat".split()
    vocab = list(dict.fromkeys(tokens))  # 6 types, in order of appearance
    T, D, H = len(tokens), 32, 4
    Dh = D // H
    freqs = [2 * math.pi * f / 13 for f in range(1, 5)]  # period 13 > T: no wrap-around aliasing
    slow = 2 * math.pi / 26  # cos(slow * d) decreases over d = 0..12

    x = torch.zeros(1, T, D)  # (B, T, D)
    for p, tok in enumerate(tokens):
        for f, w in enumerate(freqs):
            x[0, p, 2 * f], x[0, p, 2 * f + 1] = math.cos(w * p), math.sin(w * p)
        x[0, p, 8 + vocab.index(tok)] = 1.0
        x[0, p, 17], x[0, p, 18] = math.cos(slow * p), math.sin(slow * p)
    x[0, 0, 16] = 1.0

    mha = MultiHeadAttention(D, H)
    Wq = torch.zeros(D, D)  # (out, in): rows h*Dh:(h+1)*Dh are head h's query
    Wk = torch.zeros(D, D)
    bq = torch.zeros(D)
    # Head 0: rotate each (cos, sin) pair back by one step, so q(p) = k(p - 1).
    for f, w in enumerate(freqs):
        c, s = math.cos(w), math.sin(w)
        Wq[2 * f : 2 * f + 2, 2 * f : 2 * f + 2] = 10.0 * torch.tensor([[c, s], [-s, c]])
        Wk[2 * f : 2 * f + 2, 2 * f : 2 * f + 2] = torch.eye(2)
    # Head 1: constant query, key non-zero only on the first token.
    bq[Dh] = 20.0
    Wk[Dh, 16] = 1.0
    # Head 2: token identity against token identity.
    Wq[2 * Dh : 2 * Dh + 8, 8:16] = 20.0 * torch.eye(8)
    Wk[2 * Dh : 2 * Dh + 8, 8:16] = torch.eye(8)
    # Head 3: the slow positional pair against itself: score = 40 cos(slow * distance).
    Wq[3 * Dh : 3 * Dh + 2, 17:19] = 40.0 * torch.eye(2)
    Wk[3 * Dh : 3 * Dh + 2, 17:19] = torch.eye(2)
    with torch.no_grad():
        mha.q_proj.weight.copy_(Wq)
        mha.q_proj.bias.copy_(bq)
        mha.k_proj.weight.copy_(Wk)
        mha.k_proj.bias.zero_()

    weights = attention_weights(mha, x, mask=causal_mask(T))  # (1, H, T, T)
    fig = plot_attention_heads(weights, tokens=tokens, title="Four hand-set heads under a causal mask")
    fig.set_size_inches(COLUMN_INCHES, 3.9)  # graders.viz sizes it for a notebook, with smaller text
    for ax, job in zip(fig.axes, ["previous token", "first token", "same token", "recent tokens"]):
        ax.set_title(f"{ax.get_title()}:\n{job}", fontsize=TITLE)
        ax.tick_params(labelsize=TEXT)
    return _save(fig, "attention_heads")


def masks() -> Path:
    """The three boolean masks of the chapter (True = may attend), as grids."""
    causal = causal_mask(6)  # (6, 6)
    cached = causal_mask(2, 6)  # (2, 6): two new queries after four cached positions
    attention_mask = torch.tensor([True, True, True, True, False, False])  # (S,): 2 pad tokens
    padding = attention_mask[None, :].expand(6, 6)  # (T, S), one sequence of the batch
    panels = [
        ("causal_mask(6)\n", causal, range(6)),
        ("causal_mask(2, 6):\n2 new queries, 4 cached", cached, range(4, 6)),
        ("padding: attention_mask\n[:, None, None, :]", padding, range(6)),
    ]
    fig = _figure(4.1)
    axes = fig.subplots(1, 3)
    for ax, (title, mask, rows) in zip(axes, panels):
        grid = torch.full((6, 6), float("nan"))  # rows that are not queries stay blank
        grid[list(rows)] = mask.float()
        ax.imshow(grid.numpy(), cmap="Blues", vmin=-0.25, vmax=1.2)
        for i in rows:
            for j in range(6):
                allowed = bool(grid[i, j])
                ax.text(
                    j,
                    i,
                    "T" if allowed else "F",
                    ha="center",
                    va="center",
                    fontsize=TEXT,
                    color="white" if allowed else "black",
                )
        if len(rows) < 6:
            ax.text(
                2.5,
                1.5,
                "positions 0-3: keys already\nin the cache, no query",
                ha="center",
                va="center",
                fontsize=TEXT,
                color="gray",
            )
        ax.set_title(title, fontsize=TITLE)
        ax.set_xticks(range(6))
        ax.set_yticks(range(6))
        ax.set_xlabel("key position")
    axes[0].set_ylabel("query (absolute position)")
    fig.suptitle("Boolean masks: True (dark) = may attend", fontsize=SUPTITLE)
    return _save(fig, "masks")


def gqa_sharing() -> Path:
    """Which key/value head each query head reads, for H = 8 and Hkv = 8, 2, 1: one row each."""
    H = 8
    configs = [(8, "multi-head (Hkv = 8)"), (2, "grouped-query (Hkv = 2)"), (1, "multi-query (Hkv = 1)")]
    fig = _figure(5.6)
    axes = fig.subplots(3, 1)
    for ax, (Hkv, title) in zip(axes, configs):
        R = H // Hkv
        kv_x = [(g + 0.5) * H / Hkv - 0.5 for g in range(Hkv)]  # centre each kv head under its group
        for h in range(H):
            g = h // R  # the kv head that query head h reads
            color = COLORS[g % len(COLORS)]
            ax.plot([h, kv_x[g]], [1.0, 0.0], color=color, lw=1.5, zorder=1)
            ax.add_patch(FancyBboxPatch((h - 0.38, 0.86), 0.76, 0.28, boxstyle="round,pad=0.02", fc="white", ec=color,
                                        lw=1.5))
            ax.text(h, 1.0, f"q{h}", ha="center", va="center", fontsize=TEXT)
        for g in range(Hkv):
            color = COLORS[g % len(COLORS)]
            ax.add_patch(FancyBboxPatch((kv_x[g] - 0.38, -0.14), 0.76, 0.28, boxstyle="round,pad=0.02", fc=color,
                                        ec=color))
            ax.text(kv_x[g], 0.0, f"kv{g}", ha="center", va="center", fontsize=TEXT, color="white")
        ax.text(H + 0.1, 0.95, title, ha="left", va="center", fontsize=TITLE, weight="bold")
        ax.text(H + 0.1, 0.75, f"R = {R}: query head h reads\nkv head h // {R}\nKV cache: {Hkv}/{H} of multi-head",
                ha="left", va="top", fontsize=TEXT)
        ax.set_xlim(-0.5, H + 4.3)
        ax.set_ylim(-0.25, 1.25)
        ax.set_axis_off()
    return _save(fig, "gqa_sharing")


def score_scaling() -> Path:
    """Why divide by sqrt(d_k): the spread of q.k and how peaked the softmax gets."""
    g = torch.Generator().manual_seed(SEED)
    dims = [4, 8, 16, 32, 64, 128, 256, 512]
    S, N = 32, 512  # keys per query, queries per dimension
    std_raw, std_scaled, peak_raw, peak_scaled = [], [], [], []
    for d in dims:
        q = torch.randn(N, 1, d, generator=g)  # (N, 1, d), unit-variance entries
        k = torch.randn(N, S, d, generator=g)  # (N, S, d)
        scores = (q * k).sum(-1)  # (N, S): variance d
        std_raw.append(scores.std().item())
        std_scaled.append((scores / math.sqrt(d)).std().item())
        peak_raw.append(softmax(scores).amax(-1).mean().item())
        peak_scaled.append(softmax(scores / math.sqrt(d)).amax(-1).mean().item())
    fig = _figure(3.6)
    left, right = fig.subplots(1, 2)
    left.plot(dims, std_raw, "o-", color=COLORS[3], label=r"$q \cdot k$")
    left.plot(dims, std_scaled, "o-", color=COLORS[0], label=r"$q \cdot k / \sqrt{d_k}$")
    left.plot(dims, [math.sqrt(d) for d in dims], ":", color="gray", label=r"$\sqrt{d_k}$")
    left.set_xscale("log", base=2)
    left.set_yscale("log", base=2)
    left.set_xlabel(r"$d_k$")
    left.set_ylabel("standard deviation of the score")
    left.set_title("Scores spread like $\\sqrt{d_k}$", fontsize=TITLE)
    left.legend(fontsize=TEXT)
    right.plot(dims, peak_raw, "o-", color=COLORS[3], label="unscaled")
    right.plot(dims, peak_scaled, "o-", color=COLORS[0], label=r"scaled by $1/\sqrt{d_k}$")
    right.axhline(1 / S, ls=":", color="gray", label=f"uniform (1/{S})")
    right.set_xscale("log", base=2)
    right.set_ylim(0, 1.05)
    right.set_xlabel(r"$d_k$")
    right.set_ylabel(f"mean largest weight ({S} keys)")
    right.set_title("Unscaled softmax saturates towards one-hot", fontsize=TITLE)
    right.legend(fontsize=TEXT)
    return _save(fig, "score_scaling")


def softmax_stability() -> Path:
    """Naive exp(x)/sum(exp(x)) against the max-subtracted softmax, as all logits shift.

    Softmax depends only on differences of logits: shifting them all by ``c`` changes nothing.
    The naive formula breaks at both ends: for large ``c``, ``exp`` overflows (x/inf = 0, then
    inf/inf = NaN); for very negative ``c`` it underflows to subnormals (wrong ratios), then to
    0 (0/0 = NaN).
    """
    shifts = torch.linspace(-130.0, 130.0, 521)  # (N,)
    base = torch.tensor([0.0, 1.0, 2.0])  # logits are shift + base
    fig = _figure(3.6)
    ax = fig.subplots()
    stable = softmax(shifts[:, None] + base)[:, -1]  # (N,): the same value for every shift
    ax.plot(shifts, stable, color=COLORS[0], lw=6, alpha=0.35, label="stable (subtract the max)")
    for dtype, color, y in [(torch.float32, COLORS[3], 0.45), (torch.float16, COLORS[1], 0.25)]:
        x = (shifts[:, None] + base).to(dtype)  # (N, 3)
        e = torch.exp(x)
        naive = (e / e.sum(-1, keepdim=True))[:, -1].float()  # (N,): NaN once exp over/underflows
        finite = torch.isfinite(naive)
        right = (naive - stable).abs() < 1e-2  # NaN compares False: not right
        name = str(dtype).removeprefix("torch.")
        ax.plot(shifts[finite], naive[finite], color=color, lw=1.5, label=f"naive, {name}")
        lo, hi = shifts[right].min().item(), shifts[right].max().item()
        for edge in (lo, hi):
            ax.axvline(edge, color=color, ls="--", lw=1)
        ax.annotate(
            f"naive {name}: right only for c in [{lo:.0f}, {hi:.0f}], wrong or NaN outside",
            xy=(0, y),
            ha="center",
            color=color,
            fontsize=TEXT,
        )
    ax.set_xlabel("shift c (logits = [c, c + 1, c + 2])")
    ax.set_ylabel("weight of the largest logit")
    ax.set_ylim(0.0, 1.0)
    ax.set_title("Softmax ignores a common shift; the naive formula does not survive it", fontsize=TITLE)
    ax.legend(fontsize=TEXT, loc="upper right")
    return _save(fig, "softmax_stability")


# --------------------------------------------------------------------------------------
# Chapter 03: positional encodings
# --------------------------------------------------------------------------------------


def sinusoid_table() -> Path:
    """The sinusoidal table of the 2017 paper as a heatmap, and a few of its columns as curves.

    Left: 128 positions x 64 dims; the fast pairs on the left change every position, the slow
    pairs on the right barely move over 128 positions. Right: the sine column of four pairs
    against the position, with its wavelength ``2 pi * 10000 ** (2i / d)`` in the legend.
    """
    P, D = 128, 64
    table = sinusoidal_encoding(P, D)  # (P, D)
    fig = _figure(5.0)
    left, right = fig.subplots(1, 2, width_ratios=[1.0, 1.0])
    image = left.imshow(table.numpy(), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    left.set_xlabel("dimension\n(pairs 2i, 2i + 1: sin, cos)")
    left.set_ylabel("position p")
    left.set_title(f"sinusoidal_encoding({P}, {D})", fontsize=TITLE)
    fig.colorbar(image, ax=left, shrink=0.85)
    positions = torch.arange(P)
    for color, i in zip(COLORS, [0, 3, 8, 16]):
        wavelength = 2 * math.pi * 10000.0 ** (2 * i / D)
        right.plot(positions, table[:, 2 * i], color=color, lw=1.4,
                   label=f"dim {2 * i} (pair i = {i}): wavelength {wavelength:.1f}")
    right.set_xlabel("position p")
    right.set_ylabel("PE[p, 2i]")
    right.set_ylim(-1.1, 1.1)
    right.set_yticks([-1, -0.5, 0, 0.5, 1])
    right.set_xlim(0, P - 1)
    right.set_title("The sine of four pairs:\nwavelengths 2\u03c0 \u00b7 10000^(2i/d)", fontsize=TITLE)
    fig.legend(fontsize=TEXT, loc="outside lower center", ncols=2)
    return _save(fig, "sinusoid_table")


def rope_relative() -> Path:
    """RoPE's relative-position property, next to what an additive absolute encoding does.

    One fixed random query and key (head_dim 64). Left: the score of the query rotated for
    position ``m`` with the key rotated for position ``n``, against ``m - n``, for four very
    different absolute positions of the key: the curves lie on top of each other. Middle: the
    same with the sinusoidal table *added* to q and k instead: the score depends on where the
    pair sits, not only on its distance. Right: what RoPE does to one pair: the vector turns by
    ``theta_i`` per position, the fastest pair by 1 radian, a slower one by much less.
    """
    Dh = 64
    g = torch.Generator().manual_seed(SEED)
    q = torch.randn(Dh, generator=g)  # (Dh,)
    k = torch.randn(Dh, generator=g)  # (Dh,)
    rope = RotaryEmbedding(Dh)
    offsets = torch.arange(-40, 41)  # m - n
    starts = [64, 1000, 10_000, 100_000]  # the key's absolute position n
    table = sinusoidal_encoding(100_000 + 41, Dh)  # (P, Dh)

    fig = _figure(5.2)
    left, middle, right = fig.subplots(1, 3, width_ratios=[1.0, 1.0, 0.85])
    for color, width, n in zip(COLORS, [6, 4, 2.2, 1.0], starts):
        m = n + offsets  # (N,) query positions
        q_rot = rope(q.expand(len(m), Dh), positions=m)  # (N, Dh)
        k_rot = rope(k.expand(len(m), Dh), positions=torch.full_like(m, n))  # (N, Dh)
        left.plot(offsets, (q_rot * k_rot).sum(-1), color=color, lw=width, alpha=0.75, label=f"key at n = {n:,}")
        q_abs = q + table[m]  # (N, Dh)
        k_abs = k + table[n]  # (Dh,)
        middle.plot(offsets, (q_abs * k_abs).sum(-1), color=color, lw=1.5, label=f"key at n = {n:,}")
    for ax, title in [(left, "RoPE: <R_m q, R_n k>\ndepends only on m \u2212 n"),
                      (middle, "Added sinusoids:\n<q + PE_m, k + PE_n>\ndepends on n too")]:
        ax.axvline(0, color="gray", lw=0.8, ls=":")
        ax.set_xlabel("m \u2212 n (query position\nminus key position)")
        ax.set_title(title, fontsize=TITLE)
    left.set_ylabel("score")
    fig.legend(*left.get_legend_handles_labels(), fontsize=TEXT, loc="outside lower center", ncols=4)

    # Two pairs, both starting at (a, b) = (1, 0): with head_dim 4 and base 16 the frequencies
    # are theta_0 = 1 and theta_1 = 16 ** (-1/2) = 0.25 radian per position. Half-split pairing:
    # pair 0 is dims (0, 2), pair 1 is dims (1, 3).
    circle = torch.linspace(0, 2 * math.pi, 200)
    right.plot(circle.cos(), circle.sin(), color="lightgray", lw=1)
    right.plot(0.7 * circle.cos(), 0.7 * circle.sin(), color="lightgray", lw=1)
    turned = RotaryEmbedding(4, base=16.0)(torch.tensor([1.0, 1.0, 0.0, 0.0]).expand(8, 4))  # (8, 4), positions 0..7
    for color, (dim_a, dim_b), label, radius in [(COLORS[0], (0, 2), "theta = 1 rad", 1.0),
                                                 (COLORS[1], (1, 3), "theta = 0.25 rad", 0.7)]:
        for p in range(8):
            a, b = radius * turned[p, dim_a].item(), radius * turned[p, dim_b].item()
            right.annotate("", xy=(a, b), xytext=(0, 0),
                           arrowprops=dict(arrowstyle="-|>", color=color, lw=1.2, alpha=0.3 + 0.1 * p))
            right.text(1.14 * a, 1.14 * b, str(p), color=color, fontsize=TEXT, ha="center", va="center")
        right.plot([], [], color=color, label=label)
    right.set_xlim(-1.3, 1.3)
    right.set_ylim(-1.3, 1.3)
    right.set_aspect("equal")
    right.set_xticks([])
    right.set_yticks([])
    right.set_title("One pair, positions 0-7:\na rotation by p\u00b7theta", fontsize=TITLE)
    right.legend(fontsize=TEXT, loc="upper center", bbox_to_anchor=(0.5, -0.02), title="per position")
    return _save(fig, "rope_relative")


def alibi_bias_figure() -> Path:
    """ALiBi's bias for four of eight heads, on one colour scale, slopes in the titles.

    ``alibi_bias`` is symmetric (``-slope * |i - j|``); in a decoder the causal mask removes
    everything above the diagonal, so that part is drawn faded.
    """
    H, T = 8, 12
    bias = alibi_bias(H, T)  # (H, T, T)
    slopes = alibi_slopes(H)  # (H,)
    heads = [0, 1, 3, 7]
    future = ~causal_mask(T)  # (T, T): True above the diagonal
    fig = _figure(3.6)
    axes = fig.subplots(1, len(heads))
    low = bias[heads].min().item()
    for ax, h in zip(axes, heads):
        image = ax.imshow(bias[h].numpy(), cmap="magma", vmin=low, vmax=0, interpolation="nearest")
        veil = torch.where(future, 1.0, float("nan"))  # (T, T): white, half transparent, above the diagonal
        ax.imshow(veil.numpy(), cmap=ListedColormap(["white"]), alpha=0.7, interpolation="nearest")
        slope = slopes[h].item()
        ax.set_title(f"head {h}: slope m = 1/{round(1 / slope)}\n(row {T - 1}: 0 \u2026 {bias[h, -1, 0].item():.2f})",
                     fontsize=TITLE)
        ax.set_xlabel("key position j")
        ax.set_xticks(range(0, T, 2))
        ax.set_yticks(range(0, T, 2))
    axes[0].set_ylabel("query position i")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="bias = \u2212m \u00b7 |i \u2212 j|")
    fig.suptitle(f"alibi_bias({H}, {T}): one slope per head; faded: the part a causal mask removes", fontsize=SUPTITLE)
    return _save(fig, "alibi_bias")


def positional_extrapolation() -> list[Path]:
    """The length-extrapolation experiment's plot and table, from its committed results.

    ``site/scripts/experiment_positional.py`` trains the models and writes
    ``site/docs/results/positional_extrapolation.json`` (a run takes far longer than a figure
    should, so the site only redraws it). Its ``plot_results`` draws the figure and its
    ``table_markdown`` the table that the page includes (pymdownx.snippets) next to it.
    Returns both paths: the table is a build product that ships with the figures.
    """
    return _redrawn(experiment_positional)


# --------------------------------------------------------------------------------------
# Chapter 04: feed-forward networks
# --------------------------------------------------------------------------------------


def _sigmoid_gelu(x: torch.Tensor) -> torch.Tensor:
    """The GELU paper's cruder approximation, ``x * sigmoid(1.702 x)``: a contrast, no course module has it."""
    return x * torch.sigmoid(1.702 * x)


def activations() -> Path:
    """The chapter's activations, their derivatives, and how far the two GELU approximations stray.

    Left: ReLU, GELU (erf), GELU (tanh), SiLU and ``x * sigmoid(1.702 x)`` on [-4, 4]; the tanh
    curve is drawn dashed over the exact one, where it is indistinguishable. Middle: their
    derivatives, taken by autograd through the reference's functions in float64 (GELU's dips
    below 0 and overshoots 1). Right: the zoom the first panel cannot show, the absolute gap of
    each approximation to the exact GELU on a log scale: the tanh form stays under 5e-4, the
    sigmoid form reaches 2e-2.
    """
    x = torch.linspace(-4.0, 4.0, 801, dtype=torch.float64)  # step 0.01, includes 0
    curves = [  # (label, function, colour, line style, width)
        ("ReLU", relu, COLORS[7], "-", 1.6),
        ("GELU (erf, exact)", gelu, COLORS[0], "-", 3.2),
        ("GELU (tanh approx.)", lambda t: gelu(t, approximate="tanh"), COLORS[1], "--", 1.4),
        ("x\u00b7\u03c3(1.702x)", _sigmoid_gelu, COLORS[4], ":", 1.8),
        ("SiLU / Swish", silu, COLORS[3], "-", 1.6),
    ]
    fig = _figure(4.6)
    values, slopes, gaps = fig.subplots(1, 3)
    for label, function, color, style, width in curves:
        xg = x.clone().requires_grad_(True)
        y = function(xg)
        (grad,) = torch.autograd.grad(y.sum(), xg)
        values.plot(x, y.detach(), color=color, ls=style, lw=width, label=label)
        slopes.plot(x, grad, color=color, ls=style, lw=width, label=label)
    for ax in (values, slopes):
        ax.axhline(0, color="gray", lw=0.6)
        ax.axvline(0, color="gray", lw=0.6)
        ax.set_xlabel("x")
        ax.set_xlim(-4, 4)
    values.set_ylim(-0.6, 4.0)
    values.set_ylabel("f(x)")
    values.set_title("Values: \u2248 x for large x,\n\u2248 0 for very negative x", fontsize=TITLE)
    values.legend(fontsize=TEXT, loc="upper left")
    # GELU's extremes (1 +- 0.129 at x = +-sqrt 2) and SiLU's (1 +- 0.0998 near x = +-2.40).
    slopes.axhline(1, color="gray", lw=0.6, ls=":")
    slopes.set_ylim(-0.25, 1.25)
    slopes.set_ylabel("f\u2032(x)")
    slopes.set_title("Derivatives: smooth, a little\nbelow 0 and above 1", fontsize=TITLE)
    slopes.annotate("GELU\u2032 min \u22120.129\nat x = \u2212\u221a2,\nmax 1.129\nat x = +\u221a2",
                    xy=(-math.sqrt(2), -0.129), xytext=(0.12, -0.2), va="bottom", fontsize=TEXT,
                    arrowprops=dict(arrowstyle="-", color="gray", lw=0.8))

    wide = torch.linspace(-8.0, 8.0, 3201, dtype=torch.float64)
    exact = gelu(wide)
    for label, function, color, offset in [("GELU (tanh approx.)", lambda t: gelu(t, approximate="tanh"), COLORS[1],
                                            (1.6, 40)),
                                           ("x\u00b7\u03c3(1.702x)", _sigmoid_gelu, COLORS[4], (-2.3, 50))]:
        gap = (function(wide) - exact).abs()  # (N,)
        peak = int(gap.argmax())
        gaps.plot(wide, gap.clamp_min(1e-12), color=color, lw=1.4, label=label)
        gaps.plot(wide[peak], gap[peak], "o", color=color, ms=4)
        gaps.annotate(f"max {gap[peak].item():.1e}\nat x = {wide[peak].item():.2f}", xy=(wide[peak], gap[peak]),
                      xytext=(wide[peak].item() + offset[0], gap[peak].item() * offset[1]), ha="center", fontsize=TEXT,
                      color=color,
                      arrowprops=dict(arrowstyle="-", color=color, lw=0.8))
    gaps.set_yscale("log")
    gaps.set_ylim(1e-9, 30)  # headroom for the labels
    gaps.set_xlim(-8, 8)
    gaps.set_xlabel("x")
    gaps.set_ylabel("|approximation \u2212 GELU (erf)|")
    gaps.set_title("Zoom: each approximation's\nerror (log scale; colours\nas on the left)", fontsize=TITLE)
    return _save(fig, "activations")


# name, d_model, query heads, key/value heads, d_ff, FFN kind, biases (and LayerNorm, else RMSNorm)
FFN_MODELS = [
    ("GPT-2 small", 768, 12, 12, 4 * 768, "classic", True),
    ("GPT-2 XL", 1600, 25, 25, 4 * 1600, "classic", True),
    ("GPT-3 175B", 12288, 96, 96, 4 * 12288, "classic", True),
    ("Llama 7B", 4096, 32, 32, swiglu_hidden_dim(4096), "swiglu", False),
    ("Llama 2 70B", 8192, 64, 8, swiglu_hidden_dim(8192, multiple_of=4096, ffn_dim_multiplier=1.3), "swiglu", False),
]


def _block_parameters(d_model: int, heads: int, kv_heads: int, d_ff: int, kind: str, bias: bool) -> dict[str, int]:
    """One block's parameters by part: attention (q, k, v, o; k and v narrower under grouped-query
    attention), the FFN (the reference's counts) and the two norms (LayerNorm: weight and bias;
    RMSNorm: weight)."""
    kv_width = kv_heads * (d_model // heads)
    attention = 2 * d_model * d_model + 2 * d_model * kv_width + ((2 * d_model + 2 * kv_width) if bias else 0)
    counter = feedforward_parameter_count if kind == "classic" else swiglu_parameter_count
    return {"attention": attention, "FFN": counter(d_model, d_ff, bias=bias), "norms": (4 if bias else 2) * d_model}


def ffn_share() -> Path:
    """The FFN's share of a block: of its parameters (five real models), and of its FLOPs per token
    as the context grows.

    Forward FLOPs per token and block, a multiply-add counted as 2: the weight matrices cost twice
    their parameter count; attention over ``T`` keys adds ``4 T D`` (``q k^T`` and the weighted sum
    of the values, ``2 T D`` each; grouped-query attention shares keys but not this work). Biases,
    norms, softmax and activations are left out: they are O(D) per token.
    """
    fig = _figure(4.8)
    params, flops = fig.subplots(1, 2, width_ratios=[1.0, 1.15])
    names = [model[0] for model in FFN_MODELS]
    parts = [_block_parameters(*model[1:]) for model in FFN_MODELS]
    left = [0.0] * len(parts)
    for part, color in [("FFN", COLORS[0]), ("attention", COLORS[1]), ("norms", COLORS[7])]:
        share = [100 * p[part] / sum(p.values()) for p in parts]
        params.barh(names, share, left=left, color=color, label=part, height=0.6)
        if part != "norms":  # the norms are < 0.1%: a label would not fit
            for row, (start, width) in enumerate(zip(left, share)):
                params.text(start + width / 2, row, f"{width:.1f}%", ha="center", va="center", fontsize=TEXT,
                            color="white")
        left = [a + b for a, b in zip(left, share)]
    params.invert_yaxis()
    params.axvline(100 * 2 / 3, color="black", ls="--", lw=1, label="2/3")
    params.set_xlim(0, 100)
    params.set_xlabel("share of one block's parameters (%)")
    params.set_title("Parameters: the FFN holds\nabout 2/3 of a block", fontsize=TITLE)
    params.legend(fontsize=TEXT, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=4, frameon=False)

    contexts = torch.logspace(7, 20, 200, base=2, dtype=torch.float64)  # T = 128 .. 1M
    for color, model, part in zip(COLORS, FFN_MODELS, parts):
        name, d_model = model[0], model[1]
        weights = 2 * (part["attention"] + part["FFN"])  # FLOPs of the matrix products, per token
        ffn = 2 * part["FFN"]
        total = weights + 4 * contexts * d_model  # (N,)
        flops.plot(contexts, 100 * ffn / total, color=color, lw=1.6, label=f"{name} (D = {d_model:,})")
        crossing = ffn / (4 * d_model)  # T at which attention's T-dependent FLOPs equal the FFN's
        flops.plot(crossing, 100 * ffn / (weights + ffn), "o", color=color, ms=5)
    flops.set_xscale("log", base=2)
    flops.set_xlim(2**7, 2**20)
    ticks = [2**k for k in range(7, 21, 2)]
    flops.set_xticks(ticks, [str(t) if t < 1024 else f"{t // 1024}K" if t < 2**20 else "1M" for t in ticks])
    flops.minorticks_off()
    flops.set_ylim(0, 130)  # headroom for the legend
    flops.set_yticks(range(0, 101, 20))
    flops.set_xlabel("context length T (keys each token attends to)")
    flops.set_ylabel("FFN share of a block's forward FLOPs (%)")
    flops.set_title("FLOPs per token: attention's 4TD\novertakes the FFN (dots: 4TD = FFN)", fontsize=TITLE)
    flops.legend(fontsize=TEXT, loc="upper right")
    return _save(fig, "ffn_share")


def ffn_ablation() -> list[Path]:
    """The FFN ablation's plot and table, from its committed results.

    ``site/scripts/experiment_ffn.py`` trains five small character models that differ only in
    their FFN (ReLU, GELU, GELU-tanh and SiLU at ``d_ff = 4D``, SwiGLU at two thirds of that) and
    writes ``site/docs/results/ffn_ablation.json``; as for chapter 03, the site only redraws it
    with the script's own ``plot_results`` and ``table_markdown``. Returns both paths.
    """
    return _redrawn(experiment_ffn)


# --------------------------------------------------------------------------------------
# Chapter 05: normalization
# --------------------------------------------------------------------------------------


def _cell_grid(ax, origin: tuple[float, float], rows: int, cols: int, colors: dict[tuple[int, int], str]) -> None:
    """Draw a ``rows x cols`` grid of unit cells with its top-left corner at ``origin``; ``colors``
    maps (row, col) to a fill colour, the other cells stay white."""
    x0, y0 = origin
    for r in range(rows):
        for c in range(cols):
            color = colors.get((r, c), "white")
            ax.add_patch(Rectangle((x0 + c, y0 - r - 1), 1, 1, fc=color, ec="gray", lw=0.6))


def norm_axes() -> Path:
    """Which elements of a (B, T, D) block share one set of statistics, for each norm.

    Each band of the figure is one norm; the block is drawn as its B = 3 sequences side by side,
    each a T x D grid (rows: positions t, columns: features d). Cells of one colour form one
    group of statistics; two groups are coloured per norm, and every white cell belongs to
    another group of the same kind.

    * BatchNorm: one group per feature d, over all B * T positions (statistics of shape (D,));
    * LayerNorm: one group per position (b, t), over its D features (shape (B, T, 1));
    * RMSNorm: the same groups as LayerNorm, but only the root mean square is taken.
    """
    B, T, D = 3, 4, 8
    gap, band = 2.0, T + 4.2  # between sequences; height of one norm's band
    bands = [  # name, {(b, t, d): colour}, what it means
        ("BatchNorm", {(b, t, d): color for b in range(B) for t in range(T) for d, color in [(1, COLORS[0]),
                                                                                           (5, COLORS[1])]},
         "one mean and variance per feature d, over all B\u00b7T positions of the batch: statistics of shape (D,).\n"
         "Training: this batch's statistics; eval: running averages. Sequences (and padding) share them."),
        ("LayerNorm", {(b, t, d): color for b, t, color in [(0, 1, COLORS[0]), (2, 3, COLORS[1])] for d in range(D)},
         "one mean and variance per position (b, t), over its own D features: statistics of shape (B, T, 1).\n"
         "The same computation in training and eval; no position sees another."),
        ("RMSNorm", {(b, t, d): color for b, t, color in [(0, 1, COLORS[0]), (2, 3, COLORS[1])] for d in range(D)},
         "the same groups as LayerNorm, but one root mean square per position: statistics of shape (B, T, 1).\n"
         "No mean is subtracted, and there is no bias."),
    ]
    fig = _figure(7.0)
    ax = fig.subplots()
    for k, (name, cells, text) in enumerate(bands):
        top = -k * band
        for b in range(B):
            x0 = b * (D + gap)
            _cell_grid(ax, (x0, top), T, D, {(t, d): c for (bb, t, d), c in cells.items() if bb == b})
            ax.text(x0 + D / 2, top + 0.3, f"sequence b = {b}", ha="center", va="bottom", fontsize=TEXT)
            ax.text(x0 + D / 2, top - T - 0.2, "features d \u2192", ha="center", va="top", fontsize=TEXT, color="gray")
        ax.text(-0.4, top - T / 2, "positions t \u2192", ha="right", va="center", rotation=90, fontsize=TEXT,
                color="gray")
        ax.text(-1.5, top - T / 2, name, ha="right", va="center", fontsize=SUPTITLE, weight="bold")
        ax.text(-7.5, top - T - 1.3, text, ha="left", va="top", fontsize=TEXT)
    ax.set_xlim(-7.6, B * (D + gap) - gap + 0.2)
    ax.set_ylim(-(len(bands) - 1) * band - T - 3.6, 1.4)
    ax.set_aspect("equal")
    ax.set_axis_off()
    fig.suptitle(f"Which elements of a (B, T, D) = ({B}, {T}, {D}) block share statistics: one colour = one group",
                 fontsize=TITLE)
    return _save(fig, "norm_axes")


def prepost_norm() -> Path:
    """The two wirings of a residual block, and what each does to the residual stream's scale.

    Left and middle: pre-norm ``x + sublayer(norm(x))`` and post-norm ``norm(x + sublayer(x))``,
    the identity path drawn thick. Right: a stack of 48 of the reference's ``ResidualBlock``
    (LayerNorm, an FFN sublayer of width 4D = 256, PyTorch's default initialisation, no
    training) on 256 random unit-variance inputs: the root mean square of the stream after
    each block, and the size of each block's update relative to the stream it is added to.
    Post-norm resets the stream to unit scale after every block; pre-norm lets it grow, so
    each later block changes it relatively less, and the stack needs a final norm.
    """
    fig = _figure(4.4)
    pre, post, scale = fig.subplots(1, 3, width_ratios=[0.7, 0.7, 1.5])
    norm_color, sub_color, skip = NORM_FILL, ATTENTION_FILL, COLORS[2]
    for ax, title in [(pre, "Pre-norm\n(GPT-2, Llama)"), (post, "Post-norm\n(2017, BERT)")]:
        ax.set_xlim(-1.6, 1.6)
        ax.set_ylim(-0.3, 5.3)
        ax.set_axis_off()
        ax.set_title(title, fontsize=TITLE)
        ax.text(0, -0.15, "x", ha="center", va="center", fontsize=TITLE)
    # Pre-norm: the branch is norm -> sublayer; the skip path goes straight to the sum.
    _arrow(pre, (0, 0.05), (0, 0.3))
    pre.plot([0, -1.1, -1.1, -0.17], [0.3, 0.3, 3.6, 3.6], color=skip, lw=3)
    _arrow(pre, (-0.4, 3.6), (-0.17, 3.6), skip)
    _arrow(pre, (0, 0.3), (0, 0.95))
    _box(pre, 0, 1.2, "norm", norm_color)
    _arrow(pre, (0, 1.45), (0, 2.05))
    _box(pre, 0, 2.3, "sublayer", sub_color)
    _arrow(pre, (0, 2.55), (0, 3.42))
    pre.text(0, 3.6, "+", ha="center", va="center", fontsize=14, bbox=dict(boxstyle="circle", fc="white", ec="black"))
    _arrow(pre, (0, 3.78), (0, 4.7))
    pre.text(0, 4.95, "x + sublayer(norm(x))", ha="center", va="center", fontsize=TEXT)
    pre.text(-1.2, 2.0, "identity path:\nnever normalized", ha="right", va="center", fontsize=TEXT, color=skip,
             rotation=90)
    # Post-norm: the sum comes first, then the norm, which sits on the identity path too.
    _arrow(post, (0, 0.05), (0, 0.3))
    post.plot([0, -1.1, -1.1, -0.17], [0.3, 0.3, 2.5, 2.5], color=skip, lw=3)
    _arrow(post, (-0.4, 2.5), (-0.17, 2.5), skip)
    _arrow(post, (0, 0.3), (0, 1.05))
    _box(post, 0, 1.3, "sublayer", sub_color)
    _arrow(post, (0, 1.55), (0, 2.32))
    post.text(0, 2.5, "+", ha="center", va="center", fontsize=14, bbox=dict(boxstyle="circle", fc="white", ec="black"))
    _arrow(post, (0, 2.68), (0, 3.35))
    _box(post, 0, 3.6, "norm", norm_color)
    _arrow(post, (0, 3.85), (0, 4.7))
    post.text(0, 4.95, "norm(x + sublayer(x))", ha="center", va="center", fontsize=TEXT)
    post.text(-1.2, 1.4, "skip path: normalized\nafter the sum", ha="right", va="center", fontsize=TEXT,
              color=skip, rotation=90)

    D, L, N = 64, 48, 256
    depth = list(range(L + 1))
    for prenorm, color, name in [(True, COLORS[0], "pre-norm"), (False, COLORS[3], "post-norm")]:
        torch.manual_seed(SEED)
        blocks = [ResidualBlock(FeedForward(D, 4 * D, activation="gelu"), D, prenorm=prenorm) for _ in range(L)]
        x = torch.randn(N, D, generator=torch.Generator().manual_seed(SEED))  # (N, D)
        rms, relative = [x.pow(2).mean().sqrt().item()], []
        with torch.inference_mode():  # a forward pass only: no graph
            for block in blocks:
                y = block(x)  # (N, D)
                relative.append(((y - x).pow(2).mean().sqrt() / x.pow(2).mean().sqrt()).item())
                x = y
                rms.append(x.pow(2).mean().sqrt().item())
        scale.plot(depth, rms, color=color, lw=2, label=f"{name}: RMS of the stream")
        scale.plot(depth[1:], relative, color=color, lw=1.2, ls="--", label=f"{name}: RMS(update) / RMS(stream)")
        if prenorm:
            scale.annotate(f"{rms[-1]:.2f} after {L} blocks:\na final norm brings\nit back to 1",
                           xy=(L, rms[-1]), xytext=(8, 1.75), fontsize=TEXT, color=color,
                           arrowprops=dict(arrowstyle="-", color=color, lw=0.8))
    scale.set_xlim(0, L)
    scale.set_ylim(0, 2.1)
    scale.set_xlabel("block")
    scale.set_ylabel("root mean square")
    scale.set_title(f"{L} blocks at initialisation\n(LayerNorm, FFN sublayer, D = {D})", fontsize=TITLE)
    scale.legend(fontsize=TEXT, loc="lower left", bbox_to_anchor=(0.0, 0.16))  # between the lines
    return _save(fig, "prepost_norm")


def norm_gradients() -> list[Path]:
    """The gradient-flow experiment's plot and table, from its committed results.

    ``site/scripts/experiment_norm.py`` measures per-layer gradient norms of small pre-norm and
    post-norm stacks and writes ``site/docs/results/norm_gradients.json``; as for chapters 03
    and 04, the site only redraws it with the script's own ``plot_results`` and
    ``table_markdown``. Returns both paths.
    """
    return _redrawn(experiment_norm)


def norm_bench() -> list[Path]:
    """The norm benchmark's plot and table, from its committed run.

    ``nox -s bench`` times the tree's ``LayerNorm`` and ``RMSNorm`` against PyTorch's, forward
    and backward; a recorded run of the reference is ``site/docs/results/norm_bench.json``, and
    ``graders.bench`` draws it (``plot_norm_bench``, the plot every bench run writes) and turns
    it into the table the page includes. Timings are never re-measured here: the page shows the
    recorded run.
    """
    results = json.loads((RESULTS / "norm_bench.json").read_text())
    table = _write_text(OUT / "norm_bench_table.md", bench.norm_table_markdown(results) + "\n")
    return [_drawn(OUT / "norm_bench.png", lambda to: bench.plot_norm_bench(results, to)), table]


# --------------------------------------------------------------------------------------
# Chapter 06: training dynamics
# --------------------------------------------------------------------------------------


def lr_schedules() -> Path:
    """The reference's two schedules. Left: ``cosine_schedule`` with and without a warm-up,
    over a 10,000-step run (peak 1e-3, floor 1e-4: a tenth of the peak). Right:
    ``noam_schedule`` as the 2017 paper ran it (``d_model`` 512 and 1024, 4,000 warm-up steps,
    100,000 steps for the base model), with its ``1 / sqrt(step)`` tail drawn on its own."""
    fig = _figure(4.2)
    cosine, noam = fig.subplots(1, 2)
    total, peak, floor = 10_000, 1e-3, 1e-4
    steps = range(0, total + 1001, 10)  # past the end: the floor holds
    for warmup, color, style in [(1000, COLORS[0], "-"), (0, COLORS[1], "--")]:
        rates = [cosine_schedule(s, max_lr=peak, min_lr=floor, warmup_steps=warmup, total_steps=total) for s in steps]
        label = f"warm-up {warmup:,} steps" if warmup else "no warm-up"
        cosine.plot(list(steps), rates, color=color, ls=style, lw=1.6, label=label)
    cosine.axvline(total, color="gray", lw=0.6, ls=":")
    cosine.axhline(floor, color="gray", lw=0.6, ls=":")
    cosine.annotate("min_lr from total_steps on", xy=(total, floor), xytext=(3000, 2e-5),
                    fontsize=TEXT, arrowprops=dict(arrowstyle="-", color="gray", lw=0.8))
    cosine.annotate("half-way down at the\nmiddle of the decay", xy=(5500, (peak + floor) / 2),
                    xytext=(6500, 6.2e-4), fontsize=TEXT, arrowprops=dict(arrowstyle="-", color="gray", lw=0.8))
    cosine.set_xlabel("step")
    cosine.set_ylabel("learning rate")
    cosine.set_title("cosine_schedule: linear warm-up,\ncosine decay to min_lr", fontsize=TITLE)
    cosine.legend(fontsize=TEXT, loc="upper right")
    cosine.set_xlim(0, total + 1000)
    cosine.set_ylim(0, peak * 1.08)

    steps = range(1, 100_001, 50)
    for d_model, color in [(512, COLORS[0]), (1024, COLORS[3])]:
        rates = [noam_schedule(s, d_model=d_model, warmup_steps=4000) for s in steps]
        noam.plot(list(steps), rates, color=color, lw=1.6, label=f"d_model {d_model}, warm-up 4,000")
        top = noam_schedule(4000, d_model=d_model, warmup_steps=4000)
        noam.plot(4000, top, "o", color=color, ms=4)
        noam.annotate(f"peak {top:.2e} at step 4,000", xy=(4000, top), xytext=(14000, top * 1.02), fontsize=TEXT,
                      color=color, va="center", arrowprops=dict(arrowstyle="-", color=color, lw=0.8))
    tail = range(1000, 100_001, 50)
    noam.plot(list(tail), [512 ** -0.5 * s ** -0.5 for s in tail], color="gray", lw=0.8, ls=":",
              label="d_model$^{-1/2}$ step$^{-1/2}$ (d_model 512)")
    noam.set_xlabel("step")
    noam.set_ylabel("learning rate")
    noam.set_title("noam_schedule (2017): the peak depends\non d_model and the warm-up", fontsize=TITLE)
    noam.legend(fontsize=TEXT, loc="upper right")
    noam.set_xlim(0, 100_000)
    noam.set_ylim(0, 1.25e-3)
    for ax in (cosine, noam):
        ax.xaxis.set_major_formatter(lambda step, _: f"{step / 1000:g}K" if step else "0")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    return _save(fig, "lr_schedules")


# The formats of the mixed-precision section, widest first: (name, dtype). float8 is in the table only.
FORMATS = [("float32", torch.float32), ("bfloat16", torch.bfloat16), ("float16", torch.float16),
           ("float8 e4m3", torch.float8_e4m3fn), ("float8 e5m2", torch.float8_e5m2)]
LOSS_SCALE = 2.0 ** 16  # torch.amp.GradScaler's initial scale


def _format_bits(dtype: torch.dtype) -> tuple[int, int]:
    """(exponent bits, mantissa bits) of a floating-point dtype, from its ``torch.finfo``."""
    info = torch.finfo(dtype)
    mantissa = round(-math.log2(info.eps))
    return info.bits - 1 - mantissa, mantissa


def _init_gradients() -> torch.Tensor:
    """The gradient elements of the chapter's experiment model at initialisation, for one
    training batch, in float32: the reference's ``cross_entropy``, one backward pass.

    The key biases are left out: adding the same number to every score of a softmax row
    changes nothing, so their exact gradient is 0, and what float32 computes for them (about
    1e-11) is rounding residue that would crowd the histogram's low end."""
    cfg = experiment_training.Config()
    splits = experiment_training.make_splits(cfg)
    model = experiment_training.build_model(len(splits.vocabulary), cfg)
    inputs, targets = experiment_training.batch_source(splits, cfg)("train", torch.Generator().manual_seed(SEED))
    cross_entropy(model(inputs), targets).backward()
    grads = []
    for name, p in model.named_parameters():
        if name.endswith("self_attn.in_proj_bias"):  # q, k, v biases packed: drop k's, the middle third
            grads += [p.grad[: cfg.d_model], p.grad[2 * cfg.d_model:]]
        else:
            grads.append(p.grad.flatten())
    return torch.cat(grads)  # (parameters - key biases,)


def precision_formats() -> list[Path]:
    """What float32, bfloat16 and float16 can hold, and where a small model's gradients fall.

    Left: each format's range on a log scale, from the smallest subnormal through the smallest
    normal number to the largest finite one (``torch.finfo``). Right: the magnitudes of every
    gradient element of the chapter's experiment model at initialisation (one batch, computed
    in float32, the key biases left out: see ``_init_gradients``), and the same values
    multiplied by GradScaler's initial scale 2^16: the share
    below float16's smallest normal (stored with fewer significant bits) and below half its
    smallest subnormal (rounded to 0) is written on the panel. Also writes the table of the
    formats (float8 included) that the page includes. Returns both paths.
    """
    fig = _figure(4.8)
    ranges, grads = fig.subplots(1, 2, width_ratios=[1.0, 1.0])
    shown = FORMATS[:3]
    for row, (name, dtype) in enumerate(shown):
        info = torch.finfo(dtype)
        low, normal, high = math.log10(info.smallest_normal * info.eps), math.log10(info.smallest_normal), \
            math.log10(info.max)
        ranges.barh(row, normal - low, left=low, color=COLORS[row], alpha=0.35, height=0.55)
        ranges.barh(row, high - normal, left=normal, color=COLORS[row], height=0.55)
        ranges.text(high + 1, row, f"max {info.max:.3g}", va="center", fontsize=TEXT)
        ranges.text(low - 1, row, f"{info.smallest_normal * info.eps:.2g}", va="center", ha="right", fontsize=TEXT)
    ranges.set_yticks(range(len(shown)), [f"{name}\n1 + {_format_bits(dtype)[0]} + {_format_bits(dtype)[1]} bits"
                                          for name, dtype in shown])
    ranges.invert_yaxis()
    ranges.set_xlim(-76, 80)  # room for the labels beside the bars
    ranges.set_xlabel("log10 |x|  (pale: subnormal numbers;\nsolid: normal numbers)")
    ranges.set_title("Range of each format: bfloat16 keeps\nfloat32's exponent, float16 does not", fontsize=TITLE)

    magnitudes = _init_gradients().abs().double()
    magnitudes = magnitudes[magnitudes > 0]
    half = torch.finfo(torch.float16)
    bins = [b / 4 for b in range(-13 * 4, 5 * 4 + 1)]  # log10 bins of a quarter decade
    highest = 0.0
    for values, color, label, left in [(magnitudes, COLORS[0], "gradients", 0.02),
                                       (magnitudes * LOSS_SCALE, COLORS[1], "gradients \u00d7 2^16\n(loss scaling)",
                                        0.52)]:
        counts, _, _ = grads.hist(values.log10().tolist(), bins=bins, color=color, alpha=0.55)
        highest = max(highest, counts.max())
        normal = int((values < half.smallest_normal).sum())
        zero = int((values < half.smallest_normal * half.eps / 2).sum())
        grads.text(left, 0.97, f"{label}:\n{normal:,} ({100 * normal / values.numel():.1f}%)\nbelow float16's\n"
                   f"smallest normal;\n{zero:,} rounded to 0", transform=grads.transAxes, fontsize=TEXT,
                   color=color, va="top")
    grads.set_ylim(0, 2.0 * highest)  # the top part holds the two texts
    marks = [(math.log10(half.smallest_normal * half.eps), "subnormal"), (math.log10(half.smallest_normal), "normal"),
             (math.log10(half.max), "largest")]
    for x, _ in marks:
        grads.axvline(x, ymax=0.55, color="black", lw=0.8, ls="--")
    top = grads.secondary_xaxis("top")
    top.set_xticks([x for x, _ in marks], [text for _, text in marks])
    for label, side in zip(top.get_xticklabels(), ["right", "left", "right"]):  # apart, and inside the axes
        label.set_horizontalalignment(side)
    grads.set_xlim(-13, 5)
    grads.set_xlabel("log10 |gradient element|")
    grads.set_ylabel("elements")
    grads.set_title(f"{magnitudes.numel():,} gradient elements at init\n(dashed: float16's smallest "
                    "subnormal,\nsmallest normal and largest number)", fontsize=TITLE)
    path = _save(fig, "precision_formats")

    rows = ["| format | bits: sign + exponent + mantissa | largest finite | smallest normal | smallest subnormal "
            "| machine eps | decimal digits |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for name, dtype in FORMATS:
        info = torch.finfo(dtype)
        exponent, mantissa = _format_bits(dtype)
        rows.append(f"| {name} | 1 + {exponent} + {mantissa} | {info.max:.4g} | {info.smallest_normal:.3g} | "
                    f"{info.smallest_normal * info.eps:.3g} | {info.eps:.3g} | "
                    f"{(mantissa + 1) * math.log10(2):.1f} |")
    return [path, _write_text(OUT / "precision_table.md", "\n".join(rows) + "\n")]


# Models trained with known N and D, for the scaling-law figure: (name, parameters, tokens).
TRAINED_MODELS = [("GPT-3", 175e9, 300e9), ("Gopher", 280e9, 300e9), ("Chinchilla", 70e9, 1.4e12)]
GOPHER_BUDGET = 5.76e23  # FLOPs: the budget of Hoffmann et al.'s comparison, Gopher's
FITS = [("Hoffmann et al. 2022", CHINCHILLA, "black", "-"), ("Besiroglu et al. 2024 refit", CHINCHILLA_REFIT,
                                                                 COLORS[3], "--")]


def _log_grid(low: float, high: float, count: int) -> torch.Tensor:
    return torch.logspace(math.log10(low), math.log10(high), count, dtype=torch.float64)


def _count(value: float) -> str:
    """A parameter or token count in millions, billions or trillions, three significant digits."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def scaling_laws() -> list[Path]:
    """Chinchilla's loss surface, its compute-optimal frontier under both fits, and Kaplan's L(N).

    Top left: contours of Hoffmann et al.'s ``L(N, D)`` (``chinchilla_loss``) over parameters
    and tokens, the iso-FLOP lines ``6 N D = C`` (dotted), and ``compute_optimal``'s frontier
    for budgets from 1e18 to 1e26 FLOPs under the original constants and Besiroglu et al.'s
    refit, with three trained models (labelled with their ``training_flops``) and both optima
    for Gopher's budget. Top right: the loss
    along five iso-FLOP lines as a function of N (Hoffmann et al.'s "IsoFLOP profiles"), each
    fit's minimum marked. Bottom left: tokens per parameter at the optimum against compute.
    Bottom right: the loss of a model trained without a data limit, Kaplan et al.'s pure power
    law against Chinchilla's ``E + A / N**alpha``. Also writes the table of optima. Returns both
    paths.
    """
    fig = _figure(10.2)
    (surface, profiles), (ratio, kaplan) = fig.subplots(2, 2)
    # One legend for the two fits, which every panel draws the same way.
    fig.legend(handles=[Line2D([], [], color=color, ls=style, lw=1.8) for _, _, color, style in FITS],
               labels=[name for name, _, _, _ in FITS], loc="outside upper center", ncols=2)

    n = _log_grid(1e7, 1e13, 241)  # parameters
    d = _log_grid(1e9, 1e15, 241)  # tokens
    loss = chinchilla_loss(n[None, :], d[:, None])  # (D, N)
    levels = [1.8, 1.85, 1.9, 2.0, 2.1, 2.25, 2.5, 2.75, 3.0, 3.5]
    filled = surface.contourf(n.tolist(), d.tolist(), loss.tolist(), levels=[1.69] + levels + [10.0], cmap="viridis_r",
                              alpha=0.8)
    lines = surface.contour(n.tolist(), d.tolist(), loss.tolist(), levels=levels, colors="white", linewidths=0.5)
    surface.clabel(lines, levels=[1.9, 2.1, 2.5, 3.0], fmt="%.2f", fontsize=TEXT)
    fig.colorbar(filled, ax=surface, label="L(N, D), nats per token", ticks=levels[::2] + [levels[-1]])
    for exponent in range(18, 27, 2):  # iso-FLOP lines: D = C / (6 N)
        flops = 10.0 ** exponent
        surface.plot(n.tolist(), (flops / 6 / n).tolist(), color="white", lw=0.7, ls=":")
        if exponent % 4 == 2:  # every other line labelled: 1e18, 1e22, 1e26
            label_n = max(math.sqrt(flops / 6 / 1000), 1.2e7)  # near D = 1000 N, left of the frontiers
            surface.text(label_n, flops / 6 / label_n, f"C = 1e{exponent}", color="white", fontsize=TEXT, ha="left",
                         va="center", bbox=dict(boxstyle="round,pad=0.15", fc="#00000055", ec="none"))
    budgets = _log_grid(1e18, 1e26, 81)
    for name, params, color, style in FITS:
        optimum = [compute_optimal(c.item(), params) for c in budgets]
        surface.plot([o[0] for o in optimum], [o[1] for o in optimum], color=color, ls=style, lw=1.8)
        best_n, best_d = compute_optimal(GOPHER_BUDGET, params)
        surface.plot(best_n, best_d, "*", color=color, ms=11, markeredgecolor="white", zorder=5)
    # Labels away from the frontiers, right of them and below (where only contours run), with leader lines.
    for (name, params_count, tokens), (at, side) in zip(TRAINED_MODELS, [((9e10, 5e10), "right"),
                                                                        ((4e11, 5e10), "left"),
                                                                        ((5e11, 4e12), "left")]):
        surface.plot(params_count, tokens, "o", color="white", markeredgecolor="black", ms=5, zorder=4)
        surface.annotate(f"{name}\n{training_flops(params_count, tokens):.1e}", (params_count, tokens), xytext=at,
                         fontsize=TEXT, color="white", ha=side, va="center",
                         bbox=dict(boxstyle="round,pad=0.15", fc="#00000077", ec="none"),
                         arrowprops=dict(arrowstyle="-", color="white", lw=0.8))
    surface.set_xscale("log")
    surface.set_yscale("log")
    surface.set_xlim(1e7, 1e13)
    surface.set_ylim(1e9, 1e15)
    surface.set_xlabel("parameters N")
    surface.set_ylabel("training tokens D")
    surface.set_title("L(N, D), iso-FLOP lines 6ND = C\n(dotted); stars: optima for 5.76e23", fontsize=TITLE)

    for exponent, color in zip(range(19, 28, 2), COLORS):
        flops = 10.0 ** exponent
        sizes = _log_grid(1e6, 1e14, 200)
        for name, params, _, style in FITS:
            along = chinchilla_loss(sizes, flops / 6 / sizes, **params)
            profiles.plot(sizes.tolist(), along.tolist(), color=color, ls=style, lw=1.4,
                          label=f"C = 1e{exponent}" if style == "-" else None)
            best_n, best_d = compute_optimal(flops, params)
            profiles.plot(best_n, chinchilla_loss(best_n, best_d, **params), "o", color=color, ms=4,
                          markerfacecolor="white" if style == "--" else color)
    profiles.set_xscale("log")
    profiles.set_xlim(1e6, 1e14)
    profiles.set_ylim(1.6, 3.6)
    profiles.set_xlabel("parameters N (tokens D = C / 6N)")
    profiles.set_ylabel("predicted loss")
    profiles.set_title("Loss along 6ND = C\n(dots: each fit's minimum)", fontsize=TITLE)
    profiles.legend(loc="lower left")

    for name, params, color, style in FITS:
        optimum = [compute_optimal(c.item(), params) for c in budgets]
        ratio.plot(budgets.tolist(), [tokens / size for size, tokens in optimum], color=color, ls=style, lw=1.8)
        size, tokens = compute_optimal(GOPHER_BUDGET, params)
        ratio.plot(GOPHER_BUDGET, tokens / size, "*", color=color, ms=10)
        ratio.annotate(f"{size / 1e9:.0f}B params, {tokens / 1e12:.2f}T tokens", (GOPHER_BUDGET, tokens / size),
                       xytext=(-150, 16 if style == "-" else -24), textcoords="offset points", fontsize=TEXT,
                       color=color)
    ratio.axhline(20, color="gray", lw=0.8, ls=":")
    ratio.set_xscale("log")
    ratio.set_yscale("log")
    ratio.set_ylim(8, 300)
    ratio.set_yticks([10, 20, 100], ["10", "20", "100"])
    ratio.set_xlabel("compute C (FLOPs)")
    ratio.set_ylabel("optimal tokens per parameter D / N")
    ratio.set_title("Where the two fits part: D/N at the\noptimum (dotted: 20 per parameter)", fontsize=TITLE)

    sizes = _log_grid(1e6, 1e13, 200)
    kaplan.plot(sizes.tolist(), kaplan_loss(sizes).tolist(), color=COLORS[0], lw=1.8,
                label="Kaplan et al. 2020:\n(8.8e13 / N)^0.076")
    for name, params, color, style in FITS:
        kaplan.plot(sizes.tolist(), (params["E"] + params["A"] / sizes ** params["alpha"]).tolist(), color=color,
                    ls=style, lw=1.4, label="E + A / N^alpha,\neach fit" if style == "-" else None)
        kaplan.axhline(params["E"], color=color, lw=0.6, ls=":")
    kaplan.set_xscale("log")
    kaplan.set_xlim(1e6, 1e13)
    kaplan.set_ylim(1.5, 5.0)
    kaplan.set_xlabel("parameters N")
    kaplan.set_ylabel("loss with unlimited data")
    kaplan.set_title("L(N) with unlimited data: a pure\npower law, or a floor E", fontsize=TITLE)
    kaplan.legend(loc="upper right")
    path = _save(fig, "scaling_laws")

    rows = ["| compute (FLOPs) | fit | parameters | tokens | tokens per parameter | predicted loss |",
            "|---|---|---:|---:|---:|---:|"]
    for flops in (1e19, 1e21, 1e23, GOPHER_BUDGET, 1e25):
        for name, params, _, _ in FITS:
            size, tokens = compute_optimal(flops, params)
            rows.append(f"| {flops:.3g} | {name} | {_count(size)} | {_count(tokens)} | {tokens / size:.1f} | "
                        f"{chinchilla_loss(size, tokens, **params):.3f} |")
    return [path, _write_text(OUT / "scaling_table.md", "\n".join(rows) + "\n")]


def training_dynamics() -> list[Path]:
    """The warm-up experiment's plot and table, from its committed results.

    ``site/scripts/experiment_training.py`` trains a tiny character model with the chapter's
    ``Trainer`` for every pair of peak learning rate and warm-up, and writes
    ``site/docs/results/training_dynamics.json``; as for the other chapters, the site only
    redraws it with the script's own ``plot_results`` and ``table_markdown``. Returns both paths.
    """
    return _redrawn(experiment_training)


# --------------------------------------------------------------------------------------
# Chapter 07: the capstone GPT
# --------------------------------------------------------------------------------------


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def capstone_model() -> Path:
    """The capstone's GPT as the reference builds it for the recorded ``cpu-tiny`` run.

    The model is built on the ``meta`` device from the ``gpt_config`` that
    ``site/docs/results/capstone_cpu-tiny.json`` records (shapes, no storage), and every label
    is read from it: the submodules' names (the ``state_dict`` keys) and classes, their shapes,
    each part's parameter count, whether the output layer shares the embedding's matrix. The
    drawing is the pre-norm stream, bottom to top: the embedding, ``n_layer`` blocks of
    ``x + attn(attn_norm(x))`` and ``x + ffn(ffn_norm(x))`` (the residual stream green), the
    final norm and the output layer.
    """
    config = json.loads((RESULTS / "capstone_cpu-tiny.json").read_text())["gpt_config"]
    with torch.device("meta"):
        model = GPT(GPTConfig(**config))
    block = model.blocks[0]
    L, H, D, V = model.config.n_layer, model.config.n_head, model.config.d_model, model.config.vocab_size
    F, Dh, T = block.ffn.w2.in_features, model.config.head_dim, model.config.block_size
    tied = model.lm_head.weight is model.embedding.weight
    positions = {"rope": f"RoPE on q and k (head dim {Dh})", "alibi": "ALiBi bias on the scores"}.get(
        model.config.pos, "no positions: added after the embedding")

    fig = _figure(9.6)
    ax = fig.subplots()
    ax.set_xlim(0, 14)
    ax.set_ylim(-0.2, 14.4)
    ax.set_axis_off()
    x, width, h = 5.8, 5.8, 0.62  # the stream's x, box width and height
    count_x, chapter_x = x + width / 2 + 0.45, x + width / 2 + 2.35  # two columns right of the boxes

    def part(y: float, text: str, fill: str, count: str, chapter: str) -> None:
        _box(ax, x, y, text, fill, width=width, height=h)
        ax.text(count_x, y, count, ha="left", va="center", fontsize=TEXT, color="gray")
        ax.text(chapter_x, y, chapter, ha="left", va="center", fontsize=TEXT, color="gray")

    def plus(y: float) -> None:
        ax.text(x, y, "+", ha="center", va="center", fontsize=14, bbox=dict(boxstyle="circle,pad=0.15", fc="white",
                                                                            ec="black"))

    ax.text(x, 0.2, "idx  (B, T): character ids, T \u2264 block_size", ha="center", va="center", fontsize=TEXT)
    _arrow(ax, (x, 0.45), (x, 1.3 - h / 2 - 0.05))
    part(1.3, f"embedding: Embedding({V}, {D})", EMBEDDING_FILL, f"{_parameters(model.embedding):,}", "torch.nn")
    _arrow(ax, (x, 1.3 + h / 2 + 0.05), (x, 2.75))
    ax.text(x + 0.15, 2.2, "x  (B, T, D)", ha="left", va="center", fontsize=TEXT, color="gray")

    # One block, framed, with its two skip connections.
    ax.add_patch(FancyBboxPatch((x - width / 2 - 1.1, 2.75), width + 1.3, 6.75, boxstyle="round,pad=0.1", fc="#f4f4f4",
                                ec="gray", lw=1.0))
    ax.text(x - width / 2 - 1.05, 9.65, f"block \u00d7 {L}", ha="left", va="bottom", fontsize=TITLE, weight="bold")
    ax.text(count_x, 9.65, f"in each of blocks.0 \u2026 blocks.{L - 1}:", ha="left", va="bottom", fontsize=TEXT,
            color="gray", style="italic")
    rows = [(3.9, f"attn_norm: {type(block.attn_norm).__name__}({D})", NORM_FILL, block.attn_norm, "chapter 05"),
            (5.1, f"attn: {type(block.attn).__name__}, causal,\n{H} heads, {positions}", ATTENTION_FILL, block.attn,
             "chapters 02, 03"),
            (7.1, f"ffn_norm: {type(block.ffn_norm).__name__}({D})", NORM_FILL, block.ffn_norm, "chapter 05"),
            (8.3, f"ffn: {type(block.ffn).__name__}({D} \u2192 {F} \u2192 {D})", FFN_FILL, block.ffn, "chapter 04")]
    previous = 2.75
    for (y, text, fill, module, chapter), branch in zip(rows, [True, False, True, False]):
        if branch:  # the skip leaves the stream below the norm and rejoins it after the sublayer
            ax.plot([x, x - width / 2 - 0.6, x - width / 2 - 0.6], [y - 0.55, y - 0.55, y + 2.0], color=COLORS[2],
                    lw=2.2)
            _arrow(ax, (x - width / 2 - 0.6, y + 2.0), (x - 0.2, y + 2.0), COLORS[2])
        _arrow(ax, (x, previous), (x, y - h / 2 - 0.05))
        part(y, text, fill, f"{_parameters(module):,}", chapter)
        previous = y + h / 2 + 0.05
        if not branch:
            _arrow(ax, (x, previous), (x, y + 0.7))
            plus(y + 0.9)
            previous = y + 1.1
    _arrow(ax, (x, previous), (x, 10.9 - h / 2 - 0.05))
    part(10.9, f"norm: {type(model.norm).__name__}({D})", NORM_FILL, f"{_parameters(model.norm):,}", "chapter 05")
    _arrow(ax, (x, 10.9 + h / 2 + 0.05), (x, 12.1 - h / 2 - 0.05))
    part(12.1, f"lm_head: Linear({D} \u2192 {V}, no bias)", EMBEDDING_FILL,
         "tied" if tied else f"{_parameters(model.lm_head):,}", "torch.nn")
    _arrow(ax, (x, 12.1 + h / 2 + 0.05), (x, 12.95))
    ax.text(x, 13.2, "logits  (B, T, V): a score for every next character", ha="center", va="center", fontsize=TEXT)
    if tied:  # one V x D matrix: the embedding and, transposed, the output layer
        line = dict(color=COLORS[4], lw=1.3, ls="--")
        right = x - width / 2 - 1.7
        ax.plot([x - width / 2 - 0.05, right, right, x - width / 2 - 0.05], [1.3, 1.3, 12.1, 12.1], **line)
        ax.text(right - 0.15, 6.7, f"the same {V} \u00d7 {D} matrix (tied)", ha="right", va="center",
                fontsize=TEXT, color=COLORS[4], rotation=90)

    ax.text(count_x, 13.9, "parameters", ha="left", va="center", fontsize=TEXT, color="gray", weight="bold")
    ax.text(chapter_x, 13.9, "from", ha="left", va="center", fontsize=TEXT, color="gray", weight="bold")
    ax.text(count_x, 0.2, f"{_parameters(model):,} in all", ha="left", va="center", fontsize=TEXT, color="gray",
            weight="bold")
    fig.suptitle(f"The capstone GPT of the cpu-tiny run: L = {L}, H = {H}, D = {D}, F = {F}, V = {V}, block_size "
                 f"{T};\npre-norm, {model.config.pos}, {model.config.norm}, {model.config.ffn}; green: the residual "
                 "stream", fontsize=TITLE)
    return _save(fig, "07_capstone_model")


# In the order the pages use them.
def capstone_run() -> Path:
    """The recorded cpu-tiny run's loss curves, from ``site/docs/results/capstone_cpu-tiny.json``
    (written by ``site/scripts/capstone_results.py`` from a real ``nox -s capstone`` run)."""
    results = json.loads((RESULTS / "capstone_cpu-tiny.json").read_text())
    return _drawn(OUT / "07_capstone_cpu-tiny.png", lambda to: capstone_results.plot(results, to))


FIGURES: list[Callable[[], Path | list[Path]]] = [
    # chapter 01
    architecture,
    family_masks,
    parameter_count,
    attention_patterns,
    # chapter 02
    attention_heads,
    score_scaling,
    softmax_stability,
    masks,
    gqa_sharing,
    # chapter 03
    sinusoid_table,
    rope_relative,
    alibi_bias_figure,
    positional_extrapolation,
    # chapter 04
    activations,
    ffn_share,
    ffn_ablation,
    # chapter 05
    norm_axes,
    prepost_norm,
    norm_gradients,
    norm_bench,
    # chapter 06
    lr_schedules,
    precision_formats,
    scaling_laws,
    training_dynamics,
    # chapter 07
    capstone_model,
    capstone_run,
]


def main() -> None:
    """Write every figure (and generated table) and print each path, relative to the repository root."""
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    with matplotlib.rc_context(STYLE):
        for make in FIGURES:
            written = make()
            for path in written if isinstance(written, list) else [written]:
                print(path.relative_to(ROOT))
    print(_write_text_sizes().relative_to(ROOT))


if __name__ == "__main__":
    main()
