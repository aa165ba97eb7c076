"""A grade run, as ordered small steps: resolve -> run suites -> build reports -> write -> show.

    STEPS = resolve_chapters, run_suites, build_reports, write_reports, show_table

Each step takes and returns the same `Run`; the order is the only wiring.

Each chapter's worker has a wall-clock budget: `--budget-factor` (or `GRADERS_BUDGET_FACTOR`)
times the reference's grading time from the chapter table, never under its floor; or
`GRADERS_CHAPTER_BUDGET_S` seconds for every chapter. The tree is read only through
`safe_files` (the plugin's banned-API scan, the worker's copy); `--impl` itself may be a link,
since whoever runs the grader names it, not the student.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from graders import chapters, report
from graders.plugin import TestRecord, grading


class GraderError(RuntimeError):
    """The grader itself could not run (as opposed to a student's code failing)."""


@dataclass
class Run:
    impl: Path
    requested: list[str]
    report_dir: Path
    hidden: bool = True
    progress: bool = True
    tasks: list[str] = field(default_factory=list)  # grade only these tasks (all when empty)
    budget_factor: float | None = None  # --budget-factor; None: GRADERS_BUDGET_FACTOR, else the table's
    chapters: list[chapters.Chapter] = field(default_factory=list)
    records: list[TestRecord] = field(default_factory=list)
    grade: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    seconds: float = 0.0
    isolation: dict[str, dict] = field(default_factory=dict)  # chapter id -> the worker's sandbox at boot


def resolve_chapters(run: Run) -> Run:
    """`--chapter` values (ids, numbers) -> chapters that have suites; default: all of them."""
    available = chapters.graded()
    if not available:
        raise GraderError("this tree has no grading suites under graders/public/")
    run.chapters = [chapters.find(key) for key in run.requested] if run.requested else list(available)
    for chapter in run.chapters:
        if chapter not in available:
            raise GraderError(f"chapter {chapter.slug} has no grading suite yet")
    if not run.impl.is_dir():
        raise GraderError(f"--impl {run.impl} is not a directory")
    budget_options(run)  # a bad setting stops the run here, before anything is graded
    return run


def budget_options(run: Run) -> list[str]:
    """The plugin's budget options from `--budget-factor` and the environment."""
    absolute = _positive("GRADERS_CHAPTER_BUDGET_S", os.environ.get("GRADERS_CHAPTER_BUDGET_S"))
    if absolute is not None:
        return ["--grading-budget-s", repr(absolute)]
    factor = run.budget_factor
    if factor is None:
        factor = _positive("GRADERS_BUDGET_FACTOR", os.environ.get("GRADERS_BUDGET_FACTOR"))
    else:
        factor = _positive("--budget-factor", factor)
    return [] if factor is None else ["--grading-budget-factor", repr(factor)]


def _positive(name: str, value: str | float | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (number > 0 and math.isfinite(number)):
        raise GraderError(f"{name} must be a positive number, not {value!r}")
    return number


def run_suites(run: Run) -> Run:
    """pytest over each chapter's public suite, and its hidden suite where this tree has one."""
    files = []
    for chapter in run.chapters:
        files.append(chapter.suite("public"))
        if run.hidden and chapter.suite("hidden").exists():
            files.append(chapter.suite("hidden"))
    collector = _Collector()
    args = [*map(str, files), "-p", "graders.plugin", "--impl", str(run.impl),
            "-c", str(chapters.GRADERS / "pytest.ini"), "--rootdir", str(chapters.GRADERS),
            "-p", "no:cacheprovider", "-p", "no:terminal"]
    if run.progress:
        args.append("--grading-progress")
    for task in run.tasks:
        args += ["--grading-task", task]
    args += budget_options(run)
    start = time.monotonic()
    code = pytest.main(args, plugins=[collector])
    run.seconds = time.monotonic() - start
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or collector.records is None:
        detail = "\n".join(collector.problems)
        raise GraderError(f"the grading suites could not run (pytest exit code {int(code)})\n{detail}".rstrip())
    run.records = collector.records
    run.isolation = collector.isolation
    return run


def build_reports(run: Run) -> Run:
    run.grade = report.grade_json(run.impl, run.chapters, run.records, run.isolation)
    run.results = report.gradescope_json(run.grade, run.seconds)
    return run


def write_reports(run: Run) -> Run:
    report.write_json(run.report_dir / "grade.json", run.grade)
    report.write_json(run.report_dir / "results.json", run.results)
    return run


def show_table(run: Run) -> Run:
    print(report.table(run.grade))
    print(f"\nreports: {run.report_dir / 'grade.json'}, {run.report_dir / 'results.json'} ({run.seconds:.1f} s)")
    if not run.hidden or not any(c.suite("hidden").exists() for c in run.chapters):
        print("hidden tests run when your instructor grades.")
    elif fallback := fell_back(run.isolation):
        # An instructor grading untrusted code should know the strong sandbox was not available.
        print(f"note: student code ran in the basic sandbox, not in namespaces ({fallback}); "
              "see the instructor guide's Security section.")
    return run


def fell_back(isolation: dict[str, dict]) -> str:
    """Why some worker ran in basic mode when namespaces were wanted ('' when none did)."""
    for sandbox in isolation.values():
        if sandbox.get("mode") == "basic" and sandbox.get("why") != "asked for":
            return sandbox.get("why", "no reason given")
    return ""


STEPS = (resolve_chapters, run_suites, build_reports, write_reports, show_table)


def grade(run: Run) -> Run:
    for step in STEPS:
        run = step(run)
    return run


class _Collector:
    """Takes the records from the plugin's session state when pytest finishes."""

    records: list[TestRecord] | None = None
    isolation: dict[str, dict] = {}

    def __init__(self) -> None:
        self.problems: list[str] = []

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.problems.append(f"{report.nodeid}: {report.longreprtext}")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.records = list(grading(session.config).records)
        self.isolation = dict(grading(session.config).isolation)


def main_error(message: str) -> int:
    print(f"grading could not run: {message}", file=sys.stderr)
    return 2
