"""Chapter 03 experiment: which positional encodings let a model run longer than it trained?

Run from the repository root (or `nox -s experiment-positional`)::

    python site/scripts/experiment_positional.py            # the full run, a few minutes on 2 cores
    python site/scripts/experiment_positional.py --quick    # seconds: a smoke test, numbers meaningless

It trains one tiny decoder-only transformer per positional encoding (`none`, `sinusoidal`,
`learned`, `rope`, `alibi`) on sequences of 32 tokens, evaluates each at 32, 64 and 128,
writes the results as JSON, draws accuracy against evaluation length, and prints a Markdown
table.

The task, latest-match recall (``--task recall``, the default). Every token has a kind and a
value (8 kinds x 8 values = 64 tokens, drawn uniformly). The target at position ``t`` is the most
recent earlier token of the same kind as token ``t``; a token whose kind has not occurred
before is not scored. Order is the whole task: a bag of the same tokens cannot say which of
several same-kind tokens came last. The answer sits about 8 tokens back at any length (one
token in 8 has a given kind), so a longer sequence asks for nothing new except positions the
model has not seen: what changes from 32 to 128 is only the positional encoding's reach. An
encoding that scores distances (RoPE, ALiBi) finds the answer at distances it trained on,
though it now also meets distances past 31 among the keys it must ignore; an absolute one
(learned, sinusoidal) meets positions past 31 it has never seen. The learned
table has 128 rows, enough for every evaluation length, but rows 32 and up receive no
gradient and stay at their random initialisation: that is the honest failure of learned
embeddings, not an artefact of the script.

Why not the simpler lag copy (``--task lag-copy``: the target at ``t`` is the token at
``t - 8``)? It asks for one exact offset, and ALiBi cannot express one: its only positional
signal is a penalty that grows with distance, so it can prefer near keys but cannot single
out the key 8 steps back. Run with ``--task lag-copy``, ALiBi stays below 50% even at the
training length while sinusoidal, learned and RoPE reach 100%, so that task mixes "cannot
learn" with "cannot extrapolate". Recall is learned by every encoding at length 32, and the
drop at 64 and 128 is extrapolation alone.

Expect ``none`` to do well at length 32: a causal mask leaks order (a token can count how
many tokens it may attend to), so a decoder with no positional encoding still learns
positions, though ones that do not stretch to longer sequences.

The model is built from the course's own modules (chapter 02's ``MultiHeadAttention`` and
``causal_mask``, chapter 03's encodings), imported from ``--impl`` (default
``reference_solutions/``, or ``assignments/`` in the student release): run it on your own
implementation once chapters 02 and 03 pass. Token embedding, LayerNorm, MLP and the output
head are plain ``torch.nn``. What it shares with chapter 04's experiment (loading ``--impl``,
the learning-rate schedule, progress, where the outputs go) is in ``experiment_common.py``.

Notation used in the shape comments:
    B   batch size
    T   sequence length
    D   d_model
    H   heads
    V   vocabulary size

Structure, top to bottom: the configuration; the tasks' data; the model; training and
evaluation; the outputs (JSON, ``plot_results``, ``table_markdown``, both importable without
training); ``main``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `experiment_common`, however this file is loaded
import experiment_common as common  # noqa: E402

DEFAULT_RESULTS = common.ROOT / "site" / "docs" / "results" / "positional_extrapolation.json"
DEFAULT_PLOT = common.ROOT / "site" / "docs" / "figures" / "positional_extrapolation.png"
OWN_RUNS = common.ROOT / "reports" / "experiment_positional"  # runs on any --impl but the reference
ENCODINGS = ("none", "sinusoidal", "learned", "rope", "alibi")
# What the experiment calls in each course module (chapter 02, chapter 03).
REQUIRED = {
    "multi_head_attention": ("MultiHeadAttention", "causal_mask"),
    "positional_encoding": ("SinusoidalPositionalEncoding", "LearnedPositionalEmbedding", "RotaryEmbedding",
                            "alibi_bias"),
}
IGNORE = -100  # F.cross_entropy's default ignore_index: unscored positions
DPI = 110
# The site's palette (matplotlib's default cycle), one colour per encoding in ENCODINGS order.
COLORS = ["#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]


@dataclass(frozen=True)
class Config:
    """Everything that decides the numbers; written into the results JSON as it is."""

    task: str = "recall"  # or "lag-copy"; see the module docstring
    num_kinds: int = 8  # recall: kinds of token (the answer is the latest earlier token of the same kind)
    num_values: int = 8  # tokens per kind (recall) or the whole vocabulary (lag-copy); chance is 1 / num_values
    lag: int = 8  # lag-copy: the target at t is the token at t - lag
    train_len: int = 32
    eval_lens: tuple[int, ...] = (32, 64, 128)
    max_len: int = 128  # rows of the learned and sinusoidal tables: covers every eval length
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    d_ff: int = 128
    batch_size: int = 32
    steps: int = 1200
    lr: float = 3e-3  # AdamW peak, linear warm-up then cosine decay to 0
    warmup_steps: int = 100
    eval_sequences: int = 256  # per eval length, from a generator of their own
    seed: int = 0

    @property
    def vocab_size(self) -> int:
        return self.num_kinds * self.num_values if self.task == "recall" else self.num_values


# Small enough that all five encodings train and evaluate in seconds: it checks that the
# pipeline runs end to end, its accuracies mean nothing.
QUICK = Config(d_model=32, num_heads=2, num_layers=1, d_ff=64, batch_size=16, steps=25, warmup_steps=5,
               eval_sequences=32)


# --------------------------------------------------------------------------------------
# the tasks: (tokens, targets), both (B, T), targets IGNORE where nothing is scored
# --------------------------------------------------------------------------------------


def recall_batch(cfg: Config, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Token ``kind * num_values + value``; target at ``t``: the latest token before ``t`` of
    the same kind as token ``t`` (IGNORE when there is none)."""
    tokens = torch.randint(cfg.vocab_size, (batch_size, seq_len), generator=generator)  # (B, T)
    kinds = tokens // cfg.num_values  # (B, T)
    positions = torch.arange(seq_len)  # (T,)
    earlier = positions[None, :] < positions[:, None]  # (T, T): [t, j] is j < t
    same_kind = (kinds[:, :, None] == kinds[:, None, :]) & earlier  # (B, T, T)
    # The latest matching j, or -1 when no earlier token has this kind.
    latest = torch.where(same_kind, positions, -1).amax(dim=-1)  # (B, T)
    answers = tokens.gather(1, latest.clamp(min=0))  # (B, T)
    return tokens, torch.where(latest >= 0, answers, IGNORE)


