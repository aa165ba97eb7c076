"""Batch grading for large courses: every submission of a folder, in parallel on Dask.

    STEPS = find_submissions, clear_leftovers, skip_graded, grade_all, write_gradebook, show_summary

Each step takes and returns the same `Batch`; the order is the only wiring.

A submission is one student's folder (an nbgrader ``submitted/`` tree, where each student has
one folder per assignment, or a Gradescope export, one folder per submission). Its course
modules are found by name anywhere inside it and copied into a flat tree, which one Dask task
grades with ``python -m graders grade``: the same command, sandbox and worker a student's own
``nox -s grade`` runs, so a batch gives every student the grade the single command would.

Resumable: each finished submission gets ``REPORTS/<student>/batch.json``, written last and
atomically, holding the content hash of what was graded (the student's files, the grading
options and the graders' own code). A submission whose hash matches a finished report is not
graded again, so a batch killed halfway and started again grades only what is missing, and a
change to the graders regrades everyone. Nothing here is ever half-written: every report and
the gradebook are replaced in one rename.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from graders import chapters, report

MARKER = "batch.json"  # per student: what was graded and how it ended; written last
GRADEBOOK = "gradebook.csv"
SUMMARY = "batch_summary.json"
DEFAULT_TIMEOUT_S = 1800.0  # one submission, every chapter: a backstop far above a full grade's minutes
SKIPPED_DIRS = {"__pycache__", ".ipynb_checkpoints", ".git"}


class BatchError(RuntimeError):
    """The batch itself cannot run (a missing folder, no Dask, no scheduler)."""


@dataclass(frozen=True)
class Submission:
    student: str
    files: tuple[tuple[str, Path], ...]  # (module name, file) for each course module found
    digest: str  # sha256 of the files, the grading options and the graders' code


@dataclass
class Batch:
    submissions_dir: Path
    report_dir: Path
    chapters: list[str] = field(default_factory=list)  # --chapter values (all graded chapters when empty)
    tasks: list[str] = field(default_factory=list)  # --task values
    scheduler: str | None = None  # tcp://host:port of a running Dask scheduler; None: a LocalCluster
    workers: int = 2  # LocalCluster worker processes (one grade at a time each)
    timeout: float = DEFAULT_TIMEOUT_S
    progress: bool = True
    submissions: list[Submission] = field(default_factory=list)
    todo: list[Submission] = field(default_factory=list)
    rows: dict[str, dict] = field(default_factory=dict)  # student -> their marker (the gradebook row's source)
    seconds: float = 0.0


# --------------------------------------------------------------------------------------
# finding and hashing submissions
# --------------------------------------------------------------------------------------


def _owner(module: str) -> chapters.Chapter:
    return next(c for c in chapters.CHAPTERS if module in c.modules)


def _pick(module: str, candidates: list[Path], student_dir: Path) -> Path:
    """The file that is the student's own `module` when a submission holds several.

    nbgrader's capstone assignment carries copies of earlier modules, so alice/ may hold
    normalization.py twice: the one in the assignment that owns the module wins (nbgrader
    names assignments by chapter slug), then the shallowest path, then the first in order."""
    owner = _owner(module)
    own = [p for p in candidates if p.parent.name in (owner.slug, owner.id)]
    pool = own or candidates
    return min(pool, key=lambda p: (len(p.relative_to(student_dir).parts), str(p)))


def collect_files(student_dir: Path) -> tuple[tuple[str, Path], ...]:
    """(module, file) for every course module found anywhere in `student_dir`."""
    modules = {m for c in chapters.CHAPTERS for m in c.modules}
    found: dict[str, list[Path]] = {}
    for path in sorted(student_dir.rglob("*.py")):
        if path.stem in modules and path.is_file() and not SKIPPED_DIRS & set(path.relative_to(student_dir).parts):
            found.setdefault(path.stem, []).append(path)
    return tuple((m, _pick(m, paths, student_dir)) for m, paths in sorted(found.items()))


def graders_fingerprint() -> str:
    """A hash of everything that decides a grade besides the student's files: the graders'
    code, suites and snapshots, and the reference the hidden tests compare against."""
    digest = hashlib.sha256()
    for folder in (chapters.GRADERS, chapters.REFERENCE):
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(path.relative_to(chapters.ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def submission_digest(files: tuple[tuple[str, Path], ...], options: dict, fingerprint: str) -> str:
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode() + fingerprint.encode())
    for module, path in files:
        digest.update(module.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _options(batch: Batch) -> dict:
    return {"chapters": sorted(batch.chapters), "tasks": sorted(batch.tasks)}


def find_submissions(batch: Batch) -> Batch:
    """One `Submission` per folder of `submissions_dir` (hidden folders aside), sorted by name."""
    if not batch.submissions_dir.is_dir():
        raise BatchError(f"{batch.submissions_dir} is not a folder of submissions")
    fingerprint = graders_fingerprint()
    for student_dir in sorted(p for p in batch.submissions_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = collect_files(student_dir)
        batch.submissions.append(Submission(student_dir.name, files, submission_digest(files, _options(batch), fingerprint)))
    if not batch.submissions:
        raise BatchError(f"{batch.submissions_dir} holds no submission folders (one folder per student)")
    return batch


def clear_leftovers(batch: Batch) -> Batch:
    """Remove what a killed batch leaves behind: staging folders and unrenamed temporary files.
    (Reports and the gradebook themselves are never partial: each appears in one rename.)"""
    if batch.report_dir.is_dir():
        for leftover in [*batch.report_dir.glob(".*.json.*"), *batch.report_dir.glob(f".{GRADEBOOK}.*"),
                         *batch.report_dir.glob("*/.staging-*"), *batch.report_dir.glob("*/.*.json.*")]:
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
    return batch


def read_marker(report_dir: Path, student: str) -> dict | None:
    try:
        return json.loads((report_dir / student / MARKER).read_text())
    except (OSError, ValueError):
        return None


def skip_graded(batch: Batch) -> Batch:
    """Keep the finished reports whose hash still matches; the rest is the work to do."""
    for submission in batch.submissions:
        marker = read_marker(batch.report_dir, submission.student)
        if marker and marker.get("status") == "graded" and marker.get("digest") == submission.digest:
            batch.rows[submission.student] = marker
        else:
            batch.todo.append(submission)
    return batch


# --------------------------------------------------------------------------------------
# one submission (runs on a Dask worker)
# --------------------------------------------------------------------------------------


def grade_one(submission: Submission, report_dir: str, root: str, options: dict, timeout: float) -> dict:
    """Grade one submission with the grade command and install its reports; its marker.

    Runs on a Dask worker: `report_dir` and the submission's files must be on a filesystem the
    worker shares. A grade that fails or outlasts `timeout` yields a marker with status
    "error" or "timeout" and no reports; it is graded again by the next batch."""
    start = time.monotonic()
    target = Path(report_dir) / submission.student
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".staging-") as staging:
        tree, reports = Path(staging) / "impl", Path(staging) / "reports"
        tree.mkdir()
        for module, path in submission.files:
            shutil.copyfile(path, tree / f"{module}.py")
        command = [sys.executable, "-m", "graders", "grade", "--impl", str(tree), "--report", str(reports),
                   "--no-progress"]
        command += [a for c in options["chapters"] for a in ("--chapter", c)]
        command += [a for t in options["tasks"] for a in ("--task", t)]
        status, detail = _run(command, root, timeout)
        if status == "graded":
            grade = json.loads((reports / "grade.json").read_text())
            for name in ("grade.json", "results.json"):
                os.replace(reports / name, target / name)  # same filesystem: each file appears whole
    marker = {"student": submission.student, "digest": submission.digest, "status": status, "message": detail,
              "files": [f"{m}.py" for m, _ in submission.files], "seconds": round(time.monotonic() - start, 2)}
    if status == "graded":
        marker |= {"score": grade["score"], "max_score": grade["max_score"],
                   "chapters": {c["id"]: [c["score"], c["max_score"]] for c in grade["chapters"]},
                   "failed": [f"{c['id']}::{t['name']}" for c in grade["chapters"] for t in c["tests"]
                              if t["status"] != "passed"]}
    report.write_json(target / MARKER, marker)  # last: the marker says the reports beside it are complete
    return marker


# The grade command is started through this launcher, which asks Linux to kill it when the
# thread that started it dies (PR_SET_PDEATHSIG survives the exec): a batch killed with its
# workers leaves no grade running on, writing into a report folder the next batch is using.
_DIE_WITH_PARENT = """
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
if hasattr(libc, "prctl"):
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != int(sys.argv[1]):
        sys.exit(1)  # the parent died before the request
