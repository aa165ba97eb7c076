"""The course's Quick Start blocks, run as a student pastes them, in `reference_solutions/`.

The README's block is read out of README.md (the first ```python block under "## Quick Start") and
fed to `python -` in the reference folder: the folder is on the import path, nothing else is. Any
edit to the README's block is what this test runs.

The module outline's block (kept here verbatim: the outline is not in the repository) leaves the
model in training mode with no `torch.no_grad()`; at its own sizes that needs more memory than CI
has, so it runs with smaller numbers substituted into the same code.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import subprocess
import sys
import tokenize

import pytest
import torch

from tests.conftest import REFERENCE, ROOT

# Its own xdist group: a 40 s forward pass of the full-size model is best kept off the worker
# that holds the long mutant runs of one chapter.
pytestmark = pytest.mark.xdist_group("quick_start")

EXPECTED = "torch.Size([32, 512, 10000])"
TIMEOUT = 600  # seconds: 40 to 100 here, alone, by the machine's speed


def quick_start_snippet() -> str:
    """The Python code block of the README's Quick Start section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Quick Start\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "README's Quick Start section has no ```python block"
    return match.group(1)


def test_quick_start_names_the_course_configuration():
    snippet = quick_start_snippet()
    assert ("Transformer(vocab_size=10000, d_model=512, num_heads=8, num_layers=6, d_ff=2048, max_seq_len=512, "
            "dropout=0.1)") in snippet
    assert "(32, 512)" in snippet and EXPECTED in snippet


def test_quick_start_runs_verbatim_on_the_reference():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "PYTHONPATH"}
    # One thread: the suite keeps both of CI's cores busy, and torch's second thread then spins
    # on a core another test holds (measured here: 276 s in the suite against 80 s alone with
    # two threads, 102 s alone with one). The snippet itself runs as written.
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run([sys.executable, "-"], input=quick_start_snippet(), cwd=REFERENCE, capture_output=True,
                            text=True, timeout=TIMEOUT, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip().splitlines()[-1] == EXPECTED, result.stdout


# --- the module outline's Quick Start, in training mode ---------------------------------------

# The module outline's Quick Start block, verbatim (the outline is the course authors' README,
# kept outside this repository). Unlike the README's block it has no `torch.no_grad()` and
# leaves the model in training mode, the default after construction: at these sizes its forward
# keeps about 24 GiB for a backward that never comes (chapter 01's "Memory" section). The test
# below runs the same code with smaller numbers.
OUTLINE_QUICK_START = '''\
# Build a mini-transformer
from transformer_full import Transformer

model = Transformer(
    vocab_size=10000,
    d_model=512,
    num_heads=8,
    num_layers=6,
    d_ff=2048,
    max_seq_len=512,
    dropout=0.1
)

# Forward pass
import torch
src = torch.randint(0, 10000, (32, 512))  # (batch, seq_len)
tgt = torch.randint(0, 10000, (32, 512))

output = model(src, tgt)
print(f"Output shape: {output.shape}")  # (32, 512, 10000)
'''

# Each literal of the outline's block -> its small value, with the number of times it occurs.
# Only number literals (and the shape comment) change; `test_shrunk_outline_is_the_same_code`
# holds the two texts to that.
VOCAB, BATCH, LENGTH = 1000, 4, 64
SHRINK = [
    ("vocab_size=10000", f"vocab_size={VOCAB}", 1),
    ("d_model=512", "d_model=64", 1),
    ("num_layers=6", "num_layers=2", 1),
    ("d_ff=2048", "d_ff=128", 1),
    ("max_seq_len=512", f"max_seq_len={LENGTH}", 1),
    ("torch.randint(0, 10000, (32, 512))", f"torch.randint(0, {VOCAB}, ({BATCH}, {LENGTH}))", 2),
    ("# (32, 512, 10000)", f"# ({BATCH}, {LENGTH}, {VOCAB})", 1),
]


def shrunk_outline() -> str:
    code = OUTLINE_QUICK_START
    for old, new, times in SHRINK:
        assert code.count(old) == times, f"the outline's block has {code.count(old)} of {old!r}, not {times}"
        code = code.replace(old, new)
    return code


def _code_tokens(code: str) -> list[tuple[int, str]]:
    """The token stream of `code`, numbers and comments blanked: what stays is the code itself."""
    blank = {tokenize.NUMBER, tokenize.COMMENT}
    return [(tok.type, "" if tok.type in blank else tok.string)
            for tok in tokenize.generate_tokens(io.StringIO(code).readline)]


def test_shrunk_outline_is_the_same_code():
    small = shrunk_outline()
    assert small != OUTLINE_QUICK_START
    assert _code_tokens(small) == _code_tokens(OUTLINE_QUICK_START)
    assert "no_grad" not in small and ".eval()" not in small  # the outline's own training-mode forward


# Run after the block, in the same process: the model is in training mode with a graph, and
# the graph is usable, every parameter getting a finite gradient from a next-token loss.
AFTER_THE_BLOCK = '''
assert model.training and torch.is_grad_enabled() and output.requires_grad
loss = torch.nn.functional.cross_entropy(output.flatten(0, 1), tgt.flatten())
loss.backward()
missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.isfinite().all()]
print("backward:", "ok" if not missing else missing)
'''


def test_outline_quick_start_runs_in_training_mode_at_a_small_size():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run([sys.executable, "-"], input=shrunk_outline() + AFTER_THE_BLOCK, cwd=REFERENCE,
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    lines = result.stdout.strip().splitlines()
    assert lines == [f"Output shape: torch.Size([{BATCH}, {LENGTH}, {VOCAB}])", "backward: ok"], result.stdout


def test_a_training_mode_forward_keeps_the_attention_maps():
    """The premise of chapter 01's memory arithmetic: in training mode every attention module
    (L encoder self, L decoder self, L cross) leaves at least one B x H x T x T tensor in the
    graph, and under `torch.no_grad()` nothing is kept at all."""
    spec = importlib.util.spec_from_file_location("quick_start_transformer_full", REFERENCE / "transformer_full.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    layers, heads = 2, 4
    torch.manual_seed(0)
    model = module.Transformer(vocab_size=VOCAB, d_model=32, num_heads=heads, num_layers=layers, d_ff=64,
                               max_seq_len=LENGTH, dropout=0.1)
    src, tgt = torch.randint(0, VOCAB, (BATCH, LENGTH)), torch.randint(0, VOCAB, (BATCH, LENGTH))

    def saved_shapes(grad: bool) -> list[tuple[int, ...]]:
        shapes = []

        def pack(tensor):
            shapes.append(tuple(tensor.shape))
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), torch.set_grad_enabled(grad):
            model(src, tgt)
        return shapes

    assert model.training
    maps = [s for s in saved_shapes(True) if s in {(BATCH, heads, LENGTH, LENGTH), (BATCH * heads, LENGTH, LENGTH)}]
    assert len(maps) >= 3 * layers, f"{len(maps)} attention-sized tensors saved, fewer than the {3 * layers} attentions"
    assert saved_shapes(False) == []
