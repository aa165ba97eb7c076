"""Chapter 01 experiment: what do the attention heads of a trained encoder-decoder look at?

Run from the repository root (or `nox -s experiment-attention`)::

    python site/scripts/experiment_attention.py            # the full run, about half a minute on one core
    python site/scripts/experiment_attention.py --quick    # seconds: a smoke test, it learns nothing
    python site/scripts/experiment_attention.py --seed 1   # the same run from another seed

It trains one tiny chapter 01 ``Transformer`` (2 encoder and 2 decoder layers, 4 heads,
d_model 64, post-norm, no dropout) to reverse a sequence of random tokens, then draws the
attention weights of every layer and head on one held-out sequence:

    source (encoder input)    7  3 12  5 ...  9
    decoder input           BOS  9 ...  5 12  3      the reversed source, shifted right by one
    target                    9 ...  5 12  3  7      the reversed source

The task has one right attention pattern, which is why it is here: to write the token at
target position ``t`` the decoder needs the source token at position ``L - 1 - t``, so a
cross-attention head that does the job puts its weight on the *anti-diagonal* of its
``(T, S)`` map. Nothing tells it to: the model sees tokens and positions (the sinusoidal
table), and the loss only scores the output. The script measures how much attention mass
each module puts on the anti-diagonal (and on the diagonal, for comparison), averaged over
the held-out sequences, and records the mean over heads in the last decoder layer's
cross-attention as its headline: 1 would be every head on exactly the needed source token,
``1 / L`` what uniform attention gives.

What the reference measured (seed 0, about 25 s on one core): every held-out sequence
reversed without a mistake (teacher-forced token accuracy and greedy decoding both 100%). The
last decoder layer's cross-attention puts 0.91 of its mass on the anti-diagonal (uniform:
0.125), every one of its heads between 0.87 and 0.94; the first decoder layer's, 0.59, is
part of the way there, its heads less sharp and one of them off the line. The encoder's heads
stay spread out (their largest weight is about 0.25-0.35 on average, their anti-diagonal mass
about uniform): here the reversal happens in the cross-attention, not in the encoder. The
decoder's causal self-attention has a head that puts all its weight on BOS (a head with
nothing to fetch, it seems, parks it there) and heads on the current token. Seeds 1 and 2
tell the same story: 0.93 and 0.90 in the last cross-attention, 0.71 and 0.80 in the first,
100% accuracy. Read it as one tiny model on a toy task: the point is that a pattern the task
needs can be seen in the weights, not which head holds it.

The model comes from the tree given by ``--impl`` (default ``reference_solutions/``, or
``assignments/`` in the student release): run it on your own chapter 01 once it passes. The
weights are read with ``graders.viz.layer_attention_maps``, which hooks every
``nn.MultiheadAttention`` for one call and asks it for per-head weights (the layers
themselves call it with ``need_weights=False``); the figure is
``graders.viz.plot_attention_grid``. What it shares with the other experiments (loading
``--impl``, the learning-rate schedule, progress, where the outputs go) is in
``experiment_common.py``.

Notation used in the shape comments:
    B   batch size (N: the held-out sequences)
    L   sequence length (source and target alike)
    H   heads
    T   query positions;  S  key positions
    V   vocabulary size (BOS included)

Structure, top to bottom: the configuration; the task; the model; training and evaluation;
the attention measurements; the outputs (JSON, ``plot_results``, ``table_markdown``, both
importable without training); ``main``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

import matplotlib
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `experiment_common`, however this file is loaded
import experiment_common as common  # noqa: E402

if str(common.ROOT) not in sys.path:
    sys.path.append(str(common.ROOT))  # `graders.viz`; appended, so --impl's modules still come first
from graders.viz import layer_attention_maps, plot_attention_grid  # noqa: E402

DEFAULT_RESULTS = common.ROOT / "site" / "docs" / "results" / "attention_patterns.json"
DEFAULT_PLOT = common.ROOT / "site" / "docs" / "figures" / "01_attention_patterns.png"
OWN_RUNS = common.ROOT / "reports" / "experiment_attention"  # runs on any --impl but the reference
# What the experiment calls in the course module (chapter 01).
REQUIRED = {"transformer_full": ("Transformer",)}
BOS = 0  # the decoder's first input; never a source token
DPI = 110
DECIMALS = 4  # attention weights in the JSON: enough to redraw them, small enough to commit
# Each stack's attention modules in one of its layers, by their state_dict names, with what
# their queries and keys read.
ATTENTION = {
    "encoder_layers": (("self_attn", "source", "source"),),
    "decoder_layers": (("self_attn", "target", "target"), ("cross_attn", "target", "source")),
}


@dataclass(frozen=True)
class Config:
    """Everything that decides the numbers; written into the results JSON as it is."""

    vocab_size: int = 16  # BOS and 15 source tokens
    seq_len: int = 8  # L: source and target; the anti-diagonal then needs 1 / 8 = 0.125 from uniform heads
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2  # of each: encoder and decoder
    d_ff: int = 128
    norm_first: bool = False  # post-norm, the 2017 paper's and chapter 01's default
    batch_size: int = 64
    steps: int = 1200  # the loss is at about 1e-3 by then; about half a minute at one thread
    lr: float = 2e-3  # Adam peak, linear warm-up then cosine decay to 0
    warmup_steps: int = 100  # post-norm needs one: without it the first large steps can stall training
    max_grad_norm: float = 1.0
    log_every: int = 25  # one point of the training curve: the mean loss over this many steps
    held_out: int = 512  # evaluation sequences, from a generator of their own
    held_out_seed: int = 1_000_003  # the same held-out set whatever --seed says
    example: int = 0  # which held-out sequence the maps are drawn for
    seed: int = 0  # initialisation and training batches


# Small enough to train in a second or two: it checks that the pipeline runs end to end (every
# module's maps recorded, drawn, tabled), its numbers mean nothing. Same layer count, so the
# same modules as the full run.
QUICK = Config(d_model=16, num_heads=2, d_ff=32, batch_size=16, steps=30, warmup_steps=5, log_every=5, held_out=32)


# --------------------------------------------------------------------------------------
# the task: reverse a sequence of random tokens
# --------------------------------------------------------------------------------------


def reversal_batch(cfg: Config, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """``count`` random sequences: the source, the decoder's input (BOS, then the reversed source
    without its last token) and the target (the reversed source), each ``(B, L)``."""
    src = torch.randint(BOS + 1, cfg.vocab_size, (count, cfg.seq_len), generator=generator)  # (B, L)
    target = src.flip(1)  # (B, L)
    bos = torch.full((count, 1), BOS, dtype=torch.long)  # (B, 1)
    tgt_in = torch.cat([bos, target[:, :-1]], dim=1)  # (B, L): teacher forcing
    return src, tgt_in, target


def held_out_set(cfg: Config) -> tuple[Tensor, Tensor, Tensor]:
    """The evaluation sequences, ``(N, L)`` each. Drawn apart from the training batches; with
    15^8 possible sources, the default run's 77k training sequences meet one of them about once
    in 65 runs."""
    return reversal_batch(cfg, cfg.held_out, torch.Generator().manual_seed(cfg.held_out_seed))


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------


def build_model(tf: ModuleType, cfg: Config) -> nn.Module:
    """A fresh ``Transformer`` from ``--impl``, drawn from ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    return tf.Transformer(cfg.vocab_size, cfg.d_model, cfg.num_heads, cfg.num_layers, cfg.d_ff,
                          max_seq_len=cfg.seq_len, dropout=0.0, norm_first=cfg.norm_first)


