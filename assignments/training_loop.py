# Generated from reference_solutions/training_loop.py by `nox -s stubs`; fill in every NotImplementedError.
"""Chapter 06: training dynamics, from the learning-rate schedule to the scaling laws.

A model is only as good as the loop that trains it. You write the pieces every modern
language-model run uses: a warm-up + cosine schedule (and the 2017 paper's "Noam" schedule),
a numerically stable cross-entropy, global gradient-norm clipping, the AdamW optimizer,
one training step with gradient accumulation and mixed precision, a small trainer that
evaluates, checkpoints and resumes exactly, and the scaling laws that say how big a model
and how many tokens a compute budget buys.

Notation used in the shape comments:
    B   batch size (of one micro-batch)
    T   sequence length
    V   vocabulary size
    N   a number of parameters, D a number of training tokens, C a compute budget in FLOPs

Conventions (the course contract):
    * steps count from 0; a schedule is a plain function of the step, returning a float;
    * bad arguments (a negative step, ``total_steps < warmup_steps``, a negative learning
      rate) raise ValueError naming the argument and its value.

`F.cross_entropy`, `F.nll_loss`, `F.log_softmax` (and `torch.log_softmax`, `x.log_softmax()`),
`nn.CrossEntropyLoss`, `torch.nn.utils.clip_grad_norm_`, `torch.optim.Adam`, `torch.optim.AdamW`
and the `torch.optim.lr_scheduler` classes are off limits in this chapter: the grader scans
your file for them. `torch.logsumexp`, `torch.optim.Optimizer` (the base class),
`torch.autocast` and `torch.amp.GradScaler` are the tools you build on.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import netrc
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

HALF = (torch.float16, torch.bfloat16)

# --------------------------------------------------------------------------------------
# learning-rate schedules
# --------------------------------------------------------------------------------------


def cosine_schedule(step: int, *, max_lr: float, min_lr: float, warmup_steps: int, total_steps: int) -> float:
    """The learning rate at ``step`` (counting from 0): linear warm-up, cosine decay, then flat.

    * ``step < warmup_steps``: ``max_lr * step / warmup_steps`` (0 at step 0);
    * ``warmup_steps <= step <= total_steps``: ``min_lr + (max_lr - min_lr) * (1 + cos(pi * p)) / 2``
      with ``p = (step - warmup_steps) / (total_steps - warmup_steps)``, so ``max_lr`` at the end
      of the warm-up and ``min_lr`` at ``total_steps``;
    * ``step > total_steps``: ``min_lr``.

    ``warmup_steps = 0`` means no warm-up; ``total_steps == warmup_steps`` means no decay phase
    (``min_lr`` from ``warmup_steps`` on).

    Raises:
        ValueError: ``step < 0``, ``warmup_steps < 0``, ``total_steps < warmup_steps``, or
        ``min_lr > max_lr`` or a negative rate (the message names the argument and its value).

    Example:
        >>> cosine_schedule(50, max_lr=1.0, min_lr=0.0, warmup_steps=100, total_steps=1100)
        0.5
        >>> cosine_schedule(600, max_lr=1.0, min_lr=0.0, warmup_steps=100, total_steps=1100)
        0.5
    """
    # YOUR CODE HERE
    raise NotImplementedError('cosine_schedule: check the arguments; three phases: warm-up (linear), decay (cosine), after the end (min_lr)')


def noam_schedule(step: int, *, d_model: int, warmup_steps: int, factor: float = 1.0) -> float:
    """The schedule of "Attention Is All You Need" (section 5.3), steps counting from 1:

    ``factor * d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)``

    It rises linearly for ``warmup_steps`` steps, peaks at ``step == warmup_steps``, then decays
    as ``1 / sqrt(step)``.

    Raises:
        ValueError: ``step < 1``, ``d_model < 1`` or ``warmup_steps < 1``.

    Example:
        >>> round(noam_schedule(4000, d_model=512, warmup_steps=4000), 7)
        0.0006988
    """
    # YOUR CODE HERE
    raise NotImplementedError('noam_schedule: the formula above; check step, d_model and warmup_steps first')


# --------------------------------------------------------------------------------------
# the loss
# --------------------------------------------------------------------------------------


def cross_entropy(logits: Tensor, targets: Tensor, ignore_index: int = -100) -> Tensor:
    """Mean cross-entropy of ``logits`` against integer ``targets``, as ``F.cross_entropy``.

    ``-log softmax(logits)[target]``, averaged over the positions whose target is not
    ``ignore_index`` (padding). Computed with the log-sum-exp trick (subtract each row's max),
    so logits of +-1e4 give a finite, exact loss; half-precision logits are computed in float32.

    Shapes:
        ``logits``: ``(..., V)``; ``targets``: ``(...)`` integer; returns a scalar in the
        logits' dtype. When every target is ignored the mean is 0 / 0: NaN, as in PyTorch.

    Example:
        >>> cross_entropy(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))  # log 2
        tensor(0.6931)
    """
    # YOUR CODE HERE
    raise NotImplementedError('cross_entropy: flatten; log_probs = z - max - log(sum(exp(z - max))); pick the targets; mean over the kept ones')


# --------------------------------------------------------------------------------------
# gradient clipping and the optimizer
# --------------------------------------------------------------------------------------


def clip_grad_norm(parameters: Iterable[Tensor] | Tensor, max_norm: float, eps: float = 1e-6) -> Tensor:
    """Scale every gradient in place so that their global L2 norm is at most ``max_norm``.

    The global norm is the L2 norm of all gradients together, as if concatenated into one
    vector. When it exceeds ``max_norm``, every gradient is multiplied by
    ``max_norm / (norm + eps)``; otherwise (the coefficient would be >= 1) nothing changes.
    Parameters without a gradient (``p.grad is None``) are skipped. Equals
    ``torch.nn.utils.clip_grad_norm_(parameters, max_norm)``.

    Returns:
        The global norm *before* clipping, a scalar tensor (0 when no parameter has a gradient).

    Example:
        >>> p = nn.Parameter(torch.zeros(2)); p.grad = torch.tensor([3.0, 4.0])
        >>> clip_grad_norm([p], max_norm=1.0), p.grad
        (tensor(5.), tensor([0.6000, 0.8000]))
    """
    # YOUR CODE HERE
    raise NotImplementedError('clip_grad_norm: list the parameters (maybe a generator); the norm of the per-gradient norms; coefficient at most 1')


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay (Loshchilov and Hutter, 2019), as ``torch.optim.AdamW``.

    For each parameter ``p`` with gradient ``g``, at step ``t`` (1, 2, ...), with the group's
    ``lr``, ``betas = (b1, b2)``, ``eps`` and ``weight_decay``:

    1. ``p <- p * (1 - lr * weight_decay)``: the decay acts on the weights, not through the
       gradient (that would be Adam with L2 regularisation, a different optimizer);
    2. ``m <- b1 * m + (1 - b1) * g`` and ``v <- b2 * v + (1 - b2) * g**2``;
    3. ``m_hat = m / (1 - b1**t)`` and ``v_hat = v / (1 - b2**t)`` (bias correction);
    4. ``p <- p - lr * m_hat / (sqrt(v_hat) + eps)``: ``eps`` outside the square root.

    The state of each parameter is ``{"step", "exp_avg", "exp_avg_sq"}`` (``m`` and ``v``, zeros
    at first, created at its first step), the names ``torch.optim.AdamW`` uses, so
    ``state_dict`` / ``load_state_dict`` (inherited from ``torch.optim.Optimizer``) round-trip
    and a state moves between this class and PyTorch's. The group's values are read at every
    step, so a scheduler may change ``lr`` between steps. Parameters without a gradient are
    skipped (no decay either).

    Raises:
        ValueError: a negative ``lr``, ``eps`` or ``weight_decay``, or a beta outside [0, 1).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01) -> None:
        # YOUR CODE HERE
        raise NotImplementedError('AdamW.__init__: validate, then super().__init__(params, dict(lr=..., betas=..., eps=..., weight_decay=...))')

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One update of every parameter that has a gradient; returns ``closure()``'s loss if given."""
        # YOUR CODE HERE
        raise NotImplementedError('AdamW.step: for each group, for each p with a grad: create the state at the first step, then steps 1-4 above')


