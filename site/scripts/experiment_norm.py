"""Chapter 05 experiment: how much gradient reaches each block of a deep residual stack, pre-norm or post-norm.

Run from the repository root (or `nox -s experiment-norm`)::

    python site/scripts/experiment_norm.py            # the full run: a few seconds, no training
    python site/scripts/experiment_norm.py --quick    # shallower stacks, a smoke test
    python site/scripts/experiment_norm.py --seed 1   # other weights and inputs (the spread)
    python site/scripts/experiment_norm.py --init he  # larger MLP weights (also: xavier)

Nothing is trained. For each configuration and each depth L (6, 24 and 48 blocks) the script
builds a stack of chapter 05 ``ResidualBlock`` s at initialisation, runs one batch of random
inputs through it, backpropagates one loss and records, for every block, the L2 norm of the
gradient of all its parameters (the sublayer's and the norm's, together): the gradient each
block would get at the first step of training. The configurations:

    pre_layernorm    ``x + f(LayerNorm(x))``, then a final LayerNorm (GPT-2's ``ln_f``)
    post_layernorm   ``LayerNorm(x + f(x))``; no final norm, the last block already ends in one
    pre_rmsnorm      ``x + f(RMSNorm(x))``, then a final RMSNorm (Llama)

Every sublayer ``f`` is the same small MLP, ``Linear(D, 4D) -> GELU -> Linear(4D, D)``, D = 64,
with PyTorch's default initialisation (``--init xavier`` or ``--init he`` draws larger weights);
the input is standard normal, ``(B, T, D)`` = (32, 16, 64). The loss is next-token-style: the
stack's output (after the final norm, for pre-norm) goes through a linear head to 256 classes,
and the loss is the cross-entropy against random targets, one per position, so the gradient
arriving at the top is the kind a language model gets at its first step. For a given depth and
seed, every configuration gets the same sublayer and head weights, the same inputs and targets:
only the wiring and the norm differ. It also records the gradient reaching the residual stream
at each block's input (the norm of dLoss/dx_l), the loss, and the root mean square of the last
block's output (before the final norm).

What the reference measured (seed 0; ``--seed 1`` gives the same picture). Read it as a
measurement of this small stack, not as a law:

* **The last block** is where the two wirings part, as Xiong et al. (2020, "On Layer
  Normalization in the Transformer Architecture") predict for the layer nearest the output.
  Post-norm's last-block gradient does not depend on depth (0.163, 0.163, 0.167 at 6, 24, 48
  blocks); pre-norm's shrinks as the stack grows (0.143, 0.112, 0.094), because the final norm
  divides the gradient by the size of the stream, and the stream grows with depth (RMS 1.12,
  1.44, 1.72): gradient times RMS stays at 0.16. Their theorem has post-norm's last-layer
  gradient independent of the depth L and pre-norm's shrinking like ``1/sqrt(L)`` (their
  branches add more to the stream than these do); in their account, the large gradients near
  post-norm's output are why it needs a learning-rate warm-up.
* **Across the blocks** of one stack, post-norm's gradients here are the even ones: at 48
  blocks the largest and the smallest per-block norms are within 9% of each other (23% with
  ``--seed 1``), and nothing vanishes towards the input. Pre-norm's vary more: the first
  block gets about 0.16 at every depth, the last one less, so the first-to-last ratio grows
  with depth (1.10, 1.42, 1.73), tracking the stream's RMS. With larger weights
  (``--init xavier``, ``--init he``) both spreads grow, and post-norm's early blocks get *more*
  gradient than its last (1.65x and 2.65x at 48 blocks), not less. The vanishing towards
  the input that deep post-norm models are known for was measured in full encoder-decoder
  transformers, chiefly in the decoder (Liu et al., 2020, "Understanding the Difficulty of
  Training Transformers"); this stack has neither attention nor a decoder, and does not show it.
* **RMSNorm** in pre-norm gives LayerNorm's gradients within 1.3% at every block: with
  zero-mean inputs and small branches, the mean that LayerNorm subtracts is small.

The norms come from the tree given by ``--impl`` (default ``reference_solutions/``, or
``assignments/`` in the student release): rerun it on your own chapter 05 once it passes. The
sublayers, the head and the loss are plain ``torch.nn``.

Notation used in the shape comments:
    B   batch size
    T   sequence length (positions per example; nothing mixes them: the sublayers act per position)
    D   d_model
    C   classes of the head

Structure, top to bottom: the configuration; the stack; the measurement; the outputs (JSON,
``plot_results``, ``table_markdown``, both importable without measuring); ``main``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import ModuleType

import matplotlib
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `experiment_common`, however this file is loaded
from experiment_common import (  # noqa: E402
    COLUMN_INCHES,
    EXIT_NOT_IMPLEMENTED,
    FONT_SIZES,
    ROOT,
    THREADS,
    add_output_options,
    add_tracking_option,
    default_impl,
    load_checked,
    open_run_tracker,
    output_paths,
    run_metadata,
    save_figure,
    start_tracking,
)

DEFAULT_RESULTS = ROOT / "site" / "docs" / "results" / "norm_gradients.json"
DEFAULT_PLOT = ROOT / "site" / "docs" / "figures" / "norm_gradients.png"
OWN_RUNS = ROOT / "reports" / "experiment_norm"  # runs on any --impl but the reference
# What the experiment calls in the course module (chapter 05).
REQUIRED = {"normalization": ("LayerNorm", "RMSNorm", "ResidualBlock")}
# name: (label, prenorm, norm). Pre-norm stacks end with a final norm of their kind.
CONFIGURATIONS = {
    "pre_layernorm": ("pre-norm, LayerNorm", True, "layernorm"),
    "post_layernorm": ("post-norm, LayerNorm", False, "layernorm"),
    "pre_rmsnorm": ("pre-norm, RMSNorm", True, "rmsnorm"),
}
NORM_CLASSES = {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm"}  # the final norm's class in the module
# The MLP's initialisation (--init). "pytorch" keeps nn.Linear's own: uniform, bound
# 1/sqrt(fan_in), a variance of 1/(3 fan_in), so each branch adds little to the stream. The
# other two draw larger weights and zero the biases: Xavier uniform (the 2017 Transformer's
# codebases), He normal (variance 2/fan_in, for a ReLU-like activation).
INITS = {
    "pytorch": None,
    "xavier": nn.init.xavier_uniform_,
    "he": lambda weight: nn.init.kaiming_normal_(weight, nonlinearity="relu"),
}
# Significant digits kept in the JSON: far finer than any difference the page reads, and no churn
# in the last bits of a float when the file is rewritten.
DIGITS = 6
DPI = 110
# The site's palette (matplotlib's default cycle); RMSNorm dashed, since it lies on LayerNorm's line.
STYLES = {
    "pre_layernorm": {"color": "#1f77b4", "linestyle": "-"},
    "post_layernorm": {"color": "#d62728", "linestyle": "-"},
    "pre_rmsnorm": {"color": "#ff7f0e", "linestyle": (0, (4, 2))},
}


@dataclass(frozen=True)
class Config:
    """Everything that decides the numbers; written into the results JSON as it is."""

    d_model: int = 64
    d_ff: int = 256  # the MLP sublayer's hidden width, 4 * d_model
    depths: tuple[int, ...] = (6, 24, 48)  # residual blocks per stack
    batch_size: int = 32
    seq_len: int = 16  # positions per example; B * T = 512 vectors in the batch
    num_classes: int = 256  # the head's outputs, a vocabulary's stand-in
    seed: int = 0  # the weights, the inputs and the targets
    init: str = "pytorch"  # the MLP's weights: one of INITS


# Shallow stacks and a small batch: checks that the pipeline runs, its numbers mean little.
QUICK = Config(depths=(2, 4, 8), batch_size=4, seq_len=8)


# --------------------------------------------------------------------------------------
# the stack
# --------------------------------------------------------------------------------------


def mlp(cfg: Config) -> nn.Sequential:
    """The sublayer: a position-wise MLP, initialised as ``cfg.init`` says."""
    layers = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
    init = INITS[cfg.init]
    if init is not None:
        for linear in (layers[0], layers[2]):
            init(linear.weight)
            nn.init.zeros_(linear.bias)
    return layers


class Stack(nn.Module):
    """``depth`` residual blocks around MLP sublayers, an optional final norm, a linear head."""

    def __init__(self, norms: ModuleType, depth: int, prenorm: bool, norm: str, cfg: Config) -> None:
        super().__init__()
        # The sublayers and the head draw from the generator before any norm is built, so every
        # configuration of one depth and seed gets the same weights.
        torch.manual_seed(cfg.seed)
        sublayers = [mlp(cfg) for _ in range(depth)]
        self.head = nn.Linear(cfg.d_model, cfg.num_classes)
        self.blocks = nn.ModuleList(norms.ResidualBlock(sublayer, cfg.d_model, norm=norm, prenorm=prenorm)
                                    for sublayer in sublayers)
        # Pre-norm leaves the stream un-normalized, so the head gets a final norm (GPT-2's ln_f);
        # a post-norm stack already ends in one.
        self.final_norm = getattr(norms, NORM_CLASSES[norm])(cfg.d_model) if prenorm else nn.Identity()

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor], Tensor]:
        """The logits, the input of every block (for its gradient) and the last block's output."""
        inputs = []
        for block in self.blocks:
            inputs.append(x)
            x = block(x)  # (B, T, D)
        return self.head(self.final_norm(x)), inputs, x  # (B, T, C)