def attention_modules(cfg: Config) -> dict[str, tuple[str, str]]:
    """Every attention module's qualified name, in the model's order (the encoder's layers, then
    the decoder's), with what its queries and keys read (``"source"`` or ``"target"``)."""
    return {f"{stack}.{layer}.{attn}": (queries, keys) for stack, modules in ATTENTION.items()
            for layer in range(cfg.num_layers) for attn, queries, keys in modules}


def check_impl(modules: dict[str, ModuleType], cfg: Config) -> None:
    """Build the model and read its attention maps once, so a stub, or a model whose attention
    is not ``nn.MultiheadAttention`` under the course's names, stops the run before any training
    (``load_checked`` calls it)."""
    src, tgt_in, _ = reversal_batch(cfg, 1, torch.Generator().manual_seed(0))  # (1, L) each
    maps = layer_attention_maps(build_model(modules["transformer_full"], cfg), src, tgt_in)
    expected = (1, cfg.num_heads, cfg.seq_len, cfg.seq_len)
    wrong = [name for name in attention_modules(cfg) if name not in maps or tuple(maps[name].shape) != expected]
    if wrong:
        raise common.ImplementationMissing(f"no per-head weights {expected} from nn.MultiheadAttention "
                                           f"modules named {', '.join(wrong)}")


