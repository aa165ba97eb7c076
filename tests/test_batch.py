"""Batch grading (`python -m graders grade-batch`) on Dask, tested end to end.

Thirty synthetic submissions of chapter 04 (the reference in three folder layouts, stubs,
mutants, correct variants and adversarial cases) are graded one by one with the plain grade
command, then as batches: on a LocalCluster in a run killed halfway and restarted, and on a
real `dask scheduler` with two `dask worker` processes. Every batch must give each student
exactly the serial grade.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import ASSIGNMENTS, REFERENCE, ROOT, grade, run_cli
from tests.mutants.ch04 import MUTANTS, VALID_VARIANTS

# One file: the expensive serial grades are computed once, on one xdist worker.
pytestmark = pytest.mark.xdist_group("batch")

CHAPTER = "4"
SCHEDULED = 12  # submissions the real-scheduler test grades
MODULE = "feedforward"
SOURCE = (REFERENCE / f"{MODULE}.py").read_text()

ADVERSARIAL = {
    "syntax_error": "def relu(x):\n    return x if x > 0 else\n",
    "exits_at_import": "import sys\nsys.exit(3)\n",
    "os_exit_in_relu": SOURCE.replace("def relu(x: Tensor) -> Tensor:",
                                      "def relu(x: Tensor) -> Tensor:\n    import os\n    os._exit(0)", 1),
    "raises_everywhere": "def __getattr__(name):\n    raise RuntimeError('nothing here')\n",
}


def write_submissions(folder: Path) -> dict[str, Path]:
    """30 student folders; student -> the flat folder their grade is checked against."""
    flat: dict[str, Path] = {}

    def add(student: str, source: str | None, where: str = "") -> None:
        target = folder / student / where
        target.mkdir(parents=True, exist_ok=True)
        if source is not None:
            (target / f"{MODULE}.py").write_text(source)
        flat[student] = target

    add("ref_flat", SOURCE)
    add("ref_nbgrader", SOURCE, "04_feedforward_networks")  # nbgrader: one folder per assignment
    # ... and the capstone assignment carries a stub copy, which must not win over the student's own
    (folder / "ref_nbgrader" / "07_capstone").mkdir()
    (folder / "ref_nbgrader" / "07_capstone" / f"{MODULE}.py").write_text((ASSIGNMENTS / f"{MODULE}.py").read_text())
    add("ref_gradescope", SOURCE, "submission_1001")
    (folder / "ref_gradescope" / "submission_1001" / "notes.txt").write_text("not a module")
    add("stub_a", (ASSIGNMENTS / f"{MODULE}.py").read_text())
    add("stub_b", (ASSIGNMENTS / f"{MODULE}.py").read_text(), "work")
    for variant in VALID_VARIANTS[:2]:
        add(f"variant_{variant.name}", variant.apply(SOURCE))
    for name, source in ADVERSARIAL.items():
        add(f"bad_{name}", source)
    add("empty_folder", None)
    for mutant in MUTANTS[:30 - len(flat)]:
        add(f"mutant_{mutant.name}", mutant.apply(SOURCE))
    assert len(flat) == 30
    return flat


def scores(grade_json: dict) -> dict:
    """Everything of a grade that must not depend on how it was run (paths in messages may)."""
    return {"score": grade_json["score"], "max_score": grade_json["max_score"],
            "tests": [(c["id"], t["name"], t["status"], t["score"]) for c in grade_json["chapters"] for t in c["tests"]]}


def read_gradebook(report: Path) -> list[dict]:
    with open(report / "gradebook.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def batch_command(submissions: Path, report: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "graders", "grade-batch", str(submissions), "--report", str(report),
            "--chapter", CHAPTER, "--no-progress", *extra]


def assert_batch_equals_serial(report: Path, serial: dict[str, dict]) -> None:
    for student, expected in serial.items():
        marker = json.loads((report / student / "batch.json").read_text())
        assert marker["status"] == "graded", (student, marker)
        got = json.loads((report / student / "grade.json").read_text())
        assert scores(got) == expected, student
    book = {row["student"]: row for row in read_gradebook(report)}
    assert set(book) == set(serial)
    for student, expected in serial.items():
        assert float(book[student]["total"]) == expected["score"], student
        assert book[student]["status"] == "graded"


@pytest.fixture(scope="module")
def submissions(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    folder = tmp_path_factory.mktemp("submitted")
    return folder, write_submissions(folder)


@pytest.fixture(scope="module")
def serial(submissions, tmp_path_factory) -> dict[str, dict]:
    """Each submission graded alone with the plain grade command, as a student would."""
    _, flat = submissions
    out = tmp_path_factory.mktemp("serial")
    # Two at a time: each is still the plain grade command on one submission, alone.
    with ThreadPoolExecutor(2) as pool:
        grades = pool.map(lambda item: (item[0], scores(grade(item[1], out / item[0], CHAPTER))), flat.items())
        return dict(grades)


def test_the_submissions_span_the_range(serial):
    # The batch tests below mean something only if the grades differ: full marks, zero, between.
    totals = {s: g["score"] / g["max_score"] for s, g in serial.items()}
    assert totals["ref_flat"] == totals["ref_nbgrader"] == totals["ref_gradescope"] == 1.0
    assert totals["stub_a"] == totals["stub_b"] == totals["empty_folder"] == 0.0
    assert any(0 < t < 1 for s, t in totals.items() if s.startswith("mutant_"))


def test_local_cluster_killed_halfway_then_restarted_equals_serial(submissions, serial, tmp_path):
    """A LocalCluster batch with two workers, killed (SIGKILL, the whole process group) once
    ten submissions are graded, then started again: the second run grades only the missing
    ones, and the finished batch gives every student exactly the serial grade."""
    folder, _ = submissions
    report = tmp_path / "reports"
    first = subprocess.Popen(batch_command(folder, report, "--workers", "2"), cwd=ROOT, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while len(list(report.glob("*/batch.json"))) < 10 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the batch, its LocalCluster and the grades in flight
    first.wait()
    done = len(list(report.glob("*/batch.json")))
    assert 10 <= done < 30, f"the kill came at {done} graded submissions"
    for path in report.glob("*/*.json"):  # whatever a kill interrupts, no report is half-written
        json.loads(path.read_text())
    read_gradebook(report)

    second = subprocess.run(batch_command(folder, report, "--workers", "2"), cwd=ROOT, capture_output=True,
                            text=True, timeout=900)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"graded {30 - done} now" in second.stdout
    assert "30 submissions (30 graded)" in second.stdout
    assert "most failed tests" in second.stdout  # the teaching signal is printed
    assert_batch_equals_serial(report, serial)
    assert not list(report.glob("*/.staging-*")), "the killed run's staging folders were left behind"


def test_real_scheduler_and_two_workers(submissions, serial, tmp_path):
    """SCHEDULED of the batch's submissions (every layout of the reference, the stubs, two
    adversarial ones and mutants; all thirty would cost CI minutes the LocalCluster test spends), graded through --scheduler on a real `dask scheduler`
    and two `dask worker` processes on 127.0.0.1."""
    source, _ = submissions
    folder = tmp_path / "submitted"
    names = sorted(serial)
    chosen = ([n for n in names if n.startswith(("ref_", "stub_"))] + [n for n in names if n.startswith("bad_")][:2]
              + [n for n in names if n.startswith("mutant_")][:SCHEDULED - 7])
    for student in chosen:
        shutil.copytree(source / student, folder / student)
    serial = {student: serial[student] for student in chosen}
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                 "--port", "0", "--dashboard-address", ":0", "--scheduler-file", str(scheduler_file)],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for _ in range(2):
            started.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--nworkers", "1",
                 "--host", "127.0.0.1", "--dashboard-address", ":0"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        result = subprocess.run(batch_command(folder, tmp_path / "reports", "--scheduler", address), cwd=ROOT,
                                capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout + result.stderr
        assert_batch_equals_serial(tmp_path / "reports", serial)
    finally:
        for process in reversed(started):
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def test_a_submission_that_outlasts_the_timeout_is_an_error_row_not_the_end(tmp_path):
    folder = tmp_path / "submitted"
    (folder / "sleeper").mkdir(parents=True)
    (folder / "sleeper" / f"{MODULE}.py").write_text("import time\ntime.sleep(3600)\n")
    (folder / "nothing").mkdir()
    result = subprocess.run(batch_command(folder, tmp_path / "reports", "--workers", "2", "--timeout", "4"),
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {row["student"]: row for row in read_gradebook(tmp_path / "reports")}
    assert rows["sleeper"]["status"] == "timeout" and "within 4 s" in rows["sleeper"]["message"]
    assert rows["sleeper"]["total"] == ""  # no score for a grade that did not finish
    assert "sleeper: timeout" in result.stdout and "the next batch tries them again" in result.stdout
    assert not (tmp_path / "reports" / "sleeper" / "grade.json").exists()


def test_a_grader_that_cannot_run_gives_error_rows(tmp_path):
    # A grade that exits non-zero (here: a task this chapter does not have) is an error row
    # with the grader's own message; the batch still completes and exits 0.
    folder = tmp_path / "submitted"
    for student in ("ann", "ben"):
        (folder / student).mkdir(parents=True)
        (folder / student / f"{MODULE}.py").write_text(SOURCE)
    result = subprocess.run(batch_command(folder, tmp_path / "reports", "--workers", "1", "--task", "no_such_task"),
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = read_gradebook(tmp_path / "reports")
    assert [r["status"] for r in rows] == ["error", "error"]
    assert all("no task named no_such_task" in r["message"] for r in rows)


def test_changing_a_file_regrades_that_submission_only(tmp_path):
    folder = tmp_path / "submitted"
    for student in ("ann", "ben"):
        (folder / student).mkdir(parents=True)
        (folder / student / f"{MODULE}.py").write_text(SOURCE)
    report = tmp_path / "reports"
    assert subprocess.run(batch_command(folder, report, "--workers", "1"), cwd=ROOT, capture_output=True,
                          timeout=300).returncode == 0
    ann_marker = (report / "ann" / "batch.json").read_text()
    (folder / "ben" / f"{MODULE}.py").write_text(MUTANTS[0].apply(SOURCE))
    again = subprocess.run(batch_command(folder, report, "--workers", "1"), cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert "graded 1 now" in again.stdout
    rows = {r["student"]: float(r["total"]) for r in read_gradebook(report)}
    assert rows["ben"] < rows["ann"]
    assert (report / "ann" / "batch.json").read_text() == ann_marker  # not graded again


def test_a_missing_folder_is_one_clear_line(tmp_path):
    result = run_cli("grade-batch", str(tmp_path / "nowhere"), "--report", str(tmp_path / "r"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"{tmp_path / 'nowhere'} is not a folder of submissions"
