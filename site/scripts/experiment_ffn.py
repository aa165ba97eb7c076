"""Chapter 04 experiment: does the choice of feed-forward network matter, at equal parameters?

Run from the repository root (or `nox -s experiment-ffn`)::

    python site/scripts/experiment_ffn.py            # the full run, about 3-4 minutes on 2 cores
    python site/scripts/experiment_ffn.py --quick    # seconds: a smoke test, numbers meaningless
    python site/scripts/experiment_ffn.py --seed 1   # the same run from another seed (the spread)

It trains one tiny character-level decoder per feed-forward variant and changes nothing else:

    relu, gelu, gelu_tanh, silu   ``FeedForward(d_model, 4 * d_model, activation=...)``: two matrices
    swiglu                        ``SwiGLU(d_model, swiglu_hidden_dim(d_model, multiple_of=1))``: three
                                  matrices two thirds as wide, so the same parameter budget

Same corpus, same seed, same batches in the same order, same steps, optimizer and schedule;
the embeddings, attention layers and head even start from the same weights (only the FFNs are
drawn separately, since their shapes differ). It records the training loss every
``log_every`` steps (the mean over that window: a smoothed curve) and the validation loss at
the end, writes the results as JSON, draws the loss curves and prints a Markdown table.

What to expect. The differences are small and the run is short, so weigh them against the
spread between seeds (``--seed 1``). On the reference, seeds 0 and 1 put the variants in the
same order: SwiGLU about 0.045 nats per character below GELU, GELU about 0.015 below ReLU,
SiLU about 0.005 above ReLU, while one variant's validation loss moved by about 0.01
from one seed to the other. GELU and its tanh approximation agree to four decimals (the two
functions differ by less than 1e-3). The direction is the one Shazeer (2020, "GLU Variants
Improve Transformer") reported for far larger models, but this is one tiny model, one corpus,
800 steps and one learning rate shared by all and tuned for none; the curves part after a
few hundred steps and are still falling at the end, so part of SwiGLU's edge may be speed
of learning rather than a better end point. Read the table as a measurement, not a verdict.

The corpus. Nothing may be downloaded while the experiment runs (the course's capstone trains
on Shakespeare, which must be installed first), so the script writes its own text, the same
every time: English-like sentences from a small probabilistic grammar over a made-up lexicon
(``corpus_seed`` fixes it), for example::

    Some telskas dreskeast many nibrek fons under a draistmir. Each zargleam brais two demmuls.

What there is to learn, from easy to hard:

* spelling: 120 invented words of one or two syllables, plus real function words
  (``the``, ``some``, ``near``, ``and``); nouns and verbs with Zipf-like frequencies;
* syntax: determiner, optional adjective, noun, verb, object, optional prepositional phrase;
  sentences start with a capital and end with a full stop;
* agreement: a plural subject (``some``/``many`` + noun + ``s``) takes a bare verb, a singular
  one a verb + ``s``, across any adjective in between (attention's job);
* facts: every noun may be the subject of only a few verbs, every verb takes only a few
  objects, every noun takes only a few adjectives, all drawn at random once. These tables
  are arbitrary, so the model can only memorize them, and storing such associations is what
  feed-forward layers are thought to do (Geva et al., 2021, "Transformer Feed-Forward Layers
  Are Key-Value Memories"): this is where an FFN's capacity shows.

The text is cut once: the first 90% trains, the rest is the validation set, so the validation
loss measures the grammar and facts learned, not memorized sentences.

The model is built from the course's own modules (chapter 02's ``MultiHeadAttention`` and
``causal_mask``, chapter 04's FFNs and parameter counts), imported from ``--impl`` (default
``reference_solutions/``, or ``assignments/`` in the student release): run it on your own
implementation once chapters 02 and 04 pass. Token and position embeddings (a learned table),
LayerNorm and the output head are plain ``torch.nn``. What it shares with chapter 03's experiment
(loading ``--impl``, the learning-rate schedule, progress, where the outputs go) is in
``experiment_common.py``.

Notation used in the shape comments:
    B   batch size
    T   sequence length (block_size)
    D   d_model
    V   vocabulary size (distinct characters)
    N   characters in a split of the corpus

Structure, top to bottom: the configuration; the corpus; the model; training and evaluation;
the outputs (JSON, ``plot_results``, ``table_markdown``, both importable without training);
``main``.
"""

