"""Experiment tracking: chapter 06's tracker interface (`training_loop.open_tracker`), used by
the `Trainer`, the capstone's `train_gpt.py` and the experiment scripts.

Weights & Biases runs here are offline (`WANDB_MODE=offline`): W&B writes each run to a local
folder that `wandb sync` can upload later, and `tests/wandb_offline.py` reads that folder back,
so every test checks what W&B itself recorded, with no network and no account. Without the
wandb package, asking for it must end in one line naming the extra to install.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import REFERENCE, ROOT
from tests.test_capstone_train import BATCH, SCRIPT, STEPS, TINY, losses, run, texts  # noqa: F401  # texts: a fixture
from tests.wandb_offline import offline_runs

# The capstone runs share test_capstone_train's worker, where its synthetic corpus is made once.
pytestmark = pytest.mark.xdist_group("capstone_train")

EXTRA_HINT = "pip install '.[tracking]'"
SAMPLE = "To be, or not to be: that is the question."
TIMEOUT = 120  # seconds for a command that must fail at once


def go_offline(monkeypatch: pytest.MonkeyPatch, home: Path) -> Path:
    """W&B offline, its settings, cache and data folders under ``home`` (never the user's home
    directory); returns ``home``."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    for variable in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(variable, str(home / variable.lower()))
    return home


@pytest.fixture
def offline_wandb(tmp_path, monkeypatch) -> Path:
    return go_offline(monkeypatch, tmp_path / "wandb-home")