# --------------------------------------------------------------------------------------
# one training step
# --------------------------------------------------------------------------------------


def train_step(model: nn.Module, micro_batches: Sequence[tuple[Tensor, Tensor]], optimizer: torch.optim.Optimizer,
               *, loss_fn: Callable[[Tensor, Tensor], Tensor] = cross_entropy, max_grad_norm: float | None = None,
               autocast_dtype: torch.dtype | None = None, scaler: torch.amp.GradScaler | None = None) -> float:
    """One optimizer step over gradient-accumulated micro-batches.

    1. Zero the gradients.
    2. For each ``(inputs, targets)`` in ``micro_batches``: ``model(inputs)`` gives the logits
       (or a tuple whose first element is the logits); the loss is ``loss_fn(logits, targets)``
       **divided by the number of micro-batches**, and its ``backward()`` adds to the
       gradients. So, for equal-size micro-batches, the summed gradient is the gradient of the
       mean loss over their concatenation: k micro-batches of B make one step of batch k * B.
    3. With ``max_grad_norm``, clip the global gradient norm (``clip_grad_norm``); with a
       ``scaler``, unscale the gradients first (``scaler.unscale_(optimizer)``), or the clip
       would act on scaled values.
    4. Step: ``optimizer.step()``, or ``scaler.step(optimizer)`` then ``scaler.update()``.

    Mixed precision: with ``autocast_dtype`` (``torch.bfloat16`` on CPU or CUDA,
    ``torch.float16`` on CUDA with a ``torch.amp.GradScaler``) the forward pass and the loss run
    under ``torch.autocast`` on the model's device; the weights, gradients and optimizer state
    stay in float32. float16's small range makes small gradients underflow to 0, hence the
    scaler; bfloat16 has float32's range and needs none.

    Under ``torch.distributed`` with a ``DistributedDataParallel`` model, each process passes
    its own shard of the batch; the gradients are averaged across processes at the last
    micro-batch's backward (earlier ones skip the all-reduce with ``model.no_sync()``). With
    padding (``ignore_index``), "equal size" means equal numbers of counted targets, in every
    micro-batch and on every process.

    Returns:
        The mean of the micro-batch losses (undivided), a Python float; under DDP, this
        process's own shard's.

    Raises:
        ValueError: no micro-batches, or ``torch.float16`` without a ``scaler``.
    """
    # YOUR CODE HERE
    raise NotImplementedError('train_step: zero_grad; per micro-batch: autocast forward, (loss / k).backward() (scaled if a scaler); unscale, clip, step')


