"""Chapter 05's exercise 4 (assignments/layer_norm_comparison.py): it compares a tree's norms with
PyTorch's as ratios measured in one run, writes its JSON, table and plots, measures peak memory
on the CPU, and meets a stub with one line per norm while still timing PyTorch's. Its run in
the student release is in tests/test_release.py, which builds the release once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
from torch import nn

from graders import stubs
from tests.conftest import ASSIGNMENTS, REFERENCE
from tests.experiments import PNG_SIGNATURE, load_script

# Its module fixtures run once: under xdist (--dist loadgroup) the whole file shares one worker.
pytestmark = pytest.mark.xdist_group("layer_norm_comparison")

SCRIPT = ASSIGNMENTS / "layer_norm_comparison.py"
NORMS = {"layernorm", "rmsnorm", "batchnorm"}
PHASES = ("forward", "forward_backward")
TIMEOUT = 180  # seconds for one --quick run (a few here, more on a loaded machine)


def run_comparison(out: Path, *args: str, cwd: Path = ASSIGNMENTS) -> tuple[subprocess.CompletedProcess, dict]:
    """``cd assignments && python layer_norm_comparison.py --quick --out OUT ARGS``, as a student
    runs it: the process and the JSON it wrote."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out), *args], check=False,
                            cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert result.returncode == 0, result.stderr
    return result, json.loads((out / "comparison.json").read_text())


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict, Path]:
    out = tmp_path_factory.mktemp("reference")
    return (*run_comparison(out, "--impl", str(REFERENCE)), out)


@pytest.fixture(scope="module")
def stub_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict, Path]:
    out = tmp_path_factory.mktemp("stubs")
    return (*run_comparison(out), out)  # the default --impl: the script's folder, the stubs


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    """The script as a module (nothing measured at import)."""
    with pytest.MonkeyPatch.context() as patch:
        module = load_script(SCRIPT, patch)
    return module


# --- on the reference -------------------------------------------------------------------


def test_reference_every_norm_and_size_has_both_sides_and_positive_ratios(reference_run):
    _, data, _ = reference_run
    sizes = data["config"]["sizes"]
    assert set(data["norms"]) == NORMS
    for norm, entry in data["norms"].items():
        assert entry["status"] == "ok", (norm, entry["message"])
        assert [row["size"] for row in entry["rows"]] == sizes
        for row in entry["rows"]:
            for phase in PHASES:
                measured = row[phase]
                assert measured["yours_ms"] > 0 and measured["torch_ms"] > 0, (norm, phase, measured)
                assert measured["yours_peak_bytes"] > 0 and measured["torch_peak_bytes"] > 0, (norm, phase, measured)
                assert measured["time_ratio"] == pytest.approx(measured["yours_ms"] / measured["torch_ms"], rel=1e-2)
                assert measured["memory_ratio"] == pytest.approx(
                    measured["yours_peak_bytes"] / measured["torch_peak_bytes"], rel=1e-2)


def test_reference_training_step_holds_at_least_the_output_and_the_input_gradient(reference_run):
    _, data, _ = reference_run
    for entry in data["norms"].values():
        for row in entry["rows"]:
            tensor_bytes = 4 * row["size"][0] * row["size"][1] * row["size"][2]  # float32 (B, T, D)
            for side in ("yours_peak_bytes", "torch_peak_bytes"):
                assert row["forward_backward"][side] >= 2 * tensor_bytes, (entry["yours"], row["size"], side)
                assert row["forward"][side] >= tensor_bytes, (entry["yours"], row["size"], side)


def test_reference_table_has_a_row_per_norm_and_size(reference_run):
    result, data, _ = reference_run
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "x |" in line]
    shown = {(row.split("|")[1].strip(), row.split("|")[2].strip()) for row in rows}
    assert shown == {(norm, ", ".join(map(str, size))) for norm in NORMS for size in data["config"]["sizes"]}


def test_reference_gradient_flow_is_the_chapter_experiment(reference_run):
    result, data, out = reference_run
    flow = data["gradient_flow"]
    assert set(flow["configurations"]) == {"pre_layernorm", "post_layernorm", "pre_rmsnorm"}
    assert flow["config"]["impl"] == "reference_solutions/"
    assert "| pre-norm, LayerNorm |" in result.stdout
    assert (out / "gradients.png").read_bytes().startswith(PNG_SIGNATURE)


