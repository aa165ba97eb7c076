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

4. Chapter 07's GPT from the given tree, one training step (forward, cross-entropy, backward,
   `torch.optim.AdamW`) on train_gpt.py's cpu-tiny shapes, in tokens/s, with
   `fused_attention=True` and with the tree's own attention, against a baseline GPT of the same
   architecture written from PyTorch built-ins (`nn.RMSNorm`, `nn.Linear`, a SwiGLU, rotary
   embeddings and `F.scaled_dot_product_attention`) timed in alternation with it (ratio =
   baseline tok/s / ours, > 1: the tree's is slower); the forward FLOPs per token; on CUDA, the
   gpu preset's shapes in bfloat16 too, with the model FLOPs utilization (MFU).

5. Batch grading (`python -m graders grade-batch`): the same submissions (copies of the given
   tree) graded one after another with the grade command, then as one batch on a Dask
   LocalCluster with a worker per core; submissions per minute for each, and the speed-up.

`--only SECTION` (repeatable: grading, attention, norm, capstone, batch) runs a part; the grading
and batch sections are the slow ones. The norm section imports the tree's normalization.py into this process, unsandboxed:
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
# train_gpt.py's presets: (vocab_size, block_size, n_layer, n_head, d_model, batch_size)
CAPSTONE_SHAPES = {"cpu-tiny": (84, 64, 4, 4, 128, 12), "gpu": (84, 256, 6, 6, 384, 64)}
# Dense bfloat16 peak FLOP/s by device name, from the vendors' data sheets (no sparsity), for MFU.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
                   "A10": 125e12, "RTX 4090": 165e12, "RTX 3090": 71e12}
SECTIONS = ("grading", "attention", "norm", "capstone", "batch")
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


