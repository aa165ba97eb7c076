"""Red team: a hostile student against the whole grader, judged by what a user of it sees.

Each case is one submission of its own, graded through the real command on chapter 02's
`softmax` task and the cheap canary `causal_mask` (`tests/redteam/harness.py`). The attacks
(`tests/redteam/attacks.py`) are what a determined student would write: they read the worker's
configuration from its command line, patch the worker's own code, walk the filesystem, and act
once per grade where acting every test would only slow the run. Every one is bounded, so an
attack that gets through costs a failing test, never the machine.

The assertions are outcomes, not mechanisms: nothing hidden or secret in any report or output
(grade.json, results.json, every file of the report folder, the command's stdout and stderr),
the score an honest control gets, a grader that stays bounded in time and memory, and a report
that is finished (exit 0, grade.json written). Messages are not pinned beyond generic words.

The containment cases that matter most run twice: as root, and as an ordinary user (uid 65534,
through `tests/redteam/as_user.py`), where the sandbox has no root to lean on. The ordinary-user
runs skip, with the reason, where this process is not root or the kernel refuses unprivileged
user namespaces.

Banned APIs reached by another name (`getattr(torch, "soft" + "max")`) are covered by
`tests/test_adversarial.py`, not here.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REFERENCE, ROOT
from tests.redteam import as_user, attacks
from tests.redteam.harness import (
    CANARY_PREFIX,
    SOFTMAX_PREFIX,
    GiB,
    MiB,
    Watcher,
    alive,
    descendants_of,
    give_to,
    grade_args,
    grade_cli,
    host_folder,
    make_readable,
    processes_mentioning,
    public_folder,
    reap,
    report_folder,
    student_tree,
    token,
)

# The batch case and the honest control's measurements are module fixtures of a minute and a
# few seconds: one xdist worker runs the whole file.
pytestmark = pytest.mark.xdist_group("redteam")

HIDDEN_SUITE = ROOT / "graders" / "hidden" / "test_02_multi_head_attention.py"
# C0 controls but \t and \n, DEL and the C1 controls: what a terminal acts on instead of printing.
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Bidirectional embeddings, overrides and isolates: they reorder the text shown around them.
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def user_mode() -> str | None:
    """Why ordinary-user runs cannot happen here (None: they can)."""
    return as_user.unavailable()


@pytest.fixture(params=["root", "user"])
def who(request, user_mode) -> str:
    """Who runs the grade: "root" is this test process's own user (root on the project's
    machines and CI), "user" the ordinary uid 65534 (`tests/redteam/as_user.py`)."""
    if request.param == "user" and user_mode:
        pytest.skip(f"ordinary-user run skipped: {user_mode}")
    return request.param


@pytest.fixture(params=["bwrap", "own"])
def tool(request) -> str:
    """Which tool builds the worker's view: bubblewrap (preferred where installed), or the
    project's own namespace code (its fallback). Both must contain the same attacks."""
    if request.param == "bwrap" and not shutil.which("bwrap"):
        pytest.skip("bubblewrap (bwrap) is not installed here")
    return {"bwrap": "bubblewrap", "own": "graders"}[request.param]


def with_tool(tool: str, env: dict | None = None) -> dict:
    """The grade command's extra environment: the sandbox tool forced, and `env`."""
    return {"GRADERS_SANDBOX_TOOL": tool} | (env or {})


@pytest.fixture
def space(who, tmp_path):
    """A folder for the tree and the report: pytest's own as root, a world-readable one for the user."""
    if who == "root":
        yield tmp_path
        return
    folder = public_folder("redteam-user")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def planted():
    """A folder outside the repository and outside /tmp (removed after the test)."""
    folder = host_folder()
    if folder is None:
        pytest.skip("nothing outside the repository and /tmp is writable here")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def control(tmp_path_factory) -> dict:
    """The honest reference, graded as a real process: its score and the grader's peak memory."""
    folder = tmp_path_factory.mktemp("control")
    graded = grade_cli(student_tree(folder, attacks.REFERENCE_SOURCE), folder / "report", real=True)
    assert graded.returncode == 0 and graded.grade, graded.describe()
    return {"score": graded.grade["score"], "max_score": graded.grade["max_score"], "peak_rss": graded.peak_rss,
            "seconds": graded.seconds}


