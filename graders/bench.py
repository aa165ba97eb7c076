"""`nox -s bench`: figures, not pass/fail. Ratios are against baselines measured in the same run.

1. Grading time per chapter: a full grade (public + hidden) of the given tree, run through the
   CLI as a student would, after one warm-up run so the timing excludes first-import costs.
2. The reference's scaled dot-product attention, forward + backward, against PyTorch's
   `F.scaled_dot_product_attention` on the same shapes (ratio > 1: the reference is slower).
3. Chapter 05's `LayerNorm` and `RMSNorm` from the given tree, forward + backward, against
   `nn.LayerNorm` and `nn.RMSNorm` on the same shapes and eps (ratio > 1: the tree's is slower).
   `--json PATH` writes these figures (`norm_bench`'s dict) for the reading page, which shows
   the recorded run (site/docs/results/norm_bench.json) with `norm_table_markdown` and
   `plot_norm_bench`. Every run draws its ratios to `reports/bench/norm_bench.png` (next to
   the JSON when `--json` is given), since a bar per shape reads faster than the table.

4. Batch grading (`python -m graders grade-batch`): the same submissions (copies of the given
   tree) graded one after another with the grade command, then as one batch on a Dask
   LocalCluster with a worker per core; submissions per minute for each, and the speed-up.

`--only SECTION` (repeatable: grading, attention, norm, batch) runs a part; the grading section is the
slow one. The norm section imports the tree's normalization.py into this process, unsandboxed:
run the bench on trees you trust (the reference, your own), as you would run their code.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from graders import chapters
from graders.plugin import load_reference

ATTENTION_SHAPES = ((4, 8, 128, 64), (8, 8, 256, 64), (2, 16, 512, 64))  # (B, H, T, Dh)
REPEATS = 7
# (B, T, D): GPT-2 small's width, BERT-large's, Llama-7B's. The largest is 8M floats, so the
# whole section (two norms, two implementations, warm-up + REPEATS each) takes seconds.
NORM_SHAPES = ((8, 512, 768), (32, 128, 1024), (2, 1024, 4096))
# Each norm: the tree's class name, PyTorch's module, and the contract's default eps, passed to
# both (nn.RMSNorm's own default is the dtype's machine epsilon, not 1e-6).
NORMS = {
    "layernorm": ("LayerNorm", nn.LayerNorm, 1e-5),
    "rmsnorm": ("RMSNorm", nn.RMSNorm, 1e-6),
}
SECTIONS = ("grading", "attention", "norm", "batch")
BATCH_SUBMISSIONS = 6
BATCH_CHAPTER = "feedforward_networks"  # a quick chapter: the figure is throughput, not one grade's length
DEFAULT_PLOT = chapters.ROOT / "reports" / "bench" / "norm_bench.png"


def grading_seconds(impl: Path, chapter: chapters.Chapter) -> float:
    with tempfile.TemporaryDirectory() as report:
        command = [sys.executable, "-m", "graders", "grade", "--impl", str(impl), "--chapter", chapter.id,
                   "--report", report, "--no-progress"]
        subprocess.run(command, cwd=chapters.ROOT, check=True, capture_output=True)  # warm-up
        start = time.perf_counter()
        subprocess.run(command, cwd=chapters.ROOT, check=True, capture_output=True)
        return time.perf_counter() - start


def median_seconds(fn, repeats: int = REPEATS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def attention_ratio(shape: tuple[int, int, int, int]) -> tuple[float, float]:
    """(reference seconds, PyTorch seconds) for forward + backward under a causal mask."""
    reference = load_reference("multi_head_attention")
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(shape, generator=gen, requires_grad=True) for _ in range(3))
    upstream = torch.randn(shape, generator=gen)
    mask = reference.causal_mask(shape[2])

    def ours() -> None:
        out, _ = reference.scaled_dot_product_attention(q, k, v, mask=mask)
        torch.autograd.grad(out, (q, k, v), upstream)

    def theirs() -> None:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        torch.autograd.grad(out, (q, k, v), upstream)

    return median_seconds(ours), median_seconds(theirs)


def load_normalization(impl: Path) -> ModuleType:
    """``impl/normalization.py`` under a private name, so it never shadows (or is shadowed by) a
    ``normalization`` module imported from another tree."""
    path = impl / "normalization.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    spec = importlib.util.spec_from_file_location("_bench_normalization", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def norm_step(module: nn.Module, shape: tuple[int, ...]):
    """One forward + backward through ``module`` (to the input and the weights), as a callable."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen, requires_grad=True)  # (B, T, D)
    upstream = torch.randn(shape, generator=gen)  # (B, T, D)
    inputs = (x, *module.parameters())

    def step() -> None:
        torch.autograd.grad(module(x), inputs, upstream)

    return step