from __future__ import annotations

import argparse
import math
import random
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
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `experiment_common`, however this file is loaded
import experiment_common as common  # noqa: E402

DEFAULT_RESULTS = common.ROOT / "site" / "docs" / "results" / "ffn_ablation.json"
DEFAULT_PLOT = common.ROOT / "site" / "docs" / "figures" / "ffn_ablation.png"
OWN_RUNS = common.ROOT / "reports" / "experiment_ffn"  # runs on any --impl but the reference
CLASSIC = ("relu", "gelu", "gelu_tanh", "silu")  # FeedForward's activations
VARIANTS = (*CLASSIC, "swiglu")
# What the experiment calls in each course module (chapter 02, chapter 04).
REQUIRED = {
    "multi_head_attention": ("MultiHeadAttention", "causal_mask"),
    "feedforward": ("FeedForward", "SwiGLU", "swiglu_hidden_dim", "feedforward_parameter_count",
                    "swiglu_parameter_count"),
}
# SwiGLU's width is rounded to an integer, so its FFN cannot cost exactly what the classic one
# does; "matched" means within this fraction (at d_model 64 the gap is 1.4%).
MATCH_TOLERANCE = 0.03
DPI = 110
# The site's palette (matplotlib's default cycle), one colour per variant in VARIANTS order.
COLORS = ["#7f7f7f", "#1f77b4", "#17becf", "#ff7f0e", "#d62728"]
# gelu_tanh approximates gelu to within 1e-3 and its curve hides gelu's: dashed, both show.
LINESTYLES = {"gelu_tanh": (0, (4, 2))}


@dataclass(frozen=True)
class Config:
    """Everything that decides the numbers; written into the results JSON as it is."""

    corpus_chars: int = 500_000  # generated text, in characters (about 90k words)
    corpus_seed: int = 0  # fixes the lexicon, its facts and the text; --seed leaves it alone
    val_fraction: float = 0.1  # the tail of the text, never trained on
    block_size: int = 64  # characters per training sequence: a sentence or so of context
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    # Llama rounds SwiGLU's width up to 256, which at d_model 64 is 1.5x the two-thirds width
    # and would break the parameter match; 1 keeps the width at exactly two thirds (truncated).
    swiglu_multiple_of: int = 1
    batch_size: int = 32
    steps: int = 800  # about 40 s per variant at one thread here: the whole run in 3-4 minutes
    lr: float = 3e-3  # AdamW peak, linear warm-up then cosine decay to 0
    warmup_steps: int = 100
    max_grad_norm: float = 1.0
    log_every: int = 25  # one point of the training curve: the mean loss over this many steps
    seed: int = 0  # initialisation and batch order, the same for every variant

    @property
    def classic_d_ff(self) -> int:
        """The classic FFN's hidden width: four times d_model, as in the 2017 paper and GPT-2."""
        return 4 * self.d_model


# Small enough that all five variants train and evaluate in seconds: it checks that the
# pipeline runs end to end, its losses mean nothing.
QUICK = Config(corpus_chars=20_000, block_size=32, d_model=32, num_heads=2, num_layers=1, batch_size=16, steps=30,
               warmup_steps=5, log_every=5)


# --------------------------------------------------------------------------------------
# the corpus: a probabilistic grammar over an invented lexicon (see the module docstring)
# --------------------------------------------------------------------------------------

ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
          "br", "dr", "gl", "kr", "pl", "sk", "st", "th", "tr", "sh")