def load_training_loop(monkeypatch: pytest.MonkeyPatch):
    """The reference training_loop module, loaded by path (nothing else imported by its name)."""
    spec = importlib.util.spec_from_file_location("training_loop_tracked", REFERENCE / "training_loop.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def training_loop(monkeypatch):
    return load_training_loop(monkeypatch)


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """A tiny Trainer run logging to metrics.jsonl and an offline W&B run at once: (its folder,
    the trainer, the W&B run read back). Once for the file: the tests below read it."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        go_offline(monkeypatch, tmp_path_factory.mktemp("wandb-home"))
        return tiny_tracked_run(load_training_loop(monkeypatch), tmp_path_factory.mktemp("tracked") / "run")


def tiny_tracked_run(training_loop, out: Path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 10))  # (B, T) -> (B, T, 10)

    def get_batch(split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = torch.randint(0, 10, (4, 6), generator=generator)  # (B, T)
        return inputs, (inputs + 1) % 10  # next token: one more, mod 10

    config = training_loop.TrainConfig(max_steps=6, warmup_steps=1, eval_every=3, eval_batches=1,
                                       checkpoint_every=100, out_dir=str(out), progress=False)
    tracker = training_loop.open_tracker(out, wandb=True, name="tiny", config={"purpose": "a test"})
    trainer = training_loop.Trainer(model, get_batch, config, tracker)
    trainer.fit()
    tracker.text("sample", SAMPLE)
    tracker.close()
    (run_,) = offline_runs(out)
    return out, trainer, run_


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------------------
# the Trainer with a W&B tracker


def test_wandb_run_holds_every_training_loss(tracked_run):
    out, _, wandb_run = tracked_run
    logged = {r["step"]: r["loss"] for r in jsonl(out / "metrics.jsonl") if "loss" in r}
    assert wandb_run.values("loss") == logged, "the W&B history's losses differ from metrics.jsonl's"


def test_wandb_run_holds_every_validation_loss(tracked_run):
    out, _, wandb_run = tracked_run
    logged = {r["step"]: r["val_loss"] for r in jsonl(out / "metrics.jsonl") if "val_loss" in r}
    assert set(logged) == {3, 6}
    assert wandb_run.values("val_loss") == logged


def test_wandb_run_holds_the_learning_rate_and_throughput(tracked_run):
    _, trainer, wandb_run = tracked_run
    steps = [r for r in trainer.history if "loss" in r]
    assert wandb_run.values("lr") == {r["step"]: r["lr"] for r in steps}
    assert set(wandb_run.values("tokens_per_s")) == {r["step"] for r in steps}


def test_wandb_run_holds_the_config_and_the_sample(tracked_run):
    _, _, wandb_run = tracked_run
    assert wandb_run.name == "tiny" and wandb_run.config["purpose"] == "a test"
    assert wandb_run.summary["sample"] == SAMPLE


def test_a_given_tracker_still_writes_the_files(tracked_run):
    """The default outputs stay: metrics.jsonl (the trainer's history, line for line), the
    sample as sample.txt, and loss.png once the tracker's owner closes it."""
    out, trainer, _ = tracked_run
    assert jsonl(out / "metrics.jsonl") == trainer.history
    assert (out / "sample.txt").read_text() == SAMPLE
    assert (out / "loss.png").read_bytes().startswith(b"\x89PNG")


def test_default_tracker_needs_no_wandb(tmp_path, training_loop):
    tracker = training_loop.open_tracker(tmp_path)
    assert [type(t).__name__ for t in tracker.trackers] == ["MetricsFile"]
    assert training_loop.open_tracker(None).trackers == ()


# --------------------------------------------------------------------------------------
# the capstone with --wandb


def test_capstone_resumed_run_continues_its_wandb_run(texts, tmp_path, offline_wandb):  # noqa: F811
    """An interrupted `train_gpt.py --wandb` run and its `--resume` log to one W&B run (same id),
    between them every step's loss of metrics.jsonl, with the preset and the sample."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    common = ["--texts", str(texts), "--data-dir", str(cache), "--out-dir", str(out), "--max-steps", str(STEPS),
              "--eval-every", "10", "--batch-size", str(BATCH), "--wandb", *TINY]
    run(*common, "--until", "7")
    run(*common, "--resume")
    first, second = offline_runs(out)
    assert first.run_id == second.run_id == (out / "wandb-run-id").read_text().strip()
    logged = {step: value for (step, key), value in losses(out).items() if key == "loss"}
    assert first.values("loss") | second.values("loss") == logged
    assert second.config["d_model"] == 32 and second.config["gpt_config"]["n_layer"] == 1
    assert second.summary["sample"] == (out / "sample.txt").read_text()


# --------------------------------------------------------------------------------------
# the experiments with --wandb


def test_experiment_logs_each_model_as_a_wandb_run(tmp_path, offline_wandb):
    wandb_dir = tmp_path / "wandb-dir"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")} | {"WANDB_DIR": str(wandb_dir)}
    script = ROOT / "site" / "scripts" / "experiment_ffn.py"
    result = subprocess.run([sys.executable, str(script), "--quick", "--wandb", "--results", str(tmp_path / "r.json"),
                             "--plot", str(tmp_path / "p.png")], cwd=ROOT, capture_output=True, text=True,
                            timeout=TIMEOUT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    variants = json.loads((tmp_path / "r.json").read_text())["variants"]
    runs = {r.name: r for r in offline_runs(wandb_dir)}
    assert set(runs) == set(variants), f"W&B runs {sorted(runs)}, variants {sorted(variants)}"
    for name, entry in variants.items():
        assert runs[name].group == "experiment_ffn"
        assert len(runs[name].values("loss")) == json.loads((tmp_path / "r.json").read_text())["config"]["steps"]
        assert f"val loss {entry['val_loss']:.4f}" in runs[name].summary["summary"]


# --------------------------------------------------------------------------------------
# without the wandb package


@pytest.fixture
def no_wandb(tmp_path) -> dict:
    """An environment where `import wandb` fails, as when the package is not installed: a
    `wandb` package first on the path whose import raises ImportError."""
    shadow = tmp_path / "shadow" / "wandb"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'wandb'\")\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return env | {"PYTHONPATH": str(shadow.parent), "OMP_NUM_THREADS": "1"}


def assert_one_line_naming_the_extra(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 2, f"exit status {result.returncode}:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "wandb" in last and EXTRA_HINT in last, f"the last line does not name the extra: {last!r}"


def test_capstone_without_wandb_says_what_to_install(texts, tmp_path, no_wandb):  # noqa: F811
    command = [sys.executable, str(SCRIPT), "--texts", str(texts), "--data-dir", str(tmp_path / "cache"),
               "--out-dir", str(tmp_path / "out"), "--max-steps", "2", "--wandb", *TINY]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, env=no_wandb)
    assert_one_line_naming_the_extra(result)
    assert not (tmp_path / "out" / "checkpoint.pt").exists(), "it trained before finding wandb missing"


def test_experiment_without_wandb_says_what_to_install(tmp_path, no_wandb):
    script = ROOT / "site" / "scripts" / "experiment_ffn.py"
    command = [sys.executable, str(script), "--quick", "--wandb", "--results", str(tmp_path / "r.json"),
               "--plot", str(tmp_path / "p.png")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, env=no_wandb)
    assert_one_line_naming_the_extra(result)
    assert not (tmp_path / "r.json").exists()
