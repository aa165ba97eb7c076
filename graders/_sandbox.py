"""Confinement of the worker process, set up before any student code (or torch) is imported.

Standard library only: the child (`_child.py`) imports this file by path, and the trusted side
imports it as `graders._sandbox` to build the plan. Two modes:

* ``namespaces`` (Linux, as root or where unprivileged user namespaces are allowed): the child
  enters new mount, network, PID and IPC namespaces. In the new mount namespace the repository,
  the report folder and the temporary folders are covered with empty tmpfs mounts, and only what
  the worker must read (a copy of the student tree, the Python installation) is bound back, read
  only; every other mount is remounted read only. The network namespace has no interface but a
  loopback that is down, so no address is reachable. A tiny init process reaps orphans, so a
  fork bomb dies with the worker. As root, the worker then drops to a uid of its own that owns
  no file and no other process; otherwise it drops every capability.
* ``basic`` (macOS, or a kernel that refuses namespaces): resource limits, plus audit hooks in
  the child that refuse sockets, writes outside the scratch folder and reads of hidden paths.
  Audit hooks stop ordinary Python code, not `ctypes`: this mode is a speed bump, which the
  instructor guide says plainly.

In both modes the worker may not start processes through Python (`os.fork`, `subprocess`, ...),
and resource limits (address space, CPU time, file size, core dumps; process count where it can
be counted per worker) are set last, just before the student's modules are imported.
"""

from __future__ import annotations

import os
import signal
import struct
import sys

# Linux constants (linux/sched.h, linux/mount.h, linux/prctl.h).
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 0x400, 0x800, 0x200000, 0x1000000
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
O_PATH = getattr(os, "O_PATH", 0o10000000)

# Temporary folders get a fresh, size-limited tmpfs each: the worker's only writable places.
SCRATCH_DIRS = {"/tmp": "64m", "/var/tmp": "16m", "/dev/shm": "16m"}
WORKDIR = "/tmp/work"  # the worker's working directory inside the namespaces
UID_BASE = 1 << 20  # as root, the worker runs as UID_BASE + its pid: unique, no account, owns nothing
NPROC_HEADROOM = 64  # processes and threads the worker may add (torch needs a few threads)

# Python operations that start a process; the worker refuses them in every mode.
PROCESS_EVENTS = frozenset({"os.fork", "os.forkpty", "os.system", "os.posix_spawn", "os.spawn", "os.exec",
                            "subprocess.Popen", "pty.spawn"})
SOCKET_EVENTS = frozenset({"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo"})


class SandboxUnavailable(OSError):
    """Namespaces could not be entered here (the kernel or the user forbids them)."""


# --- the trusted side: what to hide and what to show ------------------------------------


def plan(*, mode: str, student_dir: str, hide: list[str], scratch: str) -> dict:
    """The confinement the child will set up, as JSON-able data.

    `hide` are folders the worker must not see (the repository, the report folder);
    `student_dir` (a copy of the student's tree) and the Python installation stay readable.
    """
    import sysconfig

    # The installation only, never the grader's own sys.path (which holds the repository).
    python_paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                    *(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))}
    python_paths = {p for p in python_paths if os.path.isdir(p)}
    expose = sorted({os.path.realpath(p) for p in (student_dir, *python_paths)})
    hidden = {os.path.realpath(p) for p in hide} | set(SCRATCH_DIRS)
    drop_uid = os.geteuid() == 0 and all(os.stat(p).st_mode & 0o005 == 0o005 for p in expose)
    if drop_uid:
        # The worker's own uid must be able to walk down to what it reads: a folder it cannot
        # traverse (like /root holding a pyenv Python) is covered too, and the path rebuilt.
        hidden |= {a for p in expose for a in _ancestors(p) if not os.stat(a).st_mode & 0o001}
    return {"mode": mode, "expose": expose, "hide": sorted(hidden), "scratch": scratch, "drop_uid": drop_uid,
            "hide_basic": sorted(os.path.realpath(p) for p in hide)}


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


