"""Chapter 05, exercise 4: benchmark your normalization layers against PyTorch's.

This file is given, not graded: nothing in it is yours to write. It times your ``LayerNorm``,
``RMSNorm`` and ``BatchNorm`` (from ``normalization.py``) against ``nn.LayerNorm``,
``nn.RMSNorm`` and ``nn.BatchNorm1d``, measures the memory each one needs, and reruns the
chapter's gradient-flow experiment on your ``ResidualBlock``. Run it from this folder or from
the repository root::

    python layer_norm_comparison.py                   # your normalization.py, beside this file
    python layer_norm_comparison.py --quick           # tiny sizes, a smoke test (seconds)
    python layer_norm_comparison.py --sizes 8x512x768,2x1024x4096
    python layer_norm_comparison.py --impl ../reference_solutions   # the instructor's tree
    nox -s norm-comparison -- --quick                 # the same, from the repository root

What it measures, per norm and per size ``(B, T, D)``, in float32, on CUDA when there is a GPU
and on the CPU otherwise (``--device`` to choose):

* **forward**: one call under ``torch.no_grad()``, in training mode (BatchNorm normalizes with
  the batch's statistics and updates its running ones, as it does while training);
* **forward + backward**: one call, then the gradient to the input and to the parameters
  (``torch.autograd.grad`` with a fixed upstream gradient), what a training step costs;
* **peak memory** of each of the two: the most bytes the allocator had handed out and not yet
  taken back at any moment of the call, minus what was allocated before it (the input, the
  weights and the upstream gradient are not counted; the output, every temporary, what
  autograd saves for the backward pass and the gradients are). On CUDA that is
  ``torch.cuda.max_memory_allocated``; on the CPU, where PyTorch keeps no such counter, it is
  added up from the allocations and frees that ``torch.profiler`` records with
  ``profile_memory=True`` (PyTorch's CPU allocator, on this thread). Neither is the process's
  resident memory, which also holds the interpreter, the libraries and freed pages.

Times are medians of ``--repeats`` calls after three untimed ones, yours and PyTorch's
alternated so that a change in the machine's load falls on both, as ``nox -s bench`` times
them. On the CPU torch runs on one thread (``--threads``) and the times are that thread's CPU
time, which other programs on the machine move less than the wall clock; with more threads,
and on a GPU, they are wall time. Every ratio is yours over PyTorch's, measured in the same run: above 1, yours is slower
or needs more memory. The ratios carry over to another machine better than the milliseconds.

PyTorch's ``nn.BatchNorm1d`` wants the channels second, ``(N, C)`` or ``(N, C, L)``; the course's
``BatchNorm`` keeps them last, ``(..., C)``. The built-in is given the input flattened to
``(B*T, D)``, a view of the same memory with the same statistics per channel, so neither side
pays for a copy. (Transposing to ``(B, D, T)`` instead would hand it a strided input.)

A norm still raising ``NotImplementedError`` gets one line ("your LayerNorm is not written
yet: ...") and its rows report PyTorch's numbers alone; a norm that runs but disagrees with
PyTorch's is timed and flagged, since the speed of a wrong answer means little.

Outputs, in ``--out`` (default ``reports/norm_comparison/`` at the repository root):
``comparison.json`` (every number, the configuration and the machine), ``comparison.png``
(the ratios) and ``gradients.png`` (the gradient-flow experiment's per-block plot); the table
is printed as Markdown, progress goes to stderr.

Notation used in the shape comments:
    B   batch size
    T   sequence length
    D   d_model (the normalized features; BatchNorm's channels)
    N   B * T, the positions BatchNorm1d sees as its batch

Structure, top to bottom: the tree and the configuration; loading your module and checking
each norm; the built-ins; the measurement (time, memory); the gradient flow; the outputs
(JSON, table, plot); the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent  # assignments/: the default --impl
ROOT = HERE.parent  # the repository root, or the student release's
# From graders/bench.py (`nox -s bench`): how to load normalization.py, the norms it times and
# its repeat count; from graders/tolerances.py the chapter's float32 tolerance; and the gradient
# flow from the chapter's experiment script. All three ship in the student release, here.
for _folder in (ROOT, ROOT / "site" / "scripts"):
    if str(_folder) not in sys.path:
        sys.path.insert(1, str(_folder))  # after this script's own folder, before site-packages
try:
    import experiment_norm

    from graders import tolerances
    from graders.bench import NORMS, REPEATS, load_normalization
except ImportError as _error:  # the script was copied out of the course tree
    sys.exit(f"layer_norm_comparison.py runs inside the course tree (it imports graders/ and site/scripts/ "
             f"from {ROOT}): {_error}")

DEFAULT_OUT = ROOT / "reports" / "norm_comparison"
EXIT_CANNOT_RUN = 2  # --impl has no normalization.py, or --device cuda has no GPU
# One CPU thread by default: with two, a core taken by another process (a browser, a grader)
# stalls every kernel that waits for both, and the times jump by several times from one run
# to the next; with one they hold still. `--threads 0` keeps torch's own count (one per core).
THREADS = 1
# Untimed calls of each step before its timed ones. With one, the first size measured in a
# process came out several times slower for PyTorch's forward than the same size measured
# again later; with three, the two agree.
WARMUP = 3


class ChannelsLastBatchNorm(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` on the course's layout ``(..., C)``: flattened to ``(N, C)``, a view."""

    def forward(self, x: Tensor) -> Tensor:
        out = super().forward(x.reshape(-1, x.shape[-1]))  # (N, C)
        return out.view(x.shape)  # (..., C)


