"""The trusted side of the worker: start the child, call it, restart it, bound it.

A `Submission` is one student tree and the modules of one chapter. It keeps one child alive
across a chapter's tests; a death (exit, signal, timeout, limit) becomes the current test's
failure with a clear status, and the next test starts a fresh child. Within one test, a death
is remembered and re-raised at once, so Hypothesis replaying examples never waits on a hang twice.

The call layer is deliberately narrow (CS336's adapters): call a module-level function, or
build a class from keyword arguments, load a `state_dict`, run a few calls on it, and get
outputs, gradients and a few attributes back. Suites never see more of the student's design.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from graders import _sandbox, safe_files, student_text, wire

CHILD = Path(__file__).with_name("_child.py")
OUTPUT_TAIL_BYTES = 2000  # how much of the student's own stdout/stderr a message quotes
CALL_TIMEOUT_S = 10.0  # a single call on the course's small shapes takes milliseconds
SHORT_TIMEOUT_S = 2.0  # after repeated hangs, stop waiting long for each call
HANGS_BEFORE_SHORT = 2
BOOT_TIMEOUT_S = 120.0  # importing torch on a loaded 2-core machine
MEMORY_LIMIT_BYTES = int(os.environ.get("GRADERS_MEMORY_LIMIT", 4 * 2**30))  # address space; torch needs ~1 GiB
CPU_LIMIT_S = 600  # a backstop; per-call timeouts do the real work
FILE_LIMIT_BYTES = 64 * 2**20  # caps any one file the student's code writes in its scratch folder
OUTPUT_KEEP_BYTES = 64 * 2**10  # of the child's stdout and stderr, the grader keeps only the last 64 KiB
SANDBOX = os.environ.get("GRADERS_SANDBOX", "auto")  # auto | namespaces | basic (see _sandbox.py)
SANDBOX_TOOL = os.environ.get("GRADERS_SANDBOX_TOOL", "auto")  # auto | bubblewrap | graders
# What the worker sends about an exception, as the trusted side keeps it: a student's class
# name or message can be megabytes (or escape codes), and each lands in every report.
TYPE_NAME_CHARS = 200
MESSAGE_CHARS = 2000
TRACEBACK_CHARS = 4000
MRO_ENTRIES = 64
WORKER_FILES = ("_child.py", "_sandbox.py", "_bans.py")  # the worker's own code, shown to it beside the student tree


def temp_prefix() -> str:
    """Temporary folders' name prefix: it names the grader's pid, so a stale one names its dead grader."""
    return f"graders-{os.getpid()}-"


# --- what can go wrong, and the status each maps to ---------------------------------------


class SubmissionError(Exception):
    """Student code could not produce an answer. `status` is the test's reported status."""

    status = "error"


class StudentRaised(SubmissionError):
    """The student's code raised an exception: an ordinary failed test."""

    status = "failed"

    def __init__(self, info: dict) -> None:
        self.type = student_text.clean(info.get("type", "Exception"), TYPE_NAME_CHARS)
        mro = info.get("mro", ())
        self.mro = tuple(student_text.clean(c, TYPE_NAME_CHARS) for c in mro[:MRO_ENTRIES]) if isinstance(mro, list) \
            else ()
        self.detail = student_text.clean(info.get("message", ""), MESSAGE_CHARS)
        self.where = student_text.clean(info.get("traceback", ""), TRACEBACK_CHARS)
        super().__init__(self._describe())

    def _describe(self) -> str:
        if self.type == "NotImplementedError":
            return f"not implemented yet: {self.detail}".rstrip(": ")
        text = f"your code raised {self.type}: {self.detail}"
        return text + (f"\n{self.where.rstrip()}" if self.where else "")

    def is_a(self, name: str) -> bool:
        return name in self.mro


class BannedCall(StudentRaised):
    """The student's code called an API its chapter bans (caught in the worker, at run time)."""

    def _describe(self) -> str:
        return f"{self.detail} (caught when your code called it)"


class WorkerCrashed(SubmissionError):
    status = "error"


