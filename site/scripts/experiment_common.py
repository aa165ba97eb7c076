"""What the course's experiment scripts share: where the tree is, how they load and check a
student's modules, the learning-rate schedule, progress on stderr (and, with ``--wandb``, on
Weights & Biases), where their outputs go, the reading site's rule for the size of a figure and
its text, and the common part of their command line.

Each experiment (``experiment_positional.py``, chapter 03; ``experiment_ffn.py``, chapter 04;
the others alike) trains or measures tiny models built from the course's own flat modules,
imported from a folder given by ``--impl`` (default ``reference_solutions/``, or
``assignments/`` in the student release). Everything here means the same in every experiment;
the tasks, models, plots and tables stay in the scripts. Standard library and torch only
(``save_figure`` takes a matplotlib Figure but needs no import of matplotlib).

The scripts import this module by name, so its folder must be on ``sys.path``: it is when a
script runs as ``python site/scripts/experiment_X.py``, and each script adds it otherwise
(``figures.py`` and the tests load the scripts by path).

Structure, top to bottom: the tree and the run's constants; loading and checking ``--impl``;
training helpers; tracking; the outputs; the command line (shared options, the start and end of
``main``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import torch

ROOT = Path(__file__).resolve().parents[2]  # the repository root
REFERENCE = ROOT / "reference_solutions"
# One thread, on purpose. The models are so small that a second thread gains little, and when
# another process holds a core, two threads that wait on each other ran 8-10x slower here. A
# fixed count also keeps the numbers from depending on the machine's size (kernels may split
# a reduction differently with another thread count).
THREADS = 1
EXIT_NOT_IMPLEMENTED = 2  # the exit status when --impl cannot run the experiment yet
ConfigT = TypeVar("ConfigT")  # an experiment's Config, a frozen dataclass


class ImplementationMissing(RuntimeError):
    """The modules under --impl are missing, still raise NotImplementedError, or fail the
    experiment's own check of them (a parameter count that does not match the module it counts)."""


# --------------------------------------------------------------------------------------
# loading and checking --impl
# --------------------------------------------------------------------------------------


def default_impl() -> Path:
    """The reference where the tree has it; the student release has only assignments/."""
    return REFERENCE if REFERENCE.is_dir() else ROOT / "assignments"


def load_impl(impl: Path, names: Sequence[str]) -> dict[str, ModuleType]:
    """Import the flat modules ``names`` from the folder ``impl``, by name.

    ``impl`` goes first on ``sys.path``, and a module of the same name imported earlier from
    another folder is dropped first, so the experiment runs on the folder it was given. Raises
    ImplementationMissing when a module cannot be imported.
    """
    sys.path.insert(0, str(impl))
    modules = {}
    for name in names:
        previous = sys.modules.get(name)
        if previous is not None and Path(getattr(previous, "__file__", "") or "").parent != impl:
            del sys.modules[name]
        try:
            modules[name] = importlib.import_module(name)
        except ImportError as error:
            raise ImplementationMissing(f"cannot import {name} ({error})") from error
    return modules


def require(modules: Mapping[str, ModuleType], required: Mapping[str, Sequence[str]]) -> None:
    """Raise ImplementationMissing naming every ``module.attribute`` of ``required`` that
    ``modules`` (by module name) lacks."""
    missing = [f"{name}.{attribute}" for name, module in modules.items() for attribute in required[name]
               if not hasattr(module, attribute)]
    if missing:
        raise ImplementationMissing(f"missing {', '.join(missing)}")


@contextmanager
def stub_is_missing() -> Iterator[None]:
    """Turn a NotImplementedError raised inside the block into ImplementationMissing, keeping
    the stub's own message."""
    try:
        yield
    except NotImplementedError as error:
        raise ImplementationMissing(str(error) or "NotImplementedError") from error


