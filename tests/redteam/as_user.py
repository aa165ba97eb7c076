"""Run a command as an ordinary user (uid/gid 65534, "nobody") from root, for the red-team suite.

The grader must contain a hostile student whether an instructor runs it as root or as an
ordinary account; as an ordinary account the worker's sandbox has no root to lean on (it uses
an unprivileged user namespace), so the same attacks are worth running both ways.

The catch on this kind of machine: the interpreter lives under /root/.pyenv and /root is mode
700, so uid 65534 cannot even start Python. This launcher, started as root, therefore:

1. enters a private mount namespace (nothing it mounts is seen by any other process) and makes
   every mount in it private;
2. for every folder the command needs (the Python installation, `--expose PATH`) that sits below
   a folder the user may not traverse (like /root), covers that folder with a small tmpfs and
   binds the needed folder back at its own path, read only as it was;
3. optionally joins a fresh session keyring holding one key (`--session-key NAME=VALUE`), owned
   by the user, as a login session's keyring would (the red-team keyring case reads it back);
4. drops to the user for good (no supplementary groups, real/effective/saved uid and gid), and
   execs the command with the environment it was given.

Used as a script: ``python -I tests/redteam/as_user.py [--root] [--expose PATH]... [--session-key
NAME=VALUE] [--cwd DIR] -- COMMAND...``. `--root` skips the drop (the keyring step still runs),
so the suite's root runs can use the same keyring set-up. `command()` builds that argv;
`unavailable()` says why ordinary-user runs cannot happen here (None when they can).
Standard library only, Linux only.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
from pathlib import Path

USER_UID = USER_GID = 65534
# The grader the user runs is this checkout's: it must be able to read it (a checkout under a
# 0700 folder, such as `mktemp -d` makes, is root's alone).
GRADERS_PACKAGE = Path(__file__).resolve().parents[2] / "graders" / "__init__.py"
HERE = Path(__file__).resolve()

CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000
MS_REC, MS_PRIVATE, MS_BIND = 0x4000, 0x40000, 0x1000
MS_NOSUID, MS_NODEV = 0x2, 0x4
O_PATH = getattr(os, "O_PATH", 0o10000000)
SYS_ADD_KEY, SYS_KEYCTL = 248, 250  # x86_64
KEYCTL_JOIN_SESSION_KEYRING, KEY_SPEC_SESSION_KEYRING = 1, -3


def command(argv: list[str], *, root: bool = False, expose: tuple[str, ...] = (), session_key: str | None = None,
            cwd: str | None = None) -> list[str]:
    """The argv that runs `argv` through this launcher (as 65534 unless `root`)."""
    wrapped = [sys.executable, "-I", str(HERE)]
    if root:
        wrapped.append("--root")
    for path in expose:
        wrapped += ["--expose", str(path)]
    if session_key is not None:
        wrapped += ["--session-key", session_key]
    if cwd is not None:
        wrapped += ["--cwd", str(cwd)]
    return [*wrapped, "--", *argv]


def unavailable() -> str | None:
    """Why commands cannot run as an ordinary user here, or None when they can."""
    if not sys.platform.startswith("linux"):
        return "ordinary-user runs need Linux namespaces"
    if os.geteuid() != 0:
        return "ordinary-user runs switch from root to uid 65534; this test process is not root"
    for knob, what in (("/proc/sys/kernel/unprivileged_userns_clone", "kernel.unprivileged_userns_clone"),
                       ("/proc/sys/user/max_user_namespaces", "user.max_user_namespaces")):
        try:
            if Path(knob).read_text().strip() == "0":
                return f"unprivileged user namespaces are disabled ({what} = 0)"
        except OSError:
            pass
    probe = ("import ctypes, os, sys\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             f"readable = os.access({str(GRADERS_PACKAGE)!r}, os.R_OK)\n"
             f"ok = libc.unshare({CLONE_NEWUSER}) == 0\n"
             "why = 'userns' if ok else 'no-userns:' + os.strerror(ctypes.get_errno()).replace(' ', '_')\n"
             "print(os.getuid(), why, readable)\n")
    try:
        done = subprocess.run(command([sys.executable, "-I", "-c", probe]), capture_output=True, text=True,
                              timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"the launcher could not run: {exc}"
    words = done.stdout.split()
    if done.returncode != 0 or len(words) != 3:
        return f"the launcher failed (exit {done.returncode}): {(done.stdout + done.stderr).strip()[-300:]}"
    if words[0] != str(USER_UID):
        return f"the launcher did not switch users (uid {words[0]})"
    if words[1] != "userns":
        return f"uid {USER_UID} may not create a user namespace here ({words[1]})"
    if words[2] != "True":
        return (f"uid {USER_UID} cannot read this checkout ({GRADERS_PACKAGE}): a folder above it is closed to "
                "others (mktemp -d makes 0700 folders)")
    return None


# --- the launcher itself (runs as root, then becomes the user) -------------------------------


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _untraversable_ancestors(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    found = []
    for i in range(1, len(parts)):
        ancestor = "/" + "/".join(parts[:i])
        if not os.stat(ancestor).st_mode & 0o001:
            found.append(ancestor)
    return found


def _reachable_view(libc, expose: list[str]) -> None:
    """Cover every folder the user may not traverse on the way to `expose`; bind those back."""
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
    expose = sorted({os.path.realpath(p) for p in expose if os.path.exists(p)})
    fds = {p: os.open(p, O_PATH) for p in expose}  # before anything is covered
    blocked = sorted({a for p in expose for a in _untraversable_ancestors(p)}, key=lambda a: (a.count("/"), a))
    covered: list[str] = []
    for ancestor in blocked:
        if any(ancestor == c or ancestor.startswith(c + "/") for c in covered):
            continue
        _check(libc.mount(b"tmpfs", ancestor.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=0755"),
               f"covering {ancestor}")
        covered.append(ancestor)
    for path in expose:
        if not any(path.startswith(c + "/") for c in covered):
            continue
        if os.path.isdir(f"/proc/self/fd/{fds[path]}"):
            os.makedirs(path, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            open(path, "a").close()
        _check(libc.mount(f"/proc/self/fd/{fds[path]}".encode(), path.encode(), None, MS_BIND | MS_REC, None),
               f"binding {path} back")
    for fd in fds.values():
        os.close(fd)


def _join_keyring(libc, session_key: str) -> None:
    name, _, value = session_key.partition("=")
    if libc.syscall(SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
        raise OSError(ctypes.get_errno(), "joining a new session keyring")
    data = value.encode()
    if libc.syscall(SYS_ADD_KEY, b"user", name.encode(), data, len(data), ctypes.c_int(KEY_SPEC_SESSION_KEYRING)) < 0:
        raise OSError(ctypes.get_errno(), "adding the session key")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", action="store_true", help="stay root (only the keyring step runs)")
    parser.add_argument("--expose", action="append", default=[], help="a folder the command must reach")
    parser.add_argument("--session-key", default=None, help="NAME=VALUE: a key in a fresh session keyring")
    parser.add_argument("--cwd", default=None)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command_ = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command_:
        parser.error("no command given")
    libc = _libc()
    if not args.root:
        if os.geteuid() != 0:
            sys.exit("as_user.py: must start as root to switch users")
        pythons = {sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(command_[0]))}
        _reachable_view(libc, [*pythons, *args.expose])
        os.setgroups([])
        os.setresgid(USER_GID, USER_GID, USER_GID)
        os.setresuid(USER_UID, USER_UID, USER_UID)
    if args.session_key is not None:
        _join_keyring(libc, args.session_key)  # after the drop: the keyring and key are the user's
    if args.cwd:
        os.chdir(args.cwd)
    os.execvp(command_[0], command_)


if __name__ == "__main__":
    main(sys.argv[1:])
