"""Confinement of the worker process, set up before any student code (or torch) is imported.

Standard library only: the child (`_child.py`) imports this file by path, and the trusted side
imports it as `graders._sandbox` to build the plan. Modes:

* ``namespaces`` (Linux, as root or where unprivileged user namespaces are allowed). The worker
  sees a file system built up from nothing, an allow-list: the Python installation and the
  libraries it loads, the copy of the student tree (with the worker's own three source files),
  a `/proc` of its own PID namespace, a `/dev` holding only `null`, `zero`, `random` and
  `urandom`, and size-limited tmpfs scratch folders. Nothing else of the host exists for it:
  other homes, `/srv`, `/opt`, `/etc`, sockets, `/dev/pts`, other copies of the course. It has
  a network namespace with no usable interface and an IPC namespace of its own. Two tools
  build that view, the same plan for both:
    - ``bubblewrap`` (`bwrap`, Debian's package), preferred wherever it runs;
    - ``graders``, this file's own fallback: the same mounts on a tmpfs root, then pivot_root.
  Then, in the worker itself: as root, a uid of its own (no account, owns no file, unique
  among the grader's workers); otherwise every capability dropped; no_new_privs; and a seccomp
  filter (`seccomp_filter`) that refuses new processes (threads only), new namespaces, mounts,
  memfd, SysV shared memory and message queues, keyrings, io_uring, ptrace, bpf and perf.
  So the worker is one process: its address-space limit bounds its memory, with the tmpfs
  sizes and the open-file limit (pipes) on top, and its threads count against RLIMIT_NPROC.
  The whole tree dies with the grader: every process in it has a parent-death signal, and it
  is the init of its PID namespace's child.
* ``basic`` (macOS, or a kernel that refuses namespaces): resource limits, plus audit hooks in
  the child that refuse sockets, writes outside the scratch folder and reads of hidden paths.
  Audit hooks stop ordinary Python code, not `ctypes`: this mode is a speed bump, which the
  instructor guide says plainly.

In every mode the worker may not start processes through Python (`os.fork`, `subprocess`,
...), and resource limits (address space, CPU time, file size, open files, core dumps;
threads where they can be counted per worker) are set just before the student's modules are
imported.
"""

from __future__ import annotations

import os
import signal
import struct
import sys

# Linux constants (linux/sched.h, linux/mount.h, linux/prctl.h, linux/seccomp.h, linux/filter.h).
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_THREAD = 0x10000000, 0x20000000, 0x40000000, 0x00010000
NEW_NAMESPACES = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 0x400, 0x800, 0x200000, 0x1000000
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_SECCOMP, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 22, 24, 38
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000

# The worker's only writable places: fresh tmpfs folders of a fixed size (their pages are
# memory, so the sizes are part of the worker's memory bound).
SCRATCH_DIRS = {"/tmp": 64 * 2**20, "/dev/shm": 16 * 2**20}
WORKDIR = "/tmp/work"  # the worker's working directory and HOME inside the namespaces
DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
UID_BASE = 1 << 20  # as root, the worker runs as UID_BASE + a number of its own: no account, owns nothing
NPROC_HEADROOM = 64  # threads the worker may add (torch needs a few)
OPEN_FILES = 256  # bounds what the worker can hold in pipe buffers (at most 1 MiB each)

# Python operations that start a process; the worker refuses them in every mode.
PROCESS_EVENTS = frozenset({"os.fork", "os.forkpty", "os.system", "os.posix_spawn", "os.spawn", "os.exec",
                            "subprocess.Popen", "pty.spawn"})
SOCKET_EVENTS = frozenset({"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo"})

# System calls the worker never needs, by architecture (asm/unistd_64.h, asm-generic/unistd.h):
# they would let it start processes, leave its namespaces, hold memory its address-space limit
# does not count (memfd, SysV shared memory and queues, a tmpfs of a nested user namespace),
# or reach the kernel's keyrings, tracers and JITs. `clone` is allowed for threads only.
_DENIED = ("fork", "vfork", "clone3", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
           "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
           "memfd_create", "memfd_secret", "shmget", "msgget", "keyctl", "add_key", "request_key",
           "io_uring_setup", "io_uring_enter", "io_uring_register", "ptrace", "process_vm_readv",
           "process_vm_writev", "bpf", "perf_event_open", "userfaultfd", "kexec_load", "init_module",
           "finit_module", "personality")