os.execv(sys.argv[2], sys.argv[2:])
"""


def _run(command: list[str], root: str, timeout: float) -> tuple[str, str]:
    """Run the grade command in its own process group; ("graded" | "error" | "timeout", detail)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    command = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *command]
    proc = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the grade and its sandboxed worker with it
        proc.communicate()
        return "timeout", f"grading did not finish within {timeout:.0f} s"
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-5:])
        return "error", f"the grader exited with code {proc.returncode}: {tail}"
    return "graded", ""


# --------------------------------------------------------------------------------------
# the cluster
# --------------------------------------------------------------------------------------


def _client(batch: Batch):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise BatchError("batch grading needs Dask: pip install 'dask[distributed]' "
                         "(nox -s grade-batch installs it)") from None
    if batch.scheduler:
        try:
            return Client(batch.scheduler, timeout="20s"), None
        except OSError as exc:
            raise BatchError(f"no Dask scheduler answered at {batch.scheduler}: {exc}") from None
    # Processes, one thread each: a grade is a subprocess already, and one per worker keeps
    # two grades from sharing a core's worth of timeouts.
    cluster = LocalCluster(n_workers=batch.workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=logging.ERROR)
    return Client(cluster), cluster


def grade_all(batch: Batch) -> Batch:
    """Submit every submission still to do; collect markers as they finish, with a progress bar.

    A task that dies with its worker (killed, out of memory) is retried by Dask on another
    worker a few times, then becomes an error row; the batch goes on."""
    start = time.monotonic()
    if batch.todo:
        from dask.distributed import as_completed

        client, cluster = _client(batch)
        bar = Progress(len(batch.todo), len(batch.rows), enabled=batch.progress)
        try:
            futures = {client.submit(grade_one, s, str(batch.report_dir.resolve()), str(chapters.ROOT),
                                     _options(batch), batch.timeout, key=f"grade-{s.student}-{s.digest[:12]}",
                                     pure=False): s for s in batch.todo}
            for future in as_completed(futures):
                submission = futures[future]
                try:
                    marker = future.result()
                except Exception as exc:  # noqa: BLE001 - a worker's death is this row's error, never the batch's
                    marker = {"student": submission.student, "digest": submission.digest, "status": "error",
                              "message": f"the Dask task failed: {type(exc).__name__}: {exc}"[:500]}
                batch.rows[submission.student] = marker
                bar.update(marker["status"] == "graded")
                write_gradebook(batch)  # after each row, so an interrupted batch leaves a current CSV
        finally:
            bar.close()
            client.close()
            if cluster is not None:
                cluster.close()
    batch.seconds = time.monotonic() - start
    return batch


