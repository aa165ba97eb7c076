"""Chapter 06 experiment: what a learning-rate warm-up and the peak learning rate do to a tiny model's training.

Run from the repository root (or `nox -s experiment-training`)::

    python site/scripts/experiment_training.py            # the full run, about 3-4 minutes on 2 cores
    python site/scripts/experiment_training.py --quick    # seconds: a smoke test, numbers meaningless
    python site/scripts/experiment_training.py --seed 1   # the same grid from another seed (the spread)

It trains one tiny character-level decoder per cell of a grid and changes nothing else:

    peak learning rate   3e-3, 1e-2, 3e-2, 1e-1 (AdamW's ``lr`` at the top of the schedule)
    warm-up              0 steps (the schedule starts at the peak) or ``warmup_steps`` (100)

Every run uses chapter 06's ``Trainer`` from ``--impl``: its ``cosine_schedule`` (linear warm-up,
then a cosine down to a tenth of the peak at the last step), its ``AdamW`` (betas 0.9 and 0.95,
weight decay 0.1 on the matrices), its ``train_step`` (the course's ``cross_entropy``, the global
gradient norm clipped at 1 with ``clip_grad_norm``) and its ``evaluate``. All runs start from the
same weights and see the same batches in the same order (the model is drawn from ``seed``, the
batches from the Trainer's generator, seeded with it too), so the schedule is the only difference.
The script records the training loss every ``log_every`` steps (the mean over that window) and
the Trainer's validation loss every ``eval_every`` steps, writes the results as JSON, draws the
loss curves and prints a Markdown table.

What to expect. On the reference (seeds 0 and 1), the largest peak, 1e-1, is where the warm-up
decides the outcome. Without one, the first updates (each of Adam's first steps moves every
weight by about the full learning rate, whatever the gradient's size) knock the model into a
state it does not leave within the run: the loss jumps above 5 within three steps and ends near
2.1 nats per character, about what the previous character alone predicts. With 100 warm-up
steps the same peak ends at 0.61. The best cell is 3e-2 with a warm-up (validation loss 0.543
and 0.539), 0.05 to 0.07 below 3e-2 without one; at 1e-2 the warm-up makes no difference beyond
the spread between seeds; 3e-3 is still near 1.0 after 500 steps, a short run for so small a
rate. From one seed to the other a run's validation loss moved by up to 0.02 (0.05 for the
failed one). This is one tiny model, one corpus and 500 steps: a measurement of this setup, not
a rule for large models.

The corpus is chapter 04's: ``experiment_ffn.make_splits``, 500,000 characters of English-like
sentences from a small probabilistic grammar over an invented lexicon, generated the same way
on every machine (nothing is downloaded); the last 10% is the validation split.

The model is plain ``torch.nn``, since the experiment is about the loop, not the layers:
character and position embeddings, ``num_layers`` pre-norm ``nn.TransformerEncoderLayer`` s
under a causal mask, a final LayerNorm and a linear head. Everything that trains it comes from
the tree given by ``--impl`` (default ``reference_solutions/``, or ``assignments/`` in the
student release): rerun it on your own ``training_loop.py`` once chapter 06 passes. What it
shares with the other experiments (loading ``--impl``, progress, where the outputs go) is in
``experiment_common.py``.

Notation used in the shape comments:
    B   batch size
    T   sequence length (block_size)
    D   d_model
    V   vocabulary size (distinct characters)

Structure, top to bottom: the configuration; the data and the model; training one run; the
outputs (JSON, ``plot_results``, ``table_markdown``, both importable without training); ``main``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

import matplotlib
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `experiment_common`, however this file is loaded
import experiment_common as common  # noqa: E402
import experiment_ffn  # noqa: E402  (chapter 04's synthetic corpus)

DEFAULT_RESULTS = common.ROOT / "site" / "docs" / "results" / "training_dynamics.json"
DEFAULT_PLOT = common.ROOT / "site" / "docs" / "figures" / "training_dynamics.png"
OWN_RUNS = common.ROOT / "reports" / "experiment_training"  # runs on any --impl but the reference
# What the experiment calls in chapter 06's module: the Trainer, and the pieces it is built from
# (named so that a tree missing one is told which).
REQUIRED = {
    "training_loop": ("TrainConfig", "Trainer", "cosine_schedule", "cross_entropy", "clip_grad_norm", "AdamW",
                      "train_step"),
}
DPI = 110
# The site's palette (matplotlib's default cycle), one colour per peak learning rate, smallest first.
COLORS = ["#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd", "#8c564b"]
WARMUP_STYLE = {False: "-", True: (0, (4, 2))}  # solid: no warm-up; dashed: warm-up


@dataclass(frozen=True)
class Config:
    """Everything that decides the numbers; written into the results JSON as it is."""

    corpus_chars: int = 500_000  # chapter 04's generated text, in characters
    corpus_seed: int = 0  # fixes the text; --seed leaves it alone
    val_fraction: float = 0.1  # the tail of the text, never trained on
    block_size: int = 64  # characters per training sequence
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    batch_size: int = 32
    steps: int = 500  # about 25 s per run at one thread here: the grid of 8 in 3-4 minutes
    peak_lrs: tuple[float, ...] = (3e-3, 1e-2, 3e-2, 1e-1)  # AdamW's lr at the top of the schedule
    warmup_steps: int = 100  # the warm-up of the runs that have one; the others start at the peak
    min_lr_ratio: float = 0.1  # the cosine ends at this fraction of the peak (Chinchilla's choice)
    weight_decay: float = 0.1  # on matrices and embeddings; none on biases and norms (the Trainer's rule)
    betas: tuple[float, float] = (0.9, 0.95)
    max_grad_norm: float = 1.0
    log_every: int = 10  # one point of a training curve: the mean loss over this many steps
    eval_every: int = 50  # steps between validation losses (and after the last step)
    eval_batches: int = 20  # validation batches per evaluation: 40,960 of the 50,000 held-out characters
    seed: int = 0  # initialisation and batch order, the same for every run

    def warmups(self) -> tuple[int, int]:
        """The two warm-ups of the grid: none, and ``warmup_steps``."""
        return (0, self.warmup_steps)


# Small enough that all eight runs train in seconds: it checks that the pipeline runs end to
# end, its losses mean nothing.
QUICK = Config(corpus_chars=20_000, block_size=32, d_model=32, num_heads=2, num_layers=1, batch_size=16, steps=30,
               warmup_steps=5, log_every=5, eval_every=10, eval_batches=2)


def lr_label(lr: float) -> str:
    """A learning rate as the page writes it: ``3e-3``, ``1e-1``."""
    mantissa, exponent = f"{lr:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def run_name(lr: float, warmup: int) -> str:
    """The key of one run in the JSON and its row in the table."""
    return f"{lr_label(lr)}, " + (f"warm-up {warmup}" if warmup else "no warm-up")


# --------------------------------------------------------------------------------------
# the data and the model
# --------------------------------------------------------------------------------------


def make_splits(cfg: Config) -> experiment_ffn.Splits:
    """Chapter 04's corpus, encoded character by character and cut into train and validation."""
    corpus = experiment_ffn.Config(corpus_chars=cfg.corpus_chars, corpus_seed=cfg.corpus_seed,
                                   val_fraction=cfg.val_fraction)
    return experiment_ffn.make_splits(corpus)


