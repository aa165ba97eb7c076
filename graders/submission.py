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
import re
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

from graders import _sandbox, chapters, wire

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
COPY_FILE_LIMIT = 16 * 2**20  # the student tree is copied for the worker; bigger files are left out
SANDBOX = os.environ.get("GRADERS_SANDBOX", "auto")  # auto | namespaces | basic (see _sandbox.py)


# --- what can go wrong, and the status each maps to ---------------------------------------


class SubmissionError(Exception):
    """Student code could not produce an answer. `status` is the test's reported status."""

    status = "error"


class StudentRaised(SubmissionError):
    """The student's code raised an exception: an ordinary failed test."""

    status = "failed"

    def __init__(self, info: dict) -> None:
        self.type = info.get("type", "Exception")
        self.mro = tuple(info.get("mro", ()))
        self.detail = info.get("message", "")
        self.where = info.get("traceback", "")
        super().__init__(self._describe())

    def _describe(self) -> str:
        if self.type == "NotImplementedError":
            return f"not implemented yet: {self.detail}".rstrip(": ")
        text = f"your code raised {self.type}: {self.detail}"
        return text + (f"\n{self.where.rstrip()}" if self.where else "")

    def is_a(self, name: str) -> bool:
        return name in self.mro


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
                 call_timeout: float = CALL_TIMEOUT_S, hide: tuple[Path, ...] = (), sandbox: str = SANDBOX) -> None:
        self.impl = Path(impl).resolve()
        self.modules = tuple(modules)
        # Modules of earlier chapters some tests call too (chapter 03 runs chapter 02's attention).
        # If one does not import, only the requests that name it fail, not the whole chapter.
        self.uses = tuple(m for m in uses if m not in self.modules)
        self.call_timeout = call_timeout
        self.hangs = 0
        # The worker never sees the repository (reference, hidden tests, graders) nor `hide`.
        self.hide = (chapters.ROOT, *map(Path, hide))
        self.sandbox_mode = sandbox
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
        self._ensure_started()
        request.setdefault("module", self.modules[0])
        request.setdefault("seed", 0)  # every call starts from the same RNG state: deterministic dropout
        self._requests += 1
        request["id"] = self._requests
        try:
            reply = self._roundtrip(request, self._timeout())
            if reply.get("id") != request["id"]:
                self._kill()
                raise BadReply("the worker's answers are out of order (did your code write to the grader's pipe?)")
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

    # the child's life --------------------------------------------------------------------

    def _timeout(self) -> float:
        return self.call_timeout if self.hangs < HANGS_BEFORE_SHORT else min(self.call_timeout, SHORT_TIMEOUT_S)

    def _ensure_started(self) -> None:
        if self._import_error is not None:
            raise _fresh(self._import_error)
        if self._proc is not None and self._proc.poll() is None:
            return
        self._kill()
        self._start()

    def _start(self) -> None:
        self._scratch = tempfile.TemporaryDirectory(prefix="graders-worker-")
        scratch = Path(self._scratch.name)
        student = self._student_copy()
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        config = {
            "request_fd": req_r,
            "reply_fd": rep_w,
            "student_dir": str(student),
            "student_shown": str(self.impl),
            "modules": list(self.modules),
            "uses": list(self.uses),
            "limits": {"RLIMIT_AS": MEMORY_LIMIT_BYTES, "RLIMIT_CPU": CPU_LIMIT_S, "RLIMIT_FSIZE": FILE_LIMIT_BYTES,
                       "RLIMIT_CORE": 0},
            "sandbox": _sandbox.plan(mode=self.sandbox_mode, student_dir=str(student), scratch=str(scratch),
                                     hide=[str(p) for p in self.hide]),
        }
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("GRADERS_", "PYTEST_", "HYPOTHESIS", "NOX_", "VIRTUAL_ENV"))}
        home = _sandbox.WORKDIR if self.sandbox_mode != "basic" else str(scratch)
        env.update(OMP_NUM_THREADS="1", HOME=home, TMPDIR=home)
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-u", str(CHILD), json.dumps(config)],
            stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w,
            cwd=scratch, env=env, pass_fds=(req_r, rep_w), start_new_session=True,
        )
        for fd in (req_r, rep_w, out_w, err_w):
            os.close(fd)
        self._taps = {"stdout": _Tap(out_r), "stderr": _Tap(err_r)}
        self._req_w, self._rep_r = req_w, rep_r
        booted = self._expect_phase("booted", BOOT_TIMEOUT_S)
        self.sandbox = booted.get("sandbox", {})
        imported = self._expect_phase("imported", self.call_timeout)
        failures = {name: info for name, info in imported["imports"].items()
                    if info is not None and name in self.modules}
        if failures:
            self._import_error = ImportFailed(_describe_import_failure(failures))
            self._kill()
            raise self._import_error

    def _student_copy(self) -> Path:
        """A private, world-readable copy of the student's tree, made once: the worker imports
        this copy, so it never needs to see where the tree lies (often inside the repository).
        Symbolic links are copied as links, never followed: a link to a hidden file stays dead."""
        if self._copy is None:
            self._copy = tempfile.TemporaryDirectory(prefix="graders-student-")
            target = Path(self._copy.name) / "student"
            shutil.copytree(self.impl, target, symlinks=True, ignore=_not_copied)
            for path in (Path(self._copy.name), *target.rglob("*")):
                if not path.is_symlink():
                    path.chmod(0o755 if path.is_dir() else 0o644)
        return Path(self._copy.name) / "student"

    def _expect_phase(self, phase: str, timeout: float) -> dict:
        try:
            reply = self._receive(timeout)
        except WorkerTimeout:
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
        try:
            wire.write_frame(self._req_w, wire.encode_request(request))
        except (BrokenPipeError, OSError):
            raise self._death() from None
        return self._receive(timeout)

    def _receive(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        ready, _, _ = select.select([self._rep_r], [], [], timeout)
        if not ready:
            self.hangs += 1
            self._kill()
            raise WorkerTimeout(f"no answer within {timeout:.0f} s: an infinite loop, or far too much work")
        try:
            payload = _read_frame_before(self._rep_r, deadline)
        except TimeoutError:
            self._kill()
            raise WorkerTimeout(f"the answer did not arrive within {timeout:.0f} s") from None
        except (EOFError, OSError):
            raise self._death() from None
        except ValueError as exc:  # an impossible frame length: the protocol was tampered with
            self._kill()
            raise BadReply(f"the worker broke the protocol: {exc}") from None
        try:
            return wire.decode_reply(payload)
        except wire.BadReply as exc:
            self._kill()
            raise BadReply(str(exc)) from None

    def _death(self) -> SubmissionError:
        """The child is gone: say how, with the tail of its output, and clean up."""
        proc = self._proc
        code = proc.wait(timeout=5) if proc is not None else None
        self._kill()
        tail = self._output_tail()
        if code is not None and code < 0:
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
            text = _PRINTABLE.sub("?", text).strip()
            if text:
                parts.append(text)
        return "\n".join(parts)[-OUTPUT_TAIL_BYTES:]

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
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
        if reply.get("kind") == "memory":
            return WorkerCrashed(f"your code ran out of memory (the worker is limited to "
                                 f"{MEMORY_LIMIT_BYTES / 2**30:.0f} GiB): {reply.get('message', '')}")
        if reply.get("kind") == "exit":
            return WorkerCrashed(f"your code called sys.exit({reply.get('message', '')}); return a value instead")
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


def _not_copied(folder: str, names: list[str]) -> set[str]:
    """What the worker's copy of a student tree leaves out: hidden folders, caches, big files."""
    skipped = set()
    for name in names:
        path = os.path.join(folder, name)
        if name.startswith(".") or name == "__pycache__":
            skipped.add(name)
        elif os.path.isfile(path) and not os.path.islink(path) and os.path.getsize(path) > COPY_FILE_LIMIT:
            skipped.add(name)
    return skipped


# Control characters (NUL, escape sequences, ...) in a student's output are shown as "?".
_PRINTABLE = re.compile(r"[^\S\n\t ]|[\x00-\x08\x0b-\x1f\x7f]")


def _fresh(exc: SubmissionError) -> SubmissionError:
    """A new exception like `exc`. Re-raising one instance would grow its traceback on every
    raise, and Hypothesis, which compares tracebacks while shrinking, would slow to a crawl."""
    return type(exc)(*exc.args)


def _read_frame_before(fd: int, deadline: float) -> bytes:
    """Read one frame, waiting for each chunk no later than `deadline`."""
    header = _read_exact_before(fd, wire.HEADER_SIZE, deadline)
    size = int.from_bytes(header, "big")
    if size > wire.MAX_REPLY_BYTES:
        raise ValueError(f"a reply of {size} bytes exceeds the limit of {wire.MAX_REPLY_BYTES}")
    return _read_exact_before(fd, size, deadline)


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


def _describe_import_failure(failures: dict) -> str:
    lines = []
    for name, info in failures.items():
        if info.get("type") == "SyntaxError" or "SyntaxError" in info.get("mro", ()):
            lines.append(f"{name}.py has a syntax error on line {info.get('line', '?')}: {info.get('message', '')}"
                         + (f"\n    {info.get('text')}" if info.get("text") else ""))
        elif info.get("kind") == "exit":
            lines.append(f"importing {name}.py called sys.exit({info.get('message', '')})")
        else:
            lines.append(f"importing {name}.py raised {info.get('type')}: {info.get('message', '')}"
                         + (f"\n{info['traceback'].rstrip()}" if info.get("traceback") else ""))
    return "\n".join(lines) + "\nNo test of this chapter can run until the module imports."
