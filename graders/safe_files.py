"""The one place the trusted side opens a file a student controls, or copies a student's tree.

A student decides what lies in their tree: a symbolic link to `reference_solutions/...` or to
`/proc/self/mem`, a FIFO that blocks whoever opens it, a device, a module of gigabytes, a file
swapped for any of these between a check and an open. The grader, the batch and the nbgrader
exchange read student files only through this module, which:

- never follows a symbolic link: every path component below the caller's root is opened with
  `O_NOFOLLOW` relative to its parent's descriptor, so no link, however placed or swapped in,
  is ever read through;
- opens nothing but regular files and folders (`O_NONBLOCK`: opening a FIFO returns at once,
  and the `fstat` that follows refuses it);
- reads at most the stated limit (plus one byte, to tell "exactly the limit" from "more").

`read_regular` reads one file or raises `UnsafeFile`, whose message is one line a student can
act on. `copy_tree` copies a student's tree (for the worker, or nbgrader's collect) and returns
what it left out. Standard library only: nbgrader's collect imports it in its own process.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Callable
from pathlib import Path

MiB = 2**20

# The largest course module is about 40 KB; 1 MiB is 25 times that. The banned-API scan builds
# the module's syntax tree in the grader's own process, and the worst-shaped file (one long
# literal) costs about 2 s and 300 MB per MiB there: an 8 MB module would cost gigabytes.
SOURCE_LIMIT_BYTES = 1 * MiB

# The worker's copy of a student tree. A tree holds the course modules (under 1 MiB each) and
# perhaps a few files of the student's own; 16 MiB per file keeps a small checkpoint or data
# file, 64 MiB in all and 2000 entries keep a stray virtualenv or dataset from filling the
# temporary folder (the copy is made once per chapter). The worker needs only the top-level
# modules, which are copied first (the walk is breadth-first), so a cap never costs them.
COPY_FILE_LIMIT_BYTES = 16 * MiB
COPY_TOTAL_LIMIT_BYTES = 64 * MiB
COPY_ENTRY_LIMIT = 2000  # files and folders
COPY_DEPTH_LIMIT = 16  # a course tree is flat; nbgrader and Gradescope add a level or two
SKIPPED_NAMES = ("__pycache__",)  # and every dot-name: caches, checkpoints, .git, virtualenvs

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = MiB
_NAME_SHOWN = 200  # characters of a file name a message quotes


class UnsafeFile(ValueError):
    """A student's file the grader will not read: a link, a special file, or too big. Its
    message is one line naming the file, e.g. "feedforward.py is a symbolic link; ..."."""


def read_regular(path: str | os.PathLike, limit: int, *, root: str | os.PathLike | None = None,
                 what: str = "a course module") -> bytes:
    """The bytes of the regular file at `path`, at most `limit` of them.

    Every component of `path` below `root` (default: the file's own folder) is opened without
    following links; `root` itself is the caller's and is followed. Raises `UnsafeFile` for a
    symbolic link (the file or a folder on the way), a FIFO, socket, device or folder, and a
    file over `limit` bytes (named as `what` in the message); FileNotFoundError if it is gone.
    """
    path = Path(path)
    root = path.parent if root is None else Path(root)
    parts = path.relative_to(root).parts
    shown = shown_name("/".join(parts))
    parent = _open_dirs(root, parts[:-1], shown)
    try:
        before = _lstat(parts[-1], parent)
        _check(before, shown, limit, what)
        try:
            fd = os.open(parts[-1], _READ_FLAGS, dir_fd=parent)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # swapped for a link since the lstat
                raise UnsafeFile(f"{shown} is a symbolic link; the grader reads only regular files") from None
            raise
    finally:
        os.close(parent)
    try:
        _check(os.fstat(fd), shown, limit, what)  # what was opened, whatever the lstat saw
        data = _read_at_most(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew after the fstat
        raise UnsafeFile(f"{shown} is over the {_size(limit)} {what} may be")
    return data


def kind(mode: int) -> str:
    """What a file is, from its `st_mode`, in words ("a symbolic link", "a FIFO", ...)."""
    for test, words in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"),
                        (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                        (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                        (stat.S_ISBLK, "a block device")):
        if test(mode):
            return words
    return "a special file"


def shown_name(name: str) -> str:
    """A student-chosen file name made safe to print: control characters as '?', capped."""
    text = "".join(c if c.isprintable() else "?" for c in name)
    return text if len(text) <= _NAME_SHOWN else text[:_NAME_SHOWN] + "..."


def copy_tree(src: str | os.PathLike, dst: str | os.PathLike, *, file_limit: int = COPY_FILE_LIMIT_BYTES,
              total_limit: int = COPY_TOTAL_LIMIT_BYTES, entry_limit: int = COPY_ENTRY_LIMIT,
              depth_limit: int = COPY_DEPTH_LIMIT, skip_hidden: bool = True,
              leave_out: Callable[[tuple[str, ...], os.stat_result], str | None] | None = None,
              preserve: bool = False, follow_src: bool = True) -> list[str]:
    """Copy the student tree `src` into `dst` (made, with its parents; it must not exist yet);
    return one line per thing left out, saying what and why ("sub/x.py is a symbolic link; ...").

    Only regular files and folders are copied; a symbolic link is never followed (nor copied),
    FIFOs, sockets and devices are never opened. With `skip_hidden`, dot-names (caches,
    checkpoints, `.git`) and `__pycache__` are left out without a note; `leave_out(parts, lstat)`
    may leave out more (its note, or "" for none, or None to keep the entry). A file over
    `file_limit`, and whatever would take the copy past `total_limit` bytes, `entry_limit` files
    and folders, or `depth_limit` folders deep, is left out with a note. The walk is
    breadth-first, a folder's files before its subfolders, so the top-level modules are copied
    before any cap can bite.

    The copy is world-readable (folders 0o755, files 0o644), since a sandboxed worker running
    under another uid imports it; with `preserve`, it keeps the source's permission bits (never
    set-id bits; its owner may always read and write it) and modification times instead.
    `src` itself is followed if it is a link (it is the caller's path), unless `follow_src` is
    False (the student's own folder): then a `src` that is not a folder raises UnsafeFile.
    """
    src, dst = Path(src), Path(dst)
    base, prefix = (src, ()) if follow_src else (src.parent, (src.name,))
    top = os.stat(src) if follow_src else os.lstat(src)
    if not stat.S_ISDIR(top.st_mode):
        raise UnsafeFile(f"{shown_name(src.name)} is {kind(top.st_mode)}, not a folder; the grader copies only folders")
    copier = _Copier(dst, file_limit, total_limit, entry_limit, preserve)
    dst.parent.mkdir(parents=True, exist_ok=True)
    copier.folder((), top, top=True)
    pending: deque[tuple[str, ...]] = deque([()])
    while pending and not copier.full:
        folder = pending.popleft()
        try:
            fd = _open_dirs(base, prefix + folder, shown_name("/".join(folder)))
        except (UnsafeFile, OSError) as exc:  # swapped for a link, or removed, since it was listed
            copier.notes.append(_note_for(folder, exc))
            continue
        try:
            subfolders = []
            for name in sorted(os.listdir(fd)):
                if skip_hidden and (name.startswith(".") or name in SKIPPED_NAMES):
                    continue
                rel = (*folder, name)
                try:
                    st = _lstat(name, fd)
                except OSError as exc:
                    copier.notes.append(f"{shown_name('/'.join(rel))} could not be read ({exc.strerror}); left out")
                    continue
                note = leave_out(rel, st) if leave_out is not None else None
                if note is not None:
                    if note:
                        copier.notes.append(note)
                elif stat.S_ISDIR(st.st_mode):
                    subfolders.append((rel, st))
                elif not copier.file(fd, rel, st):
                    break
            for rel, st in subfolders:
                if len(rel) > depth_limit:
                    copier.notes.append(f"{shown_name('/'.join(rel))} is over {depth_limit} folders deep; left out")
                elif copier.folder(rel, st):
                    pending.append(rel)
        finally:
            os.close(fd)
    return copier.notes


class _Copier:
    """`copy_tree`'s state: the caps, the running totals and the notes."""

    def __init__(self, dst: Path, file_limit: int, total_limit: int, entry_limit: int, preserve: bool) -> None:
        self.dst, self.preserve = dst, preserve
        self.file_limit, self.total_limit, self.entry_limit = file_limit, total_limit, entry_limit
        self.total = self.entries = 0
        self.full = False  # the entry cap was reached: nothing more is copied
        self.notes: list[str] = []

    def _room(self, rel: tuple[str, ...]) -> bool:
        if self.full:
            return False
        if self.entries < self.entry_limit:
            return True
        self.notes.append(f"the tree has over {self.entry_limit} files and folders; {shown_name('/'.join(rel))} "
                          "and the rest were left out")
        self.full = True
        return False

    def folder(self, rel: tuple[str, ...], st: os.stat_result, *, top: bool = False) -> bool:
        """Make the copy of folder `rel`; False when the entry cap left it out."""
        if not top and not self._room(rel):
            return False
        target = self.dst.joinpath(*rel)
        os.mkdir(target, 0o700)
        os.chmod(target, (stat.S_IMODE(st.st_mode) & 0o777) | 0o700 if self.preserve else 0o755)
        self.entries += not top
        return True

    def file(self, dir_fd: int, rel: tuple[str, ...], st: os.stat_result) -> bool:
        """Copy regular file `rel` (its lstat is `st`) or note why not; False once the entry cap is reached."""
        shown = shown_name("/".join(rel))
        if not stat.S_ISREG(st.st_mode):
            self.notes.append(f"{shown} is {kind(st.st_mode)}; the grader copies only regular files, left out")
        elif not self._room(rel):
            return False
        elif st.st_size > self.file_limit:
            self.notes.append(f"{shown} is {_size(st.st_size)}, over the {_size(self.file_limit)} a copied file "
                              "may be; left out")
        elif self.total + st.st_size > self.total_limit:
            self.notes.append(f"{shown} would take the copy past {_size(self.total_limit)}; left out")
        else:
            try:
                self.total += _copy_file(rel[-1], dir_fd, self.dst.joinpath(*rel), shown,
                                         min(self.file_limit, self.total_limit - self.total), self.preserve)
                self.entries += 1
            except (UnsafeFile, OSError) as exc:
                self.notes.append(_note_for(rel, exc))
        return True


# --- helpers ---------------------------------------------------------------------------------


def _open_dirs(root: Path, parts: tuple[str, ...], shown: str) -> int:
    """A descriptor of `root/parts...`, each part opened without following a link."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for index, part in enumerate(parts):
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    where = shown_name("/".join(parts[:index + 1]))
                    what = kind(_lstat(part, fd).st_mode)
                    raise UnsafeFile(f"{where} is {what}, not a folder; the grader does not follow it "
                                     f"(on the way to {shown})") from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lstat(name: str, dir_fd: int) -> os.stat_result:
    return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)


def _check(st: os.stat_result, shown: str, limit: int, what: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFile(f"{shown} is {kind(st.st_mode)}; the grader reads only regular files")
    if st.st_size > limit:
        raise UnsafeFile(f"{shown} is {_size(st.st_size)}, over the {_size(limit)} {what} may be")


def _read_at_most(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _copy_file(name: str, dir_fd: int, target: Path, shown: str, limit: int, preserve: bool) -> int:
    """Copy the regular file `name` (in `dir_fd`) to `target`, at most `limit` bytes; its size."""
    fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        _check(st, shown, limit, "a copied file")  # what was opened, whatever the lstat saw
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(out, (stat.S_IMODE(st.st_mode) & 0o777) | 0o600 if preserve else 0o644)
            written = 0
            while chunk := os.read(fd, min(_CHUNK, limit + 1 - written)):
                written += len(chunk)
                if written > limit:  # it grew after the fstat
                    raise UnsafeFile(f"{shown} is over the {_size(limit)} a copied file may be")
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view):]
            if preserve:
                os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
        except BaseException:
            target.unlink()  # no half-copied file
            raise
        finally:
            os.close(out)
    finally:
        os.close(fd)
    return written


def _note_for(rel: tuple[str, ...], exc: BaseException) -> str:
    if isinstance(exc, UnsafeFile):
        return f"{exc}; left out"
    if isinstance(exc, OSError) and exc.errno == errno.ELOOP:
        return f"{shown_name('/'.join(rel))} is a symbolic link; the grader copies only regular files, left out"
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
    return f"{shown_name('/'.join(rel)) or 'the tree'} could not be read ({reason}); left out"


def _size(n: int) -> str:
    """Bytes in words: "8.4 MiB", "1 MiB", "512 KiB", "37 bytes"."""
    for unit, scale in (("GiB", 2**30), ("MiB", MiB), ("KiB", 2**10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"