def load_checked(impl: Path, required: Mapping[str, Sequence[str]],
                 check: Callable[[dict[str, ModuleType]], None], needs: str) -> dict[str, ModuleType] | None:
    """The modules of ``required`` from ``impl``, with every attribute it names, passed through
    ``check`` (which builds and runs what the experiment will, so a stub stops the run before
    any training).

    When anything is missing, prints one line to stderr, ``{needs} implemented in {impl}:
    {why}``, with no traceback, and returns None: the caller exits with EXIT_NOT_IMPLEMENTED.
    """
    try:
        modules = load_impl(impl, tuple(required))
        require(modules, required)
        with stub_is_missing():
            check(modules)
    except ImplementationMissing as error:
        print(f"{needs} implemented in {display_path(impl)}: {error}", file=sys.stderr)
        return None
    return modules


# --------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------


def learning_rate(step: int, steps: int, warmup_steps: int, lr: float) -> float:
    """The rate at ``step`` (counting from 0): a linear warm-up to ``lr`` over ``warmup_steps``,
    then a cosine decay to 0 at ``steps``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return lr * 0.5 * (1.0 + math.cos(math.pi * progress))


class Progress:
    """Training progress on stderr: a bar redrawn in place on a terminal, then one summary line
    per model (all a log file gets). With ``--wandb`` (see ``start_tracking``) each Progress is
    also one W&B run named ``label``: every loss given to ``update``, then the summary line."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.start = label, total, time.perf_counter()
        self.live = sys.stderr.isatty()
        self.tracker = open_run_tracker(label)

    def update(self, step: int, loss: float | torch.Tensor | None = None) -> None:
        """``show`` the step, and send the loss, where one is given, to the tracker (a 0-d
        tensor is read only when it is shown or tracked)."""
        self.show(step, loss)
        if self.tracker is not None and loss is not None:
            self.tracker.log({"step": step, "loss": float(loss)})

    def show(self, step: int, loss: float | torch.Tensor | None = None) -> None:
        """Redraw the bar after ``step`` of ``total`` steps (every 10th and the last), with the
        latest loss where one is given. Tracks nothing: for a loop that logs to the tracker itself."""
        if self.live and (step % 10 == 0 or step == self.total):
            filled = 30 * step // self.total
            shown = "" if loss is None else f" loss {loss:.3f}"
            sys.stderr.write(f"\r{self.label:>10} [{'#' * filled}{'.' * (30 - filled)}] {step}/{self.total}{shown}")
            sys.stderr.flush()

    def elapsed(self) -> float:
        """Seconds since the bar was made."""
        return time.perf_counter() - self.start

    def finish(self, seconds: float, summary: str, *, rate: bool = False) -> None:
        """The summary line: steps and ``seconds`` (and the steps per second, with ``rate``),
        then ``summary``."""
        clear = "\r\x1b[K" if self.live else ""  # back over the bar, then erase what is left of it
        speed = f" ({self.total / seconds:.1f} steps/s)" if rate else ""
        sys.stderr.write(f"{clear}{self.label:>10}: {self.total} steps in {seconds:.1f} s{speed}; {summary}\n")
        sys.stderr.flush()
        if self.tracker is not None:
            self.tracker.text("summary", f"{self.total} steps in {seconds:.1f} s; {summary}")
            self.tracker.close()


# --------------------------------------------------------------------------------------
# tracking
# --------------------------------------------------------------------------------------

# What every W&B run of this process needs, set by start_tracking when --wandb is given: the
# tracker class (chapter 06's training_loop.WandbRun, given code in every tree), its folder,
# the experiment's name as the W&B group, and the command line as the run's config. None: the
# results JSON and the PNG are all an experiment writes.
_wandb_runs: dict | None = None


