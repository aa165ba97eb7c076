"""Helpers for the tests of the experiment scripts (site/scripts/experiment_*.py): run one as a
student would, in a subprocess, or load it as a module, the way site/scripts/figures.py does;
and ``ExperimentTests``, the tests every experiment passes, for a test file to subclass.

A plain module, not a test file: the tests/test_experiment_*.py files import it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ASSIGNMENTS, ROOT

SCRIPTS = ROOT / "site" / "scripts"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIMEOUT = 120  # seconds for one --quick run or one stub run (a --quick run takes a few here)


def run_script(script: Path, *args: str) -> subprocess.CompletedProcess:
    """``python SCRIPT ARGS`` from the repository root, without pytest's environment variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run([sys.executable, str(script), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT, env=env)


def run_quick(script: Path, out: Path) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """A ``--quick`` run writing its JSON and PNG into ``out``: the process, the JSON's path and
    the PNG's path."""
    results, plot = out / "results.json", out / "plot.png"
    return run_script(script, "--quick", "--results", str(results), "--plot", str(plot)), results, plot


def run_on_stubs(script: Path, out: Path) -> subprocess.CompletedProcess:
    """A ``--quick`` run on the stubs (assignments/), which must stop before training; its JSON
    would go to ``out / "r.json"``."""
    return run_script(script, "--quick", "--impl", str(ASSIGNMENTS), "--results", str(out / "r.json"),
                      "--plot", str(out / "p.png"))


def load_script(script: Path, monkeypatch) -> ModuleType:
    """The script as a module, imported the way another script would (nothing trains)."""
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script adds its own folder; undone after the test
    spec.loader.exec_module(module)
    return module


def redrawn(script: Path, results: Path, out: Path, monkeypatch) -> tuple[bytes, bytes, list[str]]:
    """The plot drawn twice from the JSON at ``results`` by the loaded script's ``plot_results``
    (into ``out``), and the first cell of every body row of its ``table_markdown``."""
    data, module = json.loads(results.read_text()), load_script(script, monkeypatch)
    first = module.plot_results(data, out / "a.png").read_bytes()
    second = module.plot_results(data, out / "b.png").read_bytes()
    rows = module.table_markdown(data).splitlines()[2:]
    return first, second, [row.split("|")[1].strip() for row in rows]


class ExperimentTests:
    """The tests every experiment script must pass, written once (as pandas' base extension tests
    are): a test file subclasses this as ``Test...``, sets the three attributes below and adds
    its own tests as methods, so they share the class's one ``--quick`` run.

    Not collected here (no ``Test`` prefix, and this is not a test file). The assertions carry
    their own messages: pytest rewrites assertions in test files only.
    """

    # The class-scoped run happens once: under xdist (--dist loadgroup) every experiment's tests
    # share one worker.
    pytestmark = pytest.mark.xdist_group("experiments")

    script: Path  # the experiment script under test
    stopped: str  # its one line on a stub tree, up to the stub's own message
    table_rows: set[str]  # the first cell of every body row of its Markdown table

    @pytest.fixture(scope="class")
    @classmethod  # a class-scoped fixture reads the class, not the instance of one test
    def quick_run(cls, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path, Path]:
        """``run_quick`` once for the class: the process, the JSON's path and the PNG's path."""
        return run_quick(cls.script, tmp_path_factory.mktemp("experiment"))

    def test_quick_run_exits_zero(self, quick_run):
        result, _, _ = quick_run
        assert result.returncode == 0, result.stderr

    def test_quick_run_draws_the_plot(self, quick_run):
        _, _, plot = quick_run
        head = plot.read_bytes()[: len(PNG_SIGNATURE)]
        assert head == PNG_SIGNATURE, f"{plot} starts with {head!r}, not a PNG signature"

    def test_plot_and_table_from_the_json_without_training(self, quick_run, tmp_path, monkeypatch):
        """``plot_results`` is importable and byte-for-byte deterministic; ``table_markdown`` has a
        row per entry of ``table_rows``."""
        _, results, _ = quick_run
        first, second, rows = redrawn(self.script, results, tmp_path, monkeypatch)
        assert first == second, "two drawings of the same JSON differ"
        assert sorted(rows) == sorted(self.table_rows), f"table rows {rows}, expected {sorted(self.table_rows)}"

    def test_stub_tree_stops_with_one_line(self, tmp_path):
        """Exit status 2, one line on stderr (no traceback) that starts with ``stopped``, no JSON."""
        result = run_on_stubs(self.script, tmp_path)
        outcome = (result.returncode, [line.split(": ", 1)[0] for line in result.stderr.strip().splitlines()],
                   (tmp_path / "r.json").exists())
        assert outcome == (2, [self.stopped], False), f"exit status {result.returncode}, stderr:\n{result.stderr}"