# --------------------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """Everything a run needs besides the model and the data. Saved in every checkpoint."""

    max_steps: int = 1000  # optimizer steps
    accumulation_steps: int = 1  # micro-batches per step
    max_lr: float = 3e-4
    min_lr: float = 3e-5  # reached at max_steps (cosine_schedule's total_steps)
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)  # GPT-3's, as most LLM runs
    max_grad_norm: float | None = 1.0
    autocast_dtype: str | None = None  # "bfloat16" or "float16" (CUDA, with a GradScaler)
    eval_every: int = 100  # steps between evaluations (and at the last step)
    eval_batches: int = 10  # validation batches per evaluation
    checkpoint_every: int = 500  # steps between checkpoints (and at the last step)
    out_dir: str | None = None  # metrics.jsonl, checkpoint.pt, loss.png; None: write nothing
    seed: int = 0
    progress: bool = True  # a progress bar on stderr


# get_batch(split, generator) -> (inputs, targets): split is "train" or "val"; all randomness
# must come from the generator, so the trainer can save and restore it.
GetBatch = Callable[[str, torch.Generator], tuple[Tensor, Tensor]]


class ProgressBar:
    """A one-line progress bar on stderr: steps, loss, tokens/s and the time left. Redrawn in
    place on a terminal; in a log file, one line every tenth of the run."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True) -> None:
        self.total, self.start, self.enabled = total, start, enabled
        self.live = sys.stderr.isatty()
        self.began = time.perf_counter()

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        if not self.enabled:
            return
        done = step - self.start
        left = (time.perf_counter() - self.began) / max(done, 1) * (self.total - step)
        line = (f"step {step}/{self.total} [{'#' * (30 * step // self.total):<30}] loss {loss:.4f} "
                f"{tokens_per_s:,.0f} tok/s ETA {left:.0f}s")
        if self.live:
            sys.stderr.write("\r" + line)
        elif step == self.total or step % max(1, self.total // 10) == 0:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.live:
            sys.stderr.write("\n")


# --------------------------------------------------------------------------------------
# experiment tracking (given code: the Trainer, the capstone and the experiments log through it)
# --------------------------------------------------------------------------------------

# A tracker is anything with these three methods; the Trainer calls only ``log``:
#     log(record)       one dict of numbers with an int "step" (a step's loss, an evaluation, ...)
#     text(name, text)  a piece of text, such as a sample of generated text
#     close()           the run is over (a file tracker draws its plot; W&B finishes the run)
TRACKING_EXTRA = "pip install '.[tracking]'"  # what installs wandb, from the repository's root


class TrackingUnavailable(RuntimeError):
    """A tracker was asked for and cannot be made (the wandb package is not installed)."""


def import_wandb():
    """The wandb module, imported only when a run asks for it; TrackingUnavailable, with the
    command that installs it, when it is not installed."""
    try:
        import wandb
    except ImportError as error:
        raise TrackingUnavailable(f"--wandb needs the wandb package, which is not installed: {TRACKING_EXTRA} "
                                  "(or pip install wandb)") from error
    return wandb


class MetricsFile:
    """The default tracker, with no account and no network: each record a line of JSON in
    ``out_dir/metrics.jsonl``, each text ``out_dir/NAME.txt``, and on ``close`` the losses
    drawn to ``out_dir/loss.png``. Appends, so a resumed run continues the same file."""

    METRICS, PLOT = "metrics.jsonl", "loss.png"

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)

    def log(self, record: dict) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / self.METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")

    def text(self, name: str, text: str) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"{name}.txt").write_text(text)

    def close(self) -> None:
        if (self.out_dir / self.METRICS).exists():
            plot_losses(read_metrics(self.out_dir / self.METRICS), self.out_dir / self.PLOT)


class WandbRun:
    """The same records sent to Weights & Biases: numbers as charts against ``step``, texts in
    the run's summary, ``config`` as the run's configuration. With no login (no ``WANDB_API_KEY``,
    no ``wandb login``) and no ``WANDB_MODE`` set, the run is offline: W&B writes it under
    ``out_dir/wandb/`` (``$WANDB_DIR/wandb/`` when that is set) and ``wandb sync`` uploads it
    later. With ``keep_id`` the run's id is kept in ``out_dir/wandb-run-id``, so a resumed
    training continues the same W&B run; without it every WandbRun is a new run."""

    ID_FILE = "wandb-run-id"

    def __init__(self, out_dir: str | Path, *, project: str, name: str | None = None, group: str | None = None,
                 config: dict | None = None, keep_id: bool = True) -> None:
        wandb = import_wandb()
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        id_file = self.out_dir / self.ID_FILE
        run_id = id_file.read_text().strip() if keep_id and id_file.exists() else secrets.token_hex(4)
        if keep_id:
            id_file.write_text(run_id + "\n")
        offline = "WANDB_MODE" not in os.environ and not _wandb_logged_in()
        self.run = wandb.init(project=project, name=name, group=group, config=config or {},
                              dir=os.environ.get("WANDB_DIR", self.out_dir),
                              id=run_id, resume="allow", mode="offline" if offline else None,
                              settings=wandb.Settings(console="off"))  # the progress bar stays on stderr

    def log(self, record: dict) -> None:
        numbers = {key: value for key, value in record.items() if key != "step"}
        self.run.log(numbers, step=record["step"])

    def text(self, name: str, text: str) -> None:
        # In the summary only: a history entry of the same name would overwrite it there.
        self.run.summary[name] = text

    def close(self) -> None:
        self.run.finish()


def _wandb_logged_in() -> bool:
    """An API key in the environment or in ~/.netrc (where ``wandb login`` puts it)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