def finished(graded) -> dict:
    """The run completed as a grade must: exit 0, a grade.json, and (real runs, watched from
    outside) no process it started still running; that grade."""
    assert not graded.timed_out, f"the grade did not finish within the test's limit ({graded.seconds:.0f} s)"
    assert graded.returncode == 0, graded.describe()
    assert graded.grade is not None, "no grade.json was written\n" + graded.describe()
    assert not graded.survivors, f"processes the grade started outlived it: {graded.survivors}"
    return graded.grade


def assert_canary_passes(graded) -> None:
    canary = graded.statuses(CANARY_PREFIX)
    assert canary and set(canary.values()) == {"passed"}, "the canary task was hurt:\n" + graded.describe()


def assert_score_is_the_passed_points(grade: dict) -> None:
    tests = [t for c in grade["chapters"] for t in c["tests"]]
    assert grade["score"] == sum(t["max_score"] for t in tests if t["status"] == "passed")


def assert_softmax_earns_nothing(graded) -> None:
    softmax = graded.statuses(SOFTMAX_PREFIX)
    assert softmax, graded.describe()
    passed = [name for name, status in softmax.items() if status == "passed"]
    assert not passed, f"the attack earned points: {passed}\n" + graded.describe()


def assert_softmax_full_marks(graded, why: str) -> None:
    softmax = graded.statuses(SOFTMAX_PREFIX)
    wrong = {name: status for name, status in softmax.items() if status != "passed"}
    assert softmax and not wrong, f"{why}: {wrong}\n" + graded.describe()


def grade_tree(space: Path, who: str, source: str | None, **kwargs):
    tree = student_tree(space, source)
    return tree, grade_cli(tree, report_folder(space, who), who=who, **kwargs)


# --- the honest control -------------------------------------------------------------------------


def test_honest_control_gets_full_marks(who, tool, space):
    _, graded = grade_tree(space, who, attacks.REFERENCE_SOURCE, env=with_tool(tool))
    grade = finished(graded)
    sandbox = grade["chapters"][0].get("sandbox", {})
    assert sandbox.get("tool", tool) == tool, f"asked for {tool}, the worker ran in {sandbox}"
    assert grade["score"] == grade["max_score"] > 0, graded.describe()
    assert set(graded.statuses(SOFTMAX_PREFIX).values()) == {"passed"}
    assert_canary_passes(graded)


# --- reads outside the old deny-list -----------------------------------------------------------


def test_another_copy_of_the_course_gains_nothing(who, tool, space, planted):
    """A stub softmax that finds another copy of the course on the machine (outside the
    repository and /tmp) and runs the reference softmax it holds: it must still score 0."""
    decoy = planted / "course" / "reference_solutions" / "multi_head_attention.py"
    decoy.parent.mkdir(parents=True)
    shutil.copyfile(REFERENCE / "multi_head_attention.py", decoy)
    make_readable(planted)
    _, graded = grade_tree(space, who, attacks.finds_another_copy([str(decoy)]), env=with_tool(tool),
                           timeout=240)
    grade = finished(graded)
    assert_softmax_earns_nothing(graded)
    assert_canary_passes(graded)
    assert_score_is_the_passed_points(grade)


# --- secrets ------------------------------------------------------------------------------------


def test_secrets_reach_no_report(who, tool, space, planted):
    """Planted keys in a home folder, secrets in the grader's environment and a key in its session
    keyring: softmax raises (and prints) everything it could gather. No secret may appear in any
    report file or in the command's output."""
    secrets = {name: token(name) for name in ("ssh", "awsfile", "wandb", "awsenv", "keyring")}
    home = planted / "home" / "instructor"
    (home / ".ssh").mkdir(parents=True)
    (home / ".aws").mkdir()
    (home / ".ssh" / "id_rsa").write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{secrets['ssh']}\n")
    (home / ".aws" / "credentials").write_text(f"[default]\naws_secret_access_key = {secrets['awsfile']}\n")
    make_readable(planted)
    (home / ".ssh" / "id_rsa").chmod(0o600)  # as ssh-keygen leaves it: the owner's alone
    give_to(home, who)  # the grading user's own home
    env = {"WANDB_API_KEY": secrets["wandb"], "AWS_SECRET_ACCESS_KEY": secrets["awsenv"], "HOME": str(home)}
    known = [str(home / ".ssh" / "id_rsa"), str(home / ".aws" / "credentials")]
    _, graded = grade_tree(space, who, attacks.gathers_secrets(known), env=with_tool(tool, env),
                           session_key=f"redteam-login={secrets['keyring']}")
    finished(graded)
    seen = graded.everything()
    leaked = sorted(name for name, value in secrets.items() if value in seen)
    assert not leaked, f"secrets in the grade's reports or output: {leaked}"
    assert_softmax_earns_nothing(graded)
    assert_canary_passes(graded)


