"""The normalization section of `nox -s bench` (graders/bench.py): its figures have the shape the
reading page reads, and its ratios are numbers. No timing is asserted: the times depend on the
machine and its load."""

from __future__ import annotations

import json
import math

import pytest

from graders import bench
from tests.conftest import ASSIGNMENTS, REFERENCE, ROOT, run_cli

# Its module fixture runs once: under xdist (--dist loadgroup) the whole file shares one worker.
pytestmark = pytest.mark.xdist_group("bench")

RECORDED = ROOT / "site" / "docs" / "results" / "norm_bench.json"
TINY = ((2, 3, 8), (1, 4, 16))  # (B, T, D)
ROW_KEYS = {"norm", "shape", "ours_ms", "torch_ms", "ratio"}


@pytest.fixture(scope="module")
def tiny_run() -> dict:
    return bench.norm_bench(REFERENCE, shapes=TINY, repeats=2)


def test_norm_bench_has_a_row_per_norm_and_shape(tiny_run):
    rows = tiny_run["rows"]
    assert all(set(row) == ROW_KEYS for row in rows)
    assert sorted((row["norm"], tuple(row["shape"])) for row in rows) == sorted(
        (norm, shape) for norm in ("layernorm", "rmsnorm") for shape in TINY)


def test_norm_bench_ratios_are_positive_finite(tiny_run):
    values = {(row["norm"], tuple(row["shape"]), key): row[key] for row in tiny_run["rows"]
              for key in ("ours_ms", "torch_ms", "ratio")}
    assert {key: value for key, value in values.items() if not (math.isfinite(value) and value > 0)} == {}


def test_norm_bench_records_its_setup(tiny_run):
    config = tiny_run["config"]
    assert config["impl"] == "reference_solutions/"
    assert config["repeats"] == 2 and config["dtype"] == "float32"
    assert config["eps"] == {"layernorm": 1e-5, "rmsnorm": 1e-6}


def test_norm_table_has_a_row_per_measurement(tiny_run):
    lines = bench.norm_table_markdown(tiny_run).splitlines()
    assert len(lines) == 2 + len(tiny_run["rows"])
    assert [line.split("|")[1].strip() for line in lines[2:]] == [row["norm"] for row in tiny_run["rows"]]


def test_norm_plot_is_a_png(tiny_run, tmp_path):
    """The plot every bench run writes (and the page shows, from the recorded run)."""
    path = bench.plot_norm_bench(tiny_run, tmp_path / "plots" / "norm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stub_tree_raises_not_implemented():
    with pytest.raises(NotImplementedError):
        bench.norm_bench(ASSIGNMENTS, shapes=TINY, repeats=1)


def test_recorded_run_renders():
    """The recorded run the reading page shows: the bench's own shapes, positive finite ratios."""
    recorded = json.loads(RECORDED.read_text())
    assert sorted({tuple(row["shape"]) for row in recorded["rows"]}) == sorted(bench.NORM_SHAPES)
    assert all(math.isfinite(row["ratio"]) and row["ratio"] > 0 for row in recorded["rows"])
    assert bench.norm_table_markdown(recorded).count("\n") == 1 + len(recorded["rows"])


def test_cli_skips_a_stub_tree_in_one_line(tmp_path):
    """`bench --only norm` on the stubs times nothing, says why in one line, writes no JSON."""
    recorded = tmp_path / "norm.json"
    result = run_cli("bench", "--only", "norm", "--impl", str(ASSIGNMENTS), "--json", str(recorded), timeout=120)
    assert result.returncode == 2, result.stderr
    body = [line for line in result.stdout.splitlines() if line.startswith("  ")]  # under the section's title
    assert len(body) == 1 and body[0].startswith("  skipped: assignments/normalization.py is not implemented")
    assert "Traceback" not in result.stderr and not recorded.exists()


def test_cli_json_needs_the_norm_section(tmp_path):
    result = run_cli("bench", "--only", "attention", "--json", str(tmp_path / "norm.json"), timeout=120)
    assert result.returncode == 2
    assert "--json records the norm section" in result.stderr


# The capstone section: a GPT of a few thousand parameters, (vocab_size, block_size, n_layer,
# n_head, d_model, batch_size), so both models' steps take milliseconds.
CAPSTONE_TINY = (20, 8, 1, 2, 16, 2)


def test_capstone_bench_times_both_attention_paths_against_a_same_size_baseline():
    results = bench.capstone_bench(REFERENCE, shapes=CAPSTONE_TINY, repeats=1)
    assert [row["attention"] for row in results["rows"]] == ["fused", "yours"]
    assert all(math.isfinite(row[key]) and row[key] > 0 for row in results["rows"]
               for key in ("tokens_per_s", "baseline_tokens_per_s", "ratio"))
    # the baseline is the same architecture: the same parameters, so the ratio compares code, not size
    assert results["parameters"]["gpt"] == results["parameters"]["baseline"]
    assert results["forward_flops_per_token"] > 0


def test_capstone_bench_on_a_stub_tree_raises_not_implemented():
    with pytest.raises(NotImplementedError):
        bench.capstone_bench(ASSIGNMENTS, shapes=CAPSTONE_TINY, repeats=1)


def test_batch_bench_times_serial_and_local_cluster_on_the_same_submissions():
    figures = bench.batch_bench(REFERENCE, submissions=2, workers=2)
    assert figures["submissions"] == 2 and figures["workers"] == 2
    assert all(math.isfinite(figures[k]) and figures[k] > 0 for k in ("serial_s", "batch_s", "speedup"))
    assert figures["speedup"] == pytest.approx(figures["serial_s"] / figures["batch_s"])
    assert figures["batch_per_min"] == pytest.approx(60 * 2 / figures["batch_s"])