def batch(cfg: Config) -> tuple[Tensor, Tensor]:
    """Standard normal inputs (B, T, D) and random class targets (B, T), from ``cfg.seed``."""
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(cfg.batch_size, cfg.seq_len, cfg.d_model, generator=gen)  # (B, T, D)
    targets = torch.randint(0, cfg.num_classes, (cfg.batch_size, cfg.seq_len), generator=gen)  # (B, T)
    return x, targets


def check_impl(modules: dict[str, ModuleType], cfg: Config) -> None:
    """Build a two-block stack of every configuration and backpropagate through it once, so a
    stub stops the run with its own message (``load_checked`` calls it)."""
    small = replace(cfg, depths=(2,), batch_size=2, seq_len=3)
    for _, prenorm, norm in CONFIGURATIONS.values():
        measure(modules["normalization"], 2, prenorm, norm, small)


# --------------------------------------------------------------------------------------
# the measurement
# --------------------------------------------------------------------------------------


def _rounded(value: float) -> float:
    return float(f"{value:.{DIGITS}g}")


def measure(norms: ModuleType, depth: int, prenorm: bool, norm: str, cfg: Config) -> dict:
    """One stack at initialisation, one forward and backward pass: per block, the norm of the
    gradient of its parameters and of the gradient reaching its input."""
    model = Stack(norms, depth, prenorm, norm, cfg)
    x, targets = batch(cfg)
    logits, inputs, output = model(x.requires_grad_())
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())  # (B*T, C) vs (B*T,)
    stream_grads = torch.autograd.grad(loss, inputs, retain_graph=True)  # each (B, T, D)
    loss.backward()
    param_grads = [torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in block.parameters()]))
                   for block in model.blocks]  # one norm over all of a block's parameters
    return {
        "param_grad_norm": [_rounded(g.item()) for g in param_grads],
        "stream_grad_norm": [_rounded(torch.linalg.vector_norm(g).item()) for g in stream_grads],
        "loss": _rounded(loss.item()),
        "output_rms": _rounded(output.detach().pow(2).mean().sqrt().item()),
    }


