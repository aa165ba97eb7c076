"""The trusted side reads a student's files only through `safe_files`: no links followed, no
special files opened, nothing unbounded read; in the scan, the plugin, the batch and nbgrader's collect."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from pathlib import Path

import pytest

from graders import batch, chapters, safe_files, static
from graders.safe_files import SOURCE_LIMIT_BYTES, UnsafeFile, copy_tree, read_regular
from tests.conftest import REFERENCE, grade, records_by_name

MODULE = "feedforward"
SOURCE = (REFERENCE / f"{MODULE}.py").read_text()


def hostile_folder(folder: Path) -> Path:
    """A regular module, a link to the reference, a link to /proc/self/mem, a FIFO, a linked
    folder and a nested regular file: what a student can leave in their tree."""
    folder.mkdir(parents=True)
    (folder / "mine.py").write_text("x = 1\n")
    (folder / "stolen.py").symlink_to(REFERENCE / f"{MODULE}.py")
    (folder / "mem.py").symlink_to("/proc/self/mem")
    os.mkfifo(folder / "pipe.py")
    (folder / "linked").symlink_to(REFERENCE)
    (folder / "sub").mkdir()
    (folder / "sub" / "nested.txt").write_text("kept")
    return folder


# --- read_regular -------------------------------------------------------------------------------


def test_read_regular_reads_a_regular_file_and_refuses_the_rest(tmp_path):
    folder = hostile_folder(tmp_path / "tree")
    assert read_regular(folder / "mine.py", SOURCE_LIMIT_BYTES) == b"x = 1\n"
    for name, kind in (("stolen.py", "a symbolic link"), ("mem.py", "a symbolic link"),
                       ("pipe.py", "a FIFO"), ("sub", "a folder")):
        with pytest.raises(UnsafeFile) as caught:
            read_regular(folder / name, SOURCE_LIMIT_BYTES)  # a FIFO would block here if it were opened for real
        assert str(caught.value).startswith(f"{name} is {kind}"), caught.value
        assert "\n" not in str(caught.value)
    with pytest.raises(FileNotFoundError):
        read_regular(folder / "absent.py", SOURCE_LIMIT_BYTES)


def test_read_regular_follows_no_link_on_the_way(tmp_path):
    folder = hostile_folder(tmp_path / "tree")
    with pytest.raises(UnsafeFile, match="linked is a symbolic link, not a folder"):
        read_regular(folder / "linked" / f"{MODULE}.py", SOURCE_LIMIT_BYTES, root=folder)
    assert read_regular(folder / "sub" / "nested.txt", 10, root=folder) == b"kept"


def test_a_file_over_the_limit_is_refused_by_its_size(tmp_path):
    big = tmp_path / f"{MODULE}.py"
    big.write_bytes(b"# padding\n" * 880_000)  # 8.4 MiB of comments
    start = time.monotonic()
    with pytest.raises(UnsafeFile) as caught:
        read_regular(big, SOURCE_LIMIT_BYTES)
    assert time.monotonic() - start < 1.0  # refused from its size, never read
    assert str(caught.value) == f"{MODULE}.py is 8.4 MiB, over the 1 MiB a course module may be"


# --- copy_tree (what the worker imports) -----------------------------------------------------------


def test_copy_tree_copies_regular_files_only_and_says_what_it_left_out(tmp_path):
    folder = hostile_folder(tmp_path / "tree")
    (folder / ".git").mkdir()
    (folder / "__pycache__").mkdir()
    notes = copy_tree(folder, tmp_path / "copy")
    copied = sorted(str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*"))
    assert copied == ["mine.py", "sub", "sub/nested.txt"]
    assert not any(p.is_symlink() for p in (tmp_path / "copy").rglob("*"))
    assert sorted(notes) == ["linked is a symbolic link; the grader copies only regular files, left out",
                             "mem.py is a symbolic link; the grader copies only regular files, left out",
                             "pipe.py is a FIFO (named pipe); the grader copies only regular files, left out",
                             "stolen.py is a symbolic link; the grader copies only regular files, left out"]
    # world-readable: the sandboxed worker runs under another uid
    assert stat.S_IMODE((tmp_path / "copy").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "copy" / "sub").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "copy" / "mine.py").stat().st_mode) == 0o644


def test_copy_tree_caps_size_count_and_depth_top_level_modules_first(tmp_path):
    tree = tmp_path / "tree"
    (tree / "a" / "b" / "c").mkdir(parents=True)
    (tree / "a" / "b" / "c" / "deep.py").write_text("")
    (tree / "big.bin").write_bytes(b"0" * 3000)
    (tree / "mid.bin").write_bytes(b"0" * 1500)
    (tree / "z_module.py").write_text("x = 1\n")
    for index in range(5):
        (tree / "a" / f"f{index}.txt").write_text("x")
    notes = copy_tree(tree, tmp_path / "sized", file_limit=2000, total_limit=1000)
    assert not (tmp_path / "sized" / "big.bin").exists() and not (tmp_path / "sized" / "mid.bin").exists()
    assert "big.bin is 2.9 KiB, over the 2.0 KiB a copied file may be; left out" in notes
    assert "mid.bin would take the copy past 1000 bytes; left out" in notes
    assert (tmp_path / "sized" / "z_module.py").exists()
    notes = copy_tree(tree, tmp_path / "counted", entry_limit=3)  # top-level files come before any folder
    assert sorted(p.name for p in (tmp_path / "counted").iterdir()) == ["big.bin", "mid.bin", "z_module.py"]
    assert notes == ["the tree has over 3 files and folders; a and the rest were left out"]
    notes = copy_tree(tree, tmp_path / "shallow", depth_limit=2)
    assert notes == ["a/b/c is over 2 folders deep; left out"]


# --- the banned-API scan and the plugin ---------------------------------------------------------------


def test_static_scan_refuses_a_link_a_fifo_and_a_huge_module(tmp_path):
    banned = chapters.find(4).banned
    folder = hostile_folder(tmp_path / "tree")
    for name in ("stolen.py", "pipe.py"):
        with pytest.raises(UnsafeFile):
            static.scan(folder / name, banned)
    huge = tmp_path / "huge.py"
    huge.write_text("x = [" + "1," * 4_000_000 + "]\n")  # 8 MB: parsing it would take gigabytes
    with pytest.raises(UnsafeFile, match="huge.py is 7.6 MiB, over the 1 MiB"):
        static.scan(huge, banned)
    deep = tmp_path / "deep.py"
    deep.write_text("import torch\ny = " + "1 + " * 900 + "torch.relu(x)\n")  # deeper than Python's recursion limit
    assert [v.name for v in static.scan(deep, banned)] == ["torch.relu"]


def test_a_linked_module_fails_its_chapter_with_the_reason(tmp_path):
    # The link points at the reference: read through, it would earn full marks.
    tree = tmp_path / "impl"
    tree.mkdir()
    (tree / f"{MODULE}.py").symlink_to(REFERENCE / f"{MODULE}.py")
    tests = records_by_name(grade(tree, tmp_path / "report", "4", tasks=("relu",)), "feedforward_networks")
    assert tests and all(t["status"] != "passed" for t in tests.values())
    for test in tests.values():
        assert f"{MODULE}.py is a symbolic link; the grader reads only regular files" in test["message"]


def test_a_module_over_the_limit_fails_its_chapter_even_if_it_would_import(tmp_path):
    # 1.1 MiB of comments after the reference: importable, but too big to scan for banned APIs.
    tree = tmp_path / "impl"
    tree.mkdir()
    (tree / f"{MODULE}.py").write_text(SOURCE + "# padding\n" * 120_000 + "relu = __import__('torch').relu\n")
    grade_json = grade(tree, tmp_path / "report", "4", tasks=("relu", "static"))
    tests = records_by_name(grade_json, "feedforward_networks")
    assert all(t["status"] == "failed" for t in tests.values())
    assert all("over the 1 MiB a course module may be" in t["message"] for t in tests.values())


# --- batch grading -------------------------------------------------------------------------------------


def test_batch_collects_no_link_and_opens_no_special_file(tmp_path):
    student = tmp_path / "submitted" / "mallory"
    (student / "04_feedforward_networks").mkdir(parents=True)
    (student / "04_feedforward_networks" / f"{MODULE}.py").symlink_to(REFERENCE / f"{MODULE}.py")
    (student / "normalization.py").symlink_to("/proc/self/mem")
    os.mkfifo(student / "training_loop.py")
    (student / "elsewhere").symlink_to(REFERENCE)  # a linked folder full of modules
    (student / "gpt.py").write_text("x = 1\n")
    files, notes = batch.collect_files(student)
    assert [m for m, _ in files] == ["gpt"]
    assert sorted(notes) == [
        "04_feedforward_networks/feedforward.py is a symbolic link; the grader does not follow it",
        "elsewhere is a symbolic link; the grader does not follow it",
        "normalization.py is a symbolic link; the grader does not follow it",
        "training_loop.py is a FIFO (named pipe); the grader reads only regular files",
    ]


def test_batch_finds_hostile_submissions_without_hanging_and_notes_each_refusal(tmp_path):
    submitted = tmp_path / "submitted"
    hostile_folder(submitted / "mallory")
    (submitted / "mallory" / f"{MODULE}.py").write_bytes(b"#" * (SOURCE_LIMIT_BYTES + 1))
    (submitted / "alice").mkdir()
    (submitted / "alice" / f"{MODULE}.py").write_text(SOURCE)
    (submitted / "linked_student").symlink_to(submitted / "alice")
    os.mkfifo(submitted / "not_a_folder")
    found = batch.find_submissions(batch.Batch(submitted, tmp_path / "reports")).submissions
    by_name = {s.student: s for s in found}
    assert sorted(by_name) == ["alice", "linked_student", "mallory"]
    assert [m for m, _ in by_name["alice"].files] == [MODULE] and not by_name["alice"].notes
    assert by_name["linked_student"].files == ()
    assert by_name["linked_student"].notes == ("linked_student is a symbolic link; the grader does not follow it",)
    assert by_name["mallory"].files == ()
    assert "feedforward.py is 1.0 MiB, over the 1 MiB a course module may be" in by_name["mallory"].notes
    assert "stolen.py is a symbolic link; the grader does not follow it" in by_name["mallory"].notes


def test_grade_one_copies_what_it_reads_and_puts_refusals_in_the_row(tmp_path, monkeypatch):
    student = tmp_path / "submitted" / "bob"
    student.mkdir(parents=True)
    (student / f"{MODULE}.py").write_text(SOURCE)
    (student / "gpt.py").write_text("x = 1\n")
    files, notes = batch.collect_files(student)
    submission = batch.Submission("bob", files, "digest", student, notes)
    (student / "gpt.py").unlink()
    (student / "gpt.py").symlink_to(REFERENCE / "gpt.py")  # swapped after it was found
    graded = {}

    def fake_run(command, root, timeout):
        impl = Path(command[command.index("--impl") + 1])
        graded.update({p.name: p.read_text() for p in impl.iterdir()})
        return "error", "the grader exited with code 2: \x1b[2Jboom"

    monkeypatch.setattr(batch, "_run", fake_run)
    options = {"chapters": [], "tasks": []}
    marker = batch.grade_one(submission, str(tmp_path / "reports"), str(chapters.ROOT), options, 60)
    assert graded == {f"{MODULE}.py": SOURCE}  # the swapped-in link was not read
    assert marker["files"] == [f"{MODULE}.py"]
    assert marker["message"] == ("the grader exited with code 2: boom\n"
                                 "gpt.py is a symbolic link; the grader reads only regular files")
    written = json.loads((tmp_path / "reports" / "bob" / "batch.json").read_text())
    assert written["message"] == marker["message"]


# --- nbgrader's collect ---------------------------------------------------------------------------------


def test_nbgrader_collect_copy_leaves_links_and_special_files_out(tmp_path):
    from graders.nbgrader_exchange import copy_submission

    inbound = hostile_folder(tmp_path / "inbound" / "alice+05_layer_normalization+2024-01-01 00:00:00.000000 UTC+x")
    (inbound / "timestamp.txt").write_text("2024-01-01 00:00:00.000000 UTC")
    (inbound / ".ipynb_checkpoints").mkdir()
    (inbound / "huge.bin").write_bytes(b"0" * 5000)
    dest = tmp_path / "submitted" / "alice" / "05_layer_normalization"
    notes = copy_submission(inbound, dest, ignore=[".ipynb_checkpoints"], max_file_kb=4)
    copied = sorted(str(p.relative_to(dest)) for p in dest.rglob("*"))
    assert copied == ["mine.py", "sub", "sub/nested.txt", "timestamp.txt"]
    assert any(n.startswith("stolen.py is a symbolic link") for n in notes)
    assert any(n.startswith("pipe.py is a FIFO") for n in notes)
    assert any(n.startswith("linked is a symbolic link") for n in notes)
    assert any(n.startswith("huge.bin is 4.9 KiB, over") for n in notes)
    # the inbound entry itself planted as a link (to another student's work, say) is never copied
    planted = tmp_path / "inbound" / "bob+05_layer_normalization+2099-01-01 00:00:00.000000 UTC+y"
    planted.symlink_to(inbound)
    with pytest.raises(UnsafeFile, match="is a symbolic link, not a folder"):
        copy_submission(planted, tmp_path / "submitted" / "bob")
    assert not (tmp_path / "submitted" / "bob").exists()


def test_nbgrader_collect_warns_for_each_file_and_prefers_real_folders(tmp_path, caplog):
    from nbgrader.coursedir import CourseDirectory

    from graders.nbgrader_exchange import SafeExchangeCollect

    inbound = tmp_path / "inbound"
    real = hostile_folder(inbound / "bob+ps1+2024-01-01 00:00:00.000000 UTC+a")
    (inbound / "bob+ps1+2099-01-01 00:00:00.000000 UTC+b").symlink_to(REFERENCE)  # newer, but planted
    collect = SafeExchangeCollect(coursedir=CourseDirectory(root=str(tmp_path)))
    collect.inbound_path = str(inbound)
    records = [collect._path_to_record(str(p)) for p in sorted(inbound.iterdir())]
    assert collect._sort_by_timestamp(records)[0]["filename"] == real.name
    with caplog.at_level(logging.WARNING):
        collect.do_copy(str(real), str(tmp_path / "submitted"))
        collect.do_copy(str(inbound / "bob+ps1+2099-01-01 00:00:00.000000 UTC+b"), str(tmp_path / "planted"))
    assert (tmp_path / "submitted" / "mine.py").exists() and not (tmp_path / "planted").exists()
    logged = caplog.text
    assert "stolen.py is a symbolic link" in logged and "pipe.py is a FIFO" in logged
    assert "Not collecting" in logged and "is a symbolic link, not a folder" in logged


def test_the_generated_course_config_collects_with_the_safe_copy(tmp_path):
    from nbgrader.exchange import abc

    from graders import nbgrader_course
    from graders.nbgrader_exchange import SafeExchangeCollect

    nbgrader_course.write_config(nbgrader_course.Course(tmp_path, "c"))
    config = (tmp_path / "nbgrader_config.py").read_text()
    assert 'c.ExchangeFactory.collect = "graders.nbgrader_exchange.SafeExchangeCollect"' in config
    assert issubclass(SafeExchangeCollect, abc.ExchangeCollect)


def test_kind_names_every_file_type():
    assert safe_files.kind(stat.S_IFLNK) == "a symbolic link"
    assert safe_files.kind(stat.S_IFCHR) == "a character device"
    assert safe_files.kind(stat.S_IFSOCK) == "a socket"