def lag_copy_batch(cfg: Config, batch_size: int, seq_len: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random tokens; target at ``t``: the token at ``t - lag`` (IGNORE for ``t < lag``)."""
    tokens = torch.randint(cfg.vocab_size, (batch_size, seq_len), generator=generator)  # (B, T)
    targets = torch.full_like(tokens, IGNORE)  # (B, T)
    targets[:, cfg.lag:] = tokens[:, : seq_len - cfg.lag]  # (B, T - lag), shifted right by lag
    return tokens, targets


TITLES = {"recall": "latest-match recall", "lag-copy": "lag copy"}  # plot titles
TASKS: dict[str, Callable[[Config, int, int, torch.Generator], tuple[Tensor, Tensor]]] = {
    "recall": recall_batch,
    "lag-copy": lag_copy_batch,
}


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------


class Block(nn.Module):
    """A pre-norm decoder block: course attention, then a GELU MLP, each on a residual."""

    def __init__(self, mha: ModuleType, cfg: Config) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.attn = mha.MultiHeadAttention(cfg.d_model, cfg.num_heads)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))

    def forward(self, x: Tensor, mask: Tensor, bias: Tensor | None, rope: nn.Module | None) -> Tensor:
        attended, _ = self.attn(self.norm1(x), mask=mask, bias=bias, rope=rope)  # (B, T, D)
        x = x + attended
        return x + self.mlp(self.norm2(x))  # (B, T, D)


class TinyDecoder(nn.Module):
    """Token embedding, one positional encoding, ``num_layers`` blocks, a LayerNorm and a head.

    Where each encoding enters:
        * ``sinusoidal``, ``learned``: added to the token embeddings (``self.positions``);
        * ``rope``: rotates q and k inside every attention layer (``self.rope``, one module
          shared by all layers: it has no parameters);
        * ``alibi``: a fixed bias on every layer's scores, rebuilt for each length;
        * ``none``: nothing; the causal mask is the only hint of order.
    """

    def __init__(self, encoding: str, mha: ModuleType, pe: ModuleType, cfg: Config) -> None:
        super().__init__()
        self.num_heads = cfg.num_heads
        self.causal_mask = mha.causal_mask
        self.alibi_bias = pe.alibi_bias if encoding == "alibi" else None
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.positions: nn.Module | None = None
        if encoding == "sinusoidal":
            self.positions = pe.SinusoidalPositionalEncoding(cfg.d_model, cfg.max_len, 0.0)
        elif encoding == "learned":
            self.positions = pe.LearnedPositionalEmbedding(cfg.max_len, cfg.d_model)
        self.rope = pe.RotaryEmbedding(cfg.d_model // cfg.num_heads) if encoding == "rope" else None
        self.blocks = nn.ModuleList(Block(mha, cfg) for _ in range(cfg.num_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits ``(B, T, V)`` for tokens ``(B, T)``."""
        seq_len = tokens.shape[1]
        x = self.embed(tokens)  # (B, T, D)
        if self.positions is not None:
            x = self.positions(x)  # (B, T, D)
        mask = self.causal_mask(seq_len, device=tokens.device)  # (T, T), True = may attend
        bias = None if self.alibi_bias is None else self.alibi_bias(self.num_heads, seq_len).to(x.device)  # (H, T, T)
        for block in self.blocks:
            x = block(x, mask, bias, self.rope)  # (B, T, D)
        return self.head(self.norm(x))  # (B, T, V)


def build_model(encoding: str, mha: ModuleType, pe: ModuleType, cfg: Config) -> TinyDecoder:
    """A fresh model, initialised from ``cfg.seed`` so every encoding starts from the same draw."""
    torch.manual_seed(cfg.seed)
    return TinyDecoder(encoding, mha, pe, cfg)


def check_impl(modules: dict[str, ModuleType], cfg: Config) -> None:
    """Build every variant and run one short forward pass, so a stub stops the run before any
    training, with the stub's own message (``load_checked`` calls it, by module name)."""
    tokens = torch.zeros(1, 4, dtype=torch.long)  # (1, T)
    for encoding in ENCODINGS:
        build_model(encoding, modules["multi_head_attention"], modules["positional_encoding"], cfg)(tokens)


# --------------------------------------------------------------------------------------
# training and evaluation
# --------------------------------------------------------------------------------------


def loss_of(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over the scored positions (targets != IGNORE)."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)  # (B*T, V) vs (B*T,)


def train(model: TinyDecoder, cfg: Config, progress: common.Progress) -> None:
    """AdamW on fresh batches of length ``cfg.train_len`` from a generator seeded by ``cfg.seed``,
    so every encoding trains on the same batches."""
    make_batch = TASKS[cfg.task]
    generator = torch.Generator().manual_seed(cfg.seed)
    # No weight decay: it would also shrink the learned table's untrained rows (32 and up)
    # towards zero, and the experiment should show those rows as training leaves them.
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    model.train()
    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = common.learning_rate(step, cfg.steps, cfg.warmup_steps, cfg.lr)
        tokens, targets = make_batch(cfg, cfg.batch_size, cfg.train_len, generator)  # (B, T) each
        loss = loss_of(model(tokens), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        progress.update(step + 1, loss.detach())


@torch.no_grad()
def evaluate(model: TinyDecoder, cfg: Config, seq_len: int) -> dict[str, float]:
    """Accuracy and loss at ``seq_len`` over ``cfg.eval_sequences`` sequences from a generator of
    their own (seeded by seed and length), so every encoding meets the same test set.

    ``accuracy`` counts every scored position; ``accuracy_beyond_train`` only positions
    ``train_len`` and later (absent at the training length), where an absolute encoding has
    nothing learned to go on.
    """
    generator = torch.Generator().manual_seed(cfg.seed + 1_000_003 * seq_len)
    tokens, targets = TASKS[cfg.task](cfg, cfg.eval_sequences, seq_len, generator)  # (N, T) each
    model.eval()
    logits = model(tokens)  # (N, T, V)
    scored = targets != IGNORE  # (N, T)
    correct = (logits.argmax(dim=-1) == targets) & scored  # (N, T)
    scores = {"accuracy": correct.sum().item() / scored.sum().item(), "loss": loss_of(logits, targets).item()}
    if seq_len > cfg.train_len:
        beyond = scored[:, cfg.train_len:]  # (N, T - train_len)
        scores["accuracy_beyond_train"] = correct[:, cfg.train_len:].sum().item() / beyond.sum().item()
    return scores


def run_encoding(encoding: str, mha: ModuleType, pe: ModuleType, cfg: Config) -> dict:
    """Train one model and evaluate it at every length: the JSON entry of one encoding."""
    model = build_model(encoding, mha, pe, cfg)
    progress = common.Progress(encoding, cfg.steps)
    train(model, cfg, progress)
    train_seconds = progress.elapsed()
    scores = {seq_len: evaluate(model, cfg, seq_len) for seq_len in cfg.eval_lens}
    progress.finish(train_seconds, ", ".join(f"acc@{n} {s['accuracy']:.1%}" for n, s in scores.items()), rate=True)
    return {
        "accuracy": {str(n): round(s["accuracy"], 4) for n, s in scores.items()},
        "accuracy_beyond_train": {str(n): round(s["accuracy_beyond_train"], 4) for n, s in scores.items()
                                  if "accuracy_beyond_train" in s},
        "loss": {str(n): round(s["loss"], 4) for n, s in scores.items()},
        "train_seconds": round(train_seconds, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


# --------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------


def results_document(cfg: Config, impl: Path, quick: bool, encodings: dict[str, dict]) -> dict:
    """The JSON written to --results: the configuration, then one entry per encoding."""
    config = asdict(cfg) | {
        "eval_lens": list(cfg.eval_lens),
        "vocab_size": cfg.vocab_size,
        # A model that knows what to look for but not where: right one time in num_values.
        "chance_accuracy": round(1 / cfg.num_values, 4),
    } | common.run_metadata(impl, quick)
    return {"config": config, "encodings": encodings}


def plot_results(results: dict, path: Path) -> Path:
    """Accuracy against evaluation length, one line per encoding, from a results dict (the JSON).

    The training length is a dashed vertical line (longer lengths shaded) and chance a dotted
    horizontal one. Saved with the Agg renderer and no ``Software`` metadata, so the bytes
    depend only on the numbers (and the installed fonts). Returns ``path``.
    """
    config = results["config"]
    lengths = [int(n) for n in config["eval_lens"]]
    fig = Figure(figsize=(6.0, 3.8))
    FigureCanvasAgg(fig)  # explicit Agg, whatever backend the caller's pyplot uses
    ax = fig.add_subplot()
    for color, (encoding, entry) in zip(COLORS, results["encodings"].items()):
        accuracy = [100 * entry["accuracy"][str(n)] for n in lengths]
        ax.plot(lengths, accuracy, marker="o", color=color, label=encoding)
    # Log scale: 32, 64, 128 evenly spaced. Pad both ends so the first and last points sit
    # inside the frame, then shade every length the models never trained at.
    low, high = min(lengths) / 1.25, max(lengths) * 1.25
    ax.set_xscale("log", base=2)
    ax.set_xlim(low, high)
    ax.axvspan(config["train_len"], high, color="black", alpha=0.06, linewidth=0)
    ax.axvline(config["train_len"], color="black", linestyle="--", linewidth=1)
    ax.text(config["train_len"], 4, " longer than training \u2192", ha="left", va="bottom", fontsize=8)
    chance = 100 * config["chance_accuracy"]
    ax.axhline(chance, color="black", linestyle=":", linewidth=1)
    ax.text(high, chance, "chance ", ha="right", va="bottom", fontsize=8)
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.minorticks_off()  # a log axis adds minor ticks between 32, 64, 128; they label nothing here
    ax.set_ylim(0, 102)
    ax.set_xlabel("evaluation sequence length (tokens)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{TITLES.get(config['task'], config['task'])}, trained at length {config['train_len']}",
                 fontsize=10)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    return common.save_figure(fig, path, DPI)


def table_markdown(results: dict) -> str:
    """A Markdown table: one row per encoding, one column per evaluation length, accuracy in %."""
    config = results["config"]
    lengths = [int(n) for n in config["eval_lens"]]
    header = ["encoding"] + [f"{n} (train)" if n == config["train_len"] else str(n) for n in lengths]
    rows = [
        f"| {' | '.join(header)} |",
        "|" + "---|" + "---:|" * len(lengths),
    ]
    for encoding, entry in results["encodings"].items():
        cells = [f"{100 * entry['accuracy'][str(n)]:.1f}%" for n in lengths]
        rows.append(f"| {' | '.join([encoding, *cells])} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_run_options(parser, modules="multi_head_attention.py and positional_encoding.py", unit="encoding")
    common.add_output_options(parser, own_runs=OWN_RUNS)
    parser.add_argument("--seed", type=int, default=None, help="seed for initialisation and data")
    parser.add_argument("--task", choices=sorted(TASKS), default=None,
                        help="recall (default) or lag-copy; see the module docstring")
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> Config:
    cfg = common.base_config(args, Config(), QUICK)
    return cfg if args.task is None else replace(cfg, task=args.task)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = config_from(args)
    impl, modules = common.start_run(args, REQUIRED, lambda found: check_impl(found, cfg),
                                     "experiment-positional needs chapters 02 and 03", site_results=DEFAULT_RESULTS,
                                     site_plot=DEFAULT_PLOT, own_runs=OWN_RUNS)
    mha, pe = modules["multi_head_attention"], modules["positional_encoding"]

    start = time.perf_counter()
    encodings = {encoding: run_encoding(encoding, mha, pe, cfg) for encoding in ENCODINGS}
    results = results_document(cfg, impl, args.quick, encodings)
    common.write_outputs(results, args.results, args.plot, plot_results, table_markdown)
    print(f"\n{time.perf_counter() - start:.0f} s; wrote {args.results} and {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