def run(norms: ModuleType, cfg: Config) -> dict[str, dict]:
    """Every configuration at every depth: ``{name: {label, prenorm, norm, depths: {L: ...}}}``."""
    results = {}
    for name, (label, prenorm, norm) in CONFIGURATIONS.items():
        depths = {str(depth): measure(norms, depth, prenorm, norm, cfg) for depth in cfg.depths}
        results[name] = {"label": label, "prenorm": prenorm, "norm": norm, "depths": depths}
    return results


# --------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------


def results_document(cfg: Config, impl: Path, quick: bool, configurations: dict[str, dict]) -> dict:
    """The JSON written to --results: the configuration, then one entry per configuration."""
    config = asdict(cfg) | {"sublayer": f"Linear(D, d_ff) -> GELU -> Linear(d_ff, D), {cfg.init} init",
                            "loss": "cross-entropy of a linear head against random targets"}
    return {"config": config | run_metadata(impl, quick), "configurations": configurations}


def plot_results(results: dict, path: Path) -> Path:
    """Per-block parameter gradient norm (log scale) against the block's index, one panel per
    depth, one line per configuration (the legend below the panels), from a results dict (the
    JSON).

    Drawn for the reading site's column (``COLUMN_INCHES`` wide, no text under
    ``experiment_common.READABLE_PT``), saved with the Agg renderer and no ``Software`` metadata,
    so the bytes depend only on the numbers (and the installed fonts). Returns ``path``.
    """
    with matplotlib.rc_context(FONT_SIZES):
        depths = results["config"]["depths"]
        fig = Figure(figsize=(COLUMN_INCHES, 4.4), layout="constrained")
        FigureCanvasAgg(fig)  # explicit Agg, whatever backend the caller's pyplot uses
        axes = fig.subplots(1, len(depths), sharey=True)
        for ax, depth in zip(axes, depths):
            for name, entry in results["configurations"].items():
                grads = entry["depths"][str(depth)]["param_grad_norm"]
                ax.plot(range(1, len(grads) + 1), grads, label=entry["label"], linewidth=1.5, **STYLES.get(name, {}))
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_xlim(0.5, depth + 0.5)
            ax.set_title(f"{depth} blocks")
            ax.grid(True, which="both", alpha=0.3, linewidth=0.5)
        axes[len(axes) // 2].set_xlabel("block (1 = nearest the input)")  # one label for the row
        # At least a decade of the log axis, centred on the data: a flat line looks flat, and a
        # spread of 10% is not blown up to the panel's height.
        grads = [g for entry in results["configurations"].values() for measured in entry["depths"].values()
                 for g in measured["param_grad_norm"]]
        low, high = min(grads), max(grads)
        pad = max(1.2, (10 * low / high) ** 0.5)
        axes[0].set_ylim(low / pad, high * pad)
        axes[0].set_ylabel("gradient norm of the\nblock's parameters")
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center",
                   ncols=len(results["configurations"]), frameon=False)
        config = results["config"]
        fig.suptitle(f"Gradients at initialisation: MLP sublayers ({config['init']} init), D = {config['d_model']},\n"
                     f"cross-entropy through a linear head")
        return save_figure(fig, path, DPI)