# --- Unix sockets outside the sandbox -------------------------------------------------------------


def test_unix_sockets_outside_are_unreachable(who, tool, space, planted):
    folder = planted / "sock"
    folder.mkdir()
    folder.chmod(0o755)
    path = str(folder / "listener")
    listeners = []
    try:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        os.chmod(path, 0o777)  # anyone may connect, as to a desktop's or a daemon's socket
        abstract = token("abstract")
        hidden = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        hidden.bind("\0" + abstract)
        for sock in (listener, hidden):
            sock.listen(8)
            sock.setblocking(False)
            listeners.append(sock)
        _, graded = grade_tree(space, who, attacks.reaches_unix_sockets([path], [abstract]),
                               env=with_tool(tool))
        finished(graded)
        accepted = []
        for sock in listeners:
            try:
                connection, _ = sock.accept()
            except BlockingIOError:
                continue  # nothing connected
            connection.settimeout(1)
            try:
                accepted.append((sock.getsockname(), connection.recv(100)))
            except OSError:
                accepted.append((sock.getsockname(), b""))
            connection.close()
        assert not accepted, f"a listener outside the sandbox accepted the worker's connection: {accepted}"
        assert_softmax_full_marks(graded, "the worker reached a Unix socket outside its sandbox")
        assert_canary_passes(graded)
    finally:
        for sock in listeners:
            sock.close()


# --- terminals ----------------------------------------------------------------------------------


def test_terminals_are_out_of_reach(who, tool, space):
    """The grader runs on a terminal of the grading user's (its controlling terminal, stdin and
    stdout). The worker writes a secret to every terminal it can open, pushes it as input with
    TIOCSTI, and allocates pseudo-terminals: the secret must not reach the terminal, and no
    pseudo-terminal may appear on the host while it runs."""
    secret = token("pty")
    master, slave = os.openpty()
    slave_path = os.ttyname(slave)
    uid = as_user.USER_UID if who == "user" else os.geteuid()
    os.chown(slave_path, uid, -1)
    os.chmod(slave_path, 0o620)  # as a login leaves it: its owner's, and the tty group may write
    received = bytearray()

    def drain():
        while True:
            try:
                ready, _, _ = select.select([master], [], [], 0.5)
                if ready:
                    chunk = os.read(master, 65536)
                    if not chunk:
                        return
                    received.extend(chunk)
                elif stop.is_set():
                    return
            except OSError:
                return

    stop = threading.Event()
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        tree = student_tree(space, attacks.uses_terminals(secret, "PTYREPORT"))
        graded = grade_cli(tree, report_folder(space, who), who=who, terminal=slave, env=with_tool(tool))
    finally:
        time.sleep(0.5)
        stop.set()
        os.close(slave)
        reader.join(timeout=5)
        os.close(master)
    finished(graded)
    assert secret.encode() not in received, "the worker wrote to (or typed into) the grader's terminal"
    assert not graded.pts_seen, f"pseudo-terminals appeared on the host while the worker ran: {graded.pts_seen}"
    assert_canary_passes(graded)


# --- memory outside the address-space limit -------------------------------------------------------


def _host_segments(size: int) -> list[int]:
    try:
        lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except OSError:
        return []
    return [int(f.split()[1]) for f in lines if len(f.split()) > 3 and int(f.split()[3]) == size]


def _remove_segments(ids: list[int]) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for ident in ids:
        libc.shmctl(ident, 0, None)  # IPC_RMID