# --- the child side -----------------------------------------------------------------------


def confine(config: dict) -> dict:
    """Enter the sandbox the plan asks for; returns how it went, for the boot reply.

    May fork: in namespace mode only the innermost process (the worker) returns from here.
    """
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core files from any of our processes
    plan_ = config["sandbox"]
    if plan_["mode"] != "basic":
        try:
            uid = _enter_namespaces(plan_, config)
            return {"mode": "namespaces", "uid": uid}
        except SandboxUnavailable as exc:
            if plan_["mode"] == "namespaces":
                raise
            return {"mode": "basic", "why": str(exc)}
    os.chdir(plan_["scratch"])
    return {"mode": "basic", "why": "asked for"}


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        errno = ctypes.get_errno()
        raise SandboxUnavailable(errno, f"{what}: {os.strerror(errno)}")


def _enter_namespaces(plan_: dict, config: dict) -> int:
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable("namespaces exist only on Linux")
    libc = _libc()
    root = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | (0 if root else CLONE_NEWUSER)
    _check(libc.unshare(flags), "unshare")
    if not root:
        # Inside, we are uid 65534 with every capability of the new namespace, until we drop them.
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"65534 {uid} 1")
        _write("/proc/self/gid_map", f"65534 {gid} 1")
    keep = (config["request_fd"], config["reply_fd"])
    status_r, status_w = os.pipe()
    uid_inside = UID_BASE + os.getpid()  # the relay's pid: unique among live processes
    if os.fork():
        _relay(status_r, status_w, keep)  # the original process: mirrors how the worker ended
    os.close(status_r)
    # pid 1 of the new namespace. Should the relay die before this line, the worker still ends
    # as soon as the grader's pipes close, and this process with it.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _build_view(libc, plan_)
    worker = os.fork()
    if worker:
        _init(worker, status_w, keep)
    os.close(status_w)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return _drop_privileges(libc, root, plan_["drop_uid"], uid_inside)


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w") as handle:
            handle.write(text)
    except OSError as exc:
        raise SandboxUnavailable(f"{path}: {exc.strerror}") from None


def _relay(status_r: int, status_w: int, keep: tuple[int, ...]) -> None:
    """The process the grader started: wait for pid 1 of the namespace, then end like the worker."""
    os.close(status_w)
    for fd in keep:
        os.close(fd)  # so the grader sees the worker's death as end-of-file on its reply pipe
    _, status = os.wait()
    data = os.read(status_r, 4)
    if len(data) == 4:
        (status,) = struct.unpack(">i", data)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # the two whose action cannot change
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def _init(worker: int, status_w: int, keep: tuple[int, ...]) -> None:
    """pid 1 of the namespace: reap every orphan; when the worker ends, report how, and end
    (which kills whatever the worker left behind)."""
    for fd in keep:
        os.close(fd)
    while True:
        pid, status = os.wait()
        if pid == worker:
            os.write(status_w, struct.pack(">i", status))
            os._exit(0)