_SYSCALLS = {
    "x86_64": {"audit_arch": 0xC000003E, "clone": 56, "pivot_root": 155, "fork": 57, "vfork": 58, "clone3": 435,
               "unshare": 272, "setns": 308, "mount": 165, "umount2": 166, "chroot": 161, "open_tree": 428,
               "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
               "mount_setattr": 442, "memfd_create": 319, "memfd_secret": 447, "shmget": 29, "msgget": 68,
               "keyctl": 250, "add_key": 248, "request_key": 249, "io_uring_setup": 425, "io_uring_enter": 426,
               "io_uring_register": 427, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
               "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "kexec_load": 246, "init_module": 175,
               "finit_module": 313, "personality": 135},
    "aarch64": {"audit_arch": 0xC00000B7, "clone": 220, "pivot_root": 41, "clone3": 435, "unshare": 97,
                "setns": 268, "mount": 40, "umount2": 39, "chroot": 51, "open_tree": 428, "move_mount": 429,
                "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
                "memfd_create": 279, "memfd_secret": 447, "shmget": 194, "msgget": 186, "keyctl": 219,
                "add_key": 217, "request_key": 218, "io_uring_setup": 425, "io_uring_enter": 426,
                "io_uring_register": 427, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
                "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "kexec_load": 104, "init_module": 105,
                "finit_module": 273, "personality": 92},
}
_X32_BIT = 0x40000000  # x86_64's x32 system call numbers: refused whole

# Environment variables the worker keeps from the grader's (an allow-list: a secret in the
# grader's environment, WANDB_API_KEY or AWS_*, never reaches student code). Locale and the
# math libraries' tuning; everything else the child needs is set by the trusted side.
ENV_KEEP = ("LANG", "LANGUAGE", "TZ")
ENV_KEEP_PREFIXES = ("LC_", "OPENBLAS_", "MKL_", "OMP_", "KMP_", "GOMP_")


class SandboxUnavailable(OSError):
    """Namespaces could not be entered here (the kernel or the user forbids them)."""


# --- the trusted side: what the worker will see -------------------------------------------


def environment(source: dict[str, str], *, home: str) -> dict[str, str]:
    """The worker's environment: the allow-listed variables of `source`, then ours."""
    env = {k: v for k, v in source.items() if k in ENV_KEEP or k.startswith(ENV_KEEP_PREFIXES)}
    env.update(PATH="/usr/bin:/bin", HOME=home, TMPDIR=home, OMP_NUM_THREADS="1")
    return env


def plan(*, mode: str, tool: str, copy_root: str, scratch: str, uid: int) -> dict:
    """The confinement the child will set up, as JSON-able data.

    `copy_root` holds the copy of the student tree and the worker's own source files; it and
    the Python installation are all the worker's view shows (namespace mode), and all that the
    basic mode's audit hooks let Python code read. `scratch` is a fresh folder of the grader's
    (the basic mode's working directory; the "graders" tool's mount point for the new root).
    `uid` is the one the worker takes as root. `tool` is "bubblewrap" or "graders" (`choose_tool`).
    """
    binds = _installation() | {os.path.realpath(copy_root)}
    binds = sorted(p for p in binds if not any(p != q and _within(p, q) for q in binds))
    links: dict[str, str] = {}
    for entry in (sys.executable, _interpreter(sys.executable), *binds):
        if entry:
            links.update(_links_to(entry))
    links = {link: target for link, target in links.items() if not any(_within(link, b) for b in binds)}
    drop_uid = os.geteuid() == 0 and all(os.stat(p).st_mode & 0o005 == 0o005 for p in binds)
    return {"mode": mode, "tool": tool, "binds": binds, "links": sorted(links.items()), "devices": list(DEVICES),
            "scratch_dirs": SCRATCH_DIRS, "workdir": WORKDIR, "scratch": scratch, "uid": uid,
            "drop_uid": drop_uid}


def _installation() -> set[str]:
    """Folders the worker needs to run this interpreter and import torch: the installation and
    environment (never the grader's own sys.path, which holds the repository), and every other
    folder a shared library this process has loaded lies in (libc, libm, the locale)."""
    import sysconfig

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             *(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib"))}
    try:
        with open("/proc/self/maps") as handle:
            for line in handle:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].startswith("/") and ".so" in fields[5]:
                    paths.add(os.path.dirname(fields[5].strip()))
    except OSError:
        pass
    return {os.path.realpath(p) for p in paths if os.path.isdir(p)}