def load_gpt(impl: Path) -> ModuleType:
    """``impl/gpt.py`` under a private name, importing ``impl``'s own chapter modules (it names
    them plainly: ``from feedforward import SwiGLU``); those plain names leave sys.modules after."""
    impl = Path(impl).resolve()
    if not (impl / "gpt.py").is_file():
        raise FileNotFoundError(f"{impl / 'gpt.py'} is missing")
    names = {p.stem for p in impl.glob("*.py")}
    saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    sys.path.insert(0, str(impl))
    try:
        spec = importlib.util.spec_from_file_location("_bench_gpt", impl / "gpt.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(impl))
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
    return module


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding, rotate-half form: x (B, H, T, Dh), cos and sin (T, Dh)."""
    x1, x2 = x.chunk(2, dim=-1)  # (B, H, T, Dh/2) each
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin  # (B, H, T, Dh)


class BaselineBlock(nn.Module):
    """A pre-norm GPT block from PyTorch built-ins: RMSNorm, attention with rotary embeddings
    through F.scaled_dot_product_attention, RMSNorm, SwiGLU (w1 gate, w3 up, w2 down)."""

    def __init__(self, d_model: int, n_head: int, d_ff: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.norm1, self.norm2 = nn.RMSNorm(d_model, eps=1e-6), nn.RMSNorm(d_model, eps=1e-6)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        self.w1, self.w3 = nn.Linear(d_model, d_ff, bias=False), nn.Linear(d_model, d_ff, bias=False)
        self.w2 = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)  # (B, H, T, Dh) each
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, Dh)
        x = x + self.out(y.transpose(1, 2).reshape(b, t, d))  # (B, T, D)
        h = self.norm2(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))  # (B, T, D)


class BaselineGPT(nn.Module):
    """The capstone's default architecture (rope, rmsnorm, swiglu, tied embeddings, no biases)
    from PyTorch built-ins: the speed the chapter's GPT is measured against."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.stack = nn.ModuleList(BaselineBlock(d_model, n_head, d_ff) for _ in range(n_layer))
        self.norm = nn.RMSNorm(d_model, eps=1e-6)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # tied
        head_dim = d_model // n_head
        inv_freq = 10000.0 ** (-torch.arange(0, head_dim, 2).float() / head_dim)  # (Dh/2,)
        angles = torch.outer(torch.arange(block_size).float(), inv_freq).repeat(1, 2)  # (T, Dh)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        h = self.tok_emb(idx)  # (B, T, D)
        for baseline_block in self.stack:
            h = baseline_block(h, self.cos[:t], self.sin[:t])
        return self.lm_head(self.norm(h))  # (B, T, V)


def training_step(model: nn.Module, batch_size: int, block_size: int, vocab_size: int, device: str,
                  dtype: torch.dtype | None):
    """One training step of ``model`` (forward, F.cross_entropy, backward, AdamW) as a callable."""
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(vocab_size, (batch_size, block_size + 1), generator=gen).to(device)  # (B, T + 1)
    inputs, targets = idx[:, :-1], idx[:, 1:]  # (B, T) each
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        with torch.autocast(torch.device(device).type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out = model(inputs)
            logits = out if isinstance(out, torch.Tensor) else out[0]  # (B, T, V): GPT returns (logits, loss)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    return step


def capstone_bench(impl: Path, preset: str = "cpu-tiny", device: str = "cpu", repeats: int = REPEATS,
                   shapes: tuple[int, ...] | None = None) -> dict:
    """Training tokens/s of the tree's GPT (fused and unfused attention) against `BaselineGPT`.

    ``shapes`` is ``(vocab_size, block_size, n_layer, n_head, d_model, batch_size)`` (default:
    the preset's). On CUDA the steps run under bfloat16 autocast. Returns ``{"config", "rows",
    "parameters", "forward_flops_per_token"}``; each row: ``attention``, ``tokens_per_s``,
    ``baseline_tokens_per_s`` and ``ratio`` (baseline / ours: > 1, the tree's is slower).
    Raises NotImplementedError for a tree whose GPT is still a stub.
    """
    impl = Path(impl).resolve()
    module = load_gpt(impl)
    vocab_size, block_size, n_layer, n_head, d_model, batch_size = shapes or CAPSTONE_SHAPES[preset]
    dtype = torch.bfloat16 if device.startswith("cuda") else None
    tokens = batch_size * block_size
    rows, start = [], time.perf_counter()
    for fused in (True, False):
        torch.manual_seed(0)
        config = module.GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head,
                                  d_model=d_model, fused_attention=fused)
        model = module.GPT(config).to(device)
        d_ff = next(m for name, m in model.named_modules() if name.endswith("w1")).out_features
        baseline = BaselineGPT(vocab_size, block_size, n_layer, n_head, d_model, d_ff).to(device)
        ours, theirs = paired_median_seconds(training_step(model, batch_size, block_size, vocab_size, device, dtype),
                                             training_step(baseline, batch_size, block_size, vocab_size, device, dtype),
                                             repeats)
        rows.append({"attention": "fused" if fused else "yours", "tokens_per_s": round(tokens / ours, 1),
                     "baseline_tokens_per_s": round(tokens / theirs, 1), "ratio": round(ours / theirs, 3)})
    parameters = {"gpt": model.num_parameters(non_embedding=False),
                  "baseline": sum(p.numel() for p in baseline.parameters())}
    config = {"impl": _display(impl), "preset": preset, "device": device, "dtype": str(dtype or torch.float32),
              "shapes": dict(zip(("vocab_size", "block_size", "n_layer", "n_head", "d_model", "batch_size"),
                                 (vocab_size, block_size, n_layer, n_head, d_model, batch_size))),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": repeats,
              "wall_seconds": round(time.perf_counter() - start, 1)}
    return {"config": config, "rows": rows, "parameters": parameters,
            "forward_flops_per_token": model.flops_per_token() // 3}  # flops_per_token is training's: 3x forward


def peak_bf16_flops(device_name: str) -> float | None:
    """The data-sheet dense bfloat16 peak of a CUDA device, by name (None if unknown)."""
    return next((peak for name, peak in PEAK_BF16_FLOPS.items() if name in device_name), None)
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


def _capstone_section(impl: Path) -> int:
    runs = [("cpu-tiny", "cpu")] + ([("gpu", "cuda")] if torch.cuda.is_available() else [])
    for i, (preset, device) in enumerate(runs):
        if i:
            print()
        print(f"capstone GPT training step on {preset} shapes, {device}, {torch.get_num_threads()} threads "
              f"(ours: {_display(impl)}gpt.py, ratio = baseline tok/s / ours; > 1: ours is slower):")
        try:
            results = capstone_bench(impl, preset, device)
        except (NotImplementedError, FileNotFoundError) as error:
            print(f"  skipped: {_display(impl)}gpt.py is not implemented ({error or 'NotImplementedError'})")
            return 0
        for row in results["rows"]:
            print(f"  attention {row['attention']:<6} ours {row['tokens_per_s']:12,.0f} tok/s   "
                  f"baseline {row['baseline_tokens_per_s']:12,.0f} tok/s   ratio {row['ratio']:5.2f}x")
        flops = results["forward_flops_per_token"]
        print(f"  {results['parameters']['gpt']:,} parameters (baseline {results['parameters']['baseline']:,}); "
              f"forward {flops:,} FLOPs per token (training 3x)")
        if device == "cuda":
            name = torch.cuda.get_device_name()
            peak = peak_bf16_flops(name)
            best = max(row["tokens_per_s"] for row in results["rows"])
            print(f"  MFU {3 * flops * best / peak:.1%} of {name}'s {peak / 1e12:.0f} TFLOP/s bfloat16" if peak
                  else f"  MFU: no bfloat16 peak on record for {name} (graders/bench.py PEAK_BF16_FLOPS)")
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
            "norm": lambda: _norm_section(impl_path, json_path), "capstone": lambda: _capstone_section(impl_path),
            "batch": lambda: _batch_section(impl_path)}
    status = 0
    for i, section in enumerate(name for name in SECTIONS if name in sections):
        if i:
            print()
        status = max(status, runs[section]())
    return status