def test_memory_beyond_the_worker_limit_is_refused(who, tool, space):
    """memfd files, SysV shared memory, /dev/shm, pipe and socket buffers hold memory outside the
    worker's 4 GiB address-space limit. The worker tries to hold 6 GiB that way: it must manage
    far less (under 1 GiB), and leave nothing behind on the host."""
    cap, segment = 6 * GiB, 256 * MiB + 3 * 4096  # an odd segment size, to find ours on the host
    prefix = f"{token('shm')}-"
    tree = student_tree(space, attacks.hoards_memory(cap, segment, prefix))
    try:
        graded = grade_cli(tree, report_folder(space, who), who=who, real=True, timeout=240,
                           env=with_tool(tool))
        leftovers = _host_segments(segment)
        shm_files = sorted(p.name for p in Path("/dev/shm").glob(f"{prefix}*"))
    finally:
        _remove_segments(_host_segments(segment))
        for path in Path("/dev/shm").glob(f"{prefix}*"):
            path.unlink()
    finished(graded)
    assert not leftovers, f"SysV shared memory left on the host: {len(leftovers)} segments"
    assert not shm_files, f"files left in the host's /dev/shm: {shm_files}"
    held = [int(n) for n in re.findall(r"HOARD memfd=\d+ sysv=\d+ shm=\d+ pipes=\d+ sockets=\d+ total=(\d+)",
                                       graded.messages())]
    if held:
        assert max(held) < 1 * GiB, f"the worker held {max(held) / GiB:.1f} GiB outside its limit"
    else:  # the worker died before it could say: judge from the host
        assert graded.mem_drop is not None and graded.mem_drop < 3 * GiB, (
            f"the host lost {graded.mem_drop / GiB:.1f} GiB of available memory while it ran")
    assert_canary_passes(graded)


# --- the request pipe, clogged --------------------------------------------------------------------


def test_a_clogged_request_pipe_does_not_hang_the_grader(who, tool, space):
    """The worker shrinks its request pipe to one page, fills it, answers one call right and never
    reads again: the grader's next request has nowhere to go. The grade must end in bounded time
    with that test a timeout or an error, and the canary intact."""
    _, graded = grade_tree(space, who, attacks.clogs_the_request_pipe(), real=True, timeout=120,
                           env=with_tool(tool))
    finished(graded)
    assert graded.seconds < 90, f"the grade took {graded.seconds:.0f} s"
    softmax = graded.statuses(SOFTMAX_PREFIX)
    assert {"timeout", "error"} & set(softmax.values()), graded.describe()
    assert_canary_passes(graded)


# --- forged reply frames --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pickle_bomb", "wrong_id", "claims_255mib"])
def test_a_forged_reply_frame_is_refused_cheaply(kind, tmp_path, control):
    """The worker writes its own frame on the reply pipe (with the worker's own framing and the
    right request id where it finds them): a 24 MiB archive of pickle opcodes, a reply under
    another request's id, a header announcing 255 MiB. Each is refused before it costs the grader
    time or memory: the grade finishes quickly and the grader's peak memory stays near the
    honest control's."""
    tree = student_tree(tmp_path, attacks.forges_reply(kind))
    graded = grade_cli(tree, report_folder(tmp_path, "root"), real=True, timeout=120)
    finished(graded)
    first = graded.tests()[0]
    assert first["name"].startswith(SOFTMAX_PREFIX) and first["status"] in ("error", "failed"), graded.describe()
    assert_canary_passes(graded)
    assert graded.seconds < control["seconds"] + 20, f"the grade took {graded.seconds:.0f} s"
    assert graded.peak_rss is not None and control["peak_rss"]
    extra = graded.peak_rss - control["peak_rss"]
    assert extra < 256 * MiB and graded.peak_rss < 1.5 * GiB, (
        f"the grader peaked at {graded.peak_rss / MiB:.0f} MiB, {extra / MiB:.0f} MiB over the honest control")


# --- oversized things from the student --------------------------------------------------------------


def test_an_8mb_source_file_fails_quickly(tmp_path, control):
    """Valid Python of 8 MB (the reference plus one huge list literal): the chapter fails with a
    message about its size, quickly, and the grader's memory stays near the control's."""
    tree = student_tree(tmp_path, attacks.huge_source(8 * 10**6))
    graded = grade_cli(tree, report_folder(tmp_path, "root"), real=True, timeout=180)
    grade = finished(graded)
    assert grade["score"] == 0, graded.describe()
    for test in graded.tests():
        assert re.search(r"large|big|size|bytes|MiB|MB|limit", test["message"]), test
    assert graded.seconds < control["seconds"] + 20, f"the grade took {graded.seconds:.0f} s"
    extra = graded.peak_rss - control["peak_rss"]
    assert extra < 256 * MiB, f"the grader peaked {extra / MiB:.0f} MiB over the honest control"