def batch_source(splits: experiment_ffn.Splits, cfg: Config) -> Callable[[str, torch.Generator], tuple[Tensor, Tensor]]:
    """The Trainer's ``get_batch(split, generator)``: ``batch_size`` windows at random offsets of
    the split, drawn from ``generator`` alone (so a checkpoint could restore the order)."""

    def get_batch(split: str, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        data = splits.train if split == "train" else splits.val
        starts = torch.randint(len(data) - cfg.block_size, (cfg.batch_size,), generator=generator)  # (B,)
        windows = data[starts[:, None] + torch.arange(cfg.block_size + 1)]  # (B, T + 1)
        return windows[:, :-1], windows[:, 1:]  # (B, T) inputs, (B, T) next characters

    return get_batch


class CharDecoder(nn.Module):
    """Embeddings, ``num_layers`` pre-norm ``nn.TransformerEncoderLayer`` s under a causal mask
    (GELU, ``4 * d_model`` wide, no dropout), a final LayerNorm and a head."""

    def __init__(self, vocab_size: int, cfg: Config) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.d_model)
        self.positions = nn.Embedding(cfg.block_size, cfg.d_model)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.num_heads, 4 * cfg.d_model, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        # enable_nested_tensor only speeds up padded batches, and warns with norm_first
        self.blocks = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, vocab_size)
        # -inf above the diagonal: position t sees positions <= t (derived, not learned)
        self.register_buffer("causal_mask", nn.Transformer.generate_square_subsequent_mask(cfg.block_size),
                             persistent=False)

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits ``(B, T, V)`` for character ids ``(B, T)``."""
        seq_len = tokens.shape[1]
        x = self.embed(tokens) + self.positions(torch.arange(seq_len, device=tokens.device))  # (B, T, D)
        x = self.blocks(x, mask=self.causal_mask[:seq_len, :seq_len], is_causal=True)  # (B, T, D)
        return self.head(self.norm(x))  # (B, T, V)


def build_model(vocab_size: int, cfg: Config) -> CharDecoder:
    """A fresh model drawn from ``cfg.seed``: every run of the grid starts from the same weights."""
    torch.manual_seed(cfg.seed)
    return CharDecoder(vocab_size, cfg)


def train_config(tl: ModuleType, cfg: Config, lr: float, warmup: int, steps: int | None = None):
    """The ``TrainConfig`` of one run: the schedule's peak and warm-up, the rest shared by all.
    Nothing is written to disk (``out_dir=None``) and the Trainer's own progress bar is off (the
    script prints one line per run)."""
    return tl.TrainConfig(max_steps=steps or cfg.steps, max_lr=lr, min_lr=lr * cfg.min_lr_ratio, warmup_steps=warmup,
                          weight_decay=cfg.weight_decay, betas=cfg.betas, max_grad_norm=cfg.max_grad_norm,
                          eval_every=cfg.eval_every, eval_batches=cfg.eval_batches, out_dir=None, seed=cfg.seed,
                          progress=False)


def check_impl(modules: dict[str, ModuleType], cfg: Config) -> None:
    """Train a two-character model for two steps with the tree's Trainer (schedule, AdamW,
    train_step, cross_entropy, clipping, evaluation), so a stub stops the run before any real
    training (``load_checked`` calls it); raise ImplementationMissing on a non-finite loss."""
    tl = modules["training_loop"]
    data = torch.tensor([0, 1] * (cfg.block_size + 2))  # (N,) a corpus of two characters
    splits = experiment_ffn.Splits("ab", data, data)
    trainer = tl.Trainer(build_model(2, cfg), batch_source(splits, cfg),
                         train_config(tl, cfg, cfg.peak_lrs[0], 1, steps=2))
    records = trainer.fit()
    losses = [r[key] for r in records for key in ("loss", "val_loss") if key in r]
    if not losses or not all(math.isfinite(loss) for loss in losses):
        raise common.ImplementationMissing(f"its Trainer's first losses are {losses}, not finite numbers")


# --------------------------------------------------------------------------------------
# training one run
# --------------------------------------------------------------------------------------


def finite(value: float) -> float | None:
    """``value`` rounded to 4 decimals, or None when it is NaN or infinite (JSON has no NaN)."""
    return round(value, 4) if math.isfinite(value) else None


def run_one(tl: ModuleType, lr: float, warmup: int, splits: experiment_ffn.Splits, cfg: Config) -> dict:
    """Train one model with the tree's Trainer and return its JSON entry.

    The Trainer runs ``log_every`` steps at a time (``fit(until=...)``, the same steps as one
    ``fit()``), so the progress bar moves and each window's mean loss is kept as it ends.
    """
    model = build_model(len(splits.vocabulary), cfg)
    progress = common.Progress(run_name(lr, warmup), cfg.steps)
    # With --wandb the Trainer sends every record (loss, lr, tokens/s, val_loss) to the run's
    # W&B tracker itself; without, progress.tracker is None and the Trainer keeps its default.
    trainer = tl.Trainer(model, batch_source(splits, cfg), train_config(tl, cfg, lr, warmup), progress.tracker)
    train: dict[str, list] = {"step": [], "loss": [], "lr": []}
    val: dict[str, list] = {"step": [], "loss": []}
    while trainer.step < cfg.steps:
        records = trainer.fit(until=min(trainer.step + cfg.log_every, cfg.steps))
        steps = [r for r in records if "loss" in r]
        train["step"].append(steps[-1]["step"])
        train["loss"].append(finite(sum(r["loss"] for r in steps) / len(steps)))
        train["lr"].append(steps[-1]["lr"])  # the rate of the window's last step
        for r in records:
            if "val_loss" in r:
                val["step"].append(r["step"])
                val["loss"].append(finite(r["val_loss"]))
        progress.show(trainer.step, steps[-1]["loss"])
    seconds = progress.elapsed()
    early = [loss for step, loss in zip(train["step"], train["loss"]) if step <= cfg.warmup_steps]
    entry = {
        "peak_lr": lr,
        "warmup_steps": warmup,
        "train_curve": train,
        "val_curve": val,
        # the mean over the first warmup_steps steps: where a warm-up acts
        "early_train_loss": None if None in early else round(sum(early) / len(early), 4),
        "final_train_loss": train["loss"][-1],
        "val_loss": val["loss"][-1],
        "best_val_loss": min((loss for loss in val["loss"] if loss is not None), default=None),
        "train_seconds": round(seconds, 1),
    }
    shown = "diverged" if entry["val_loss"] is None else f"val loss {entry['val_loss']:.4f}"
    progress.finish(seconds, f"train loss {entry['final_train_loss']}, {shown}")
    return entry


# --------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------


def results_document(cfg: Config, impl: Path, quick: bool, splits: experiment_ffn.Splits, model: nn.Module,
                     runs: dict[str, dict]) -> dict:
    """The JSON written to --results: the configuration, the corpus and model, one entry per run."""
    config = asdict(cfg) | common.run_metadata(impl, quick)
    corpus = {
        "train_chars": len(splits.train),
        "val_chars": len(splits.val),
        "vocab_size": len(splits.vocabulary),
        # A model that ignored the text and guessed uniformly: ln V nats per character.
        "uniform_loss": round(math.log(len(splits.vocabulary)), 4),
    }
    return {"config": config, "corpus": corpus, "parameters": sum(p.numel() for p in model.parameters()),
            "runs": runs}


def _lr_colors(results: dict) -> dict[float, str]:
    return dict(zip(results["config"]["peak_lrs"], COLORS))


def _curve(entry: dict, key: str = "train_curve") -> tuple[list, list]:
    """A curve's points with a finite loss."""
    points = [(s, loss) for s, loss in zip(entry[key]["step"], entry[key]["loss"]) if loss is not None]
    return [s for s, _ in points], [loss for _, loss in points]


