"""The chapter 04 experiment (site/scripts/experiment_ffn.py) runs end to end in --quick mode,
trains every FFN variant at matched parameters, writes the JSON and plot the reading page uses,
and stops a stub tree with one line."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ASSIGNMENTS, ROOT

SCRIPT = ROOT / "site" / "scripts" / "experiment_ffn.py"
VARIANTS = {"relu", "gelu", "gelu_tanh", "silu", "swiglu"}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The script's own promise (its MATCH_TOLERANCE): SwiGLU's two-thirds width costs what the
# classic FFN does up to rounding.
MATCHED_WITHIN = 0.03


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def load_script(monkeypatch) -> ModuleType:
    """The script as a module, imported the way another script would (nothing trains)."""
    spec = importlib.util.spec_from_file_location("experiment_ffn", SCRIPT)
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


def test_quick_run_trains_every_variant_to_finite_losses(quick_run):
    _, results, _ = quick_run
    variants = json.loads(results.read_text())["variants"]
    assert set(variants) == VARIANTS
    losses = {(name, key): entry[key] for name, entry in variants.items()
              for key in ("final_train_loss", "val_loss")}
    losses |= {(name, "curve"): loss for name, entry in variants.items() for loss in entry["train_curve"]["loss"]}
    assert {key: loss for key, loss in losses.items() if not math.isfinite(loss)} == {}


def test_quick_run_every_variant_sees_the_same_steps(quick_run):
    _, results, _ = quick_run
    data = json.loads(results.read_text())
    curves = {name: entry["train_curve"]["step"] for name, entry in data["variants"].items()}
    assert {name: steps[-1] for name, steps in curves.items()} == dict.fromkeys(VARIANTS, data["config"]["steps"])
    assert len({tuple(steps) for steps in curves.values()}) == 1


def test_quick_run_matches_parameter_counts(quick_run):
    """SwiGLU is two thirds as wide and costs what the classic FFNs cost, within MATCHED_WITHIN;
    the classic ones cost exactly the same."""
    _, results, _ = quick_run
    variants = json.loads(results.read_text())["variants"]
    classic = variants["relu"]["ffn_parameters"]
    assert {variants[name]["ffn_parameters"] for name in VARIANTS - {"swiglu"}} == {classic}
    assert abs(variants["swiglu"]["ffn_parameters"] - classic) <= MATCHED_WITHIN * classic
    assert variants["swiglu"]["d_ff"] < variants["relu"]["d_ff"]


def test_quick_run_draws_the_plot(quick_run):
    _, _, plot = quick_run
    assert plot.read_bytes().startswith(PNG_SIGNATURE)


def test_plot_and_table_from_the_json_without_training(quick_run, tmp_path, monkeypatch):
    """`plot_results` is importable and byte-for-byte deterministic; `table_markdown` has a row
    per variant."""
    _, results, _ = quick_run
    data, script = json.loads(results.read_text()), load_script(monkeypatch)
    first = script.plot_results(data, tmp_path / "a.png").read_bytes()
    second = script.plot_results(data, tmp_path / "b.png").read_bytes()
    assert first == second
    rows = script.table_markdown(data).splitlines()[2:]
    assert sorted(row.split("|")[1].strip() for row in rows) == sorted(VARIANTS)


def test_corpus_is_deterministic(monkeypatch):
    """The synthetic text depends on corpus_seed alone, so every run trains on the same data."""
    script = load_script(monkeypatch)
    cfg = script.Config(corpus_chars=2_000)
    assert script.make_corpus(cfg) == script.make_corpus(cfg)
    assert len(script.make_corpus(cfg)) == 2_000
    assert script.make_corpus(cfg) != script.make_corpus(script.Config(corpus_chars=2_000, corpus_seed=1))


def test_stub_tree_stops_with_one_line(tmp_path):
    result = run_script("--quick", "--impl", str(ASSIGNMENTS), "--results", str(tmp_path / "r.json"),
                        "--plot", str(tmp_path / "p.png"))
    assert result.returncode == 2
    assert result.stderr.startswith("experiment-ffn needs chapters 02 and 04 implemented in assignments/")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "r.json").exists()