class Trackers:
    """Several trackers as one: each call goes to every tracker, in order."""

    def __init__(self, *trackers) -> None:
        self.trackers = trackers

    def log(self, record: dict) -> None:
        for tracker in self.trackers:
            tracker.log(record)

    def text(self, name: str, text: str) -> None:
        for tracker in self.trackers:
            tracker.text(name, text)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


def open_tracker(out_dir: str | Path | None, *, wandb: bool = False, project: str = "transformer-internals",
                 name: str | None = None, group: str | None = None, config: dict | None = None) -> Trackers:
    """The tracker a run logs to: a ``MetricsFile`` in ``out_dir`` (none when ``out_dir`` is
    None), and a ``WandbRun`` too with ``wandb=True`` (its files in ``out_dir``, or in the
    working folder). Raises TrackingUnavailable when wandb is asked for and not installed."""
    trackers = [] if out_dir is None else [MetricsFile(out_dir)]
    if wandb:
        trackers.append(WandbRun(out_dir or ".", project=project, name=name, group=group, config=config))
    return Trackers(*trackers)


class Trainer:
    """The training loop: schedule, accumulation, clipping, evaluation, checkpoints, metrics.

    ``Trainer(model, get_batch, config)``, then ``fit()``. Each step sets every param group's
    ``lr`` from ``cosine_schedule(step, ...)`` (warm-up over ``warmup_steps``, decay until
    ``max_steps``), draws ``accumulation_steps`` training batches with ``get_batch("train",
    generator)`` and calls ``train_step``. Every ``eval_every`` steps (and after the last) it
    evaluates the mean loss of ``eval_batches`` validation batches, drawn from a generator
    seeded afresh each time, so every evaluation sees the same batches.

    Every metrics record (``{"step", "loss", "lr", "tokens_per_s"}`` per step and ``{"step",
    "val_loss"}`` per evaluation) goes to ``tracker``. By default that is a ``MetricsFile`` in
    ``out_dir`` (one JSON object per line in ``metrics.jsonl``, and ``loss.png`` drawn at the end
    of each ``fit``); pass your own (``open_tracker(out_dir, wandb=True)``) to log to Weights &
    Biases as well, and close it yourself when the run is over. With ``out_dir``, a checkpoint
    ``checkpoint.pt`` every ``checkpoint_every`` steps and at the end.

    Resuming: ``Trainer.resume(model, get_batch, out_dir)`` loads the checkpoint and continues. A
    run stopped at a checkpoint and resumed produces exactly the losses of the uninterrupted
    run on CPU, because the checkpoint holds everything the next step depends on: the
    weights, the optimizer's state, the step, the data generator's state and torch's global
    random state (dropout).

    Attributes: ``model``, ``config``, ``optimizer`` (this module's ``AdamW``; weight decay on
    matrices only, not on biases, norms' gains or 1-d parameters), ``step`` (steps done),
    ``generator`` (the training data's), ``history`` (every metrics record of this process),
    ``tracker``.
    """

    CHECKPOINT = "checkpoint.pt"
    METRICS = MetricsFile.METRICS
    PLOT = MetricsFile.PLOT

    def __init__(self, model: nn.Module, get_batch: GetBatch, config: TrainConfig | None = None,
                 tracker=None) -> None:
        self.model, self.get_batch = model, get_batch
        self.config = config or TrainConfig()
        # A tracker given is its owner's to close; the default one is this trainer's, closed
        # (its plot drawn) at the end of every fit.
        self.owns_tracker = tracker is None
        self.tracker = open_tracker(self.config.out_dir) if tracker is None else tracker
        torch.manual_seed(self.config.seed)
        self.generator = torch.Generator().manual_seed(self.config.seed)
        decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
        self.optimizer = AdamW([{"params": decay, "weight_decay": self.config.weight_decay},
                                {"params": no_decay, "weight_decay": 0.0}],
                               lr=self.config.max_lr, betas=self.config.betas)
        device = next(model.parameters()).device
        fp16 = self.config.autocast_dtype == "float16"
        self.scaler = torch.amp.GradScaler(device.type) if fp16 else None
        self.step = 0
        self.history: list[dict] = []

    @property
    def out_dir(self) -> Path | None:
        return None if self.config.out_dir is None else Path(self.config.out_dir)

    def learning_rate(self, step: int) -> float:
        c = self.config
        return cosine_schedule(step, max_lr=c.max_lr, min_lr=c.min_lr, warmup_steps=min(c.warmup_steps, c.max_steps),
                               total_steps=c.max_steps)

    def log(self, record: dict) -> None:
        """Keep ``record`` and send it to the tracker."""
        self.history.append(record)
        self.tracker.log(record)

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean loss over ``eval_batches`` validation batches, in eval mode; the same batches
        every time (their generator is seeded afresh), and no other random state is touched."""
        # YOUR CODE HERE
        raise NotImplementedError('Trainer.evaluate: model.eval(); a fresh torch.Generator().manual_seed(seed + 1); mean of the losses; model.train() back')

    def state_dict(self) -> dict:
        """What a checkpoint holds: enough to take the next step exactly as this run would."""
        # YOUR CODE HERE
        raise NotImplementedError('Trainer.state_dict: model, optimizer (and scaler) state dicts, the step, the config, both random states')

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` saved."""
        # YOUR CODE HERE
        raise NotImplementedError('Trainer.load_state_dict: the inverse of state_dict, field by field')

    def save_checkpoint(self) -> Path:
        """Write the checkpoint atomically (a temporary file, then a rename), so a run killed
        while saving still leaves the previous checkpoint whole."""
        path = self.out_dir / self.CHECKPOINT
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".pt.partial")
        torch.save(self.state_dict(), partial)
        os.replace(partial, path)
        return path

    @classmethod
    def resume(cls, model: nn.Module, get_batch: GetBatch, out_dir: str | Path,
               config: TrainConfig | None = None, tracker=None) -> Trainer:
        """A trainer restored from ``out_dir``'s checkpoint (its saved config unless ``config``
        is given: pass one to extend ``max_steps``), logging to ``tracker`` (as ``__init__``)."""
        state = torch.load(Path(out_dir) / cls.CHECKPOINT, weights_only=True)  # tensors and plain data only
        saved = state["config"] | {"betas": tuple(state["config"]["betas"]), "out_dir": str(out_dir)}
        trainer = cls(model, get_batch, config or TrainConfig(**saved), tracker=tracker)
        trainer.load_state_dict(state)
        return trainer

    def fit(self, until: int | None = None) -> list[dict]:
        """Train from ``self.step`` to ``max_steps`` (or to step ``until``, checkpointing there:
        an interruption on purpose); returns this call's metrics records."""
        c = self.config
        stop = c.max_steps if until is None else min(until, c.max_steps)
        first = len(self.history)
        dtype = {None: None, "bfloat16": torch.bfloat16, "float16": torch.float16}[c.autocast_dtype]
        bar = ProgressBar(c.max_steps, self.step, enabled=c.progress)
        self.model.train()
        while self.step < stop:
            # YOUR CODE HERE
            raise NotImplementedError("Trainer.fit: set each group's lr; draw the batches; train_step; log; evaluate and checkpoint on schedule (and at stop)")
        bar.close()
        if self.owns_tracker:
            self.tracker.close()  # metrics.jsonl drawn to loss.png
        return self.history[first:]