def plot_results(results: dict, path: Path) -> Path:
    """Three panels side by side from a results dict (the JSON): the training curves over the
    warm-up and a little after it, the whole run (dots: validation losses), and the final
    validation loss against the peak learning rate; the legend below them. Colour: the peak
    rate; solid: no warm-up; dashed: warm-up.

    Drawn for the reading site's column (``common.COLUMN_INCHES`` wide, no text under
    ``common.READABLE_PT``), saved with the Agg renderer and no ``Software`` metadata, so the
    bytes depend only on the numbers (and the installed fonts). Returns ``path``.
    """
    with matplotlib.rc_context(common.FONT_SIZES):
        config, runs, colors = results["config"], results["runs"], _lr_colors(results)
        fig = Figure(figsize=(common.COLUMN_INCHES, 5.0), layout="constrained")
        FigureCanvasAgg(fig)  # explicit Agg, whatever backend the caller's pyplot uses
        early, whole, sweep = fig.subplots(1, 3)
        horizon = min(config["steps"], 2 * config["warmup_steps"])
        for entry in runs.values():
            style = dict(color=colors[entry["peak_lr"]], linestyle=WARMUP_STYLE[entry["warmup_steps"] > 0],
                         linewidth=1.2)
            steps, losses = _curve(entry)
            early.plot(steps, losses, **style)
            whole.plot(steps, losses, **style)
            val_steps, val_losses = _curve(entry, "val_curve")
            whole.plot(val_steps, val_losses, marker="o", markersize=2.5, linestyle="none", color=style["color"])
        uniform = results["corpus"]["uniform_loss"]
        for ax in (early, whole):
            ax.axhline(uniform, color="gray", linewidth=0.6, linestyle=":")
            ax.axvspan(0, config["warmup_steps"], color="#eeeeee", zorder=0)
            ax.set_xlabel("training step")
        early.text(config["warmup_steps"] / 2, uniform, "warm-up", ha="center", va="bottom", color="gray")
        early.set_xlim(0, horizon)
        early.set_ylim(top=uniform * 1.25)
        early.set_ylabel("training loss (nats per character)")
        early.set_title(f"the first {horizon} steps\n(dotted: uniform guess)")
        # The whole run's y range: from the lowest point to a little above the uniform guess.
        lowest = min(loss for entry in runs.values() for key in ("train_curve", "val_curve")
                     for loss in _curve(entry, key)[1])
        whole.set_ylim(lowest * 0.9, uniform * 1.1)
        whole.set_xlim(0, config["steps"] * 1.02)
        whole.set_title("whole run\n(dots: validation loss)")

        for warmup, marker in ((False, "s"), (True, "o")):
            points = sorted((e["peak_lr"], e["val_loss"]) for e in runs.values()
                            if (e["warmup_steps"] > 0) == warmup and e["val_loss"] is not None)
            sweep.plot([lr for lr, _ in points], [loss for _, loss in points], color="black", marker=marker,
                       markersize=4, linestyle=WARMUP_STYLE[warmup], linewidth=1.0)
            for lr, loss in points:
                sweep.plot(lr, loss, marker=marker, markersize=6, color=colors[lr], linestyle="none")
        sweep.set_xscale("log")
        sweep.set_xticks(config["peak_lrs"], [lr_label(lr) for lr in config["peak_lrs"]])
        sweep.minorticks_off()
        sweep.set_xlabel("peak learning rate")
        sweep.set_ylabel("final validation loss")
        sweep.set_title("end of the run\n")
        handles = [Line2D([], [], color=colors[lr], linewidth=2, label=f"peak {lr_label(lr)}")
                   for lr in config["peak_lrs"]]
        handles += [Line2D([], [], color="black", linestyle=WARMUP_STYLE[False], marker="s", markersize=4,
                           label="no warm-up"),
                    Line2D([], [], color="black", linestyle=WARMUP_STYLE[True], marker="o", markersize=4,
                           label=f"warm-up {config['warmup_steps']}")]
        fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
        fig.suptitle(f"Warm-up and peak learning rate: {config['num_layers']} layers, d_model {config['d_model']}, "
                     f"{config['steps']} AdamW steps\nof {config['batch_size']} x {config['block_size']} characters, "
                     f"cosine to {config['min_lr_ratio']:g} x peak")
        return common.save_figure(fig, path, DPI)