def _interpreter(executable: str) -> str:
    """The ELF program interpreter (`/lib64/ld-linux-x86-64.so.2`) that `executable` names, or ''."""
    try:
        with open(os.path.realpath(executable), "rb") as handle:
            head = handle.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only
                return ""
            order = "<" if head[5] == 1 else ">"
            phoff, = struct.unpack_from(order + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
            for index in range(phnum):
                handle.seek(phoff + index * phentsize)
                kind, _, offset, _, _, size = struct.unpack(order + "IIQQQQ", handle.read(40))
                if kind == 3:  # PT_INTERP
                    handle.seek(offset)
                    return handle.read(size).rstrip(b"\0").decode()
    except (OSError, struct.error, UnicodeDecodeError):
        pass
    return ""


def _links_to(path: str) -> dict[str, str]:
    """The symbolic links met on the way to `path` (`/lib64` -> `usr/lib64`), which the view
    must hold too so that the path resolves inside it as it does outside."""
    links: dict[str, str] = {}
    pending = [part for part in path.split("/") if part][::-1]
    current = "/"
    for _ in range(64):  # a bound on link chains
        if not pending:
            break
        part = pending.pop()
        candidate = os.path.join(current, part)
        if os.path.islink(candidate):
            target = os.readlink(candidate)
            links[candidate] = target
            pending.extend([p for p in target.split("/") if p][::-1])
            if target.startswith("/"):
                current = "/"
        else:
            current = candidate
    return links


def _ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(1, len(parts))]


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


_TOOL: dict[str, str] = {}


def choose_tool(wanted: str = "auto") -> str:
    """"bubblewrap" where `bwrap` can start a sandbox here, else "graders" (the fallback).

    `wanted` (GRADERS_SANDBOX_TOOL) may force either; "bubblewrap" where it does not run is an
    error rather than a silent fallback."""
    if wanted == "graders":
        return "graders"
    if "bwrap" not in _TOOL:
        _TOOL["bwrap"] = _bwrap_works()
    if _TOOL["bwrap"]:
        return "bubblewrap"
    if wanted == "bubblewrap":
        raise SandboxUnavailable("GRADERS_SANDBOX_TOOL=bubblewrap, but bwrap is not installed or cannot run here")
    return "graders"