def test_a_20mib_exception_name_keeps_the_reports_small(tmp_path):
    tree = student_tree(tmp_path, attacks.raises_with_a_huge_name(20 * MiB))
    graded = grade_cli(tree, report_folder(tmp_path, "root"), timeout=240)
    finished(graded)
    for name in ("grade.json", "results.json"):
        size = (graded.report / name).stat().st_size
        assert size < 2 * 10**6, f"{name} is {size / 10**6:.1f} MB"
    assert len(graded.stdout) + len(graded.stderr) < 200_000
    assert_softmax_earns_nothing(graded)
    assert_canary_passes(graded)


# --- text that a terminal would act on -------------------------------------------------------------

ESCAPES = ("\x1b[2J\x1b[H\x1b]0;pwned\x07\x1b]8;;http://example.invalid\x1b\\link\x1b]8;;\x1b\\"
           "\x9b2J\x9d0;c1 title\x9c\r\x08\x07\x00\x7f")
FAKE_TABLE = ("multi_head_attention                 59 / 59      59      0      0       0\n"
              "total                                59 / 59")
BIDI_TEXT = ("access \u202egnp.exe\u202c \u2066isolated\u2069 \u2067rtl\u2069 \u202bembedded\u202c "
             "\u202aleft\u202c \u202dforce\u202c")


def test_control_characters_reach_no_terminal_or_report(tmp_path):
    """An exception message and printed output full of escape sequences (clear screen, cursor
    home, window title, hyperlink; C1 forms too), carriage returns and a fake "59 / 59" table:
    no C0 or C1 control (but newline and tab) in stdout, stderr or any report string, and the
    table's total line is the real one."""
    message = ESCAPES + "\r" + FAKE_TABLE.replace("\n", "\r\n") + "\n" + FAKE_TABLE
    tree = student_tree(tmp_path, attacks.raises_with(message, printed=ESCAPES + FAKE_TABLE + ESCAPES))
    graded = grade_cli(tree, report_folder(tmp_path, "root"))
    grade = finished(graded)
    found = sorted({f"U+{ord(c):04X}" for c in CONTROLS.findall(graded.everything())})
    assert not found, f"control characters in the grade's output or reports: {found}"
    totals = [line for line in graded.stdout.splitlines() if line.startswith("total")]
    assert totals and all(f"{grade['score']:g} / {grade['max_score']:g}" in line for line in totals), totals
    assert_softmax_earns_nothing(graded)
    assert_canary_passes(graded)


def test_bidirectional_overrides_reach_no_terminal_or_report(tmp_path):
    """Unicode bidirectional overrides and isolates ("Trojan Source") in a student's message
    and output reorder what an instructor reads: none in stdout, stderr or any report string."""
    tree = student_tree(tmp_path, attacks.raises_with(BIDI_TEXT, printed=BIDI_TEXT))
    graded = grade_cli(tree, report_folder(tmp_path, "root"))
    finished(graded)
    found = sorted({f"U+{ord(c):04X}" for c in BIDI.findall(graded.everything())})
    assert not found, f"bidirectional controls in the grade's output or reports: {found}"
    assert_canary_passes(graded)


# --- the grader killed: its worker tree goes with it -----------------------------------------------