def paired_median_seconds(ours, theirs, repeats: int = REPEATS) -> tuple[float, float]:
    """Median seconds of each callable, timed in alternation (ours, theirs, ours, ...) after one
    warm-up each, so a change in the machine's load during the run falls on both alike."""
    ours()
    theirs()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, record in ((ours, times[0]), (theirs, times[1])):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def norm_bench(impl: Path, shapes: tuple[tuple[int, ...], ...] = NORM_SHAPES, repeats: int = REPEATS) -> dict:
    """The tree's LayerNorm and RMSNorm against PyTorch's, float32, forward + backward.

    Returns ``{"config": {...}, "rows": [...]}``, one row per (norm, shape) with ``ours_ms``,
    ``torch_ms`` (medians of ``repeats`` alternated runs after a warm-up) and ``ratio`` (ours / torch).
    Raises NotImplementedError for a tree whose norms are still stubs.
    """
    impl = Path(impl).resolve()
    module = load_normalization(impl)
    start = time.perf_counter()
    rows = []
    for norm, (name, torch_cls, eps) in NORMS.items():
        for shape in shapes:
            d_model = shape[-1]
            ours, theirs = paired_median_seconds(norm_step(getattr(module, name)(d_model, eps=eps), shape),
                                                 norm_step(torch_cls(d_model, eps=eps), shape), repeats)
            rows.append({"norm": norm, "shape": list(shape), "ours_ms": round(ours * 1e3, 3),
                         "torch_ms": round(theirs * 1e3, 3), "ratio": round(ours / theirs, 3)})
    config = {"impl": _display(impl), "torch": torch.__version__, "machine": platform.machine(),
              "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
              "dtype": "float32", "repeats": repeats, "eps": {norm: eps for norm, (_, _, eps) in NORMS.items()},
              "wall_seconds": round(time.perf_counter() - start, 1)}
    return {"config": config, "rows": rows}


def norm_table_markdown(results: dict) -> str:
    """A Markdown table of ``norm_bench``'s results: one row per (norm, shape)."""
    lines = ["| norm | shape (B, T, D) | ours (ms) | torch (ms) | ours / torch |",
             "|---|---|---:|---:|---:|"]
    for row in results["rows"]:
        shape = ", ".join(str(n) for n in row["shape"])
        lines.append(f"| {row['norm']} | ({shape}) | {row['ours_ms']:.2f} | {row['torch_ms']:.2f} | "
                     f"{row['ratio']:.2f}x |")
    return "\n".join(lines)


def plot_norm_bench(results: dict, path: Path) -> Path:
    """A bar per (norm, shape): the tree's time over PyTorch's, with the line at 1 (as fast as
    torch). Written to ``path`` (PNG); returns it."""
    rows = results["rows"]
    shapes = list(dict.fromkeys(tuple(row["shape"]) for row in rows))  # in measuring order
    norms = list(dict.fromkeys(row["norm"] for row in rows))
    ratio = {(row["norm"], tuple(row["shape"])): row["ratio"] for row in rows}
    fig = Figure(figsize=(6.4, 3.4), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(norms)
    for i, norm in enumerate(norms):
        xs = [j + (i - (len(norms) - 1) / 2) * width for j in range(len(shapes))]
        heights = [ratio.get((norm, shape), float("nan")) for shape in shapes]
        bars = ax.bar(xs, heights, width, label=norm)
        ax.bar_label(bars, labels=[f"{h:.1f}x" for h in heights], fontsize=8, padding=2)
    ax.axhline(1.0, color="0.3", linewidth=1, linestyle="--")
    ax.set_xticks(range(len(shapes)), [f"B,T,D = {', '.join(map(str, shape))}" for shape in shapes], fontsize=8)
    ax.set_ylabel("time / torch.nn's (forward + backward)")
    ax.set_ylim(0, max(ratio.values()) * 1.18)
    ax.set_title(f"{results['config']['impl']} against torch.nn, float32, "
                 f"{results['config']['threads']} threads", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def batch_bench(impl: Path, submissions: int = BATCH_SUBMISSIONS, workers: int | None = None,
                chapter: str = BATCH_CHAPTER) -> dict:
    """Seconds to grade `submissions` copies of `impl`: serially with the grade command, and as
    one batch on a LocalCluster of `workers` processes (its start-up included)."""
    import shutil

    workers = workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "submitted"
        for i in range(submissions):
            shutil.copytree(impl, folder / f"student{i:02d}", ignore=shutil.ignore_patterns("__pycache__"))
        grade = [sys.executable, "-m", "graders", "grade", "--chapter", chapter, "--no-progress"]
        subprocess.run([*grade, "--impl", str(folder / "student00"), "--report", f"{tmp}/warm"], cwd=chapters.ROOT,
                       check=True, capture_output=True)  # warm-up: file caches, first imports
        start = time.perf_counter()
        for student in sorted(folder.iterdir()):
            subprocess.run([*grade, "--impl", str(student), "--report", f"{tmp}/serial/{student.name}"],
                           cwd=chapters.ROOT, check=True, capture_output=True)
        serial = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "graders", "grade-batch", str(folder), "--report", f"{tmp}/batch",
                        "--workers", str(workers), "--chapter", chapter, "--no-progress"],
                       cwd=chapters.ROOT, check=True, capture_output=True)
        batch = time.perf_counter() - start
    return {"submissions": submissions, "workers": workers, "chapter": chapter, "serial_s": serial, "batch_s": batch,
            "serial_per_min": 60 * submissions / serial, "batch_per_min": 60 * submissions / batch,
            "speedup": serial / batch}


