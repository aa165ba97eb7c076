"""The worker's sandbox, probed from inside: what student code can see, reach and write.

Each probe is a function in a small student module; the worker runs it and answers with plain
data. Namespace-mode tests skip where the kernel refuses namespaces (the fallback is then what
grades, and `basic` tests below still hold).
"""

from __future__ import annotations

import os
import socket
import textwrap

import pytest

from graders import _sandbox
from graders.chapters import ROOT
from graders.submission import StudentRaised, Submission, _Tap

# Its module fixture runs once: under xdist (--dist loadgroup) the whole file shares one worker.
pytestmark = pytest.mark.xdist_group("sandbox")

PROBES = r'''
import os, resource, socket, subprocess

def net_namespace():
    return os.readlink("/proc/self/ns/net")

def connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).sendall(b"hello")
    except OSError as exc:
        return f"refused: {exc}"
    return "connected"

def list_folder(path):
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return f"refused: {exc}"

def read_file(path):
    try:
        with open(path) as handle:
            return handle.read()[:100]
    except OSError as exc:
        return f"refused: {exc}"

def write_file(path, size):
    try:
        with open(path, "wb") as handle:
            for _ in range(size // 2**20):
                handle.write(b"x" * 2**20)
    except OSError as exc:
        return f"refused: {exc}"
    return "written"

def here():
    return os.path.dirname(os.path.abspath(__file__))

def identity():
    with open("/proc/self/status") as handle:
        caps = [line.split()[1] for line in handle if line.startswith("CapEff")]
    return [os.getuid(), os.getpid(), int(caps[0], 16)]

def process_limit():
    return resource.getrlimit(resource.RLIMIT_NPROC)[0]

def start_process():
    try:
        subprocess.run(["true"])
    except PermissionError as exc:
        return f"refused: {exc}"
    return "started"

def shout(megabytes):
    print("y" * (megabytes * 2**20))
    return None

def environment():
    return dict(os.environ)

def memfd():
    try:
        os.memfd_create("held")
    except OSError as exc:
        return f"refused: {exc}"
    return "created"

def libc_fork():
    import ctypes
    pid = ctypes.CDLL(None).fork()
    if pid == 0:
        os._exit(0)
    return pid

def new_user_namespace():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.unshare(0x10000000 | 0x00020000)  # CLONE_NEWUSER | CLONE_NEWNS: a tmpfs of our own

def connect_unix(path):
    try:
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
        client.sendall(b"hello")
    except OSError as exc:
        return f"refused: {exc}"
    return "connected"

def open_pty():
    try:
        os.openpty()
    except OSError as exc:
        return f"refused: {exc}"
    return "opened"
'''


# Namespace mode through bubblewrap and through the project's own code (both build the same
# view), and the basic mode.
@pytest.fixture(scope="module", params=[("auto", "bubblewrap"), ("auto", "graders"), ("basic", "graders")],
                ids=["bubblewrap", "graders", "basic"])
def worker(request, tmp_path_factory):
    mode, tool = request.param
    if tool == "bubblewrap" and _sandbox.choose_tool() != "bubblewrap":
        pytest.skip("bwrap is not installed here, or cannot start a sandbox")
    tree = tmp_path_factory.mktemp("probes")
    (tree / "probes.py").write_text(textwrap.dedent(PROBES))
    sub = Submission(tree, ("probes",), sandbox=mode, tool=tool)
    try:
        sub.call("here")  # boots the worker, so `sandbox` says how it is confined
        yield sub
    finally:
        sub.close()  # also when booting failed: no worker or temporary folder outlives the module


def confined(worker: Submission) -> str:
    return worker.sandbox["mode"]


def needs_namespaces(worker: Submission) -> None:
    if confined(worker) != "namespaces":
        pytest.skip(f"the worker runs in {confined(worker)} mode here: {worker.sandbox.get('why', '')}")


def test_auto_mode_uses_namespaces_where_the_kernel_allows(worker):
    if worker.sandbox_mode == "basic":
        assert confined(worker) == "basic"
    else:
        assert confined(worker) == "namespaces" or "unshare" in worker.sandbox.get("why", "")


def test_worker_has_a_network_namespace_of_its_own(worker):
    needs_namespaces(worker)
    assert worker.call("net_namespace") != os.readlink("/proc/self/ns/net")


def test_no_connection_to_loopback_outside_the_worker(worker):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        answer = worker.call("connect", listener.getsockname()[1])
        assert answer.startswith("refused")
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_repository_is_hidden(worker):
    seen = worker.call("list_folder", str(ROOT))
    if confined(worker) == "namespaces":
        # Only what the worker needs is bound back (a virtual environment kept in the repository).
        assert isinstance(seen, list) and not {"reference_solutions", "graders", "tests", "reports"} & set(seen)
    else:
        assert seen.startswith("refused")


@pytest.mark.parametrize("path", ["reference_solutions/multi_head_attention.py",
                                  "graders/hidden/test_02_multi_head_attention.py"])
def test_reference_and_hidden_tests_are_unreadable(worker, path):
    assert worker.call("read_file", str(ROOT / path)).startswith("refused")