VOWELS = ("a", "e", "i", "o", "u", "ai", "oo", "ea")
CODAS = ("", "", "", "n", "r", "l", "m", "k", "nd", "st")  # "" three times: open syllables are common
# Real function words, by grammatical number, so a determiner announces the noun's number.
DETERMINERS = {False: ("the", "a", "each", "one"), True: ("the", "some", "many", "two")}
PREPOSITIONS = ("in", "on", "near", "under", "with", "beside")
CONJUNCTIONS = ("and", "but", "while")
NUM_NOUNS, NUM_VERBS, NUM_ADJECTIVES = 64, 32, 24
VERBS_PER_NOUN, OBJECTS_PER_VERB, ADJECTIVES_PER_NOUN = 4, 6, 3  # the fact tables' sizes


@dataclass(frozen=True)
class Lexicon:
    """The invented words and the facts that tie them together (indices into the word lists)."""

    nouns: tuple[str, ...]
    verbs: tuple[str, ...]
    adjectives: tuple[str, ...]
    subject_verbs: tuple[tuple[int, ...], ...]  # per noun: the verbs it can be the subject of
    verb_objects: tuple[tuple[int, ...], ...]  # per verb: the nouns it takes as object
    noun_adjectives: tuple[tuple[int, ...], ...]  # per noun: the adjectives that describe it


def invented_word(rng: random.Random) -> str:
    """One or two syllables, each an onset, a vowel and maybe a coda."""
    syllables = rng.choice((1, 2, 2))
    return "".join(rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables))


def invented_words(rng: random.Random, count: int, taken: set[str]) -> tuple[str, ...]:
    """``count`` distinct new words, none in ``taken`` (which they join)."""
    words: list[str] = []
    while len(words) < count:
        word = invented_word(rng)
        if len(word) > 2 and word not in taken:
            taken.add(word)
            words.append(word)
    return tuple(words)


def make_lexicon(rng: random.Random) -> Lexicon:
    """The word lists and three random fact tables, from ``rng`` alone."""
    taken = {*DETERMINERS[False], *DETERMINERS[True], *PREPOSITIONS, *CONJUNCTIONS}
    nouns = invented_words(rng, NUM_NOUNS, taken)
    verbs = invented_words(rng, NUM_VERBS, taken)
    adjectives = invented_words(rng, NUM_ADJECTIVES, taken)
    return Lexicon(
        nouns=nouns,
        verbs=verbs,
        adjectives=adjectives,
        subject_verbs=tuple(tuple(rng.sample(range(NUM_VERBS), VERBS_PER_NOUN)) for _ in nouns),
        verb_objects=tuple(tuple(rng.sample(range(NUM_NOUNS), OBJECTS_PER_VERB)) for _ in verbs),
        noun_adjectives=tuple(tuple(rng.sample(range(NUM_ADJECTIVES), ADJECTIVES_PER_NOUN)) for _ in nouns),
    )


def zipf_pick(rng: random.Random, options: tuple[int, ...] | range) -> int:
    """One of ``options``, the k-th (counting from 1) with weight 1/k: a few words are common,
    most are rare, as in real text."""
    return rng.choices(options, weights=[1 / rank for rank in range(1, len(options) + 1)])[0]


def inflect(word: str) -> str:
    """The plural of a noun, or the third-person singular of a verb: English's ``-s``/``-es``."""
    return word + ("es" if word.endswith(("s", "sh")) else "s")


def noun_phrase(rng: random.Random, lexicon: Lexicon, noun: int, plural: bool) -> str:
    """Determiner, maybe an adjective this noun takes, the noun in the given number."""
    words = [rng.choice(DETERMINERS[plural])]
    if rng.random() < 0.5:
        words.append(lexicon.adjectives[rng.choice(lexicon.noun_adjectives[noun])])
    words.append(inflect(lexicon.nouns[noun]) if plural else lexicon.nouns[noun])
    return " ".join(words)