def _cell(value: float | None) -> str:
    return "diverged" if value is None else f"{value:.4f}"


def table_markdown(results: dict) -> str:
    """A Markdown table: one row per run, losses in nats per character."""
    warmup = results["config"]["warmup_steps"]
    rows = [
        f"| peak lr, warm-up | train loss, steps 1-{warmup} | final train loss | final val loss "
        "| best val loss | seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, entry in results["runs"].items():
        rows.append(f"| {name} | {_cell(entry['early_train_loss'])} | {_cell(entry['final_train_loss'])} | "
                    f"{_cell(entry['val_loss'])} | {_cell(entry['best_val_loss'])} | {entry['train_seconds']:.1f} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_run_options(parser, modules="training_loop.py", unit="run")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for initialisation and batch order (the corpus stays the same)")
    common.add_output_options(parser, own_runs=OWN_RUNS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = common.base_config(args, Config(), QUICK)
    impl, modules = common.start_run(args, REQUIRED, lambda found: check_impl(found, cfg),
                                     "experiment-training needs chapter 06", site_results=DEFAULT_RESULTS,
                                     site_plot=DEFAULT_PLOT, own_runs=OWN_RUNS)
    tl = modules["training_loop"]

    start = time.perf_counter()
    splits = make_splits(cfg)
    runs = {run_name(lr, warmup): run_one(tl, lr, warmup, splits, cfg)
            for lr in cfg.peak_lrs for warmup in cfg.warmups()}
    results = results_document(cfg, impl, args.quick, splits, build_model(len(splits.vocabulary), cfg), runs)
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    common.write_outputs(results, args.results, args.plot, plot_results, table_markdown)
    print(f"\n{results['wall_seconds']:.0f} s; wrote {args.results} and {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
