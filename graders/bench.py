"""`nox -s bench`: figures, not pass/fail. Ratios are against baselines measured in the same run.

1. Grading time per chapter: a full grade (public + hidden) of the given tree, run through the
   CLI as a student would, after one warm-up run so the timing excludes first-import costs.
2. The reference's scaled dot-product attention, forward + backward, against PyTorch's
   `F.scaled_dot_product_attention` on the same shapes (ratio > 1: the reference is slower).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from graders import chapters
from graders.plugin import load_reference

ATTENTION_SHAPES = ((4, 8, 128, 64), (8, 8, 256, 64), (2, 16, 512, 64))  # (B, H, T, Dh)
REPEATS = 7


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


def main(impl: str) -> int:
    impl_path = Path(impl).resolve()
    print(f"grading time per chapter ({impl_path.name}, warm, public + hidden):")
    for chapter in chapters.graded():
        print(f"  {chapter.slug:<32} {grading_seconds(impl_path, chapter):6.2f} s")
    print(f"\nattention forward + backward, causal, float32, {torch.get_num_threads()} threads "
          "(reference / F.scaled_dot_product_attention):")
    for shape in ATTENTION_SHAPES:
        ours, theirs = attention_ratio(shape)
        print(f"  B,H,T,Dh={shape!s:<20} reference {ours * 1e3:8.2f} ms   torch {theirs * 1e3:8.2f} ms   "
              f"ratio {ours / theirs:5.2f}x")
    return 0
