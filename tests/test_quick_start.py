"""The course's Quick Start, run verbatim: the README's block, in `reference_solutions/`.

The snippet is read out of README.md (the first ```python block under "## Quick Start") and
fed to `python -` in the reference folder, as a student pastes it: the folder is on the
import path, nothing else is. Any edit to the README's block is what this test runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

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