def clause(rng: random.Random, lexicon: Lexicon) -> str:
    """Subject, a verb that agrees with it and that it may do, that verb's object, maybe a
    prepositional phrase."""
    subject, plural = zipf_pick(rng, range(NUM_NOUNS)), rng.random() < 0.4
    verb = zipf_pick(rng, lexicon.subject_verbs[subject])
    obj = zipf_pick(rng, lexicon.verb_objects[verb])
    words = [noun_phrase(rng, lexicon, subject, plural),
             lexicon.verbs[verb] if plural else inflect(lexicon.verbs[verb]),
             noun_phrase(rng, lexicon, obj, rng.random() < 0.4)]
    if rng.random() < 0.3:
        place = zipf_pick(rng, range(NUM_NOUNS))
        words += [rng.choice(PREPOSITIONS), noun_phrase(rng, lexicon, place, rng.random() < 0.4)]
    return " ".join(words)


def sentence(rng: random.Random, lexicon: Lexicon) -> str:
    """One clause, or two joined by a conjunction; capitalised, with a full stop."""
    text = clause(rng, lexicon)
    if rng.random() < 0.25:
        text += f", {rng.choice(CONJUNCTIONS)} {clause(rng, lexicon)}"
    return text[0].upper() + text[1:] + "."


def make_corpus(cfg: Config) -> str:
    """About ``cfg.corpus_chars`` characters (cut to exactly that), paragraphs of 3 to 6
    sentences; the same text for the same ``corpus_seed`` on every machine (``random.Random``
    is specified, unlike torch's generators across versions)."""
    rng = random.Random(cfg.corpus_seed)
    lexicon = make_lexicon(rng)
    paragraphs, length = [], 0
    while length < cfg.corpus_chars:
        paragraph = " ".join(sentence(rng, lexicon) for _ in range(rng.randint(3, 6)))
        paragraphs.append(paragraph)
        length += len(paragraph) + 1
    return "\n".join(paragraphs)[: cfg.corpus_chars]


@dataclass(frozen=True)
class Splits:
    """The corpus encoded as character ids, cut into a training and a validation part."""

    vocabulary: str  # every distinct character, sorted; id i is vocabulary[i]
    train: Tensor  # (N_train,) int64
    val: Tensor  # (N_val,) int64


def make_splits(cfg: Config) -> Splits:
    """Encode the corpus character by character; the last ``val_fraction`` is held out."""
    text = make_corpus(cfg)
    vocabulary = "".join(sorted(set(text)))
    index = {char: i for i, char in enumerate(vocabulary)}
    ids = torch.tensor([index[char] for char in text], dtype=torch.long)  # (N,)
    cut = int(len(ids) * (1 - cfg.val_fraction))
    return Splits(vocabulary, ids[:cut], ids[cut:])  # (N_train,), (N_val,)


def random_windows(data: Tensor, cfg: Config, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``batch_size`` windows at random offsets: inputs and the next characters, (B, T) each."""
    starts = torch.randint(len(data) - cfg.block_size, (cfg.batch_size,), generator=generator)  # (B,)
    index = starts[:, None] + torch.arange(cfg.block_size + 1)  # (B, T + 1)
    windows = data[index]  # (B, T + 1)
    return windows[:, :-1], windows[:, 1:]  # (B, T), (B, T)


def consecutive_windows(data: Tensor, cfg: Config) -> tuple[Tensor, Tensor]:
    """The whole of ``data`` as non-overlapping windows (the ragged tail dropped), so every
    validation character is scored once: inputs and targets, (N / T, T) each."""
    count = (len(data) - 1) // cfg.block_size
    inputs = data[: count * cfg.block_size].view(count, cfg.block_size)  # (N / T, T)
    targets = data[1: count * cfg.block_size + 1].view(count, cfg.block_size)  # (N / T, T)
    return inputs, targets


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------


def ffn_width(variant: str, ff: ModuleType, cfg: Config) -> int:
    """The hidden width: ``4 * d_model`` for the classic FFNs, two thirds of it for SwiGLU."""
    if variant == "swiglu":
        return ff.swiglu_hidden_dim(cfg.d_model, multiple_of=cfg.swiglu_multiple_of)
    return cfg.classic_d_ff


def make_ffn(variant: str, ff: ModuleType, cfg: Config) -> nn.Module:
    """One FFN of the variant, with each class's default bias (GPT-2's FFN has biases, Llama's
    SwiGLU none), as each is used in practice."""
    d_ff = ffn_width(variant, ff, cfg)
    if variant == "swiglu":
        return ff.SwiGLU(cfg.d_model, d_ff)
    return ff.FeedForward(cfg.d_model, d_ff, activation=variant)


def ffn_parameter_count(variant: str, ff: ModuleType, cfg: Config) -> int:
    """Parameters of one of the variant's FFNs, by chapter 04's closed forms."""
    d_ff = ffn_width(variant, ff, cfg)
    if variant == "swiglu":
        return ff.swiglu_parameter_count(cfg.d_model, d_ff)
    return ff.feedforward_parameter_count(cfg.d_model, d_ff)


class Block(nn.Module):
    """A pre-norm decoder block: course attention, then the variant's FFN, each on a residual."""

    def __init__(self, mha: ModuleType, ffn: nn.Module, cfg: Config) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.attn = mha.MultiHeadAttention(cfg.d_model, cfg.num_heads)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.ffn = ffn

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        attended, _ = self.attn(self.norm1(x), mask=mask)  # (B, T, D)
        x = x + attended
        return x + self.ffn(self.norm2(x))  # (B, T, D)