def test_student_tree_is_read_only(worker):
    needs_namespaces(worker)  # in basic mode the worker imports its private copy, which it may change
    here = worker.call("here")
    assert worker.call("write_file", os.path.join(here, "probes.py"), 2**20).startswith("refused")


def test_repository_cannot_be_written(worker):
    # In namespace mode the repository's path may not exist for the worker at all, or lie in its
    # own scratch (a clone under /tmp): what matters is that nothing reaches the real one.
    answer = worker.call("write_file", str(ROOT / "written_by_the_worker.txt"), 2**20)
    assert not (ROOT / "written_by_the_worker.txt").exists()
    if confined(worker) == "basic":
        assert answer.startswith("refused")


def test_the_view_holds_only_what_the_worker_needs(worker):
    needs_namespaces(worker)
    root = set(worker.call("list_folder", "/"))
    # The installation's own top folders (usr, lib, a home holding pyenv, the repository's
    # folder holding .venv) and the view's own: nothing else of the host.
    assert {"dev", "proc", "tmp"} <= root
    assert not {"etc", "srv", "opt", "home", "run", "var", "sys", "boot", "mnt", "media"} & root
    assert sorted(worker.call("list_folder", "/dev")) == ["null", "random", "shm", "urandom", "zero"]
    assert worker.call("list_folder", "/etc").startswith("refused")


def test_the_environment_is_an_allow_list(worker, monkeypatch):
    # The worker's environment was set when it started; a fresh worker sees the variables below.
    monkeypatch.setenv("WANDB_API_KEY", "secret-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-key")
    worker.close()
    env = worker.call("environment")
    assert "secret-key" not in env.values()
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "OMP_NUM_THREADS", "LANG", "LANGUAGE", "TZ", "PWD"} | {
        k for k in env if k.startswith(_sandbox.ENV_KEEP_PREFIXES)}


def test_shared_memory_beyond_the_address_space_limit_is_refused(worker):
    needs_namespaces(worker)
    assert worker.call("memfd").startswith("refused")
    assert worker.call("new_user_namespace") == -1  # a nested namespace's tmpfs would be unbounded


def test_the_worker_is_one_process(worker):
    needs_namespaces(worker)
    assert worker.call("libc_fork") == -1


def test_no_pseudo_terminal(worker):
    needs_namespaces(worker)
    assert worker.call("open_pty").startswith("refused")


def test_no_unix_socket_outside_the_worker(worker, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("sock") / "s")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen()
        listener.setblocking(False)
        assert worker.call("connect_unix", path).startswith("refused")
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_scratch_folder_is_writable_but_bounded(worker):
    assert worker.call("write_file", "small.bin", 2**20) == "written"
    assert worker.call("write_file", "big.bin", 128 * 2**20).startswith("refused")


def test_worker_runs_without_privileges(worker):
    needs_namespaces(worker)
    uid, pid, capabilities = worker.call("identity")
    assert capabilities == 0
    assert pid == 2  # pid 1 is the namespace's init (ours, or bubblewrap's)
    if os.geteuid() == 0 and worker.sandbox.get("uid", 0) != 0:
        assert uid >= _sandbox.UID_BASE


def test_process_count_is_limited(worker):
    needs_namespaces(worker)
    assert 0 < worker.call("process_limit") <= 10_000


def test_python_cannot_start_processes(worker):
    assert worker.call("start_process").startswith("refused: the grading worker may not start processes")


def test_output_is_drained_and_capped(worker):
    worker.begin_test()
    worker.call("shout", 8)  # 8 MiB: more than a pipe holds, so the child would block if nobody read
    taps = worker._taps["stdout"]
    assert taps.total > 8 * 2**20
    assert len(taps.tail(0, 10**9)) <= 64 * 2**10
    assert len(worker.output_during_test()) <= 2000


def test_a_tap_caught_up_holds_every_byte_written_before():
    """The reply to a call can arrive while the drain thread still holds the last chunk of the
    call's output; catching up must account for it (CI once lost 64 KiB of an 8 MiB print)."""
    read_end, write_end = os.pipe()
    tap = _Tap(read_end)
    written = 0
    for size in [1, 4096, 65536, 65537, 300_000, 7]:
        _write_all(write_end, size)
        written += size
        tap.catch_up()
        assert tap.total == written
    os.close(write_end)
    tap.finish()


def _write_all(fd, size):
    """Write `size` bytes; a pipe takes at most its capacity per write while the tap drains it."""
    done = 0
    while done < size:
        done += os.write(fd, b"x" * (size - done))


def test_student_exceptions_still_reach_the_grader(worker):
    with pytest.raises(StudentRaised, match="TypeError"):
        worker.call("read_file", None)


def test_a_fallback_to_the_basic_sandbox_is_named_to_the_instructor():
    from graders.grade import fell_back

    unavailable = {"mode": "basic", "why": "unshare: Operation not permitted"}
    assert fell_back({"multi_head_attention": unavailable}) == "unshare: Operation not permitted"


@pytest.mark.parametrize("sandbox", [{"mode": "namespaces", "uid": 1 << 20}, {"mode": "basic", "why": "asked for"}])
def test_no_fallback_note_when_the_sandbox_is_what_was_asked_for(sandbox):
    from graders.grade import fell_back

    assert fell_back({"multi_head_attention": sandbox}) == ""
