"""nbgrader's collect step, without following a student's links; imported by the generated
`nbgrader_config.py` only (`c.ExchangeFactory.collect`).

A student owns their inbound submission folder in the exchange and can change it after
`nbgrader submit`: replace `feedforward.py` with a symbolic link to the instructor's
reference, or to another student's submission, or put a FIFO there. nbgrader's own collect
copies with `shutil.copytree`, which follows links, so the link's target would be collected
as the student's file (and a FIFO would block the instructor's collect for good). A student
can also plant a link in the inbound folder itself, named like another student's newest
submission, so that collect picks it instead of theirs.

`SafeExchangeCollect` keeps nbgrader's collect and changes what follows:

- the copy (`safe_files.copy_tree`) never follows a link and never opens a special file; each
  one left out is a warning in the log naming the file. nbgrader's options still apply:
  `CourseDirectory.ignore` and `include` (by name), `max_file_size` (per file) and
  `max_dir_size` (in all; files past it are left out with a warning, where nbgrader would stop
  the whole collect);
- an inbound entry that is not a real folder (a link, a file) is never copied, and never
  chosen over a real submission of the same student (nbgrader picks each student's newest
  entry, and a link could be named as anyone's);
- a folder of millions of entries is cut at NBGRADER_ENTRY_LIMIT, with a warning.

The rest (which submission is newest, `timestamp.txt`, `--update`, `--before-duedate`) is
nbgrader's: timestamps come from the inbound folder's name, and `timestamp.txt` is read only
from the collected copy, which holds no links.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import sys

from nbgrader.exchange.default.collect import ExchangeCollect

from graders import safe_files


def _real_folder(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


class SafeExchangeCollect(ExchangeCollect):
    """nbgrader's ExchangeCollect whose copy never follows a link nor opens a special file."""

    def _sort_by_timestamp(self, records):
        # Real folders first, newest first: a link planted under a student's name never wins.
        return sorted(records, key=lambda r: (_real_folder(os.path.join(self.inbound_path, r["filename"])),
                                              r["timestamp"]), reverse=True)

    def do_copy(self, src, dest, log=None):
        """Copy the inbound folder `src` to `dest` with `copy_submission`; warn for each file left out."""
        try:
            notes = copy_submission(src, dest, ignore=self.coursedir.ignore, include=self.coursedir.include,
                                    max_file_kb=self.coursedir.max_file_size, max_dir_kb=self.coursedir.max_dir_size)
        except safe_files.UnsafeFile as exc:
            self.log.error("Not collecting %s: %s", src, exc)
            return
        for note in notes:
            self.log.warning("Collecting %s: %s", src, note)
        if self.coursedir.groupshared:
            _share_with_group(dest, self.log)


def copy_submission(src, dest, *, ignore=(), include=("*",), max_file_kb: int | None = None,
                    max_dir_kb: int | None = None) -> list[str]:
    """Copy a student's submission folder as nbgrader's collect would, but without following a
    link or opening a special file: `ignore` and `include` are nbgrader's name globs, the sizes
    its kilobytes (1000 bytes). Returns a note for each thing left out that a grader should know
    of; raises `safe_files.UnsafeFile` (copying nothing) if `src` itself is not a folder."""

    def leave_out(parts: tuple[str, ...], st: os.stat_result) -> str | None:
        name = parts[-1]
        if any(fnmatch.fnmatch(name, pattern) for pattern in ignore or ()):
            return ""  # excluded by the course's config: nbgrader leaves these out without a warning
        if stat.S_ISREG(st.st_mode) and include and not any(fnmatch.fnmatch(name, p) for p in include):
            return ""
        return None

    # nbgrader's own limits, in its units; no limit where it sets none.
    file_limit = 1000 * max_file_kb if max_file_kb else sys.maxsize
    total_limit = 1000 * max_dir_kb if max_dir_kb else sys.maxsize
    return safe_files.copy_tree(src, dest, file_limit=file_limit, total_limit=total_limit,
                                entry_limit=NBGRADER_ENTRY_LIMIT, skip_hidden=False, leave_out=leave_out,
                                preserve=True, follow_src=False)


# nbgrader sets no cap on the number of files; one notebook assignment holds a handful, and
# 10000 keeps one student's folder of millions from stalling the collect of everyone else's.
NBGRADER_ENTRY_LIMIT = 10_000


def _share_with_group(dest: str, log) -> None:
    """nbgrader's groupshared permissions: folders ug+rwx with setgid, files ug+rw (the copy holds no links)."""
    for dirname, _, filenames in os.walk(dest):
        mode = os.lstat(dirname).st_mode
        if mode & 0o2770 != 0o2770:
            try:
                os.chmod(dirname, (mode | 0o2770) & 0o2777)
            except PermissionError:
                log.warning("Could not update permissions of %s to make it groupshared", dirname)
        for filename in filenames:
            path = os.path.join(dirname, filename)
            mode = os.lstat(path).st_mode
            if mode & 0o660 != 0o660:
                try:
                    os.chmod(path, (mode | 0o660) & 0o777)
                except PermissionError:
                    log.warning("Could not update permissions of %s to make it groupshared", path)