def _display(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (no home directories in the JSON)."""
    try:
        return path.relative_to(chapters.ROOT).as_posix() + "/"
    except ValueError:
        return str(path)


def _grading_section(impl: Path) -> int:
    print(f"grading time per chapter ({impl.name}, warm, public + hidden):")
    for chapter in chapters.graded():
        print(f"  {chapter.slug:<32} {grading_seconds(impl, chapter):6.2f} s")
    return 0


def _attention_section() -> int:
    print(f"attention forward + backward, causal, float32, {torch.get_num_threads()} threads "
          "(reference / F.scaled_dot_product_attention):")
    for shape in ATTENTION_SHAPES:
        ours, theirs = attention_ratio(shape)
        print(f"  B,H,T,Dh={shape!s:<20} reference {ours * 1e3:8.2f} ms   torch {theirs * 1e3:8.2f} ms   "
              f"ratio {ours / theirs:5.2f}x")
    return 0


def _norm_section(impl: Path, json_path: Path | None) -> int:
    print(f"layernorm and rmsnorm forward + backward, float32, {torch.get_num_threads()} threads "
          f"(ours: {_display(impl)}, ratio = ours / torch.nn):")
    try:
        results = norm_bench(impl)
    except (NotImplementedError, FileNotFoundError) as error:
        print(f"  skipped: {_display(impl)}normalization.py is not implemented ({error or 'NotImplementedError'})")
        return 2 if json_path else 0  # the JSON was asked for and cannot be written
    for row in results["rows"]:
        print(f"  {row['norm']:<9} B,T,D={tuple(row['shape'])!s:<16} ours {row['ours_ms']:8.2f} ms   "
              f"torch {row['torch_ms']:8.2f} ms   ratio {row['ratio']:5.2f}x")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"  wrote {json_path}")
    plot = DEFAULT_PLOT if json_path is None else json_path.with_suffix(".png")
    print(f"  plotted {plot_norm_bench(results, plot)}")
    return 0


def _batch_section(impl: Path) -> int:
    figures = batch_bench(impl)
    print(f"batch grading, {figures['submissions']} copies of {impl.name}, chapter {figures['chapter']}, "
          f"{os.cpu_count()} cores:")
    print(f"  serial (grade, one after another)    {figures['serial_s']:6.1f} s  "
          f"{figures['serial_per_min']:5.1f} submissions/min  "
          f"{figures['serial_s'] / figures['submissions']:5.2f} s each")
    print(f"  grade-batch, LocalCluster x{figures['workers']}        {figures['batch_s']:6.1f} s  "
          f"{figures['batch_per_min']:5.1f} submissions/min  speed-up {figures['speedup']:4.2f}x (start-up included)")
    return 0


def main(impl: str, sections: tuple[str, ...] = SECTIONS, json_path: Path | None = None) -> int:
    """Run ``sections`` (in SECTIONS order), a blank line between them; the worst exit status."""
    impl_path = Path(impl).resolve()
    if json_path is not None and "norm" not in sections:
        print("--json records the norm section: add --only norm (or drop --only)", file=sys.stderr)
        return 2
    runs = {"grading": lambda: _grading_section(impl_path), "attention": _attention_section,
            "norm": lambda: _norm_section(impl_path, json_path), "batch": lambda: _batch_section(impl_path)}
    status = 0
    for i, section in enumerate(name for name in SECTIONS if name in sections):
        if i:
            print()
        status = max(status, runs[section]())
    return status