class CharDecoder(nn.Module):
    """Character and position embeddings, ``num_layers`` blocks, a LayerNorm and a head."""

    def __init__(self, mha: ModuleType, ffns: list[nn.Module], vocab_size: int, cfg: Config) -> None:
        super().__init__()
        self.causal_mask = mha.causal_mask
        self.embed = nn.Embedding(vocab_size, cfg.d_model)
        self.positions = nn.Embedding(cfg.block_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(mha, ffn, cfg) for ffn in ffns)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, vocab_size)

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits ``(B, T, V)`` for character ids ``(B, T)``."""
        seq_len = tokens.shape[1]
        x = self.embed(tokens) + self.positions(torch.arange(seq_len, device=tokens.device))  # (B, T, D)
        mask = self.causal_mask(seq_len, device=tokens.device)  # (T, T), True = may attend
        for block in self.blocks:
            x = block(x, mask)  # (B, T, D)
        return self.head(self.norm(x))  # (B, T, V)


def build_model(variant: str, modules: dict[str, ModuleType], vocab_size: int, cfg: Config) -> CharDecoder:
    """A fresh model. The FFNs are drawn first from a seed of their own, then the rest from
    ``cfg.seed``: FFNs of different shapes consume different amounts of randomness, and this
    way every variant's embeddings, attention and head start from the very same weights."""
    torch.manual_seed(cfg.seed + 1)
    ffns = [make_ffn(variant, modules["feedforward"], cfg) for _ in range(cfg.num_layers)]
    torch.manual_seed(cfg.seed)
    return CharDecoder(modules["multi_head_attention"], ffns, vocab_size, cfg)


def check_impl(modules: dict[str, ModuleType], cfg: Config) -> None:
    """Build every variant, run one short forward pass and compare chapter 04's parameter counts
    with the modules they count, so a stub or a slip stops the run before any training
    (``load_checked`` calls it)."""
    tokens = torch.zeros(1, 4, dtype=torch.long)  # (1, T)
    for variant in VARIANTS:
        model = build_model(variant, modules, 2, cfg)
        model(tokens)
        built = sum(p.numel() for p in model.blocks[0].ffn.parameters())
        counted = ffn_parameter_count(variant, modules["feedforward"], cfg)
        if built != counted:
            raise common.ImplementationMissing(f"the {variant} FFN has {built} parameters but chapter 04's count "
                                        f"for it is {counted}")


def check_matched(ff: ModuleType, cfg: Config) -> None:
    """Raise ValueError unless every variant's FFN costs within MATCH_TOLERANCE of the classic
    one: the comparison is only fair at equal parameters."""
    classic = ffn_parameter_count("relu", ff, cfg)
    for variant in VARIANTS:
        count = ffn_parameter_count(variant, ff, cfg)
        if abs(count - classic) > MATCH_TOLERANCE * classic:
            raise ValueError(f"the {variant} FFN has {count} parameters, the classic one {classic}: more than "
                             f"{MATCH_TOLERANCE:.0%} apart at d_model={cfg.d_model}")