def test_reference_writes_a_png_and_records_the_run(reference_run):
    _, data, out = reference_run
    assert (out / "comparison.png").read_bytes().startswith(PNG_SIGNATURE)
    config = data["config"]
    assert config["impl"] == "reference_solutions/" and config["quick"] is True
    assert config["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert config["torch"] == torch.__version__ and config["threads"] == 1


# --- on the stubs -----------------------------------------------------------------------


def test_stubs_get_one_line_per_norm_and_no_traceback(stub_run):
    result, _, _ = stub_run
    assert "Traceback" not in result.stderr
    for name, label in (("LayerNorm", "nn.LayerNorm"), ("RMSNorm", "nn.RMSNorm"), ("BatchNorm", "nn.BatchNorm1d")):
        lines = [line for line in result.stderr.splitlines() if line.startswith(f"your {name} is not written yet: ")]
        assert len(lines) == 1 and lines[0].endswith(f"timing {label} alone"), result.stderr


def test_stubs_still_time_pytorchs_norms(stub_run):
    _, data, out = stub_run
    assert data["config"]["impl"] == "assignments/"
    for entry in data["norms"].values():
        assert entry["status"] == "missing"
        for row in entry["rows"]:
            for phase in PHASES:
                measured = row[phase]
                assert measured["torch_ms"] > 0 and measured["torch_peak_bytes"] > 0
                assert measured["yours_ms"] is None and measured["time_ratio"] is None
    assert (out / "comparison.png").read_bytes().startswith(PNG_SIGNATURE)


def test_stubs_skip_the_gradient_flow_with_the_stubs_message(stub_run):
    result, data, out = stub_run
    assert data["gradient_flow"]["skipped"].startswith("your normalization.py is not written yet: ")
    assert "gradient flow skipped: your normalization.py is not written yet" in result.stdout
    assert not (out / "gradients.png").exists()


# --- the pieces, in this process ---------------------------------------------------------


def test_cpu_peak_is_the_most_held_at_once_not_the_sum(script):
    mib = 2**20
    cpu = torch.device("cpu")

    def one_at_a_time() -> None:
        for _ in range(3):
            torch.ones(mib // 4)  # 1 MiB of float32, freed at once

    def all_at_once() -> None:
        held = [torch.ones(mib // 4) for _ in range(3)]
        del held

    assert script.peak_bytes(one_at_a_time, cpu) == pytest.approx(mib, rel=0.01)
    assert script.peak_bytes(all_at_once, cpu) == pytest.approx(3 * mib, rel=0.01)


class _Doubled(nn.LayerNorm):
    """A wrong LayerNorm: twice PyTorch's output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * super().forward(x)


class _Broken(nn.Module):
    def __init__(self, d_model: int, eps: float = 1e-6) -> None:
        super().__init__()
        raise TypeError("d_model must be a tuple")


def test_check_norm_flags_a_wrong_answer_and_names_an_error(script):
    cpu = torch.device("cpu")
    module = types.ModuleType("normalization")
    module.LayerNorm, module.RMSNorm = _Doubled, _Broken
    status, message = script.check_norm(module, "layernorm", cpu)
    assert status == "differs" and "differs from nn.LayerNorm" in message
    status, message = script.check_norm(module, "rmsnorm", cpu)
    assert status == "failed" and message.startswith("your RMSNorm raised TypeError: d_model must be a tuple")
    status, message = script.check_norm(module, "batchnorm", cpu)
    assert status == "missing" and message.startswith("your BatchNorm is not in normalization.py")


def test_builtin_batchnorm_keeps_the_channels_last(script):
    x = torch.randn(3, 5, 4) * torch.arange(1.0, 5.0)  # (B, T, C), a different scale per channel
    out = script.ChannelsLastBatchNorm(4)(x)  # (B, T, C)
    expected = nn.BatchNorm1d(4)(x.transpose(1, 2)).transpose(1, 2)  # (B, C, T) and back
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("text", ["8x512", "8x0x64", "1x1x64", "axbxc"])
def test_a_bad_size_is_refused(script, text):
    with pytest.raises(Exception, match="BxTxD"):
        script.parse_size(text)


def test_stub_check_leaves_the_given_script_alone_but_not_a_stray_file(tmp_path):
    reference, assignments = tmp_path / "reference", tmp_path / "assignments"
    reference.mkdir()
    (reference / "m.py").write_text("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n")
    stubs.generate(reference, assignments)
    for name in stubs.GIVEN:
        (assignments / name).write_text("print('given')\n")
    assert stubs.check(reference, assignments) == []
    (assignments / "stray.py").write_text("")
    assert stubs.check(reference, assignments) == ["assignments/stray.py has no reference module"]