class WorkerTimeout(SubmissionError):
    status = "timeout"


class ImportFailed(SubmissionError):
    status = "error"


class BadReply(SubmissionError):
    status = "error"


# --- the call layer -----------------------------------------------------------------------


def obj(name: str) -> dict:
    """A reference, inside a request's arguments, to an object built by the same request."""
    return {"$obj": name}


@dataclass
class Result:
    outputs: list  # one entry per call, as returned by the student's code
    input_grads: dict = field(default_factory=dict)  # "0", "1", ... or keyword -> grad
    param_grads: dict = field(default_factory=dict)  # parameter name -> grad
    attrs: dict = field(default_factory=dict)
    state_dict_shapes: dict = field(default_factory=dict)
    parameter_shapes: dict = field(default_factory=dict)  # named_parameters(): a tied tensor once

    @property
    def output(self) -> Any:
        """The first call's output (the common case of one call)."""
        return self.outputs[0]


class Submission:
    """A student tree and the modules of one chapter, behind a worker process."""

    def __init__(self, impl: Path, modules: tuple[str, ...], *, uses: tuple[str, ...] = (),
                 call_timeout: float = CALL_TIMEOUT_S, sandbox: str = SANDBOX,
                 banned: tuple[str, ...] = (), tool: str = SANDBOX_TOOL) -> None:
        self.impl = Path(impl).resolve()
        self.modules = tuple(modules)
        # Modules of earlier chapters some tests call too (chapter 03 runs chapter 02's attention).
        # If one does not import, only the requests that name it fail, not the whole chapter.
        self.uses = tuple(m for m in uses if m not in self.modules)
        self.call_timeout = call_timeout
        self.hangs = 0
        self.banned = tuple(banned)  # the chapter's banned APIs, refused in the worker at run time too
        self.sandbox_mode = sandbox
        self.sandbox_tool = tool
        self.budget: float | None = None  # seconds for the whole chapter (`start_budget`)
        self._deadline: float | None = None
        self._copy_notes: list[str] = []  # what the copy of the student tree left out, and why
        self.sandbox: dict = {}  # how the last child was confined, as it reported at boot
        self._proc: subprocess.Popen | None = None
        self._scratch: tempfile.TemporaryDirectory | None = None
        self._copy: tempfile.TemporaryDirectory | None = None
        self._taps: dict[str, _Tap] = {}
        self._requests = 0
        self._import_error: ImportFailed | None = None
        self._poison: SubmissionError | None = None  # a death in the current test

    def __repr__(self) -> str:
        return f"Submission({self.impl.name}/{', '.join(m + '.py' for m in self.modules)})"

    # public API used by the suites -----------------------------------------------------

    def call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        """Call the module-level function `fn` and return its output."""
        return self.run(calls=[{"fn": fn, "args": list(args), "kwargs": kwargs}]).output

    def call_with_grad(self, fn: str, args: tuple, kwargs: dict, *, upstream: torch.Tensor,
                       output: tuple[int, ...] = (), wrt: tuple = (0,)) -> Result:
        """Call `fn`, then backpropagate `upstream` from `output` (an index path into the result)."""
        return self.run(calls=[{"fn": fn, "args": list(args), "kwargs": kwargs}],
                        grad={"call": 0, "output": list(output), "upstream": upstream, "wrt": list(wrt)})

    def module(self, cls: str, init: dict, *, state_dict: dict | None = None, calls: list[dict],
               train: bool = False, objects: dict | None = None, upstream: torch.Tensor | None = None,
               grad_call: int = 0, output: tuple[int, ...] = (0,), wrt: tuple = (0,),
               attrs: tuple[str, ...] = (), seed: int | None = 0, state_dict_shapes: bool = False,
               parameter_shapes: bool = False, dtype: torch.dtype = torch.float32, module: str | None = None) -> Result:
        """Build `cls(**init)`, load `state_dict`, run `calls` on it (`fn` like `self.forward`).

        `objects` builds more objects by name first (e.g. `{"cache": {"cls": "KVCache"}}`), which
        call arguments reach with `obj("cache")`; `dtype=torch.float64` converts the module with
        `.double()`; `upstream` backpropagates from `output` of call `grad_call`; `module` names
        the module `cls` comes from when it is not the chapter's own (an object spec takes a
        "module" key the same way).
        """
        grad = None
        if upstream is not None:
            grad = {"call": grad_call, "output": list(output), "upstream": upstream, "wrt": list(wrt)}
        build = {"cls": cls, "init": init, "state_dict": state_dict, "train": train,
                 "double": dtype == torch.float64, "module": module}
        return self.run(build=build,
                        calls=calls, objects=objects or {}, grad=grad, attrs=list(attrs), seed=seed,
                        state_dict_shapes=state_dict_shapes, parameter_shapes=parameter_shapes)

    def run(self, **request: Any) -> Result:
        """Send one request to the child (starting it if needed) and return its checked result."""
        if self._poison is not None:
            raise _fresh(self._poison)
        if self._deadline is not None and time.monotonic() >= self._deadline:
            raise WorkerTimeout(self._budget_spent())
        self._ensure_started()
        request.setdefault("module", self.modules[0])
        request.setdefault("seed", 0)  # every call starts from the same RNG state: deterministic dropout
        self._requests += 1
        request["id"] = self._requests
        try:
            reply = self._roundtrip(request, self._timeout())
        except SubmissionError as exc:
            self._poison = exc
            raise
        for tap in self._taps.values():
            tap.catch_up()  # what the call printed is all in the pipes by now (the child is unbuffered)
        if not reply["ok"]:
            raise self._student_failure(reply)
        outputs = reply.get("outputs", [])
        _reject_unsupported(outputs)
        grads = reply.get("grads") or {}
        return Result(outputs=list(outputs), input_grads=grads.get("inputs", {}), param_grads=grads.get("params", {}),
                      attrs=reply.get("attrs", {}), state_dict_shapes=reply.get("state_dict_shapes", {}),
                      parameter_shapes=reply.get("parameter_shapes", {}))

    def begin_test(self) -> None:
        """Forget the previous test's death; the next call starts a fresh child if needed."""
        self._poison = None
        self._output_mark = (self._taps, self._output_sizes())

    def output_during_test(self) -> str:
        """What the student's code printed since `begin_test` (its tail, cleaned of control bytes)."""
        taps, sizes = getattr(self, "_output_mark", (None, {}))
        if self._taps is not taps:
            sizes = {}  # a fresh child since the test began: all of its output is this test's
        return self._output_tail(sizes)

    def _output_sizes(self) -> dict[str, int]:
        return {name: tap.total for name, tap in self._taps.items()}

    def close(self) -> None:
        self._kill()
        if self._copy is not None:
            self._copy.cleanup()
            self._copy = None

    def start_budget(self, seconds: float) -> None:
        """Give the whole chapter `seconds` of wall time from now (the first call only counts):
        each call waits at most what is left, and once it is spent every call is a timeout."""
        if self._deadline is None:
            self.budget = seconds
            self._deadline = time.monotonic() + seconds

    def _budget_spent(self) -> str:
        return (f"this chapter's time budget of {self.budget:.0f} s is spent (a correct solution takes a "
                "fraction of it): the tests that were still to run are timeouts; make each call faster")

    # the child's life --------------------------------------------------------------------

    def _timeout(self) -> float:
        timeout = self.call_timeout if self.hangs < HANGS_BEFORE_SHORT else min(self.call_timeout, SHORT_TIMEOUT_S)
        if self._deadline is not None:
            timeout = max(0.0, min(timeout, self._deadline - time.monotonic()))
        return timeout

    def _ensure_started(self) -> None:
        if self._import_error is not None:
            raise _fresh(self._import_error)
        if self._proc is not None and self._proc.poll() is None:
            return
        self._kill()
        self._start()

    def _start(self) -> None:
        sweep_stale()
        _start_janitor()
        self._scratch = tempfile.TemporaryDirectory(prefix=temp_prefix() + "worker-")
        scratch = Path(self._scratch.name)
        student = self._student_copy()
        basic = self.sandbox_mode == "basic"
        tool = "graders" if basic else _sandbox.choose_tool(self.sandbox_tool)
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        config = {
            "request_fd": req_r,
            "reply_fd": rep_w,
            "grader_pid": os.getpid(),
            "student_dir": str(student),
            "student_shown": str(self.impl),
            "modules": list(self.modules),
            "uses": list(self.uses),
            "banned": list(self.banned),
            "limits": {"RLIMIT_AS": MEMORY_LIMIT_BYTES, "RLIMIT_CPU": CPU_LIMIT_S, "RLIMIT_FSIZE": FILE_LIMIT_BYTES,
                       "RLIMIT_CORE": 0},
            "sandbox": _sandbox.plan(mode=self.sandbox_mode, tool=tool, copy_root=str(student.parent),
                                     scratch=str(scratch), uid=_next_uid()),
        }
        env = _sandbox.environment(os.environ, home=str(scratch) if basic else _sandbox.WORKDIR)
        command = [sys.executable, "-I", "-u", str(student.parent / "worker" / "_child.py"), json.dumps(config)]
        if tool == "bubblewrap" and not basic:
            command = _sandbox.bwrap_command(config["sandbox"]) + command
        self._proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, cwd=scratch, env=env,
            pass_fds=(req_r, rep_w),
            # Basic mode has no PID namespace: its own session keeps a student's killpg(0) off the
            # grader. The namespaces need none (the grader's group is invisible from inside), and
            # staying in the grader's group lets whoever kills that group kill the worker too.
            start_new_session=basic,
        )
        for fd in (req_r, rep_w, out_w, err_w):
            os.close(fd)
        os.set_blocking(req_w, False)  # every write to the worker has a deadline (`_send`)
        self._taps = {"stdout": _Tap(out_r), "stderr": _Tap(err_r)}
        self._req_w, self._rep_r = req_w, rep_r
        booted = self._expect_phase("booted", BOOT_TIMEOUT_S)
        self.sandbox = _boot_report(booted.get("sandbox", {}))
        imported = self._expect_phase("imported", self._timeout())
        reports = imported.get("imports")
        if not isinstance(reports, dict):
            raise BadReply("the worker's import report is not a record")
        failures = {name: info for name, info in reports.items()
                    if isinstance(info, dict) and name in self.modules}
        if failures:
            self._import_error = ImportFailed(_describe_import_failure(failures, self._copy_notes))
            self._kill()
            raise self._import_error

    def _student_copy(self) -> Path:
        """A private, world-readable copy of the student's tree, made once, with the worker's own
        source files beside it: the worker imports this copy, so it never needs to see where the
        tree lies (often inside the repository). Only regular files are copied, never through a
        link (`safe_files.copy_tree`); what was left out is kept for the import error's message."""
        if self._copy is None:
            self._copy = tempfile.TemporaryDirectory(prefix=temp_prefix() + "student-")
            root = Path(self._copy.name)
            root.chmod(0o755)
            self._copy_notes = safe_files.copy_tree(self.impl, root / "student")
            (root / "worker").mkdir(mode=0o755)
            for name in WORKER_FILES:
                shutil.copyfile(CHILD.with_name(name), root / "worker" / name)
                (root / "worker" / name).chmod(0o644)
        return Path(self._copy.name) / "student"

    def _expect_phase(self, phase: str, timeout: float) -> dict:
        try:
            reply = self._receive(timeout, 0)
        except WorkerTimeout:
            if phase == "imported" and self._deadline is not None and time.monotonic() >= self._deadline:
                raise WorkerTimeout(self._budget_spent()) from None
            if phase == "imported":  # a hang at import: every test of the chapter would hang
                self._import_error = ImportFailed(
                    f"importing {', '.join(self.modules)} did not finish within {timeout:.0f} s "
                    "(an infinite loop or a long computation at module level?)")
                raise self._import_error from None
            raise
        except WorkerCrashed as exc:
            if phase == "imported":
                self._import_error = ImportFailed(f"importing your module killed the worker: {exc}")
                raise self._import_error from None
            raise
        if reply.get("phase") != phase:
            raise BadReply(f"the worker said {reply.get('phase')!r} where {phase!r} was expected")
        return reply

    def _roundtrip(self, request: dict, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        payload = wire.encode_request(request)
        frame = wire.HEADER.pack(len(payload), request["id"]) + payload
        try:
            _write_before(self._req_w, frame, deadline)
        except TimeoutError:
            self._kill()
            raise self._timed_out("the worker stopped reading the grader's requests", timeout) from None
        except OSError:
            raise self._death() from None
        return self._receive(max(0.0, deadline - time.monotonic()), request["id"])

    def _receive(self, timeout: float, ident: int) -> dict:
        """The next reply, which must answer request `ident` (0: a boot report): its header is
        checked (size, id) before its payload is read, its archive before it is decoded."""
        deadline = time.monotonic() + timeout
        ready, _, _ = select.select([self._rep_r], [], [], timeout)
        if not ready:
            self.hangs += 1
            self._kill()
            raise self._timed_out("no answer", timeout)
        try:
            size, got = wire.HEADER.unpack(_read_exact_before(self._rep_r, wire.HEADER_SIZE, deadline))
            if got != ident:
                self._kill()
                raise BadReply("the worker's answers are out of order (did your code write to the grader's pipe?)")
            if size > wire.MAX_REPLY_BYTES:
                self._kill()
                raise BadReply(f"the worker broke the protocol: a reply of {size} bytes exceeds the limit of "
                               f"{wire.MAX_REPLY_BYTES}")
            payload = _read_exact_before(self._rep_r, size, deadline)
        except TimeoutError:
            self._kill()
            raise self._timed_out("the answer did not arrive", timeout) from None
        except (EOFError, OSError):
            raise self._death() from None
        try:
            return wire.decode_reply(payload)
        except wire.BadReply as exc:
            self._kill()
            raise BadReply(str(exc)) from None

    def _timed_out(self, what: str, timeout: float) -> WorkerTimeout:
        if self._deadline is not None and time.monotonic() >= self._deadline - 0.05:
            return WorkerTimeout(self._budget_spent())
        return WorkerTimeout(f"{what} within {timeout:.0f} s: an infinite loop, or far too much work")

    def _death(self) -> SubmissionError:
        """The child is gone: say how, with the tail of its output, and clean up."""
        proc = self._proc
        try:
            code = proc.wait(timeout=5) if proc is not None else None
        except subprocess.TimeoutExpired:  # it closed its pipes and lives on: `_kill` ends it
            code = None
        self._kill()
        tail = self._output_tail()
        if code is not None and code > 128 and self.sandbox.get("tool") == "bubblewrap":
            code = 128 - code  # bwrap exits with 128 + the signal that ended the worker
        if code is None:
            what = "the worker closed its pipes to the grader and was killed"
        elif code < 0:
            sig = signal.Signals(-code).name
            what = f"the worker was killed by {sig}"
            if sig == "SIGSEGV":
                what += " (a segmentation fault: memory accessed through a bad pointer)"
            elif sig in ("SIGKILL", "SIGXCPU"):
                what += " (a resource limit such as CPU time, or your code killed its own process)"
            elif sig == "SIGXFSZ":
                what += f" (a file it wrote grew past {FILE_LIMIT_BYTES // 2**20} MiB)"
        else:
            what = f"the worker exited with code {code} (os._exit or a fatal error in your code)"
        return WorkerCrashed(what + (f"\nlast output:\n{tail}" if tail else ""))

    def _output_tail(self, since: dict[str, int] | None = None) -> str:
        """The last OUTPUT_TAIL_BYTES the child wrote (after the offsets in `since`)."""
        parts = []
        for name, tap in self._taps.items():
            text = tap.tail((since or {}).get(name, 0), OUTPUT_TAIL_BYTES).decode("utf-8", "replace")
            text = student_text.clean(text, OUTPUT_TAIL_BYTES).strip()
            if text:
                parts.append(text)
        return "\n".join(parts)[-OUTPUT_TAIL_BYTES:]

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                try:
                    # Basic mode: the worker's own session. Namespaces: the process we started
                    # (bwrap, or the relay), whose death takes the namespace's init with it,
                    # and the kernel then every process inside.
                    os.killpg(proc.pid, signal.SIGKILL) if self.sandbox_mode == "basic" else proc.kill()
                except ProcessLookupError:
                    pass
            proc.wait()
        for attr in ("_req_w", "_rep_r"):
            fd = getattr(self, attr, None)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, attr, None)
        for tap in self._taps.values():
            tap.finish()  # keeps what it read: a death's message quotes the last output
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def _student_failure(self, reply: dict) -> SubmissionError:
        if reply.get("kind") == "banned":
            return BannedCall(reply)
        if reply.get("kind") == "memory":
            return WorkerCrashed(f"your code ran out of memory (the worker is limited to "
                                 f"{MEMORY_LIMIT_BYTES / 2**30:.0f} GiB): "
                                 f"{student_text.clean(reply.get('message', ''), MESSAGE_CHARS)}")
        if reply.get("kind") == "exit":
            return WorkerCrashed(f"your code called sys.exit({student_text.clean(reply.get('message', ''), TYPE_NAME_CHARS)}); "
                                 "return a value instead")
        return StudentRaised(reply)


