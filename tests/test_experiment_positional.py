"""The chapter 03 experiment (site/scripts/experiment_positional.py) runs end to end in --quick
mode, writes the JSON and plot the reading page uses, and stops a stub tree with one line."""

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

SCRIPT = ROOT / "site" / "scripts" / "experiment_positional.py"
ENCODINGS = {"none", "sinusoidal", "learned", "rope", "alibi"}
EVAL_LENS = ["32", "64", "128"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def load_script(monkeypatch) -> ModuleType:
    """The script as a module, imported the way another script would (nothing trains)."""
    spec = importlib.util.spec_from_file_location("experiment_positional", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path, Path]:
    out = tmp_path_factory.mktemp("experiment")
    results, plot = out / "results.json", out / "plot.png"
    return run_script("--quick", "--results", str(results), "--plot", str(plot)), results, plot


def test_quick_run_exits_zero(quick_run):
    result, _, _ = quick_run
    assert result.returncode == 0, result.stderr


def test_quick_run_scores_every_encoding_at_every_length(quick_run):
    _, results, _ = quick_run
    data = json.loads(results.read_text())
    assert set(data["encodings"]) == ENCODINGS
    assert [str(n) for n in data["config"]["eval_lens"]] == EVAL_LENS
    accuracies = {(name, n): entry["accuracy"][n] for name, entry in data["encodings"].items() for n in EVAL_LENS}
    assert {key: a for key, a in accuracies.items() if not 0.0 <= a <= 1.0} == {}


def test_quick_run_draws_the_plot(quick_run):
    _, _, plot = quick_run
    assert plot.read_bytes().startswith(PNG_SIGNATURE)


def test_plot_and_table_from_the_json_without_training(quick_run, tmp_path, monkeypatch):
    """`plot_results` is importable and byte-for-byte deterministic; `table_markdown` has a row
    per encoding."""
    _, results, _ = quick_run
    data, script = json.loads(results.read_text()), load_script(monkeypatch)
    first = script.plot_results(data, tmp_path / "a.png").read_bytes()
    second = script.plot_results(data, tmp_path / "b.png").read_bytes()
    assert first == second
    rows = script.table_markdown(data).splitlines()[2:]
    assert {row.split("|")[1].strip() for row in rows} == ENCODINGS


def test_stub_tree_stops_with_one_line(tmp_path):
    result = run_script("--quick", "--impl", str(ASSIGNMENTS), "--results", str(tmp_path / "r.json"),
                        "--plot", str(tmp_path / "p.png"))
    assert result.returncode == 2
    assert result.stderr.startswith("experiment-positional needs chapters 02 and 03 implemented in assignments/")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "r.json").exists()
