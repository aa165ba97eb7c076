"""Batch grading for large courses: every submission of a folder, in parallel on Dask.

    STEPS = find_submissions, clear_leftovers, skip_graded, grade_all, write_gradebook, show_summary

Each step takes and returns the same `Batch`; the order is the only wiring.

A submission is one student's folder (an nbgrader ``submitted/`` tree, where each student has
one folder per assignment, or a Gradescope export, one folder per submission). Its course
modules are found by name anywhere inside it and copied into a flat tree, which one Dask task
grades with ``python -m graders grade``: the same command, sandbox and worker a student's own
``nox -s grade`` runs, so a batch gives every student the grade the single command would.

A student controls what lies in their folder, so nothing there is read but through
`safe_files`: links are never followed (a link named `feedforward.py` to the reference is
not the student's work), FIFOs and devices are never opened, and a module over
`safe_files.SOURCE_LIMIT_BYTES` is not read. Each refusal is a note in that student's row
(the gradebook's message column); the rest of their submission, and the batch, go on.

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
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

from graders import chapters, report
from graders.safe_files import COPY_DEPTH_LIMIT, SOURCE_LIMIT_BYTES, UnsafeFile, kind, read_regular, shown_name
from graders.student_text import LINE_LIMIT, MESSAGE_LIMIT, clean, clean_line

MARKER = "batch.json"  # per student: what was graded and how it ended; written last
GRADEBOOK = "gradebook.csv"
SUMMARY = "batch_summary.json"
DEFAULT_TIMEOUT_S = 1800.0  # one submission, every chapter: a backstop far above a full grade's minutes
SKIPPED_DIRS = {"__pycache__", ".ipynb_checkpoints", ".git"}
# Entries looked at in one student's folder: a submission is a notebook and a few modules per
# assignment (tens of files); a folder of more than 10000 is not one, and searching it all
# would slow every batch that holds it.
WALK_ENTRY_LIMIT = 10_000


class BatchError(RuntimeError):
    """The batch itself cannot run (a missing folder, no Dask, no scheduler)."""


@dataclass(frozen=True)
class Submission:
    student: str
    files: tuple[tuple[str, Path], ...]  # (module name, file) for each course module found
    digest: str  # sha256 of the files, the grading options and the graders' code
    root: Path | None = None  # the student's folder: no link below it is followed when a file is read
    notes: tuple[str, ...] = ()  # what the grader would not read there, and why


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


def collect_files(student_dir: Path) -> tuple[tuple[tuple[str, Path], ...], tuple[str, ...]]:
    """(module, file) for every course module found anywhere in `student_dir`, and a note for
    each link (never followed) and each special file named like a module (never opened)."""
    modules = {m for c in chapters.CHAPTERS for m in c.modules}
    found: dict[str, list[Path]] = {}
    notes: list[str] = []
    seen = 0
    pending = deque([student_dir])
    while pending:
        folder = pending.popleft()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            notes.append(f"{_relative(folder, student_dir)} could not be listed ({exc.strerror})")
            continue
        for entry in entries:
            seen += 1
            path = Path(entry.path)
            if seen > WALK_ENTRY_LIMIT:
                notes.append(f"the folder holds over {WALK_ENTRY_LIMIT} entries; {_relative(path, student_dir)} "
                             "and the rest were not searched")
                pending.clear()
                break
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError:
                continue  # removed since the listing
            if stat.S_ISLNK(mode):
                notes.append(f"{_relative(path, student_dir)} is a symbolic link; the grader does not follow it")
            elif stat.S_ISDIR(mode):
                if entry.name not in SKIPPED_DIRS and len(path.relative_to(student_dir).parts) < COPY_DEPTH_LIMIT:
                    pending.append(path)
            elif entry.name.endswith(".py") and entry.name[:-3] in modules:
                if stat.S_ISREG(mode):
                    found.setdefault(entry.name[:-3], []).append(path)
                else:
                    notes.append(f"{_relative(path, student_dir)} is {kind(mode)}; the grader reads only regular files")
    return tuple((m, _pick(m, paths, student_dir)) for m, paths in sorted(found.items())), tuple(notes)


def _relative(path: Path, root: Path) -> str:
    return shown_name(path.relative_to(root).as_posix()) if path != root else "the folder"


def read_files(files: tuple[tuple[str, Path], ...],
               root: Path | None) -> tuple[list[tuple[str, Path, bytes]], list[str]]:
    """Each module's bytes, read without following links below `root` (default: each file's
    folder); a note for each file refused."""
    read, notes = [], []
    for module, path in files:
        try:
            read.append((module, path, read_regular(path, SOURCE_LIMIT_BYTES, root=root)))
        except UnsafeFile as exc:
            notes.append(str(exc))
        except OSError as exc:
            notes.append(f"{_relative(path, root or path.parent)} could not be read ({exc.strerror})")
    return read, notes


def graders_fingerprint() -> str:
    """A hash of everything that decides a grade besides the student's files: the graders'
    code, suites and snapshots, and the reference the hidden tests compare against."""
    digest = hashlib.sha256()
    for folder in (chapters.GRADERS, chapters.REFERENCE):
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            digest.update(str(path.relative_to(chapters.ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def submission_digest(contents: list[tuple[str, bytes]], notes: list[str] | tuple[str, ...], options: dict,
                      fingerprint: str) -> str:
    """The hash that says whether a finished report still holds: the modules' bytes, what was
    refused, the grading options and the graders' fingerprint."""
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode() + fingerprint.encode())
    for module, data in contents:
        digest.update(module.encode() + b"\0" + data + b"\0")
    for note in notes:
        digest.update(note.encode("utf-8", "replace") + b"\0")
    return digest.hexdigest()