class _Tap:
    """Drains one of the child's output pipes on a thread and keeps only its last bytes, so
    megabytes of printing neither block the child nor fill the grader's memory or disk.

    The pipe is non-blocking and every read is accounted under the lock, so `catch_up` can
    take whatever the thread has not read yet: the child prints (unbuffered) before it
    replies, and after a reply the grader must see all of that output, not all but the
    chunk the thread happened to be holding."""

    def __init__(self, fd: int) -> None:
        self.total = 0  # bytes the child wrote in all
        self._kept = bytearray()
        self._lock = threading.Lock()
        self._fd = fd
        self._open = True
        os.set_blocking(fd, False)
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        poller = select.poll()  # not select(): no limit on the descriptor's number
        poller.register(self._fd, select.POLLIN)
        while self._open:
            poller.poll(1000)  # wakes on output, on end of file, or after a second
            self.catch_up()
        with self._lock:
            self._open = False
            os.close(self._fd)

    def catch_up(self) -> None:
        """Read what is in the pipe now; at end of file, mark the tap closed."""
        with self._lock:
            while self._open:
                try:
                    chunk = os.read(self._fd, 1 << 16)
                except BlockingIOError:
                    return
                except OSError:
                    chunk = b""
                if not chunk:
                    self._open = False
                    return
                self.total += len(chunk)
                self._kept += chunk
                del self._kept[:-OUTPUT_KEEP_BYTES]

    def tail(self, since: int, limit: int) -> bytes:
        """At most `limit` of the last bytes written after the first `since`."""
        with self._lock:
            wanted = min(limit, self.total - since, len(self._kept))
            return bytes(self._kept[len(self._kept) - wanted:]) if wanted > 0 else b""

    def finish(self) -> None:
        """Wait briefly for the rest of a dead child's output (every writer is gone by now)."""
        self._thread.join(timeout=2)