# --------------------------------------------------------------------------------------
# training and evaluation
# --------------------------------------------------------------------------------------


def next_char_loss(model: CharDecoder, inputs: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of the next character, in nats, over every position."""
    logits = model(inputs)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())  # (B*T, V) vs (B*T,)


def train(model: CharDecoder, data: Tensor, cfg: Config, progress: common.Progress) -> dict[str, list]:
    """AdamW on random windows of ``data`` from a generator seeded by ``cfg.seed``, so every
    variant sees the same batches in the same order. Returns the smoothed training curve:
    ``{"step": [...], "loss": [...]}``, each point the mean over the ``log_every`` steps that
    end at it (the last window may be shorter)."""
    generator = torch.Generator().manual_seed(cfg.seed)
    # nanoGPT's betas for small character models; no weight decay, one knob fewer that could
    # suit one variant more than another.
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    curve: dict[str, list] = {"step": [], "loss": []}
    window: list[float] = []
    model.train()
    for step in range(1, cfg.steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = common.learning_rate(step - 1, cfg.steps, cfg.warmup_steps, cfg.lr)
        inputs, targets = random_windows(data, cfg, generator)  # (B, T) each
        loss = next_char_loss(model, inputs, targets)
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
def validation_loss(model: CharDecoder, data: Tensor, cfg: Config) -> float:
    """Mean next-character loss over the whole validation split, every character scored once
    (the first of each window with no context, the same for every variant)."""
    model.eval()
    inputs, targets = consecutive_windows(data, cfg)  # (N / T, T) each
    total = 0.0
    for chunk in range(0, len(inputs), 256):  # bounded memory, whatever the split's size
        batch = slice(chunk, chunk + 256)
        total += next_char_loss(model, inputs[batch], targets[batch]).item() * len(inputs[batch])
    return total / len(inputs)


def run_variant(variant: str, modules: dict[str, ModuleType], splits: Splits, cfg: Config) -> dict:
    """Train one model and score it on the validation split: the JSON entry of one variant."""
    model = build_model(variant, modules, len(splits.vocabulary), cfg)
    progress = common.Progress(variant, cfg.steps)
    curve = train(model, splits.train, cfg, progress)
    seconds = progress.elapsed()
    val = validation_loss(model, splits.val, cfg)
    progress.finish(seconds, f"train loss {curve['loss'][-1]:.4f}, val loss {val:.4f}")
    return {
        "d_ff": ffn_width(variant, modules["feedforward"], cfg),
        "ffn_parameters": cfg.num_layers * ffn_parameter_count(variant, modules["feedforward"], cfg),  # all layers
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_curve": curve,
        "final_train_loss": curve["loss"][-1],
        "val_loss": round(val, 4),
        "train_seconds": round(seconds, 1),
    }


# --------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------


def results_document(cfg: Config, impl: Path, quick: bool, splits: Splits, variants: dict[str, dict]) -> dict:
    """The JSON written to --results: the configuration, the corpus, one entry per variant."""
    config = asdict(cfg) | {"classic_d_ff": cfg.classic_d_ff} | common.run_metadata(impl, quick)
    corpus = {
        "train_chars": len(splits.train),
        "val_chars": len(splits.val),
        "vocab_size": len(splits.vocabulary),
        # A model that ignored the text and guessed uniformly: ln V nats per character.
        "uniform_loss": round(math.log(len(splits.vocabulary)), 4),
        "sample": make_corpus(replace(cfg, corpus_chars=300)),
    }
    return {"config": config, "corpus": corpus, "variants": variants}


def _draw_curves(ax, results: dict) -> None:
    """Every variant's training curve, its validation loss a marker at the last step."""
    for color, (variant, entry) in zip(COLORS, results["variants"].items()):
        curve = entry["train_curve"]
        ax.plot(curve["step"], curve["loss"], color=color, linewidth=1.2, linestyle=LINESTYLES.get(variant, "-"),
                label=f"{variant} (d_ff {entry['d_ff']})")
        ax.plot(curve["step"][-1], entry["val_loss"], marker="o", color=color, markeredgecolor="black",
                markeredgewidth=0.6, linestyle="none")


def plot_results(results: dict, path: Path) -> Path:
    """The training loss curves of every variant, from a results dict (the JSON): the whole run
    on the left, its second half zoomed on the right, where the curves would otherwise overlap;
    the legend below them. Each variant's validation loss is a black-edged dot at the last step.

    Drawn for the reading site's column (``common.COLUMN_INCHES`` wide, no text under
    ``common.READABLE_PT``), saved with the Agg renderer and no ``Software`` metadata, so the
    bytes depend only on the numbers (and the installed fonts). Returns ``path``.
    """
    with matplotlib.rc_context(common.FONT_SIZES):
        config = results["config"]
        fig = Figure(figsize=(common.COLUMN_INCHES, 4.6), layout="constrained")
        FigureCanvasAgg(fig)  # explicit Agg, whatever backend the caller's pyplot uses
        whole, zoom = fig.subplots(1, 2)
        for ax in (whole, zoom):
            _draw_curves(ax, results)
            ax.set_xlabel("training step")
        whole.set_ylabel("loss (nats per character)")
        whole.set_title("whole run")
        # The zoom's y range: every curve point of the second half and every validation dot.
        half = config["steps"] / 2
        shown = [loss for entry in results["variants"].values()
                 for step, loss in zip(entry["train_curve"]["step"], entry["train_curve"]["loss"]) if step >= half]
        shown += [entry["val_loss"] for entry in results["variants"].values()]
        margin = 0.05 * (max(shown) - min(shown)) + 1e-3
        zoom.set_xlim(half, config["steps"] * 1.02)
        zoom.set_ylim(min(shown) - margin, max(shown) + margin)
        zoom.set_title("second half (dots: validation loss)")
        fig.suptitle(f"FFN variants at matched parameters: {config['num_layers']} layers, d_model "
                     f"{config['d_model']},\n{config['steps']} steps of {config['batch_size']} x "
                     f"{config['block_size']} characters")
        fig.legend(*whole.get_legend_handles_labels(), loc="outside lower center", ncols=3, frameon=False)
        return common.save_figure(fig, path, DPI)


def table_markdown(results: dict) -> str:
    """A Markdown table: one row per variant, losses in nats per character."""
    rows = [
        "| variant | FFN params | total params | final train loss | val loss | seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for variant, entry in results["variants"].items():
        rows.append(f"| {variant} | {entry['ffn_parameters']:,} | {entry['parameters']:,} | "
                    f"{entry['final_train_loss']:.4f} | {entry['val_loss']:.4f} | {entry['train_seconds']:.1f} |")
    return "\n".join(rows)


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_run_options(parser, modules="multi_head_attention.py and feedforward.py", unit="variant")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed for initialisation and batch order (the corpus stays the same)")
    common.add_output_options(parser, own_runs=OWN_RUNS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = common.base_config(args, Config(), QUICK)
    impl, modules = common.start_run(args, REQUIRED, lambda found: check_impl(found, cfg),
                                     "experiment-ffn needs chapters 02 and 04", site_results=DEFAULT_RESULTS,
                                     site_plot=DEFAULT_PLOT, own_runs=OWN_RUNS)
    check_matched(modules["feedforward"], cfg)

    start = time.perf_counter()
    splits = make_splits(cfg)
    variants = {variant: run_variant(variant, modules, splits, cfg) for variant in VARIANTS}
    results = results_document(cfg, impl, args.quick, splits, variants)
    results["wall_seconds"] = round(time.perf_counter() - start, 1)
    common.write_outputs(results, args.results, args.plot, plot_results, table_markdown)
    print(f"\n{results['wall_seconds']:.0f} s; wrote {args.results} and {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
