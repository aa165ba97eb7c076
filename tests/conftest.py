"""Helpers for the project's own tests: grading runs go through the real CLI, as a student's would."""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests import forked_cli
from tests.leaks import hidden_leaks

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "reference_solutions"
ASSIGNMENTS = ROOT / "assignments"


def run_cli(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m graders ARGS` from the repository root (with `env` added to the environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")} | (env or {})
    return forked_cli.run(list(args), env, timeout)  # the real command, minus the interpreter start


def grade(impl: Path, report: Path, *chapters: str, tasks: tuple[str, ...] = (), env: dict | None = None) -> dict:
    """Grade `impl` through the CLI and return its grade.json; the run itself must complete (exit 0)."""
    selected = [arg for chapter in chapters for arg in ("--chapter", chapter)]
    selected += [arg for task in tasks for arg in ("--task", task)]
    result = run_cli("grade", "--impl", str(impl), "--report", str(report), "--no-progress", *selected, env=env)
    assert result.returncode == 0, f"grading did not complete:\n{result.stdout}\n{result.stderr}"
    return json.loads((report / "grade.json").read_text())


def tree_with(tmp_path: Path, module: str, source: str) -> Path:
    """A student tree holding the reference modules, with `module` replaced by `source`."""
    tree = tmp_path / "impl"
    shutil.copytree(REFERENCE, tree, ignore=shutil.ignore_patterns("__pycache__"))
    (tree / f"{module}.py").write_text(source)
    return tree


def chapter_entry(grade_json: dict, chapter: str) -> dict:
    """One chapter's entry in a grade.json."""
    return next(c for c in grade_json["chapters"] if c["id"] == chapter)


def records_by_name(grade_json: dict, chapter: str) -> dict[str, dict]:
    entry = next(c for c in grade_json["chapters"] if c["id"] == chapter)
    return {t["name"]: t for t in entry["tests"]}


def once_per_run(tmp_path_factory, worker_id: str, name: str, make) -> dict:
    """`make(folder)`'s JSON result, computed once per test run however many xdist workers ask.

    A session fixture runs once per worker, and these are whole-course grades (about 50 s each
    on CI's cores, asked for by test files that land on different workers): the first worker
    computes it under a lock in the run's shared temporary folder, the others read its file."""
    if worker_id == "master":  # no xdist: the session is the run
        return make(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent  # this run's folder, above every worker's own
    result = shared / f"{name}.json"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not result.exists():
            folder = shared / name  # left by a worker whose `make` raised: this one tries again
            folder.mkdir(exist_ok=True)
            partial = shared / f"{name}.json.partial"
            partial.write_text(json.dumps(make(folder)))
            partial.replace(result)
        return json.loads(result.read_text())


@pytest.fixture(scope="session")
def reference_grade(tmp_path_factory, worker_id) -> dict:
    return once_per_run(tmp_path_factory, worker_id, "reference", lambda out: grade(REFERENCE, out))


@pytest.fixture(scope="session")
def stub_grade(tmp_path_factory, worker_id) -> dict:
    return once_per_run(tmp_path_factory, worker_id, "stub", lambda out: grade(ASSIGNMENTS, out))


def failing(chapter: dict) -> list[tuple[str, str]]:
    """(name, message) of every test in a chapter entry that did not pass."""
    return [(t["name"], t["message"]) for t in chapter["tests"] if t["status"] != "passed"]


def assert_feedback_teaches(chapter: dict) -> None:
    """Every failed test says why; hidden ones never show an expected value or the grader's source."""
    for test in chapter["tests"]:
        if test["status"] == "passed":
            continue
        assert test["message"].strip(), test["name"]
        if test["visibility"] == "hidden":
            assert ", expected " not in test["message"], test["message"]
            assert "def test_" not in test["message"] and "reference_solutions" not in test["message"], test["message"]


def grade_edit(tmp_path: Path, chapter: str, module: str, source: str) -> dict:
    """Grade one chapter of the reference tree with `module` replaced by `source`; its entry."""
    return chapter_entry(grade(tree_with(tmp_path, module, source), tmp_path / "report", chapter), chapter)


def assert_mutant_caught(tmp_path: Path, chapter: str, module: str, source: str, mutant) -> None:
    """`mutant` of `source` loses points, in its own tasks when it names them (the reference
    has full marks everywhere: `test_chapters.py`); it loses at least one public point unless
    `mutant.hidden_only` says why no public test can see it; every failure message teaches,
    and no hidden message gives an expected value away (`tests/leaks.py`)."""
    tree = tree_with(tmp_path, module, mutant.apply(source))
    entry = chapter_entry(grade(tree, tmp_path / "report", chapter, tasks=mutant.tasks), chapter)
    where = f" in tasks {', '.join(mutant.tasks)}" if mutant.tasks else ""
    assert entry["score"] < entry["max_score"], f"{mutant.name} ({mutant.description}) survived{where}"
    if not mutant.hidden_only:
        lost = [t["name"] for t in entry["tests"] if t["score"] < t["max_score"]]
        public = [t for t in entry["tests"] if t["visibility"] == "public" and t["score"] < t["max_score"]]
        assert public, (f"{mutant.name} ({mutant.description}) loses no public point{where} (only {', '.join(lost)}): "
                        "a public test should catch it, or the mutant should say why not (hidden_only)")
    assert_feedback_teaches(entry)
    assert_hidden_messages_clean(entry)


def assert_hidden_messages_clean(chapter: dict) -> None:
    """No hidden test's message in a chapter entry shows what `tests/leaks.py` forbids."""
    problems = [(t["name"], problem) for t in chapter["tests"] if t["visibility"] == "hidden"
                for problem in hidden_leaks(t["message"])]
    assert not problems, f"hidden messages give values away: {problems}"


def assert_variant_keeps_full_marks(tmp_path: Path, chapter: str, module: str, source: str, variant) -> None:
    """A correct solution written another way passes every test of the chapter."""
    entry = grade_edit(tmp_path, chapter, module, variant.apply(source))
    assert not failing(entry), f"{variant.name} ({variant.description}) was rejected: {failing(entry)[:2]}"


@pytest.fixture
def noxfile(monkeypatch):
    """The noxfile, imported with a stand-in for nox (the course's .venv does not install nox)."""
    fake = types.ModuleType("nox")
    fake.options = types.SimpleNamespace()
    fake.Session = object
    fake.session = lambda *args, **kwargs: args[0] if args and callable(args[0]) else (lambda f: f)
    monkeypatch.setitem(sys.modules, "nox", fake)
    spec = importlib.util.spec_from_file_location("course_noxfile", ROOT / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