def table_markdown(results: dict) -> str:
    """A Markdown table: one row per configuration and depth, with the first and last blocks'
    gradient norms, their ratio and the spread (largest over smallest) across the blocks."""
    rows = [
        "| configuration | blocks | first block | last block | first / last | max / min | output RMS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in results["configurations"].values():
        for depth, measured in entry["depths"].items():
            grads = measured["param_grad_norm"]
            rows.append(f"| {entry['label']} | {depth} | {grads[0]:.4f} | {grads[-1]:.4f} | "
                        f"{grads[0] / grads[-1]:.2f} | {max(grads) / min(grads):.2f} | "
                        f"{measured['output_rms']:.2f} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", type=Path, default=None,
                        help="folder with normalization.py (default: reference_solutions/, else assignments/)")
    parser.add_argument("--quick", action="store_true", help="shallow stacks and a small batch: a smoke test")
    parser.add_argument("--seed", type=int, default=None, help="seed for the weights, inputs and targets")
    parser.add_argument("--init", choices=tuple(INITS), default=None,
                        help="the MLP sublayers' initialisation (default: pytorch, nn.Linear's own)")
    add_tracking_option(parser)
    add_output_options(parser, own_runs=OWN_RUNS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = QUICK if args.quick else Config()
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    if args.init is not None:
        cfg = replace(cfg, init=args.init)
    impl = (args.impl or default_impl()).resolve()
    args.results, args.plot = output_paths(impl, args.results, args.plot, site_results=DEFAULT_RESULTS,
                                           site_plot=DEFAULT_PLOT, own_runs=OWN_RUNS)
    torch.set_num_threads(THREADS)
    modules = load_checked(impl, REQUIRED, lambda found: check_impl(found, cfg),
                           "experiment-norm needs chapter 05")
    if modules is None:
        return EXIT_NOT_IMPLEMENTED
    start_tracking(args, impl, OWN_RUNS)

    start = time.perf_counter()
    results = results_document(cfg, impl, args.quick, run(modules["normalization"], cfg))
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    plot_results(results, args.plot)
    print(table_markdown(results))
    tracker = open_run_tracker("gradient-norms")  # nothing trains here: the table is the whole record
    if tracker is not None:
        tracker.text("table", table_markdown(results))
        tracker.close()
    print(f"\n{results['wall_seconds']:.1f} s; wrote {args.results} and {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