# name: (your class in normalization.py, PyTorch's module, the label PyTorch's goes by, eps).
# LayerNorm and RMSNorm as `nox -s bench` times them (the contract's eps, passed to both sides:
# nn.RMSNorm's own default is the dtype's machine epsilon); BatchNorm with its contract's eps.
COMPARED = {
    **{norm: (name, builtin, f"nn.{builtin.__name__}", eps) for norm, (name, builtin, eps) in NORMS.items()},
    "batchnorm": ("BatchNorm", ChannelsLastBatchNorm, "nn.BatchNorm1d", 1e-5),
}
MIB = 2**20


@dataclass(frozen=True)
class Config:
    """What decides the numbers (the JSON's ``config`` records every field)."""

    # (B, T, D): a small model's width, GPT-2 small's (768) and BERT-large's (1024). The largest
    # is 2M floats (8 MiB), so on two CPU cores the whole table takes well under a minute.
    sizes: tuple[tuple[int, int, int], ...] = ((16, 128, 256), (8, 256, 768), (4, 512, 1024))
    repeats: int = REPEATS  # timed calls per measurement, after one warm-up
    device: str = "cpu"
    seed: int = 0  # the inputs and the upstream gradients


# Tiny sizes and few repeats: checks that everything runs; its numbers mean little.
QUICK = Config(sizes=((2, 16, 32), (2, 32, 64)), repeats=3)


# --------------------------------------------------------------------------------------
# your module, and a first check of each norm
# --------------------------------------------------------------------------------------


def check_norm(module: ModuleType, norm: str, device: torch.device) -> tuple[str, str]:
    """Run your ``norm`` once, forward and backward, on a small input beside PyTorch's.

    Returns ``(status, message)``: ``"ok"``; ``"differs"`` (it runs, but its output or input
    gradient is off by more than the chapter's float32 tolerance: it is timed all the same);
    ``"missing"`` (a stub still raising NotImplementedError, or no such class) or ``"failed"``
    (any other error): those are not timed. The message is one line for the terminal.
    """
    name, builtin, label, eps = COMPARED[norm]
    yours = f"your {name}"
    if not hasattr(module, name):
        return "missing", f"{yours} is not in normalization.py; timing {label} alone"
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, generator=gen).to(device)  # (B, T, D)
    upstream = torch.randn(2, 3, 8, generator=gen).to(device)  # (B, T, D)
    try:
        ours = getattr(module, name)(8, eps=eps).to(device)
        mine, mine_grad = _output_and_input_grad(ours, x, upstream)
    except NotImplementedError as error:
        return "missing", f"{yours} is not written yet: {error or 'NotImplementedError'}; timing {label} alone"
    except Exception as error:  # noqa: BLE001 - any error in a student's module is one line here
        return "failed", (f"{yours} raised {type(error).__name__}: {error}; timing {label} alone "
                          "(`nox -s grade -- --chapter 5` shows where)")
    theirs, theirs_grad = _output_and_input_grad(builtin(8, eps=eps).to(device), x, upstream)
    if mine.shape != theirs.shape:
        return "differs", (f"{yours} returns shape {tuple(mine.shape)} for {tuple(x.shape)}, {label} "
                           f"{tuple(theirs.shape)}; its times are of a wrong answer")
    tol = tolerances.norm(torch.float32)
    if not (torch.allclose(mine, theirs, rtol=tol.rtol, atol=tol.atol)
            and torch.allclose(mine_grad, theirs_grad, rtol=tol.rtol, atol=tol.atol)):
        worst = max((mine - theirs).abs().max().item(), (mine_grad - theirs_grad).abs().max().item())
        return "differs", (f"{yours} runs but differs from {label} (by up to {worst:.3g}); its times are of a "
                           "wrong answer (`nox -s grade -- --chapter 5` says what)")
    return "ok", ""