def _fresh(exc: SubmissionError) -> SubmissionError:
    """A new exception like `exc`. Re-raising one instance would grow its traceback on every
    raise, and Hypothesis, which compares tracebacks while shrinking, would slow to a crawl."""
    return type(exc)(*exc.args)


def sweep_stale(folder: str | None = None) -> None:
    """Remove the temporary folders of graders that died without cleaning up (SIGKILL leaves
    them): each is named graders-PID-..., and a PID with no live process is stale. Once per process."""
    if _SWEPT and folder is None:
        return
    _SWEPT.append(True)
    base = Path(folder or tempfile.gettempdir())
    for path in base.glob("graders-*-*"):
        pid = path.name.split("-")[1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            if path.lstat().st_uid != os.geteuid() or not path.is_dir() or path.is_symlink():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


_SWEPT: list[bool] = []

# The janitor: a small process in a session of its own that waits for end of file on a pipe
# whose only writer is the grader, then removes the grader's temporary folders. However the
# grader ends (SIGKILL included, or its whole process group killed), they go with it.
_JANITOR = """
import glob, os, shutil, sys
sys.stdin.buffer.read()
for path in glob.glob(os.path.join(sys.argv[1], glob.escape(sys.argv[2]) + "*")):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
"""
# grader pid -> (the janitor, the pipe's write end): both kept for the grader's life (a Popen
# dropped while its process runs warns when it is collected).
_JANITORS: dict[int, tuple[subprocess.Popen, int]] = {}


def _start_janitor() -> None:
    """Start this process's janitor, once."""
    if os.getpid() in _JANITORS:
        return
    read_end, write_end = os.pipe()
    janitor = subprocess.Popen([sys.executable, "-I", "-S", "-c", _JANITOR, tempfile.gettempdir(), temp_prefix()],
                               stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    os.close(read_end)
    _JANITORS[os.getpid()] = (janitor, write_end)
_UIDS = iter(range(1 << 30))


def _next_uid() -> int:
    """A uid for the next worker as root: no account has it, and no other live worker (the
    grader's pid, and a count of this grader's workers, are in it)."""
    return _sandbox.UID_BASE + ((os.getpid() << 6) | (next(_UIDS) & 63)) % (1 << 30)


def _boot_report(sandbox: Any) -> dict:
    """The worker's word on its confinement, as short plain fields (it lands in grade.json)."""
    if not isinstance(sandbox, dict):
        return {}
    return {str(k)[:20]: (v if isinstance(v, (bool, int, float)) else student_text.clean(v, 200))
            for k, v in list(sandbox.items())[:8]}


def _write_before(fd: int, data: bytes, deadline: float) -> None:
    """Write all of `data` to the non-blocking `fd`, waiting for room no later than `deadline`."""
    view = memoryview(data)
    while view:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
            raise TimeoutError
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            continue


def _read_exact_before(fd: int, n: int, deadline: float) -> bytes:
    chunks = []
    while n:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _reject_unsupported(value: Any) -> None:
    if isinstance(value, dict) and set(value) == {"$unsupported"}:
        raise StudentRaised({"type": "TypeError", "mro": ["TypeError"],
                             "message": f"your code returned a {value['$unsupported']}, which the grader cannot read; "
                                        "return tensors, tuples of tensors or None"})
    if isinstance(value, (list, tuple)):
        for item in value:
            _reject_unsupported(item)
    elif isinstance(value, dict):
        for item in value.values():
            _reject_unsupported(item)


def _describe_import_failure(failures: dict, notes: list[str] = ()) -> str:
    lines = []
    for name, info in failures.items():
        info = {k: student_text.clean(v, MESSAGE_CHARS if k != "traceback" else TRACEBACK_CHARS) if isinstance(v, str) else v
                for k, v in info.items()}
        left_out = [note for note in notes if note.startswith(f"{name}.py ")]
        if left_out and "ModuleNotFoundError" in info.get("mro", ()):
            lines.append(f"{left_out[0]}: it cannot be imported")
            continue
        if info.get("type") == "SyntaxError" or "SyntaxError" in info.get("mro", ()):
            lines.append(f"{name}.py has a syntax error on line {info.get('line', '?')}: {info.get('message', '')}"
                         + (f"\n    {info.get('text')}" if info.get("text") else ""))
        elif info.get("kind") == "exit":
            lines.append(f"importing {name}.py called sys.exit({info.get('message', '')})")
        elif info.get("kind") == "banned":
            lines.append(f"{info.get('message', '')} (caught while {name}.py was imported)")
        else:
            lines.append(f"importing {name}.py raised {info.get('type')}: {info.get('message', '')}"
                         + (f"\n{info['traceback'].rstrip()}" if info.get("traceback") else ""))
    return "\n".join(lines) + "\nNo test of this chapter can run until the module imports."