def start_tracking(args: argparse.Namespace, impl: Path, own_runs: Path) -> None:
    """With ``--wandb``: every Progress opened from now on is a W&B run (offline, under
    ``own_runs/wandb/``, unless you are logged in or ``WANDB_MODE`` says otherwise). Without
    the wandb package, prints one line naming the extra to install and exits with status 2."""
    global _wandb_runs
    _wandb_runs = None
    if not getattr(args, "wandb", False):
        return
    try:  # the tracker is chapter 06's given code, in every tree's training_loop.py
        training_loop = load_impl(impl, ["training_loop"])["training_loop"]
        factory = training_loop.WandbRun
    except (ImplementationMissing, AttributeError) as error:
        print(f"--wandb needs the tracker of {display_path(impl)}training_loop.py: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        training_loop.import_wandb()  # before any training: a missing package is one line, at once
    except training_loop.TrackingUnavailable as error:
        print(error, file=sys.stderr)
        raise SystemExit(2) from None
    config = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    _wandb_runs = {"factory": factory, "out_dir": own_runs, "group": own_runs.name, "config": config}


def open_run_tracker(name: str):
    """A W&B run named ``name`` when start_tracking turned tracking on, else None."""
    if _wandb_runs is None:
        return None
    return _wandb_runs["factory"](_wandb_runs["out_dir"], project="transformer-internals", name=name,
                                  group=_wandb_runs["group"], config=_wandb_runs["config"], keep_id=False)


# --------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------


def display_path(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (no home directories in the JSON)."""
    try:
        return path.resolve().relative_to(ROOT).as_posix() + "/"
    except ValueError:
        return str(path)


def output_paths(impl: Path, results: Path | None, plot: Path | None, *, site_results: Path, site_plot: Path,
                 own_runs: Path) -> tuple[Path, Path]:
    """Where the JSON and the PNG go: ``results`` and ``plot`` where given, else the defaults.

    Only the reference's run is the site's recorded result (``site_results``, ``site_plot``); a
    run on any other ``impl`` goes to ``own_runs`` (``results.json`` and a PNG named as the
    site's), so the page keeps the numbers it was written about and git stays clean.
    """
    recorded = impl.resolve() == REFERENCE.resolve()
    default_results = site_results if recorded else own_runs / "results.json"
    default_plot = site_plot if recorded else own_runs / site_plot.name
    return results or default_results, plot or default_plot


def run_metadata(impl: Path, quick: bool) -> dict:
    """What the results JSON records about the run itself, after the configuration."""
    return {"quick": quick, "impl": display_path(impl), "torch": torch.__version__, "threads": THREADS}


# The reading site's rule for figures, the same for the experiments' (drawn here, redrawn by
# site/scripts/figures.py from the results JSON) and for figures.py's own. Material's content
# column is COLUMN_PX CSS px wide at a desktop width and scales a wider image down to it, so a
# figure at most COLUMN_INCHES wide is shown at 72 CSS px per inch or more, and text of
# READABLE_PT points or more at READABLE_PT CSS px or more. figures.py refuses to write a figure
# whose text would be shown smaller than that.
COLUMN_PX = 688
COLUMN_INCHES = COLUMN_PX / 72
READABLE_PT = 11
TEXT_PT, TITLE_PT, SUPTITLE_PT = READABLE_PT, 12, 13  # labels, ticks and legends; axes titles; figure titles
# Those sizes as matplotlib rcParams, for ``matplotlib.rc_context``: every text a plot draws
# without a size of its own (tick labels are made only when the figure is drawn, so the context
# must hold until it is saved).
FONT_SIZES = {"font.size": TEXT_PT, "axes.titlesize": TITLE_PT, "axes.labelsize": TEXT_PT,
              "xtick.labelsize": TEXT_PT, "ytick.labelsize": TEXT_PT, "legend.fontsize": TEXT_PT,
              "legend.title_fontsize": TEXT_PT, "figure.titlesize": SUPTITLE_PT}


def save_figure(fig, path: Path, dpi: int) -> Path:
    """Lay out the matplotlib Figure ``fig`` (``tight_layout``, unless it was made with a layout
    engine of its own, such as ``layout="constrained"``) and save it to ``path`` (its folder made
    first), with no ``Software`` metadata, so the bytes depend only on what was drawn (and the
    installed fonts). Returns ``path``."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, metadata={"Software": None})
    return path


def write_outputs(results: dict, results_path: Path, plot_path: Path, plot: Callable[[dict, Path], Path],
                  table: Callable[[dict], str]) -> None:
    """Write ``results`` as JSON to ``results_path``, draw it with ``plot`` into ``plot_path`` and
    print ``table`` of it (Markdown) on stdout."""
    results_path.parent.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, plot_path)
    print(table(results))


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def add_run_options(parser: argparse.ArgumentParser, *, modules: str, unit: str) -> None:
    """``--impl`` (a folder holding ``modules``), ``--steps`` (per ``unit``: one model),
    ``--quick`` and ``--wandb``, in that order, with their help."""
    parser.add_argument("--impl", type=Path, default=None,
                        help=f"folder with {modules} (default: reference_solutions/, else assignments/)")
    parser.add_argument("--steps", type=int, default=None, help=f"training steps per {unit}")
    parser.add_argument("--quick", action="store_true", help="a tiny model and a few steps: a smoke test")
    add_tracking_option(parser)


def add_tracking_option(parser: argparse.ArgumentParser) -> None:
    """``--wandb``: each model's losses to Weights & Biases as well (see ``start_tracking``)."""
    parser.add_argument("--wandb", action="store_true",
                        help="log each model's losses to Weights & Biases too (offline unless you are logged in)")


def add_output_options(parser: argparse.ArgumentParser, *, own_runs: Path) -> None:
    """``--results`` and ``--plot``: where the JSON and the PNG go (see ``output_paths``)."""
    other = f"{display_path(own_runs)} for any other --impl"
    parser.add_argument("--results", type=Path, default=None,
                        help=f"where the JSON goes (default: the site's recorded result for the reference, {other})")
    parser.add_argument("--plot", type=Path, default=None,
                        help=f"where the PNG goes (default: the site's figure for the reference, {other})")


def base_config(args: argparse.Namespace, full: ConfigT, quick: ConfigT) -> ConfigT:
    """``quick`` with ``--quick``, else ``full`` (frozen dataclasses with ``steps``,
    ``warmup_steps`` and ``seed``), then ``--steps`` and ``--seed`` where given. ``--steps``
    shortens the warm-up to at most a tenth of the run (and at least one step)."""
    cfg = quick if args.quick else full
    if args.steps is not None:
        cfg = replace(cfg, steps=args.steps, warmup_steps=min(cfg.warmup_steps, max(1, args.steps // 10)))
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    return cfg


def start_run(args: argparse.Namespace, required: Mapping[str, Sequence[str]],
              check: Callable[[dict[str, ModuleType]], None], needs: str, *, site_results: Path, site_plot: Path,
              own_runs: Path) -> tuple[Path, dict[str, ModuleType]]:
    """The start every experiment's ``main`` shares: ``--impl`` resolved (``default_impl()`` when
    absent), ``args.results`` and ``args.plot`` filled in by ``output_paths``, torch held to
    THREADS, then the modules loaded and checked by ``load_checked``, then ``start_tracking``.

    Returns the folder and its modules. When they cannot run the experiment, ends the program as
    argparse does for a bad option: its one line printed, ``SystemExit(EXIT_NOT_IMPLEMENTED)``.
    """
    impl = (args.impl or default_impl()).resolve()
    args.results, args.plot = output_paths(impl, args.results, args.plot, site_results=site_results,
                                           site_plot=site_plot, own_runs=own_runs)
    torch.set_num_threads(THREADS)
    modules = load_checked(impl, required, check, needs)
    if modules is None:
        raise SystemExit(EXIT_NOT_IMPLEMENTED)
    start_tracking(args, impl, own_runs)
    return impl, modules