class Progress:
    """graded / failed / left and the time left, on stderr; redrawn in place on a terminal."""

    def __init__(self, total: int, cached: int, enabled: bool = True) -> None:
        self.total, self.cached, self.enabled = total, cached, enabled
        self.done = self.failed = 0
        self.live = sys.stderr.isatty()
        self.began = time.monotonic()
        if enabled and cached:
            print(f"{cached} submission(s) already graded with these files and graders: skipped", file=sys.stderr)

    def update(self, graded: bool) -> None:
        self.done += 1
        self.failed += not graded
        if not self.enabled:
            return
        left = (time.monotonic() - self.began) / self.done * (self.total - self.done)
        line = (f"grading [{'#' * (30 * self.done // self.total):<30}] {self.done}/{self.total} "
                f"done, {self.failed} failed, ETA {left:.0f}s")
        if self.live:
            sys.stderr.write("\r" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.live:
            sys.stderr.write("\n")


# --------------------------------------------------------------------------------------
# the gradebook and the summary
# --------------------------------------------------------------------------------------


def gradebook_columns(batch: Batch) -> list[str]:
    """Chapter ids in course order: those any graded row has."""
    seen = {c for row in batch.rows.values() for c in row.get("chapters", {})}
    return [c.id for c in chapters.CHAPTERS if c.id in seen]


def gradebook_text(batch: Batch) -> str:
    columns = gradebook_columns(batch)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["student", *columns, "total", "max_score", "status", "message"])
    for student in sorted(batch.rows):
        row = batch.rows[student]
        scores = row.get("chapters", {})
        writer.writerow([student, *(f"{scores[c][0]:g}" if c in scores else "" for c in columns),
                         f"{row['score']:g}" if "score" in row else "",
                         f"{row['max_score']:g}" if "max_score" in row else "",
                         row["status"], row.get("message", "")])
    return out.getvalue()


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_gradebook(batch: Batch) -> Batch:
    _write_atomic(batch.report_dir / GRADEBOOK, gradebook_text(batch))
    return batch


