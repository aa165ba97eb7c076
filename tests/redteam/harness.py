"""Grading a hostile tree and watching the grader from outside, for `tests/test_redteam.py`.

`grade_cli` runs `python -m graders grade` on chapter 02's `softmax` task and the canary
`causal_mask`, either through the suite's fork server (`tests.conftest.run_cli`, the cheap
path) or as a real process, optionally as the ordinary user of `as_user`. A real process is
watched while it runs: its peak resident memory (VmHWM), the host's free memory, the host's
/dev/pts listing and every process below it, so a test can assert on what the attack cost
the machine, not only on the report. Whatever the grade leaves running is killed by pid.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REFERENCE, ROOT, run_cli
from tests.redteam import as_user

CHAPTER = "2"
TASKS = ("softmax", "causal_mask")  # the attacked task and a canary it leaves alone
SOFTMAX_PREFIX, CANARY_PREFIX = "test_softmax", "test_causal_mask"
MiB, GiB = 2**20, 2**30
WHO = ("root", "user")


def token(label: str) -> str:
    """A string that appears nowhere unless this run put it there."""
    return f"rt{label}{secrets.token_hex(10)}"


# --- where to plant things outside the repository and outside /tmp ---------------------------


def host_folder() -> Path | None:
    """A fresh folder outside the repository and outside /tmp (the worker's view of /tmp is
    its own), readable by everyone: under /srv, else beside the repository. None: nothing is
    writable there (the caller skips)."""
    for parent in (Path("/srv"), ROOT.parent, Path("/var/tmp"), Path("/opt")):
        try:
            folder = parent / f"redteam-{secrets.token_hex(6)}"
            folder.mkdir()
        except OSError:
            continue
        folder.chmod(0o755)
        return folder
    return None


def public_folder(prefix: str) -> Path:
    """A folder every user can read and traverse (pytest's tmp_path is root's alone)."""
    folder = Path(f"/tmp/{prefix}-{secrets.token_hex(6)}")
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    return folder


def make_readable(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)


def give_to(path: Path, who: str) -> None:
    """Make `path` (and what is below it) the grading user's own."""
    uid = as_user.USER_UID if who == "user" else os.geteuid()
    gid = as_user.USER_GID if who == "user" else os.getegid()
    for p in [path, *path.rglob("*")]:
        os.lchown(p, uid, gid)


# --- running the grader ------------------------------------------------------------------------


@dataclass
class Graded:
    """One grade run, seen from outside."""

    report: Path
    returncode: int | None  # None: it outlasted the test's limit and was killed
    stdout: str
    stderr: str
    seconds: float
    peak_rss: int | None = None  # bytes, the grader process's own high-water mark (real runs only)
    mem_drop: int | None = None  # how far the host's MemAvailable fell below its start value (real runs only)
    pts_seen: set[str] = field(default_factory=set)  # /dev/pts entries that appeared during the run
    descendants: dict[int, str] = field(default_factory=dict)  # pid -> start time, every process below it
    survivors: dict[int, str] = field(default_factory=dict)  # pid -> command line: still running after it exited

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    @property
    def grade(self) -> dict | None:
        try:
            return json.loads((self.report / "grade.json").read_text())
        except (OSError, ValueError):
            return None

    def files_text(self) -> str:
        """Every report file's raw text (grade.json, results.json, whatever else it wrote)."""
        texts = []
        if self.report.is_dir():
            for path in sorted(self.report.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    texts.append(path.read_bytes().decode("utf-8", "replace"))
        return "\n".join(texts)

    def everything(self) -> str:
        """All the grade showed anyone: stdout, stderr and every report file, decoded, plus the
        JSON strings decoded (so an escaped \\u001b or \\uXXXX is seen as the character)."""
        parts = [self.stdout, self.stderr, self.files_text()]
        for name in ("grade.json", "results.json"):
            try:
                parts.extend(json_strings(json.loads((self.report / name).read_text())))
            except (OSError, ValueError):
                pass
        return "\n".join(parts)

    def tests(self) -> list[dict]:
        grade = self.grade or {}
        return [t for c in grade.get("chapters", []) for t in c.get("tests", [])]

    def statuses(self, prefix: str) -> dict[str, str]:
        return {t["name"]: t["status"] for t in self.tests() if t["name"].startswith(prefix)}

    def messages(self) -> str:
        return "\n".join(t.get("message", "") for t in self.tests())

    def describe(self) -> str:
        lines = [f"exit {self.returncode} after {self.seconds:.1f} s"]
        for test in self.tests():
            lines.append(f"  {test['name']}: {test['status']}: {test.get('message', '')[:300]!r}")
        if not self.tests():
            lines.append(f"stdout: {self.stdout[-1500:]!r}\nstderr: {self.stderr[-1500:]!r}")
        return "\n".join(lines)


def json_strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*json_strings(k), *json_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in json_strings(v)]
    return []


def grade_args(tree: Path, report: Path, tasks: tuple[str, ...] = TASKS) -> list[str]:
    return ["grade", "--impl", str(tree), "--report", str(report), "--no-progress", "--chapter", CHAPTER,
            *(a for t in tasks for a in ("--task", t))]


