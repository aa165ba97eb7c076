"""The chapter 05 experiment (site/scripts/experiment_norm.py) measures per-block gradient norms
of pre-norm and post-norm stacks at initialisation, writes the JSON and plot the reading page
uses (the plot byte for byte the same from the same numbers), and stops a stub tree with one line."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from graders.plugin import load_reference
from tests.conftest import ROOT
from tests.experiments import PNG_SIGNATURE, SCRIPTS, load_script, redrawn, run_on_stubs, run_quick, run_script

# Its module fixture runs once: under xdist (--dist loadgroup) the whole file shares one worker.
pytestmark = pytest.mark.xdist_group("experiment_norm")

SCRIPT = SCRIPTS / "experiment_norm.py"
RECORDED = ROOT / "site" / "docs" / "results" / "norm_gradients.json"
CONFIGURATIONS = {"pre_layernorm", "post_layernorm", "pre_rmsnorm"}
PER_BLOCK = ("param_grad_norm", "stream_grad_norm")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path, Path]:
    return run_quick(SCRIPT, tmp_path_factory.mktemp("experiment"))


def measured_values(data: dict) -> dict[tuple, float]:
    """Every number measured, keyed by (configuration, depth, quantity, block)."""
    values = {}
    for name, entry in data["configurations"].items():
        for depth, measured in entry["depths"].items():
            values |= {(name, depth, key, i): v for key in PER_BLOCK for i, v in enumerate(measured[key])}
            values |= {(name, depth, key): measured[key] for key in ("loss", "output_rms")}
    return values


def test_quick_run_exits_zero(quick_run):
    result, _, _ = quick_run
    assert result.returncode == 0, result.stderr


def test_quick_run_measures_every_block_of_every_stack(quick_run):
    _, results, _ = quick_run
    data = json.loads(results.read_text())
    assert set(data["configurations"]) == CONFIGURATIONS
    lengths = {(name, depth, key): len(measured[key]) for name, entry in data["configurations"].items()
               for depth, measured in entry["depths"].items() for key in PER_BLOCK}
    assert lengths == {(name, str(depth), key): depth for name in CONFIGURATIONS
                       for depth in data["config"]["depths"] for key in PER_BLOCK}


def test_quick_run_values_are_positive_finite(quick_run):
    _, results, _ = quick_run
    values = measured_values(json.loads(results.read_text()))
    assert {key: v for key, v in values.items() if not (math.isfinite(v) and v > 0)} == {}


def test_quick_run_draws_the_plot(quick_run):
    _, _, plot = quick_run
    assert plot.read_bytes().startswith(PNG_SIGNATURE)


def test_plot_and_table_from_the_json_without_measuring(quick_run, tmp_path, monkeypatch):
    """`plot_results` is importable and byte-for-byte deterministic; `table_markdown` has a row
    per configuration and depth."""
    _, results, _ = quick_run
    first, second, rows = redrawn(SCRIPT, results, tmp_path, monkeypatch)
    assert first == second
    depths = json.loads(results.read_text())["config"]["depths"]
    assert len(rows) == len(CONFIGURATIONS) * len(depths)


def test_the_numbers_repeat(quick_run, tmp_path):
    """A second run measures exactly the same numbers (fixed seeds, one thread)."""
    _, results, _ = quick_run
    again = tmp_path / "again.json"
    assert run_script(SCRIPT, "--quick", "--results", str(again), "--plot", str(tmp_path / "p.png")).returncode == 0
    assert measured_values(json.loads(again.read_text())) == measured_values(json.loads(results.read_text()))


def test_configurations_share_their_weights(monkeypatch):
    """At one depth and seed, pre-norm and post-norm stacks get the same sublayers and head: only
    the wiring differs."""
    script, norms = load_script(SCRIPT, monkeypatch), load_reference("normalization")
    cfg = script.QUICK
    pre, post = (script.Stack(norms, 3, prenorm, "layernorm", cfg) for prenorm in (True, False))
    mismatched = [key for key, value in pre.state_dict().items()
                  if "final_norm" not in key and not value.equal(post.state_dict()[key])]
    assert mismatched == []


def test_recorded_result_renders():
    """The committed full run: the three depths, every configuration, a table row each."""
    recorded = json.loads(RECORDED.read_text())
    assert recorded["config"]["depths"] == [6, 24, 48] and recorded["config"]["quick"] is False
    assert set(recorded["configurations"]) == CONFIGURATIONS
    assert {key: v for key, v in measured_values(recorded).items() if not (math.isfinite(v) and v > 0)} == {}


def test_stub_tree_stops_with_one_line(tmp_path):
    result = run_on_stubs(SCRIPT, tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("experiment-norm needs chapter 05 implemented in assignments/: ")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "r.json").exists()
