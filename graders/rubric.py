"""The rubric: each chapter's tests grouped into items, one item per task and visibility.

An item is what an nbgrader test cell (or, later, a Gradescope line) scores as a whole: the
tests of one task (the student function or class in `@pytest.mark.task`) at one visibility,
worth the sum of their `@pytest.mark.points`. The items are read from the suites by pytest's
collection with the grading plugin, the same collection a grade run makes, so they can never
drift from what `python -m graders grade` scores. Tests worth no points (the banned-API scan,
whose hits fail the tasks that used the API) make no item.

`python -m graders rubric [--chapter ID]` prints the items as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pytest

from graders import chapters
from graders.plugin import chapter_of, visibility_of


class RubricError(RuntimeError):
    """The suites could not be collected."""


@dataclass(frozen=True)
class Item:
    chapter: str  # chapter id
    visibility: str  # public | hidden
    task: str
    points: float
    tests: tuple[str, ...]  # test names as grade.json writes them (`test_x[param]`)

    @property
    def grade_id(self) -> str:
        """The nbgrader cell id of this item, unique within its chapter."""
        return f"{self.visibility}-{self.task}"

    def as_json(self) -> dict:
        return asdict(self) | {"tests": list(self.tests)}


def collect(selected: list[chapters.Chapter] | None = None, *, hidden: bool = True) -> dict[str, list[Item]]:
    """Chapter id -> its items, ordered by task (in the suites' order), public before hidden."""
    selected = list(selected or chapters.graded())
    files = []
    for chapter in selected:
        files.append(chapter.suite("public"))
        if hidden and chapter.suite("hidden").exists():
            files.append(chapter.suite("hidden"))
    collector = _Collector()
    code = pytest.main([*map(str, files), "--collect-only", "-p", "graders.plugin",
                        "-c", str(chapters.GRADERS / "pytest.ini"), "--rootdir", str(chapters.GRADERS),
                        "-p", "no:cacheprovider", "-p", "no:terminal"], plugins=[collector])
    if code != pytest.ExitCode.OK:
        raise RubricError(f"the grading suites could not be collected (pytest exit code {int(code)})\n"
                          + "\n".join(collector.problems))
    rubric: dict[str, list[Item]] = {}
    for chapter in selected:
        rows = [row for row in collector.rows if row[0] == chapter.id]
        tasks = list(dict.fromkeys(row[2] for row in rows))  # first appearance: the public suite's order
        items = []
        for task in tasks:
            for visibility in ("public", "hidden"):
                mine = [row for row in rows if row[1] == visibility and row[2] == task]
                points = sum(row[3] for row in mine)
                if points:
                    items.append(Item(chapter.id, visibility, task, points, tuple(row[4] for row in mine)))
        rubric[chapter.id] = items
    return rubric


class _Collector:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, float, str]] = []  # chapter, visibility, task, points, name
        self.problems: list[str] = []

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.problems.append(f"{report.nodeid}: {report.longreprtext}")

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            self.rows.append((chapter_of(item.path).id, visibility_of(item.path),
                              item.get_closest_marker("task").args[0],
                              float(item.get_closest_marker("points").args[0]), item.name))
