"""Each chapter's student code has a wall-clock budget: a submission that stays just under the
per-call limit in every call loses the tests left when it is spent, instead of taking hours."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from hypothesis import settings

from graders import chapters, grade, plugin
from tests.conftest import REFERENCE, records_by_name, run_cli, tree_with
from tests.conftest import grade as grade_cli

SLOW = """
import functools as _functools
import time as _time


def _slowly(function):
    @_functools.wraps(function)
    def slow(*args, **kwargs):
        _time.sleep(1.0)  # a tenth of the per-call limit: never a timeout on its own
        return function(*args, **kwargs)
    return slow


for _name, _value in list(globals().items()):
    if callable(_value) and not isinstance(_value, type) and getattr(_value, "__module__", "") == __name__ \\
            and not _name.startswith("_"):
        globals()[_name] = _slowly(_value)
"""


def test_budget_is_the_factor_times_the_reference_never_under_the_floor():
    for chapter in chapters.CHAPTERS:
        assert chapter.reference_s > 0, chapter.id  # every chapter has its measured time
        assert chapter.budget_s() == max(chapters.BUDGET_FLOOR_S, chapters.BUDGET_FACTOR * chapter.reference_s)
    capstone = chapters.find(7)
    assert capstone.budget_s(100.0) == 100.0 * capstone.reference_s
    assert capstone.budget_s(0.001) == chapters.BUDGET_FLOOR_S


def test_budget_grows_with_the_profiles_examples():
    """The `thorough` profile draws 20 times the examples: the budget is 20 times larger, never smaller."""
    chapter = chapters.find(4)
    base = chapter.budget_s()
    assert chapter.budget_s(max_examples=20 * chapters.GRADING_MAX_EXAMPLES) == 20 * base
    assert chapter.budget_s(max_examples=1) == base


def test_budget_options_come_from_the_flag_then_the_environment(monkeypatch, tmp_path):
    run = grade.Run(impl=tmp_path, requested=[], report_dir=tmp_path)
    monkeypatch.delenv("GRADERS_CHAPTER_BUDGET_S", raising=False)
    monkeypatch.delenv("GRADERS_BUDGET_FACTOR", raising=False)
    assert grade.budget_options(run) == []
    monkeypatch.setenv("GRADERS_BUDGET_FACTOR", "3")
    assert grade.budget_options(run) == ["--grading-budget-factor", "3.0"]
    run.budget_factor = 20.0
    assert grade.budget_options(run) == ["--grading-budget-factor", "20.0"]
    monkeypatch.setenv("GRADERS_CHAPTER_BUDGET_S", "5")  # an absolute budget wins
    assert grade.budget_options(run) == ["--grading-budget-s", "5.0"]
    for bad in ("0", "-1", "nan", "inf", "soon"):
        monkeypatch.setenv("GRADERS_CHAPTER_BUDGET_S", bad)
        with pytest.raises(grade.GraderError, match="GRADERS_CHAPTER_BUDGET_S must be a positive number"):
            grade.budget_options(run)


def test_a_bad_budget_factor_is_a_grader_error(tmp_path):
    result = run_cli("grade", "--impl", str(REFERENCE), "--budget-factor", "-2", "--report", str(tmp_path))
    assert result.returncode == 2
    assert "--budget-factor must be a positive number, not -2.0" in result.stderr


@pytest.fixture
def grading_profile():
    """Hypothesis's grading profile loaded, as in a grade (this process has the library's default, 100 examples)."""
    previous = settings.get_current_profile_name()
    settings.register_profile("budget-grading", max_examples=chapters.GRADING_MAX_EXAMPLES)
    settings.load_profile("budget-grading")
    yield
    settings.load_profile(previous)


def test_the_plugin_starts_each_chapters_budget_at_its_first_test(monkeypatch, grading_profile):
    started = []
    worker = SimpleNamespace(begin_test=lambda: None, start_budget=started.append)
    options = {"--impl": None, "--snapshot-update": False, "--grading-progress": False, "--grading-task": None,
               "--grading-budget-factor": 2.0, "--grading-budget-s": None}
    grading = plugin.Grading(SimpleNamespace(getoption=options.get))
    monkeypatch.setattr(grading, "worker", lambda chapter: worker)
    item = SimpleNamespace(path=chapters.find(4).suite("public"), module=None,
                           get_closest_marker=lambda name: SimpleNamespace(args=("static",)))
    grading.pytest_runtest_setup(item)
    assert started == [max(chapters.BUDGET_FLOOR_S, 2.0 * chapters.find(4).reference_s)]
    grading.budget_s = 7.0
    grading.pytest_runtest_setup(item)
    assert started[-1] == 7.0  # the worker keeps its first budget; the plugin asks each time


def test_the_plugin_scales_the_budget_with_the_loaded_profile(monkeypatch):
    """Under a profile with 20 times grading's examples (as `thorough`), the plugin asks for 20 times the budget."""
    started = []
    worker = SimpleNamespace(begin_test=lambda: None, start_budget=started.append)
    options = {"--impl": None, "--snapshot-update": False, "--grading-progress": False, "--grading-task": None,
               "--grading-budget-factor": None, "--grading-budget-s": None}
    grading = plugin.Grading(SimpleNamespace(getoption=options.get))
    monkeypatch.setattr(grading, "worker", lambda chapter: worker)
    item = SimpleNamespace(path=chapters.find(4).suite("public"), module=None,
                           get_closest_marker=lambda name: SimpleNamespace(args=("static",)))
    previous = settings.get_current_profile_name()
    settings.register_profile("budget-thorough", max_examples=20 * chapters.GRADING_MAX_EXAMPLES)
    settings.load_profile("budget-thorough")
    try:
        grading.pytest_runtest_setup(item)
    finally:
        settings.load_profile(previous)
    assert started == [20 * chapters.find(4).budget_s()]


def test_a_submission_slow_in_every_call_is_stopped_by_the_chapter_budget(tmp_path):
    tree = tree_with(tmp_path, "multi_head_attention", (REFERENCE / "multi_head_attention.py").read_text() + SLOW)
    start = time.monotonic()
    graded = grade_cli(tree, tmp_path / "report", "2", tasks=("softmax",), env={"GRADERS_CHAPTER_BUDGET_S": "5"})
    elapsed = time.monotonic() - start
    tests = records_by_name(graded, "multi_head_attention")
    # Without the budget: 7 tests of ~15 one-second calls each, every one passing (about 2 minutes).
    assert elapsed < 60, elapsed
    statuses = [t["status"] for t in tests.values()]
    assert statuses.count("timeout") >= len(tests) - 1, statuses
    assert any("budget" in t["message"] and "5 s" in t["message"] for t in tests.values()), tests