def _build_view(libc, plan_: dict) -> None:
    """The filesystem as the worker sees it: hidden folders empty, the rest read only."""
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
    fds = {p: os.open(p, O_PATH | os.O_DIRECTORY) for p in plan_["expose"]}  # before anything is covered
    covered: list[str] = []
    for folder in sorted(plan_["hide"], key=lambda p: (p.count("/"), p)):
        if any(_within(folder, c) for c in covered) or not os.path.isdir(folder):
            continue
        size, mode = (SCRATCH_DIRS[folder], "1777") if folder in SCRATCH_DIRS else ("1m", "755")
        _check(libc.mount(b"tmpfs", folder.encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                          f"size={size},mode={mode}".encode()), f"covering {folder}")
        covered.append(folder)
    bound: list[str] = []
    for path in sorted(plan_["expose"], key=lambda p: (p.count("/"), p)):
        if not any(_within(path, c) for c in covered) or any(_within(path, b) for b in bound):
            continue  # still visible as it is, or inside something bound back already
        os.makedirs(path, mode=0o755, exist_ok=True)
        _check(libc.mount(f"/proc/self/fd/{fds[path]}".encode(), path.encode(), None, MS_BIND | MS_REC, None),
               f"showing {path}")
        bound.append(path)
    for fd in fds.values():
        os.close(fd)
    _check(libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mounting /proc")
    writable = set(SCRATCH_DIRS) | {"/proc", "/dev"}
    for mount_point, flags in _mounts():
        if mount_point in writable or any(_within(mount_point, w) for w in ("/proc",)):
            continue
        # Remounting keeps the flags a user namespace may not clear (nosuid, nodev, ...).
        libc.mount(None, mount_point.encode(), None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags, None)
    os.makedirs(WORKDIR, mode=0o777, exist_ok=True)
    os.chmod(WORKDIR, 0o777)


def _mounts() -> list[tuple[str, int]]:
    """(mount point, per-mount flags) of every mount in this namespace."""
    names = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
             "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}
    found = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")  # "\040" is a space in a path
            flags = 0
            for option in fields[5].split(","):
                flags |= names.get(option, 0)
            found.append((point, flags))
    return found


def _drop_privileges(libc, root: bool, drop_uid: bool, uid: int) -> int:
    """As root: become a uid of our own. Otherwise (or where that uid could not read the Python
    installation): give up every capability, and rely on the read-only view for the rest."""
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # nothing exec'd can regain a capability
    if root and drop_uid:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # from uid 0 to non-zero: the kernel clears every capability
    else:
        uid = os.getuid()
        _capset_zero(libc)
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    os.chdir(WORKDIR)
    return uid


def _capset_zero(libc) -> None:
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set
    data = (Data * 2)()
    _check(libc.capset(ctypes.byref(header), data), "dropping capabilities")


# --- guards and limits, set after torch is imported and before the student's modules ----


def set_limits(limits: dict, sandbox: dict) -> None:
    import resource

    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))
    if sandbox.get("mode") == "namespaces" and hasattr(resource, "RLIMIT_NPROC"):
        # The count is per uid. As root we run under a uid of our own, so this bounds only us;
        # otherwise it also counts the user's other processes, which we add as headroom.
        limit = _processes_of(os.getuid()) + NPROC_HEADROOM
        resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))


def _processes_of(uid: int) -> int:
    """Tasks (processes and threads) the kernel counts against `uid`'s RLIMIT_NPROC, in this view."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry}/task"))
            except OSError:
                continue
    return count


def install_guards(plan_: dict, mode: str) -> None:
    """Audit hooks: no processes in any mode; in basic mode also no network, no reading hidden
    folders and no writing outside the scratch folder."""
    hidden = tuple(plan_.get("hide_basic", ()))
    shown = tuple(plan_.get("expose", ()))
    scratch = (os.path.realpath(plan_.get("scratch", "/nonexistent")), "/dev/null")
    basic = mode == "basic"

    def refuse(event: str, args: tuple) -> None:
        if event in PROCESS_EVENTS:
            raise PermissionError("the grading worker may not start processes; compute the result in this one")
        if not basic:
            return
        if event in SOCKET_EVENTS:
            raise PermissionError("the grading worker has no network access")
        if event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes)):
            path = os.path.realpath(os.fsdecode(args[0]))
            if any(_within(path, h) for h in hidden) and not any(_within(path, s) for s in shown):
                raise PermissionError(f"the grading worker may not read {path}")
            writing = event == "open" and _writes(args)
            if writing and not any(_within(path, s) for s in scratch):
                raise PermissionError(f"the grading worker may write only in its scratch folder, not {path}")

    sys.addaudithook(refuse)


def _writes(args: tuple) -> bool:
    """Whether an `open` audit event (path, mode, flags) opens for writing."""
    mode = args[1] if len(args) > 1 else None
    flags = args[2] if len(args) > 2 else 0
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC))