def _options(batch: Batch) -> dict:
    return {"chapters": sorted(batch.chapters), "tasks": sorted(batch.tasks)}


def find_submissions(batch: Batch) -> Batch:
    """One `Submission` per folder of `submissions_dir` (hidden folders aside), sorted by name."""
    if not batch.submissions_dir.is_dir():
        raise BatchError(f"{batch.submissions_dir} is not a folder of submissions")
    fingerprint = graders_fingerprint()
    for student_dir in sorted(p for p in batch.submissions_dir.iterdir() if not p.name.startswith(".")):
        mode = student_dir.lstat().st_mode
        if stat.S_ISLNK(mode):  # the folder itself: graded as empty, with the reason
            notes = [f"{shown_name(student_dir.name)} is a symbolic link; the grader does not follow it"]
            digest = submission_digest([], notes, _options(batch), fingerprint)
            batch.submissions.append(Submission(student_dir.name, (), digest, None, tuple(notes)))
            continue
        if not stat.S_ISDIR(mode):
            continue
        files, notes = collect_files(student_dir)
        read, refused = read_files(files, student_dir)
        notes = [*notes, *refused]
        digest = submission_digest([(m, data) for m, _, data in read], notes, _options(batch), fingerprint)
        batch.submissions.append(Submission(student_dir.name, tuple((m, p) for m, p, _ in read), digest,
                                            student_dir, tuple(notes)))
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
    "error" or "timeout" and no reports; it is graded again by the next batch. The files are
    read again here, through `safe_files`: what was refused, and why, is the marker's message."""
    start = time.monotonic()
    target = Path(report_dir) / submission.student
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".staging-") as staging:
        tree, reports = Path(staging) / "impl", Path(staging) / "reports"
        tree.mkdir()
        read, refused = read_files(submission.files, submission.root)
        notes = list(dict.fromkeys([*submission.notes, *refused]))
        for module, _, data in read:
            (tree / f"{module}.py").write_bytes(data)
        command = [sys.executable, "-m", "graders", "grade", "--impl", str(tree), "--report", str(reports),
                   "--no-progress"]
        command += [a for c in options["chapters"] for a in ("--chapter", c)]
        command += [a for t in options["tasks"] for a in ("--task", t)]
        status, detail = _run(command, root, timeout)
        if status == "graded":
            grade = json.loads((reports / "grade.json").read_text())
            for name in ("grade.json", "results.json"):
                os.replace(reports / name, target / name)  # same filesystem: each file appears whole
    message = "\n".join(part for part in (detail, "; ".join(notes)) if part)
    marker = {"student": submission.student, "digest": submission.digest, "status": status,
              "message": clean(message, MESSAGE_LIMIT), "files": [f"{m}.py" for m, _, _ in read],
              "seconds": round(time.monotonic() - start, 2)}
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
                              "message": clean(f"the Dask task failed: {type(exc).__name__}: {exc}", 500)}
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
        writer.writerow([clean_line(student), *(f"{scores[c][0]:g}" if c in scores else "" for c in columns),
                         f"{row['score']:g}" if "score" in row else "",
                         f"{row['max_score']:g}" if "max_score" in row else "",
                         clean_line(row["status"]), clean(row.get("message", ""), MESSAGE_LIMIT)])
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
            print(f"  {item['students']:>5} ({item['share']:.0%})  {clean_line(item['test'])}")
    errors = [r for r in batch.rows.values() if r["status"] != "graded"]
    for row in errors:
        print(f"\n{clean_line(row['student'])}: {clean_line(row['status'])}: {clean_line(row.get('message', ''))}")
    noted = [r for r in batch.rows.values() if r["status"] == "graded" and r.get("message")]
    for row in noted:
        print(f"\n{clean_line(row['student'])}: graded without what it could not read: "
              f"{clean_line(row['message'], LINE_LIMIT)}")
    if errors:
        print(f"\n{len(errors)} submission(s) not graded; the next batch tries them again.")
    print(f"\ngradebook: {batch.report_dir / GRADEBOOK}; reports: {batch.report_dir}/<student>/grade.json")
    return batch


STEPS = (find_submissions, clear_leftovers, skip_graded, grade_all, write_gradebook, show_summary)


def run(batch: Batch) -> Batch:
    for step in STEPS:
        batch = step(batch)
    return batch