def test_a_killed_grader_leaves_no_worker_and_no_temporary_folder(tmp_path):
    marker = token("killed")
    tree = student_tree(tmp_path, attacks.sleeps_in_softmax(30) + f"\n# {marker}\n")
    report = report_folder(tmp_path, "root")
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    private_tmp.chmod(0o1777)
    before = {p.name for p in Path("/tmp").glob("graders-*")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")} | {"TMPDIR": str(private_tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "graders", *grade_args(tree, report)], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watcher = Watcher(proc.pid, set())
    watcher.start()
    try:
        worker_seen = _wait_for_worker(proc, tree, watcher, limit=120)
        assert worker_seen, "no worker process appeared under the grader"
        time.sleep(3)  # the worker is inside softmax's sleep by now
        watcher.poll()
        watcher.stop()
        below = dict(watcher.seen)
        assert below, "no process was seen below the grader"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5
        survivors = {}
        while time.monotonic() < deadline:
            survivors = {pid: s for pid, s in below.items() if alive(pid, s)}
            survivors |= {pid: s for pid, s in processes_mentioning(str(tree)).items() if alive(pid, s)}
            if not survivors:
                break
            time.sleep(0.2)
        assert not survivors, f"{len(survivors)} processes outlived the killed grader: " + ", ".join(
            _cmdline(pid)[:120] for pid in survivors)
        while True:  # the same few seconds, for whatever cleans up after the grader
            left = sorted(p.name for p in private_tmp.iterdir())
            left += [str(p) for p in Path("/tmp").glob("graders-*") if p.name not in before and _holds(p, marker)]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert not left, f"temporary folders left behind by the killed grade: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        watcher.stop()
        watcher.kill_all()
        reap(tree)
        for path in Path("/tmp").glob("graders-*"):
            if path.name not in before and _holds(path, marker):
                shutil.rmtree(path, ignore_errors=True)


def _wait_for_worker(proc, tree: Path, watcher: Watcher, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        below = descendants_of(proc.pid)
        if any(str(tree) in _cmdline(pid) for pid in below) or len(below) >= 2:
            watcher.poll()
            return True
        time.sleep(0.2)
    return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


def _holds(folder: Path, marker: str) -> bool:
    """Whether a folder (a grade's temporary folder) holds a file containing `marker`."""
    try:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.stat().st_size < 10**6:
                if marker.encode() in path.read_bytes():
                    return True
    except OSError:
        pass
    return False


# --- the chapter's wall-clock budget ------------------------------------------------------------------


def test_a_slow_submission_is_stopped_by_the_chapter_budget(tmp_path):
    """Every softmax call sleeps 1.5 s (under the 10 s call limit): with an 8 s chapter budget the
    grade still ends soon, and the tests it did not reach are timeouts."""
    tree = student_tree(tmp_path, attacks.sleeps_in_softmax(1.5))
    graded = grade_cli(tree, report_folder(tmp_path, "root"), env={"GRADERS_CHAPTER_BUDGET_S": "8"}, timeout=150)
    grade = finished(graded)
    assert graded.seconds < 45, f"the grade took {graded.seconds:.0f} s with an 8 s chapter budget"
    tests = graded.tests()
    assert tests[-1]["status"] == "timeout", graded.describe()
    assert any(t["status"] == "timeout" for t in tests if t["name"].startswith(SOFTMAX_PREFIX)), graded.describe()
    assert_score_is_the_passed_points(grade)


# --- special files and links as the module ---------------------------------------------------------


def _special_module(kind: str, tree: Path, planted: Path | None) -> None:
    target = tree / "multi_head_attention.py"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
        (target / "__init__.py").write_text(attacks.REFERENCE_SOURCE)
    elif kind == "link_to_proc_self_mem":
        target.symlink_to("/proc/self/mem")
    elif kind == "link_to_reference":
        target.symlink_to(REFERENCE / "multi_head_attention.py")
    elif kind == "link_to_hidden_tests":
        target.symlink_to(HIDDEN_SUITE)
    elif kind == "link_to_copy_outside":
        copy = planted / "multi_head_attention.py"
        shutil.copyfile(REFERENCE / "multi_head_attention.py", copy)
        copy.chmod(0o644)
        target.symlink_to(copy)
    else:
        raise ValueError(kind)


@pytest.mark.parametrize("kind", ["fifo", "directory", "link_to_proc_self_mem", "link_to_reference",
                                  "link_to_hidden_tests", "link_to_copy_outside"])
def test_a_special_module_file_finishes_with_no_marks(kind, tmp_path, request):
    """multi_head_attention.py is a FIFO, a folder, or a link (to /proc/self/mem, to the
    reference, to the hidden tests, to a copy of the reference outside the repository): the
    grade finishes, no hang, the module earns nothing, and no hidden test source shows."""
    tree = student_tree(tmp_path, None)
    _special_module(kind, tree, request.getfixturevalue("planted") if kind == "link_to_copy_outside" else None)
    graded = grade_cli(tree, report_folder(tmp_path, "root"), timeout=120)
    finished(graded)
    assert graded.seconds < 60, f"the grade took {graded.seconds:.0f} s"
    assert_softmax_earns_nothing(graded)
    assert_no_hidden_source(graded.everything(), graded.report)


def test_a_hostile_tree_layout_costs_nothing(tmp_path):
    """An honest module in a tree built to hurt the copy the grader makes for the worker: a
    20 GiB sparse file, 5000 files, a folder chain 100 deep, a symbolic-link loop, a link to /,
    a link to the hidden tests, and names holding escape sequences, bidirectional overrides and
    newlines. The grade finishes quickly with full marks, and none of it shows anywhere."""
    tree = student_tree(tmp_path, attacks.REFERENCE_SOURCE)
    with open(tree / "data.bin", "wb") as handle:
        handle.truncate(20 * GiB)
    many = tree / "many"
    many.mkdir()
    for i in range(5000):
        (many / f"f{i}.py").touch()
    deep = tree / "deep"
    deep.mkdir()
    for _ in range(100):
        deep = deep / "d"
        deep.mkdir()
    (tree / "loop_a").symlink_to("loop_b")
    (tree / "loop_b").symlink_to("loop_a")
    (tree / "root_link").symlink_to("/")
    (tree / "hidden_link.py").symlink_to(HIDDEN_SUITE)
    odd = "\x1b[2J\x1b]0;title\x07\u202eyp.\nname"
    (tree / f"{odd}.py").write_text("x = 1\n")
    (tree / odd).mkdir()
    (tree / odd / f"{odd}.txt").write_text("x")
    graded = grade_cli(tree, report_folder(tmp_path, "root"), timeout=120)
    finished(graded)
    assert graded.seconds < 60, f"the grade took {graded.seconds:.0f} s"
    assert_softmax_full_marks(graded, "the honest module lost marks in a crowded tree")
    assert_canary_passes(graded)
    seen = graded.everything()
    found = sorted({f"U+{ord(c):04X}" for c in CONTROLS.findall(seen) + BIDI.findall(seen)})
    assert not found, f"control characters from file names in the grade's output or reports: {found}"
    assert_no_hidden_source(seen, graded.report)


# --- the worker turns on what it can see -----------------------------------------------------------


def test_killing_what_it_can_see_does_not_stop_the_grade(tmp_path):
    tree = student_tree(tmp_path, None)
    (tree / "multi_head_attention.py").write_text(attacks.kills_what_it_can_see(str(tree)))
    graded = grade_cli(tree, report_folder(tmp_path, "root"), real=True, timeout=120)
    finished(graded)
    assert_canary_passes(graded)


def test_a_worker_that_abandons_its_pipes_is_cleaned_up(tmp_path):
    """The worker closes its ends of both pipes and lingers: the test it was in fails (error or
    timeout), the grade goes on to full marks for the canary, quickly, and nothing of it survives
    the grade."""
    tree = student_tree(tmp_path, attacks.abandons_its_pipes())
    graded = grade_cli(tree, report_folder(tmp_path, "root"), real=True, timeout=120)
    finished(graded)
    assert graded.seconds < 45, f"the grade took {graded.seconds:.0f} s"
    first = graded.tests()[0]
    assert first["status"] in ("error", "timeout"), graded.describe()
    assert_canary_passes(graded)
    assert not [t for t in graded.tests() if "internal error" in t["message"] or "grader hit" in t["message"]], (
        "the grader blamed itself:\n" + graded.describe())


def test_a_thread_bomb_is_bounded(tmp_path):
    tree = student_tree(tmp_path, attacks.spawns_threads(20000))
    graded = grade_cli(tree, report_folder(tmp_path, "root"), timeout=120)
    finished(graded)
    assert graded.seconds < 60, f"the grade took {graded.seconds:.0f} s"
    assert_canary_passes(graded)


# --- grade-batch: links and special files among the submissions -------------------------------------


def _hidden_needles() -> list[str]:
    """What of the hidden suite no report may hold: its code (long, distinctive lines) and the
    names it defines (helpers, tests of other tasks), not what is shown anyway: its docstrings
    (the first line of each is a message's "Property:") and what the student-visible files hold."""
    import ast

    source = HIDDEN_SUITE.read_text()
    tree = ast.parse(source)
    docs = [ast.get_docstring(n) or "" for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module))]
    visible = "\n".join([*docs, *(p.read_text() for p in (ROOT / "graders" / "public").glob("*.py")),
                         *(p.read_text() for p in (ROOT / "reference_solutions").glob("*.py")),
                         *(p.read_text() for p in (ROOT / "assignments").glob("*.py"))])
    needles = []
    for line in source.splitlines():
        line = line.strip()
        if len(line) >= 30 and not line.startswith("#") and line not in visible:
            needles.append(line)
    names = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    needles += sorted(name for name in names if len(name) >= 8 and not re.search(rf"\b{name}\b", visible))
    return needles