def grade_cli(tree: Path, report: Path, *, tasks: tuple[str, ...] = TASKS, env: dict | None = None, who: str = "root",
              real: bool = False, timeout: float = 180, session_key: str | None = None, terminal: int | None = None,
              on_start=None) -> Graded:
    """Grade `tree` into `report`; a real process when `real`, `who` is "user", a keyring or a
    terminal is asked for, else the fork server. `terminal`: a pty slave fd that becomes the
    grader's controlling terminal, stdin, stdout and stderr."""
    args = grade_args(tree, report, tasks)
    if who == "root" and not real and session_key is None and terminal is None:
        start = time.monotonic()
        try:
            done = run_cli(*args, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as exc:
            reap(tree)
            return Graded(report, None, _text(exc.stdout), _text(exc.stderr), time.monotonic() - start)
        finally:
            reap(tree)
        return Graded(report, done.returncode, done.stdout, done.stderr, time.monotonic() - start)
    return run_real([sys.executable, "-m", "graders", *args], report, tree=tree, env=env, who=who, timeout=timeout,
                    session_key=session_key, terminal=terminal, on_start=on_start)


def run_real(argv: list[str], report: Path, *, tree: Path | None = None, env: dict | None = None,
             who: str = "root", timeout: float = 180, session_key: str | None = None,
             terminal: int | None = None, on_start=None) -> Graded:
    """`argv` as a real process from the repository root, watched until it ends or `timeout`."""
    if who == "user" or session_key is not None:
        argv = as_user.command(argv, root=who == "root", session_key=session_key, cwd=str(ROOT))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")} | (env or {})
    if terminal is not None:
        def make_terminal():
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # after the setsid of start_new_session
        io = {"stdin": terminal, "stdout": terminal, "stderr": terminal, "preexec_fn": make_terminal}
    else:
        io = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    pts_before = set(_pts())
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, start_new_session=True, **io)
    watcher = Watcher(proc.pid, pts_before)
    watcher.start()
    if on_start is not None:
        on_start(proc, watcher)
    survivors: dict[int, str] = {}
    try:
        out, err = proc.communicate(timeout=timeout)
        code = proc.returncode
        watcher.poll()
        wait_until = time.monotonic() + 3  # what the grader started dies with it, within moments
        while (survivors := watcher.still_alive()) and time.monotonic() < wait_until:
            time.sleep(0.1)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        code = None
    finally:
        watcher.stop()
        watcher.kill_all()
        if tree is not None:
            reap(tree)
    return Graded(report, code, _text(out), _text(err), time.monotonic() - start, peak_rss=watcher.peak_rss,
                  mem_drop=watcher.start_available - watcher.min_available, pts_seen=watcher.pts_seen,
                  descendants=dict(watcher.seen), survivors={pid: _cmdline(pid) for pid in survivors})


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")[:200]
    except OSError:
        return ""


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# --- watching from outside ---------------------------------------------------------------------


def _pts() -> list[str]:
    try:
        return os.listdir("/dev/pts")
    except OSError:
        return []


def mem_available() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def proc_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of `pid`, or None once it is gone."""
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[1]), fields[19])


def alive(pid: int, started: str) -> bool:
    """Whether `pid` is still the process that started at `started` (and not a zombie)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[19] == started and fields[0] != "Z"


def descendants_of(root_pid: int) -> dict[int, str]:
    """pid -> start time of every live process below `root_pid`."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            info = proc_stat(int(entry))
            if info:
                parents.setdefault(info[0], []).append(int(entry))
                starts[int(entry)] = info[1]
    found, todo = {}, [root_pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found[child] = starts[child]
                todo.append(child)
    return found


class Watcher(threading.Thread):
    """Polls a running grader: its VmHWM, the host's MemAvailable, new /dev/pts entries and the
    processes below it (remembered, so what it leaves behind can be found and killed)."""

    def __init__(self, pid: int, pts_before: set[str], interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.pts_before = pts_before
        self.peak_rss: int | None = None
        self.start_available = self.min_available = mem_available()
        self.pts_seen: set[str] = set()
        self.seen: dict[int, str] = {}
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        rounds = 0
        while not self._halt.is_set():
            self.poll(full=rounds % 4 == 0)
            rounds += 1
            self._halt.wait(self.interval)

    def poll(self, full: bool = True) -> None:
        try:
            with open(f"/proc/{self.pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        self.peak_rss = max(self.peak_rss or 0, int(line.split()[1]) * 1024)
        except OSError:
            pass
        self.min_available = min(self.min_available, mem_available())
        self.pts_seen |= set(_pts()) - self.pts_before
        if full:
            found = descendants_of(self.pid)
            with self._lock:
                self.seen.update(found)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def still_alive(self) -> dict[int, str]:
        with self._lock:
            return {pid: s for pid, s in self.seen.items() if alive(pid, s)}

    def kill_all(self) -> None:
        """SIGKILL every process seen below the grader that still runs (each by its pid)."""
        for pid, started in self.still_alive().items():
            if alive(pid, started):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def processes_mentioning(text: str) -> dict[int, str]:
    """pid -> start time of every process whose command line contains `text` (not this one)."""
    found = {}
    needle = text.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if needle in handle.read():
                    info = proc_stat(int(entry))
                    if info:
                        found[int(entry)] = info[1]
        except OSError:
            continue
    return found


def reap(tree: Path) -> None:
    """Kill what a grade of `tree` left running: processes whose command line names the tree
    (a worker that outlived its grader, on a grader without the fix). Each by its pid."""
    for pid, started in processes_mentioning(str(tree)).items():
        if alive(pid, started):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


# --- trees ------------------------------------------------------------------------------------


def student_tree(folder: Path, source: str | None, *, name: str = "impl") -> Path:
    """A copy of the reference tree in `folder/name` with multi_head_attention.py = `source`
    (None: leave it out, the caller puts something else there), readable by everyone."""
    import shutil

    tree = folder / name
    shutil.copytree(REFERENCE, tree, ignore=shutil.ignore_patterns("__pycache__"))
    target = tree / "multi_head_attention.py"
    target.unlink()
    if source is not None:
        target.write_text(source)
    make_readable(tree)
    return tree


def report_folder(folder: Path, who: str, name: str = "report") -> Path:
    report = folder / name
    report.mkdir()
    give_to(report, who)
    return report