def _bwrap_works() -> bool:
    import shutil
    import subprocess

    bwrap = shutil.which("bwrap")
    if not bwrap or not sys.platform.startswith("linux"):
        return False
    probe = [bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--proc", "/proc",
             sys.executable, "-I", "-c", "pass"]
    try:
        return subprocess.run(probe, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=60, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def bwrap_command(plan_: dict) -> list[str]:
    """The `bwrap` command line that builds `plan_`'s view; the child's command follows it."""
    import shutil

    # As root, no user namespace: bwrap's would map only uid 0, and the worker could not then
    # take a uid of its own. Otherwise bwrap needs one, and --unshare-all makes it.
    unshare = (["--unshare-net", "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try"]
               if os.geteuid() == 0 else ["--unshare-all"])
    args = [shutil.which("bwrap") or "bwrap", *unshare, "--die-with-parent", "--tmpfs", "/"]
    for folder, size in plan_["scratch_dirs"].items():  # first: the student's copy may lie in /tmp
        args += ["--perms", "1777", "--size", str(size), "--tmpfs", folder]
    # bwrap makes missing parent folders 0700, which a worker under its own uid cannot cross.
    parents = {a for p in [*plan_["binds"], *(link for link, _ in plan_["links"])] for a in _ancestors(p)}
    for folder in sorted(parents - set(plan_["scratch_dirs"]), key=lambda p: (p.count("/"), p)):
        args += ["--perms", "0755", "--dir", folder]
    for path in plan_["binds"]:
        args += ["--ro-bind", path, path]
    for link, target in plan_["links"]:
        args += ["--symlink", target, link]
    args += ["--dir", "/dev"]
    for device in plan_["devices"]:
        args += ["--dev-bind", device, device]
    args += ["--proc", "/proc", "--perms", "0777", "--dir", plan_["workdir"], "--chdir", plan_["workdir"],
             "--remount-ro", "/"]
    return args + ["--"]


# --- the child side -----------------------------------------------------------------------


def confine(config: dict) -> dict:
    """Enter the sandbox the plan asks for; returns how it went, for the boot reply.

    May fork: with the "graders" tool only the innermost process (the worker) returns from here.
    """
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core files from any of our processes
    plan_ = config["sandbox"]
    if plan_["mode"] == "basic":
        _die_with_grader(config)
        os.chdir(plan_["scratch"])
        return {"mode": "basic", "why": "asked for"}
    libc = _libc()
    if plan_["tool"] == "bubblewrap":  # bwrap built the view and the namespaces already
        root = os.geteuid() == 0
    else:
        try:
            root = _enter_namespaces(libc, plan_, config)
        except SandboxUnavailable as exc:
            if plan_["mode"] == "namespaces":
                raise
            _die_with_grader(config)
            os.chdir(plan_["scratch"])
            return {"mode": "basic", "why": str(exc)}
    uid = _drop_privileges(libc, root, plan_["drop_uid"], plan_["uid"])
    filtered = seccomp_filter(libc)
    return {"mode": "namespaces", "tool": plan_["tool"], "uid": uid, "seccomp": filtered}


def _die_with_grader(config: dict) -> None:
    """Where Linux allows it, end with the grader (the basic mode has no namespace init)."""
    if sys.platform.startswith("linux"):
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != config.get("grader_pid", os.getppid()):
            os._exit(1)


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        errno = ctypes.get_errno()
        raise SandboxUnavailable(errno, f"{what}: {os.strerror(errno)}")


def _enter_namespaces(libc, plan_: dict, config: dict) -> bool:
    """Make the namespaces and the view with this file's own code; True when running as root.

    Three processes: the one the grader started (the relay: it mirrors how the worker ended),
    pid 1 of the new PID namespace (reaps orphans; when it ends, the kernel kills the rest),
    and the worker, which returns. Each dies with its parent."""
    if not sys.platform.startswith("linux"):
        raise SandboxUnavailable("namespaces exist only on Linux")
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != config.get("grader_pid", os.getppid()):
        os._exit(1)  # the grader died before the line above could take effect
    root = os.geteuid() == 0
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | (0 if root else CLONE_NEWUSER)
    _check(libc.unshare(flags), "unshare")
    if not root:
        # Inside, we are uid 65534 with every capability of the new namespace, until we drop them.
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"65534 {uid} 1")
        _write("/proc/self/gid_map", f"65534 {gid} 1")
    keep = (config["request_fd"], config["reply_fd"])
    status_r, status_w = os.pipe()
    if os.fork():
        _relay(status_r, status_w, keep)  # the original process: mirrors how the worker ended
    os.close(status_r)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _build_view(libc, plan_)
    worker = os.fork()
    if worker:
        _init(worker, status_w, keep)
    os.close(status_w)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    return root


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
    """The worker's file system from nothing: a tmpfs root (over the scratch folder, which
    no one else sees in this mount namespace), the plan's folders bound read only, its links,
    devices, scratch tmpfs and /proc; then pivot into it and drop the host's tree."""
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
    new_root = plan_["scratch"]
    _check(libc.mount(b"tmpfs", new_root.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=755"),
           "mounting the new root")
    for folder, size in plan_["scratch_dirs"].items():  # first: the student's copy may lie in /tmp
        os.makedirs(new_root + folder, mode=0o755, exist_ok=True)
        _check(libc.mount(b"tmpfs", (new_root + folder).encode(), b"tmpfs", MS_NOSUID | MS_NODEV,
                          f"size={size},mode=1777".encode()), f"mounting {folder}")
    for path in plan_["binds"]:
        _bind(libc, path, new_root + path, directory=True)
    for link, target in plan_["links"]:
        os.makedirs(os.path.dirname(new_root + link), mode=0o755, exist_ok=True)
        if not os.path.lexists(new_root + link):
            os.symlink(target, new_root + link)
    for device in plan_["devices"]:
        _bind(libc, device, new_root + device, directory=False)
    os.makedirs(new_root + "/proc", mode=0o755, exist_ok=True)
    _check(libc.mount(b"proc", (new_root + "/proc").encode(), b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None),
           "mounting /proc")
    workdir = new_root + plan_["workdir"]
    os.makedirs(workdir, exist_ok=True)
    os.chmod(workdir, 0o777)
    os.chdir(new_root)
    _check(libc.syscall(_SYSCALLS[os.uname().machine]["pivot_root"], b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "detaching the host's tree")
    os.chdir("/")
    _check(libc.mount(None, b"/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, None),
           "making the root read only")


def _bind(libc, source: str, target: str, *, directory: bool) -> None:
    """Bind `source` at `target`, read only (keeping the flags a user namespace may not clear)."""
    if directory:
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if not os.path.exists(target):
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))
    _check(libc.mount(source.encode(), target.encode(), None, MS_BIND | MS_REC, None), f"showing {source}")
    flags = dict(_mounts()).get(target, MS_NOSUID)
    readonly = MS_REMOUNT | MS_BIND | MS_RDONLY | flags | (MS_NODEV if directory else 0)
    _check(libc.mount(None, target.encode(), None, readonly, None), f"making {source} read only")


def _mounts() -> list[tuple[str, int]]:
    """(mount point, per-mount flags) of every mount in this namespace, the last one of a point last."""
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
    """As root: become `uid`. Otherwise (or where that uid could not read the Python
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


def seccomp_program(machine: str) -> list[tuple[int, int, int, int]] | None:
    """The classic-BPF filter for `machine` as (code, jt, jf, k) instructions, or None where
    this file has no system call table for it. Refused calls fail with EPERM (ENOSYS for
    clone3, so the C library falls back to clone, whose flags the filter can read)."""
    table = _SYSCALLS.get(machine)
    if table is None:
        return None
    ld_w_abs, jeq, jset, ret = 0x20, 0x15, 0x45, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, ...|BPF_JSET, BPF_RET
    eperm, enosys = SECCOMP_RET_ERRNO | 1, SECCOMP_RET_ERRNO | 38
    kill_arch = (ret, 0, 0, eperm)
    program = [(ld_w_abs, 0, 0, 4), (jeq, 1, 0, table["audit_arch"]), kill_arch, (ld_w_abs, 0, 0, 0)]
    if machine == "x86_64":
        program += [(jset, 0, 1, _X32_BIT), (ret, 0, 0, eperm)]
    for name in _DENIED:
        if name in table:
            program += [(jeq, 0, 1, table[name]), (ret, 0, 0, enosys if name == "clone3" else eperm)]
    # clone: threads (CLONE_THREAD set) and nothing that makes a namespace; args[0]'s low word.
    program += [(jeq, 0, 5, table["clone"]), (ld_w_abs, 0, 0, 16), (jset, 0, 2, CLONE_THREAD),
                (jset, 1, 0, NEW_NAMESPACES), (ret, 0, 0, SECCOMP_RET_ALLOW), (ret, 0, 0, eperm)]
    program.append((ret, 0, 0, SECCOMP_RET_ALLOW))
    return program


def seccomp_filter(libc) -> bool:
    """Install `seccomp_program` on this process (and every thread it starts); False where
    there is no table for this machine. Needs no_new_privs (or CAP_SYS_ADMIN) first."""
    import ctypes

    program = seccomp_program(os.uname().machine)
    if program is None:
        return False

    class Instruction(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(Instruction))]

    instructions = (Instruction * len(program))(*[Instruction(*i) for i in program])
    prog = Program(len(program), instructions)
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")
    return True


# --- guards and limits, set after torch is imported and before the student's modules ----


def set_limits(limits: dict, sandbox: dict) -> None:
    import resource

    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))
    if sandbox.get("mode") == "namespaces":
        resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))
        if hasattr(resource, "RLIMIT_NPROC"):
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


# Besides the plan's folders, what the basic mode lets Python code open: the devices the
# namespace view has, and what the interpreter and torch read about the machine.
BASIC_READABLE = (*DEVICES, "/proc/self", "/proc/cpuinfo", "/proc/meminfo", "/sys/devices/system/cpu")


def install_guards(plan_: dict, mode: str) -> None:
    """Audit hooks: no processes in any mode; in basic mode also no network, no reading outside
    the plan's folders (the same allow-list the namespace view is built from) and no writing
    outside the scratch folder."""
    scratch = (os.path.realpath(plan_.get("scratch", "/nonexistent")), "/dev/null")
    shown = (*plan_.get("binds", ()), *scratch, *BASIC_READABLE)
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
            if not any(_within(path, s) for s in shown):
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