# --------------------------------------------------------------------------------------
# training and evaluation
# --------------------------------------------------------------------------------------


def reversal_loss(model: nn.Module, src: Tensor, tgt_in: Tensor, target: Tensor) -> Tensor:
    """Mean cross-entropy of the target tokens under teacher forcing."""
    logits = model(src, tgt_in)  # (B, L, V)
    return F.cross_entropy(logits.flatten(0, 1), target.flatten())  # (B*L, V) vs (B*L,)


def train(model: nn.Module, cfg: Config, progress: common.Progress) -> dict[str, list]:
    """Adam (the paper's betas) on fresh batches from a generator seeded by ``cfg.seed``.
    Returns the smoothed training curve ``{"step": [...], "loss": [...]}``, each point the
    mean over the ``log_every`` steps that end at it."""
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98))
    curve: dict[str, list] = {"step": [], "loss": []}
    window: list[float] = []
    model.train()
    for step in range(1, cfg.steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = common.learning_rate(step - 1, cfg.steps, cfg.warmup_steps, cfg.lr)
        loss = reversal_loss(model, *reversal_batch(cfg, cfg.batch_size, generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        window.append(loss.item())
        if step % cfg.log_every == 0 or step == cfg.steps:
            curve["step"].append(step)
            curve["loss"].append(round(sum(window) / len(window), 4))
            window.clear()
        progress.update(step, loss.item())
    return curve


@torch.no_grad()
def greedy_reversal(model: nn.Module, src: Tensor) -> Tensor:
    """Decode ``L`` tokens one at a time, each step fed the model's own earlier choices (no
    teacher forcing): the predicted target ``(B, L)``."""
    generated = torch.full((src.shape[0], 1), BOS, dtype=torch.long)  # (B, 1)
    for _ in range(src.shape[1]):
        logits = model(src, generated)  # (B, t, V)
        generated = torch.cat([generated, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)  # (B, t + 1)
    return generated[:, 1:]  # (B, L): BOS dropped


@torch.no_grad()
def evaluate(model: nn.Module, src: Tensor, tgt_in: Tensor, target: Tensor) -> dict:
    """Held-out scores: teacher-forced loss and token accuracy, and the share of sequences that
    greedy decoding reverses exactly; with the greedy predictions ``(N, L)`` themselves."""
    model.eval()
    logits = model(src, tgt_in)  # (N, L, V)
    loss = F.cross_entropy(logits.flatten(0, 1), target.flatten()).item()  # (N*L, V) vs (N*L,)
    predicted = greedy_reversal(model, src)  # (N, L)
    return {
        "loss": round(loss, 4),
        "token_accuracy": round((logits.argmax(dim=-1) == target).float().mean().item(), 4),
        "sequence_accuracy": round((predicted == target).all(dim=1).float().mean().item(), 4),
        "predicted": predicted,
    }


# --------------------------------------------------------------------------------------
# the attention measurements
# --------------------------------------------------------------------------------------


def line_mass(weights: Tensor, anti: bool) -> list[float]:
    """Per head, the mean attention mass on the diagonal (query ``t`` on key ``t``) or the
    anti-diagonal (key ``S - 1 - t``), over the queries and the batch: ``(B, H, T, S)`` -> H
    numbers. Needs ``T == S``."""
    positions = torch.arange(weights.shape[-1])  # (S,)
    keys = positions.flip(0) if anti else positions  # (S,): the key each query is scored on
    on_line = weights[:, :, positions, keys]  # (B, H, T)
    return [round(m, DECIMALS) for m in on_line.mean(dim=(0, 2)).tolist()]  # (H,)


def top_weight(weights: Tensor) -> list[float]:
    """Per head, the mean over queries and batch of the largest weight in the row: 1 for a head
    that looks at one key, ``1 / S`` for one that spreads evenly. ``(B, H, T, S)`` -> H numbers."""
    return [round(m, DECIMALS) for m in weights.amax(dim=-1).mean(dim=(0, 2)).tolist()]  # (H,)


def measure_attention(model: nn.Module, src: Tensor, tgt_in: Tensor, cfg: Config) -> dict[str, dict]:
    """Every attention module's per-head line masses and peak weight over the held-out set, with
    what its queries and keys read."""
    maps = layer_attention_maps(model, src, tgt_in)  # name -> (N, H, L, L)
    return {name: {"queries": queries, "keys": keys, "anti_diagonal": line_mass(maps[name], anti=True),
                   "diagonal": line_mass(maps[name], anti=False), "top_weight": top_weight(maps[name])}
            for name, (queries, keys) in attention_modules(cfg).items()}


def example_maps(model: nn.Module, src: Tensor, tgt_in: Tensor) -> dict[str, list]:
    """The per-head maps of one example as nested lists ``(H, T, S)``, rounded for the JSON."""
    maps = layer_attention_maps(model, src[None], tgt_in[None])  # name -> (1, H, L, L)
    return {name: weights[0].round(decimals=DECIMALS).tolist() for name, weights in maps.items()}


def headline_mass(modules: dict[str, dict], cfg: Config) -> float:
    """The mean over heads of the last decoder layer's cross-attention mass on the anti-diagonal."""
    per_head = modules[f"decoder_layers.{cfg.num_layers - 1}.cross_attn"]["anti_diagonal"]
    return round(sum(per_head) / len(per_head), DECIMALS)


# --------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------


def token_labels(ids: list[int]) -> list[str]:
    """Tick labels: the token ids, BOS by name."""
    return ["BOS" if i == BOS else str(i) for i in ids]


def results_document(cfg: Config, impl: Path, quick: bool, curve: dict, scores: dict, modules: dict[str, dict],
                     example: dict) -> dict:
    """The JSON written to --results: the configuration, the training curve, the held-out scores,
    the per-module measurements and the drawn example."""
    config = asdict(cfg) | common.run_metadata(impl, quick)
    held_out = {key: value for key, value in scores.items() if key != "predicted"}
    return {
        "config": config,
        "train_curve": curve,
        "held_out": held_out | {"sequences": cfg.held_out},
        "uniform_mass": round(1 / cfg.seq_len, DECIMALS),  # what a head spread evenly over S keys puts anywhere
        "anti_diagonal_mass": headline_mass(modules, cfg),
        "modules": modules,
        "example": example,
    }


def plot_results(results: dict, path: Path) -> Path:
    """Every attention module's per-head maps on the held-out example, one row per module (the
    encoder's self-attention layer by layer, then each decoder layer's self- and cross-attention),
    one column per head, drawn by ``graders.viz.plot_attention_grid`` from a results dict (the JSON).
    The decoder's rows are labelled with its inputs (BOS first), its keys in cross-attention with
    the source.

    Drawn for the reading site's column (at most ``common.COLUMN_INCHES`` wide, no text under
    ``common.READABLE_PT``), saved with the Agg renderer and no ``Software`` metadata, so the
    bytes depend only on the numbers (and the installed fonts). Returns ``path``.
    """
    with matplotlib.rc_context(common.FONT_SIZES):  # plot_attention_grid's text takes the rc sizes
        example, config = results["example"], results["config"]
        tokens = {"source": token_labels(example["src"]), "target": token_labels(example["tgt_in"])}
        modules = results["modules"]
        title = (f"Reversing {config['seq_len']} tokens: held-out accuracy "
                 f"{results['held_out']['token_accuracy']:.1%}, last cross-attention\n"
                 f"{results['anti_diagonal_mass']:.2f} on the anti-diagonal (uniform {results['uniform_mass']:.3f})")
        fig = plot_attention_grid(example["maps"], names=list(modules), title=title,
                                  tokens_q={name: tokens[m["queries"]] for name, m in modules.items()},
                                  tokens_k={name: tokens[m["keys"]] for name, m in modules.items()})
        FigureCanvasAgg(fig)  # explicit Agg, whatever backend the caller's pyplot uses
        return common.save_figure(fig, path, DPI)  # constrained layout: save_figure keeps it


def _mean(values: list[float]) -> float:
    """The mean over a module's heads."""
    return sum(values) / len(values)


def table_markdown(results: dict) -> str:
    """A Markdown table: one row per attention module, measured over the held-out set, each
    number the mean over the module's heads (per head in the JSON). The mass on the
    anti-diagonal (the key the reversal needs) and on the diagonal, and the top weight (the
    largest weight in a row): a head spread evenly over all S keys gets ``uniform_mass`` (1 / S) in
    all three (a causal head sees fewer keys, so its top weight starts higher)."""
    rows = [
        "| attention module | queries → keys | anti-diagonal mass | diagonal mass | top weight |",
        "|---|---|---:|---:|---:|",
    ]
    for name, entry in results["modules"].items():
        rows.append(f"| {name} | {entry['queries']} → {entry['keys']} | {_mean(entry['anti_diagonal']):.3f} | "
                    f"{_mean(entry['diagonal']):.3f} | {_mean(entry['top_weight']):.3f} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_run_options(parser, modules="transformer_full.py", unit="model")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for initialisation and training batches (the held-out set stays the same)")
    common.add_output_options(parser, own_runs=OWN_RUNS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = common.base_config(args, Config(), QUICK)
    impl, modules = common.start_run(args, REQUIRED, lambda found: check_impl(found, cfg),
                                     "experiment-attention needs chapter 01", site_results=DEFAULT_RESULTS,
                                     site_plot=DEFAULT_PLOT, own_runs=OWN_RUNS)

    start = time.perf_counter()
    model = build_model(modules["transformer_full"], cfg)
    progress = common.Progress("reversal", cfg.steps)
    curve = train(model, cfg, progress)
    train_seconds = progress.elapsed()
    src, tgt_in, target = held_out_set(cfg)  # (N, L) each
    scores = evaluate(model, src, tgt_in, target)
    measured = measure_attention(model, src, tgt_in, cfg)
    i = cfg.example
    example = {"index": i, "src": src[i].tolist(), "tgt_in": tgt_in[i].tolist(), "target": target[i].tolist(),
               "predicted": scores["predicted"][i].tolist(), "maps": example_maps(model, src[i], tgt_in[i])}
    results = results_document(cfg, impl, args.quick, curve, scores, measured, example)
    progress.finish(train_seconds, f"held-out token accuracy {scores['token_accuracy']:.1%}, anti-diagonal mass "
                                   f"{results['anti_diagonal_mass']:.3f} (uniform {results['uniform_mass']:.3f})")
    results["train_seconds"] = round(train_seconds, 1)
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    common.write_outputs(results, args.results, args.plot, plot_results, table_markdown)
    print(f"\n{results['wall_seconds']:.0f} s; wrote {args.results} and {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