def train(model: nn.Module, get_batch: GetBatch, config: TrainConfig | None = None,
          until: int | None = None, tracker=None) -> Trainer:
    """Train ``model`` with a new ``Trainer``, or resume the one checkpointed in
    ``config.out_dir`` when there is a checkpoint there; returns the trainer after
    ``fit(until)``. ``tracker``: as ``Trainer``'s."""
    config = config or TrainConfig()
    if config.out_dir is not None and (Path(config.out_dir) / Trainer.CHECKPOINT).exists():
        trainer = Trainer.resume(model, get_batch, config.out_dir, config, tracker)
    else:
        trainer = Trainer(model, get_batch, config, tracker)
    trainer.fit(until)
    return trainer


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl file, in order."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_losses(records: list[dict], path: str | Path) -> Path:
    """Training loss per step and validation loss per evaluation, to a PNG at ``path``. A run
    resumed from a checkpoint logs the steps after it again: the latest record of a step wins."""
    from matplotlib.figure import Figure  # only here: the rest of the module needs no matplotlib

    train_loss = {r["step"]: r["loss"] for r in records if "loss" in r}
    val_loss = {r["step"]: r["val_loss"] for r in records if "val_loss" in r}
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(sorted(train_loss), [train_loss[s] for s in sorted(train_loss)], label="train", linewidth=1)
    ax.plot(sorted(val_loss), [val_loss[s] for s in sorted(val_loss)], "o-", label="validation", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


# --------------------------------------------------------------------------------------
# scaling laws
# --------------------------------------------------------------------------------------

# Hoffmann et al. (2022), Approach 3, and the refit by Besiroglu et al. (2024).
CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
CHINCHILLA_REFIT = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def training_flops(n_params: float, n_tokens: float) -> float:
    """Training compute in FLOPs, ``C = 6 * N * D``: about 2 FLOPs per parameter per token
    forward, 4 backward.

    Example:
        >>> training_flops(70e9, 1.4e12)  # Chinchilla
        5.88e+23
    """
    # YOUR CODE HERE
    raise NotImplementedError('training_flops: 6 N D')


def chinchilla_loss(n_params, n_tokens, E: float = 1.69, A: float = 406.4, B: float = 410.7, alpha: float = 0.34,
                    beta: float = 0.28):
    """Hoffmann et al.'s parametric loss ``L(N, D) = E + A / N**alpha + B / D**beta``.

    ``E`` is the irreducible loss of natural text; the two other terms are what a model of
    ``N`` parameters trained on ``D`` tokens falls short by. Works element-wise on floats,
    NumPy arrays or tensors.

    Example:
        >>> round(chinchilla_loss(70e9, 1.4e12), 3)
        1.937
    """
    # YOUR CODE HERE
    raise NotImplementedError('chinchilla_loss: the formula, element-wise')


def kaplan_loss(n_params, N_c: float = 8.8e13, alpha_N: float = 0.076):
    """Kaplan et al. (2020)'s loss of a model of ``n_params`` (non-embedding) parameters trained
    to convergence: ``L(N) = (N_c / N) ** alpha_N``.

    Example:
        >>> round(kaplan_loss(1.5e9), 3)  # GPT-2's size
        2.304
    """
    # YOUR CODE HERE
    raise NotImplementedError('kaplan_loss: the power law')


def compute_optimal(flops: float, params: dict | None = None) -> tuple[float, float]:
    """The model size and token count that minimize ``chinchilla_loss`` for a compute budget.

    Under ``C = 6 N D``, minimizing ``A / N**alpha + B / D**beta`` gives the closed form

    ``N_opt = G * (C / 6) ** (beta / (alpha + beta))``, ``D_opt = (C / 6) / N_opt``,
    with ``G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))``.

    ``params`` holds ``E, A, B, alpha, beta`` (default: Hoffmann et al.'s fit, ``CHINCHILLA``).
    Note: those constants put the optimum for Chinchilla's own budget (5.76e23 FLOPs) near 32B
    parameters and 3T tokens; with Besiroglu et al.'s refit (``CHINCHILLA_REFIT``) it lands
    near Chinchilla's 70B parameters and 1.4T tokens, about 20 tokens per parameter.

    Returns:
        ``(n_params, n_tokens)``, floats.

    Raises:
        ValueError: ``flops <= 0``.
    """
    # YOUR CODE HERE
    raise NotImplementedError('compute_optimal: the closed form above')


def _huber(x: Tensor, delta: float) -> Tensor:
    """Huber's loss, element-wise: quadratic within ``delta`` of 0, linear beyond."""
    return torch.where(x.abs() <= delta, 0.5 * x ** 2, delta * (x.abs() - 0.5 * delta))


def fit_chinchilla(n_params, n_tokens, losses, delta: float = 1e-3) -> dict:
    """Fit ``L(N, D) = E + A / N**alpha + B / D**beta`` to observed losses, as Hoffmann et al.
    did (their Approach 3): minimize the Huber loss (``delta = 1e-3``) between the predicted
    and the observed *log* loss, over ``a = log A``, ``b = log B``, ``e = log E``, ``alpha``,
    ``beta``, with L-BFGS from a grid of starting points, keeping the best.

    ``log L_pred = logsumexp(a - alpha log N, b - beta log D, e)``

    Args:
        n_params, n_tokens, losses: sequences (or arrays) of the same length, one entry per
        training run.

    Returns:
        ``{"E", "A", "B", "alpha", "beta"}``, floats.

    Raises:
        ValueError: fewer than 5 runs (five unknowns), or lengths that differ.
    """
    # YOUR CODE HERE
    raise NotImplementedError('fit_chinchilla: float64 tensors of log N, log D, log L; score a grid of starts; L-BFGS from the best few')