def summary(batch: Batch, top: int = 10) -> dict:
    """Statuses, the distribution of total scores (in tenths of the maximum) and the tests
    most students fail: the teaching signal of a batch."""
    graded = [r for r in batch.rows.values() if r["status"] == "graded"]
    buckets = Counter(min(9, int(10 * r["score"] / r["max_score"])) if r["max_score"] else 0 for r in graded)
    failures = Counter(name for r in graded for name in r.get("failed", []))
    return {"submissions": len(batch.rows), "statuses": dict(Counter(r["status"] for r in batch.rows.values())),
            "graded_now": len(batch.todo), "seconds": round(batch.seconds, 1),
            "distribution": {f"{10 * b}-{10 * b + 10}%": buckets.get(b, 0) for b in range(10)},
            "most_failed": [{"test": name, "students": n, "share": round(n / len(graded), 3)}
                            for name, n in failures.most_common(top)]}


def show_summary(batch: Batch) -> Batch:
    facts = summary(batch)
    report.write_json(batch.report_dir / SUMMARY, facts)
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(facts["statuses"].items()))
    print(f"{facts['submissions']} submissions ({statuses}); graded {facts['graded_now']} now "
          f"in {facts['seconds']:.0f} s, the rest unchanged since their last grade")
    print("\ntotal score   students")
    width = max(facts["distribution"].values(), default=0) or 1
    for bucket, count in facts["distribution"].items():
        print(f"  {bucket:>8}  {count:>5}  {'#' * round(40 * count / width)}")
    if facts["most_failed"]:
        print("\nmost failed tests (students failing it)")
        for item in facts["most_failed"]:
            print(f"  {item['students']:>5} ({item['share']:.0%})  {item['test']}")
    errors = [r for r in batch.rows.values() if r["status"] != "graded"]
    for row in errors:
        print(f"\n{row['student']}: {row['status']}: {row.get('message', '')[:200]}")
    if errors:
        print(f"\n{len(errors)} submission(s) not graded; the next batch tries them again.")
    print(f"\ngradebook: {batch.report_dir / GRADEBOOK}; reports: {batch.report_dir}/<student>/grade.json")
    return batch


STEPS = (find_submissions, clear_leftovers, skip_graded, grade_all, write_gradebook, show_summary)


def run(batch: Batch) -> Batch:
    for step in STEPS:
        batch = step(batch)
    return batch