def _output_and_input_grad(norm: nn.Module, x: Tensor, upstream: Tensor) -> tuple[Tensor, Tensor]:
    """The output and the gradient to the input, from the backward pass the timing makes (to the
    input and every parameter: a parameter the output does not use raises here, not later)."""
    x = x.clone().requires_grad_()
    out = norm(x)  # (B, T, D)
    grad, *_ = torch.autograd.grad(out, (x, *norm.parameters()), upstream)
    return out.detach(), grad  # (B, T, D) each


# --------------------------------------------------------------------------------------
# the measurement
# --------------------------------------------------------------------------------------


def _synchronize(device: torch.device) -> None:
    """Wait for the GPU: its kernels run asynchronously, so a clock read without this measures
    only how long it took to queue them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_step(norm: nn.Module, x: Tensor) -> Callable[[], None]:
    """One forward call under no_grad (nothing kept for a backward pass), as a callable."""
    device = x.device

    def step() -> None:
        with torch.no_grad():
            norm(x)
        _synchronize(device)

    return step


def training_step(norm: nn.Module, x: Tensor, upstream: Tensor) -> Callable[[], None]:
    """One forward call and the gradients to the input and every parameter, as a callable."""
    inputs = (x, *norm.parameters())
    device = x.device

    def step() -> None:
        torch.autograd.grad(norm(x), inputs, upstream)
        _synchronize(device)

    return step


def peak_bytes(step: Callable[[], None], device: torch.device) -> int | None:
    """The peak of the bytes allocated during one call of ``step``, above those allocated
    before it (see the module docstring); None where this torch does not report it."""
    if device.type == "cuda":
        _synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        return torch.cuda.max_memory_allocated(device) - before
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    try:  # the allocator's events, each a signed size (a free is negative), in the order they happened
        events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                  if e.name() == "[memory]" and e.device_type() == DeviceType.CPU]
    except AttributeError:  # the profiler's results moved in another torch version
        return None
    live = peak = 0
    for _, nbytes in sorted(events, key=lambda event: event[0]):
        live += nbytes
        peak = max(peak, live)
    return peak


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send the process's stderr (file descriptor 2) to /dev/null for the block: the profiler's
    C++ library prints a line at every start and stop that no log level turns off, and the
    progress lines would drown in them. An exception still reaches Python, and is shown after."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def clock(device: torch.device) -> Callable[[], float]:
    """What the times are read from: on the CPU with one thread, this thread's CPU time
    (``time.thread_time``), which the other processes on the machine do not move (the whole
    computation, backward included, runs on this thread then); otherwise the wall clock."""
    return time.thread_time if device.type == "cpu" and torch.get_num_threads() == 1 else time.perf_counter


def median_seconds(steps: list[Callable[[], None]], repeats: int, read: Callable[[], float]) -> list[float]:
    """The median time of each callable over ``repeats`` calls after ``WARMUP`` untimed ones, the
    callables taking turns (yours, PyTorch's, yours, ...) so that a change in the machine's load
    falls on all of them alike: ``graders/bench.py``'s ``paired_median_seconds``, with the clock
    ``read`` chosen by ``clock`` and any number of callables (one, where yours is missing)."""
    for _ in range(WARMUP):
        for step in steps:
            step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeats):
        for step, record in zip(steps, times):
            start = read()
            step()
            record.append(read() - start)
    return [statistics.median(record) for record in times]


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 4)


def _ratio(yours: float | None, theirs: float | None) -> float | None:
    return round(yours / theirs, 3) if yours is not None and theirs else None


def measure_size(ours: nn.Module | None, theirs: nn.Module, size: tuple[int, int, int], cfg: Config) -> dict:
    """One row of the table: both modules (``ours`` None: PyTorch's alone) on one size, both phases."""
    device = torch.device(cfg.device)
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.randn(size, generator=gen).to(device).requires_grad_()  # (B, T, D)
    upstream = torch.randn(size, generator=gen).to(device)  # (B, T, D)
    steps = {"forward": lambda norm: forward_step(norm, x),
             "forward_backward": lambda norm: training_step(norm, x, upstream)}
    read = clock(device)
    row: dict = {"size": list(size)}
    for phase, make in steps.items():
        theirs_step = make(theirs)
        if ours is None:
            times = (None, *median_seconds([theirs_step], cfg.repeats, read))
            memory = (None, peak_bytes(theirs_step, device))
        else:
            ours_step = make(ours)
            times = tuple(median_seconds([ours_step, theirs_step], cfg.repeats, read))
            memory = (peak_bytes(ours_step, device), peak_bytes(theirs_step, device))
        row[phase] = {
            "yours_ms": None if times[0] is None else _ms(times[0]), "torch_ms": _ms(times[1]),
            "time_ratio": _ratio(*times),
            "yours_peak_bytes": memory[0], "torch_peak_bytes": memory[1], "memory_ratio": _ratio(*memory),
        }
    return row


def compare(module: ModuleType, cfg: Config, progress: Callable[[str], None]) -> dict:
    """Every norm at every size: ``{norm: {yours, torch, status, message, rows}}``."""
    device = torch.device(cfg.device)
    results = {}
    total, done = len(COMPARED) * len(cfg.sizes), 0
    for norm, (name, builtin, label, eps) in COMPARED.items():
        status, message = check_norm(module, norm, device)
        if message:
            progress(message)
        rows = []
        for size in cfg.sizes:
            d_model = size[-1]
            torch.manual_seed(cfg.seed)
            ours = getattr(module, name)(d_model, eps=eps).to(device) if status in ("ok", "differs") else None
            theirs = builtin(d_model, eps=eps).to(device)
            start = time.perf_counter()
            rows.append(measure_size(ours, theirs, size, cfg))
            done += 1
            progress(f"[{done:2d}/{total}] {norm:<9} B,T,D = {size}  {time.perf_counter() - start:5.1f} s")
        results[norm] = {"yours": name, "torch": label, "eps": eps, "status": status, "message": message,
                         "rows": rows}
    return results


# --------------------------------------------------------------------------------------
# the gradient flow: the chapter's experiment, on your ResidualBlock
# --------------------------------------------------------------------------------------


def gradient_flow(module: ModuleType, impl: Path, quick: bool) -> dict:
    """``site/scripts/experiment_norm.py``'s measurement (per-block gradient norms of pre-norm
    and post-norm stacks at initialisation) on ``module``: its results document, or
    ``{"skipped": why}`` while LayerNorm, RMSNorm or ResidualBlock is not written."""
    cfg = experiment_norm.QUICK if quick else experiment_norm.Config()
    missing = [name for name in experiment_norm.REQUIRED["normalization"] if not hasattr(module, name)]
    if missing:
        return {"skipped": f"your normalization.py has no {', '.join(missing)}"}
    modules = {"normalization": module}
    try:
        experiment_norm.check_impl(modules, cfg)
    except NotImplementedError as error:
        return {"skipped": f"your normalization.py is not written yet: {error or 'NotImplementedError'}"}
    except Exception as error:  # noqa: BLE001 - one line, as for the norms
        return {"skipped": f"your normalization.py raised {type(error).__name__}: {error}"}
    return experiment_norm.results_document(cfg, impl, quick, experiment_norm.run(module, cfg))


# --------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------


def results_document(cfg: Config, impl: Path, quick: bool, norms: dict, gradients: dict, seconds: float) -> dict:
    """The JSON: the configuration and the machine, every row of every norm, the gradient flow."""
    device = torch.device(cfg.device)
    config = {
        "impl": _display(impl), "quick": quick, "sizes": [list(size) for size in cfg.sizes], "repeats": cfg.repeats,
        "seed": cfg.seed, "dtype": "float32", "device": cfg.device,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
        "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(),
        "forward": "one call under torch.no_grad(), training mode",
        "forward_backward": "one call and torch.autograd.grad to the input and the parameters",
        "peak_bytes": ("torch.cuda.max_memory_allocated during the call, minus what was allocated before it"
                       if device.type == "cuda" else
                       "the running sum of torch.profiler's CPU allocator events (profile_memory=True) during "
                       "the call: its maximum, counted from what was allocated before it"),
        "clock": "this thread's CPU time (time.thread_time)" if clock(device) is time.thread_time
        else "wall clock (time.perf_counter)",
        "ratio": "yours / torch, measured in the same run",
    }
    return {"config": config, "norms": norms, "gradient_flow": gradients, "wall_seconds": round(seconds, 1)}


def _cpu_name() -> str:
    """The processor's model name where Linux tells it (``platform.processor()`` is often empty
    there), else what ``platform`` knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def _display(path: Path) -> str:
    """``path`` relative to the tree when it is inside it (no home directories in the JSON)."""
    try:
        return path.resolve().relative_to(ROOT).as_posix() + "/"
    except ValueError:
        return str(path)


def _cell(yours: float | None, theirs: float, digits: int) -> str:
    return f"{'-' if yours is None else f'{yours:.{digits}f}'} / {theirs:.{digits}f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table_markdown(results: dict) -> str:
    """A Markdown table, one row per norm and size: times in ms and the forward + backward peak
    memory in MiB, each as yours / PyTorch's, then their ratio."""
    lines = [("| norm | B, T, D | forward ms (yours / torch) | ratio | fwd + bwd ms (yours / torch) | ratio "
              "| fwd + bwd peak MiB (yours / torch) | ratio |"),
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for norm, entry in results["norms"].items():
        for row in entry["rows"]:
            forward, training = row["forward"], row["forward_backward"]
            yours_mib = None if training["yours_peak_bytes"] is None else training["yours_peak_bytes"] / MIB
            theirs_mib = training["torch_peak_bytes"]
            memory = ("not measured" if theirs_mib is None else _cell(yours_mib, theirs_mib / MIB, 2))
            lines.append(f"| {norm} | {', '.join(map(str, row['size']))} "
                         f"| {_cell(forward['yours_ms'], forward['torch_ms'], 3)} | {_times(forward['time_ratio'])} "
                         f"| {_cell(training['yours_ms'], training['torch_ms'], 3)} | {_times(training['time_ratio'])} "
                         f"| {memory} | {_times(training['memory_ratio'])} |")
    return "\n".join(lines)


# The site's palette (matplotlib's default cycle), one colour per norm.
COLORS = {"layernorm": "#1f77b4", "rmsnorm": "#ff7f0e", "batchnorm": "#2ca02c"}
PANELS = (("forward", "time_ratio", "forward time"), ("forward_backward", "time_ratio", "forward + backward time"),
          ("forward_backward", "memory_ratio", "forward + backward peak memory"))
DPI = 110


def plot_comparison(results: dict, path: Path) -> Path:
    """Three panels (forward time, forward + backward time, its peak memory), each a bar per
    norm and size for yours over PyTorch's, with the line at 1 (as fast, as much). A norm not
    written yet has no bar. Saved with the Agg renderer; returns ``path``."""
    fig = Figure(figsize=(11.0, 3.6))
    FigureCanvasAgg(fig)  # explicit Agg, whatever backend the caller's pyplot uses
    axes = fig.subplots(1, len(PANELS))
    sizes = [tuple(size) for size in results["config"]["sizes"]]
    norms = list(results["norms"])
    width = 0.8 / len(norms)
    legend = {}  # norm -> one of its bar containers
    for ax, (phase, key, title) in zip(axes, PANELS):
        heights_seen = [1.0]
        for i, norm in enumerate(norms):
            rows = {tuple(row["size"]): row[phase][key] for row in results["norms"][norm]["rows"]}
            heights = [rows.get(size) for size in sizes]
            xs = [j + (i - (len(norms) - 1) / 2) * width for j in range(len(sizes))]
            shown = [(x, h) for x, h in zip(xs, heights) if h is not None]
            if shown:
                bars = ax.bar([x for x, _ in shown], [h for _, h in shown], width, label=norm, color=COLORS.get(norm))
                ax.bar_label(bars, labels=[f"{h:.1f}" for _, h in shown], fontsize=7, padding=1)
                legend[norm] = bars
                heights_seen += [h for _, h in shown]
        ax.axhline(1.0, color="0.3", linewidth=1, linestyle="--")
        ax.set_xticks(range(len(sizes)), ["\n".join(("B,T,D =", ",".join(map(str, s)))) for s in sizes], fontsize=8)
        ax.set_xlim(-0.5, len(sizes) - 0.5)
        ax.set_ylim(0, max(heights_seen) * 1.18)
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel("yours / PyTorch's")
    if legend:
        axes[-1].legend(legend.values(), legend.keys(), fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5),
                        frameon=False)
    else:
        axes[1].text(0.5, 0.5, "no ratios yet: none of your norms runs", transform=axes[1].transAxes,
                     ha="center", va="center", fontsize=9)
    config = results["config"]
    fig.suptitle(f"{config['impl']}normalization.py against torch.nn, float32, {config['device']} "
                 f"({config['threads']} threads)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int, int]:
    """``"8x512x768"`` -> ``(8, 512, 768)``: B, T and D, each at least 1 (B * T at least 2:
    BatchNorm needs two values per channel)."""
    try:
        size = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1 or size[0] * size[1] < 2:
        raise argparse.ArgumentTypeError(f"a size is BxTxD with B * T >= 2, e.g. 8x512x768; got {text!r}")
    return size  # type: ignore[return-value]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", type=Path, default=HERE,
                        help="folder with your normalization.py (default: this script's folder)")
    parser.add_argument("--sizes", type=lambda text: tuple(parse_size(s) for s in text.split(",")), default=None,
                        help="comma-separated BxTxD sizes (default: 16x128x256,8x256x768,4x512x1024)")
    parser.add_argument("--repeats", type=_positive, default=None,
                        help=f"timed calls per measurement (default {REPEATS})")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="where to measure (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=THREADS,
                        help=f"CPU threads for torch (default {THREADS}; 0: torch's default, one per core)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 3 repeats, shallow stacks: a smoke test")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"folder for the JSON and the plots (default: {_display(DEFAULT_OUT)})")
    return parser.parse_args(argv)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = QUICK if args.quick else Config()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: this torch sees no CUDA device", file=sys.stderr)
        return EXIT_CANNOT_RUN
    cfg = replace(cfg, device=device, sizes=args.sizes or cfg.sizes, repeats=args.repeats or cfg.repeats)
    if args.threads:
        torch.set_num_threads(args.threads)
    impl = args.impl.resolve()
    try:
        module = load_normalization(impl)
    except FileNotFoundError as error:
        print(f"no normalization.py to compare: {error}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    start = time.perf_counter()
    _progress(f"comparing {_display(impl)}normalization.py with torch.nn on {device}, sizes {list(cfg.sizes)}, "
              f"{cfg.repeats} repeats")
    norms = compare(module, cfg, _progress)
    _progress("gradient flow: pre-norm and post-norm stacks at initialisation (site/scripts/experiment_norm.py)")
    gradients = gradient_flow(module, impl, args.quick)
    results = results_document(cfg, impl, args.quick, norms, gradients, time.perf_counter() - start)

    args.out.mkdir(parents=True, exist_ok=True)
    written = [args.out / "comparison.json", plot_comparison(results, args.out / "comparison.png")]
    written[0].write_text(json.dumps(results, indent=2) + "\n")
    print(table_markdown(results))
    print()
    if "skipped" in gradients:
        print(f"gradient flow skipped: {gradients['skipped']}")
    else:
        written.append(experiment_norm.plot_results(gradients, args.out / "gradients.png"))
        print(experiment_norm.table_markdown(gradients))
    _progress(f"\n{results['wall_seconds']:.1f} s; wrote {', '.join(_display(p).rstrip('/') for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
