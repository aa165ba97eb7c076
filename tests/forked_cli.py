"""`python -m graders ARGS` for the project's tests, forked from a warm interpreter.

The suites grade about 260 times, each a fresh `python -m graders grade` that spends its first
two to three seconds of CPU importing torch, numpy, pytest and Hypothesis before it grades
anything: on CI's two cores that is minutes of the 30-minute budget. This module keeps one
server process per caller thread that has imported those libraries (and nothing of this
repository), and forks it once per command. The forked child then does what the interpreter
would: the caller's working directory and environment, stdin from /dev/null, stdout and stderr
into files, `graders` imported fresh and run as `__main__`, atexit handlers and non-daemon
threads finished, the exit status as the return code (minus the signal number when killed).
So the grader's code, its report files and its worker processes are exactly those of the real
command; only the interpreter start is shared.

A command whose environment changes anything read at interpreter start (a variable other than
GRADERS_*) runs as a real subprocess instead, and `COURSE_TESTS_FORK=0` turns the server off.
`tests/test_forked_cli.py` checks a grade made here equals the same grade made by a subprocess.

Run as `python -m tests.forked_cli` it is the server: one JSON request per line on stdin, two
JSON replies per request on stdout ({"pid"} when forked, {"returncode"} when it ended).
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRELOADED = ("torch", "numpy", "pytest", "hypothesis")  # what every grading command imports first
FORWARDED_ENV_PREFIX = "GRADERS_"  # read by the grader at run time, after the fork
ENABLED = os.environ.get("COURSE_TESTS_FORK", "1") != "0"


# --- the server (its own process) ---------------------------------------------------------------

def serve() -> None:
    for name in PRELOADED:
        __import__(name)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer.fileno()
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _run_command(request)  # never returns
        os.write(replies, json.dumps({"pid": pid}).encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        os.write(replies, json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode() + b"\n")


def _run_command(request: dict) -> None:
    """In the forked child: become `python -m graders ARGS` and exit as it would."""
    code = 1
    try:
        os.setsid()  # its own process group, so a timeout can kill it and what it started
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
        os.dup2(os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["graders", *request["args"]]
        try:
            runpy.run_module("graders", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except BaseException:  # what the interpreter prints for an uncaught exception
            traceback.print_exc()
            code = 1
        threading._shutdown()  # type: ignore[attr-defined]  # the interpreter joins non-daemon threads
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _exit_code(value: object) -> int:
    """The exit status `sys.exit(value)` gives."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


# --- the client (in the pytest process) ---------------------------------------------------------

class _Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        # Unbuffered: a reply is read with select, which cannot see lines a buffer took early.
        self.process = subprocess.Popen([sys.executable, "-m", "tests.forked_cli"], cwd=ROOT, env=env, bufsize=0,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def alive(self) -> bool:
        return self.process.poll() is None

    def _reply(self, timeout: float | None) -> dict | None:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the forked-CLI server died")
        return json.loads(line)

    def run(self, args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "graders", *args]
        with tempfile.TemporaryDirectory(prefix="forked-cli-") as folder:
            out, err = Path(folder) / "stdout", Path(folder) / "stderr"
            request = {"args": args, "env": env, "cwd": str(ROOT), "stdout": str(out), "stderr": str(err)}
            line = json.dumps(request).encode() + b"\n"
            while line:
                line = line[self.process.stdin.write(line):]
            pid = self._reply(None)["pid"]
            ended = self._reply(timeout)
            if ended is None:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass  # it ended just now
                self._reply(None)
                raise subprocess.TimeoutExpired(command, timeout, out.read_bytes(), err.read_bytes())
            return subprocess.CompletedProcess(command, ended["returncode"], out.read_text(errors="replace"),
                                               err.read_text(errors="replace"))

    def close(self) -> None:
        self.process.stdin.close()  # the server's loop ends
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()


_idle: list[_Server] = []  # servers not running a command now (a thread takes one, or starts one)
_lock = threading.Lock()


def _take(env: dict[str, str]) -> _Server:
    with _lock:
        while _idle:
            server = _idle.pop()
            if server.alive() and server.env == env:
                return server
            server.close()
    return _Server(env)


@atexit.register
def _close_all() -> None:
    with _lock:
        while _idle:
            _idle.pop().close()


def run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """`python -m graders ARGS` run from the repository root with exactly `env`, as
    `subprocess.run(..., capture_output=True, text=True, timeout=timeout)` would return it."""
    base = {k: v for k, v in env.items() if not k.startswith(FORWARDED_ENV_PREFIX)}
    if not ENABLED or base != {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_",
                                                                                         FORWARDED_ENV_PREFIX))}:
        return subprocess.run([sys.executable, "-m", "graders", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, env=env)
    server = _take(base)
    try:
        result = server.run(args, env, timeout)
    except BaseException:
        server.close()
        raise
    with _lock:
        _idle.append(server)
    return result


if __name__ == "__main__":
    serve()