def assert_no_hidden_source(everything: str, report: Path) -> None:
    """No line or name of the hidden suite in `everything`, but the names of tests that were
    graded (every report shows those)."""
    graded_names = set()
    for path in report.rglob("grade.json") if report.is_dir() else ():
        try:
            graded_names |= {t["name"].split("[")[0] for c in json.loads(path.read_text())["chapters"]
                             for t in c["tests"]}
        except (OSError, ValueError, KeyError, TypeError):
            pass
    found = [n for n in _hidden_needles() if n not in graded_names and n in everything]
    assert not found, f"hidden test source in the grade's reports or output: {found[:5]}"


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("batch")
    submissions, report = folder / "submitted", folder / "reports"
    students = {
        "honest": "copy", "link_reference": REFERENCE / "multi_head_attention.py", "link_hidden": HIDDEN_SUITE,
        "link_other_student": Path("../honest/multi_head_attention.py"), "link_proc_self_mem": Path("/proc/self/mem"),
        "fifo": "fifo", "link_folder_to_reference": "folder",
    }
    for student, what in students.items():
        (submissions / student).mkdir(parents=True)
        target = submissions / student / "multi_head_attention.py"
        if what == "folder":  # no module of its own: a folder that is a link to the reference's
            (submissions / student / "assignment").symlink_to(REFERENCE, target_is_directory=True)
        elif what == "copy":
            shutil.copyfile(REFERENCE / "multi_head_attention.py", target)
        elif what == "fifo":
            os.mkfifo(target)
        else:
            target.symlink_to(what)
    command = [sys.executable, "-m", "graders", "grade-batch", str(submissions), "--report", str(report),
               "--no-progress", "--workers", "1", "--timeout", "120", "--chapter", "2",
               "--task", "softmax", "--task", "causal_mask"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    start = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                              start_new_session=True)
        result = {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
    except subprocess.TimeoutExpired as exc:
        result = {"returncode": None, "stdout": str(exc.stdout or ""), "stderr": str(exc.stderr or "")}
    finally:
        reap(submissions)
        reap(report)
    result |= {"seconds": time.monotonic() - start, "students": sorted(students), "report": report}
    rows = {}
    try:
        import csv

        with open(report / "gradebook.csv", newline="") as handle:
            rows = {row["student"]: row for row in csv.DictReader(handle)}
    except OSError:
        pass
    result["rows"] = rows
    return result


def _batch_finished(batch: dict) -> None:
    assert batch["returncode"] == 0, (f"the batch did not complete (exit {batch['returncode']}):\n"
                                      f"{batch['stdout'][-2000:]}\n{batch['stderr'][-3000:]}")


def test_batch_finishes_with_a_row_per_student(batch):
    _batch_finished(batch)
    assert sorted(batch["rows"]) == batch["students"], sorted(batch["rows"])


def test_batch_gives_the_honest_student_full_marks(batch):
    _batch_finished(batch)
    row = batch["rows"]["honest"]
    assert row["status"] == "graded" and float(row["total"]) == float(row["max_score"]) > 0, row


@pytest.mark.parametrize("student", ["link_reference", "link_other_student", "link_folder_to_reference"])
def test_batch_gives_a_linked_module_no_full_marks(batch, student):
    _batch_finished(batch)
    row = batch["rows"][student]
    full = row["status"] == "graded" and row["total"] and float(row["total"]) == float(row["max_score"])
    assert not full, f"{student} got full marks through a symbolic link: {row}"


def test_batch_reports_hold_no_hidden_test_source(batch):
    texts = [batch["stdout"], batch["stderr"]]
    report = batch["report"]
    if report.is_dir():
        texts += [p.read_bytes().decode("utf-8", "replace") for p in report.rglob("*")
                  if p.is_file() and not p.is_symlink()]
    assert_no_hidden_source("\n".join(texts), report)
