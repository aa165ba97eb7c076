"""Feedback machinery: what hidden messages may show, and how failures are reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from graders import _child, chapters, checks, plugin, release, report
from graders.plugin import _failing_case
from graders.tolerances import Tolerance
from tests.conftest import REFERENCE, ROOT, chapter_entry, grade, tree_with
from tests.leaks import hidden_leaks

# Messages that give the expected value away, each with the problem `hidden_leaks` must name.
LEAKING = [
    ("out: 3 of 6 entries are off; at index (0, 1) you returned 0.5, expected 0.25", "an expected value"),
    ("the norm: expected tensor([1., 2.])", "an expected value"),
    ("the loss should be 2.302585 for uniform logits", "an expected value"),
    ("largest error 0.111 (relative 1) at index (0,)", "relative"),
    ("fit_chinchilla: alpha = 0.31 is off by 12.5% (allowed 5%)", "percentage"),
    ("out: 2 of 8 entries are off\n  largest error 0.111 at index (1, 2)\n  you returned 0", "your value"),
    ("count(4, 8) returned 145, but the module has a different number of parameters (off by 3)", "your value"),
    ("allowed: 1.0e-05 * max(1, |x|) + 1.0e-05 * |expected| (rounding); here 0.0123", "grows with |expected|"),
    ("Failing case: ActivationCase(shape=(1,), scale=1.0, dtype=torch.float32, seed=0)", "seed"),
    ("test_ffn(student=<student>, data=data(...))", "data() draw"),
    ("your code raised ValueError: bad\n  File \"f.py\", line 1\nlargest error 0.1, expected 0.3", "expected value"),
    ("You can reproduce this example by temporarily adding @reproduce_failure('6.0', b'AA')", "seed"),
]

# Messages a hidden test may give: counts, where the error is, its size alone, the student's own
# value alone, shapes and dtypes, tolerance formulas, properties stated in words.
CLEAN = [
    "out: expected shape (2, 3), got (3, 2)",
    "out: expected dtype torch.float32 (the input's), got torch.float64",
    "out: expected a Tensor, got list",
    ("out: 3 of 6 entries are off\n  largest error 0.111 at index (0, 1)\n"
     "  allowed: 1.2e-07 + 1.2e-07 * |expected| (float32 rounding of a few sums)"),
    "out: 3 of 6 entries are off; at index (0, 1) you returned 0.5",
    "gelu(x, approximate='tanh') at x = +-1, +-2, +-3 is off by up to 0.0031",
    "Hooks on norm1 and norm2: where each sits relative to the residual",
    "kept weights (they should be scaled by 1/(1-p) = 1.33)",
    "Failing case: FFNCase swiglu, x (2, 3, 8) float64, d_ff 10, bias False",
    "cross_attn ran 2 times in one forward pass, expected once",
    # the student's own exception: its words are theirs, not the grader's values
    ("your code raised ValueError: not enough values to unpack (expected 3, got 1)\n"
     "  File \"feedforward.py\", line 131, in forward\n    B, T, D = x.shape\nFailing case: FFNCase lead ()"),
]


@pytest.mark.parametrize(("message", "problem"), LEAKING)
def test_hidden_leaks_names_each_leak(message, problem):
    found = hidden_leaks(message)
    assert any(problem in text for text in found), (message, found)


@pytest.mark.parametrize("message", CLEAN)
def test_hidden_leaks_passes_what_a_hidden_test_may_say(message):
    assert hidden_leaks(message) == []


# --- graders/checks.py: hidden messages show no expected value ---------------------------------

TOL = Tolerance(rtol=1e-6, atol=1e-6, reason="a few float64 sums")


def failure(call) -> str:
    with pytest.raises(checks.GradingFailure) as caught:
        call()
    return str(caught.value)


def test_hidden_assert_close_shows_the_error_and_where_not_your_value():
    actual, expected = torch.tensor([[1.0, 2.0], [3.0, 4.5]]), torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    message = failure(lambda: checks.assert_close(actual, expected, TOL, what="out"))
    assert "1 of 4 entries are off" in message and "largest error 0.5 at index (1, 1)" in message
    assert "a few float64 sums" in message and "4.5" not in message
    assert hidden_leaks(message) == []


def test_public_assert_close_shows_everything():
    actual, expected = torch.tensor([1.0, 4.5]), torch.tensor([1.0, 4.0])
    message = failure(lambda: checks.assert_close(actual, expected, TOL, what="out", reveal=True))
    assert "relative 0.125" in message and "you returned 4.5, expected 4" in message


def test_hidden_scaled_tolerance_hides_the_allowed_error_at_the_index():
    actual, expected = torch.tensor([1.0, 4.5]), torch.tensor([1.0, 4.0])
    scale = torch.tensor([1.0, 2.0])
    message = failure(lambda: checks.assert_close(actual, expected, TOL, what="out", scale=scale))
    assert "max(1, |x|)" in message and "here" not in message
    assert hidden_leaks(message) == []
    public = failure(lambda: checks.assert_close(actual, expected, TOL, what="out", scale=scale, reveal=True))
    assert "here" in public


def test_hidden_number_shows_no_error_size():
    message = failure(lambda: checks.assert_number_close(3.5, 3.0, TOL, what="noam_schedule(10, d_model=8)"))
    assert "3.5" not in message and "0.5" not in message and "1 of 1 entries are off by more than" in message
    assert hidden_leaks(message) == []


def test_hidden_non_finite_mismatch_hides_the_expected_value():
    message = failure(lambda: checks.assert_close(torch.tensor([float("nan"), 1.0]), torch.tensor([2.0, 1.0]), TOL,
                                                  what="out"))
    assert message == "out: non-finite mismatch at index (0,): you returned nan"


def test_hidden_assert_equal_hides_a_boolean_value():
    message = failure(lambda: checks.assert_equal(torch.tensor([True, False]), torch.tensor([True, True]),
                                                  what="mask"))
    assert "1 of 2 entries differ; the first at index (1,)" in message and "False" not in message
    integers = failure(lambda: checks.assert_equal(torch.tensor([3, 7]), torch.tensor([3, 5]), what="ids"))
    assert "you returned 7" in integers and "5" not in integers
    assert hidden_leaks(message) == [] and hidden_leaks(integers) == []


def test_hidden_one_element_tensor_keeps_the_error_size():
    message = failure(lambda: checks.assert_close(torch.tensor([4.5]), torch.tensor([4.0]), TOL, what="out"))
    assert "largest error 0.5 at index (0,)" in message and "4.5" not in message


# --- graders/plugin.py: a hidden failing case by its kind, shapes and dtypes --------------------

CASE_NOTE = """Failing test case: test_layer(
    # The test always failed when commented parts were varied together.
    student=<graders.submission.Submission object at 0x7f>,
    case=FFNCase(
        kind='swiglu',
        d_model=8,
        d_ff=10,
        bias=False,
        lead=(2, 3),
        dtype=torch.float64,
        seed=1234),  # or any other generated value
    data=data(...),
    perm_seed=7,
    x=tensor([[1., 2., 3.],
        [4., nan, 6.]], dtype=torch.float64),
)"""
DRAWS = ["Draw 1 (permutation): [2, 0, 1]  # or any other generated value",
         "Draw 2: ActivationCase(\n    shape=(1,),\n    scale=1.0,\n    dtype=torch.float32,\n    seed=0)"]


def noted(*notes: str) -> Exception:
    exc = AssertionError("out is off")
    for note in notes:
        exc.add_note(note)
    return exc


def test_hidden_failing_case_by_kind_shapes_and_dtypes():
    shown = _failing_case(noted(CASE_NOTE, *DRAWS), ("student",), hidden=True)
    assert shown == ("Failing case: FFNCase kind swiglu, d_model 8, d_ff 10, bias False, lead (2, 3), dtype float64; "
                     "x tensor (2, 3) float64; permutation [2, 0, 1]; ActivationCase shape (1,), scale 1.0, "
                     "dtype float32")
    assert hidden_leaks(shown) == []


def test_public_failing_case_is_hypothesis_own_with_its_draws():
    shown = _failing_case(noted(CASE_NOTE, *DRAWS), ("student",))
    assert "seed=1234" in shown and "Draw 1 (permutation): [2, 0, 1]" in shown and "student=" not in shown
    assert "# or any other generated value" not in shown.split("Draw 1")[1]


def test_hidden_case_lists_and_dicts_lose_their_seeds():
    shown = _failing_case(noted("Falsifying example: test_x(\n    cases=[Case(n=1, seed=3), Case(n=2, seed=4)],\n"
                                "    extra={'seed': 1, 'base_seed': 9, 'n': 2},\n    big=tensor([1., 2., ..., 9.]),\n)"),
                          hidden=True)
    assert shown == "Failing case: cases [Case n 1, Case n 2]; extra {'n': 2}; big tensor"


def test_an_explicit_example_is_a_case_too():
    shown = _failing_case(noted("Failing explicit example: test_x(\n    d_model=3,\n    seed=5,\n)"), hidden=True)
    assert shown == "Failing case: d_model 3"


def test_no_case_without_hypothesis_notes():
    assert _failing_case(noted("some other note that quotes `def test_x`"), hidden=True) == ""


# --- one root cause, named once ---------------------------------------------------------------


def test_size_mismatch_names_the_shapes_and_the_arguments():
    module = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 8))
    state = {"0.weight": torch.zeros(10, 8), "0.bias": torch.zeros(10), "1.weight": torch.zeros(8, 10),
             "1.bias": torch.zeros(8)}
    with pytest.raises(RuntimeError) as caught:
        _child._load_state(module, state, {"d_model": 8, "d_ff": None, "weights": {"$obj": "w"}})
    assert str(caught.value) == (
        "your Sequential(d_model=8, d_ff=None) has 0.weight of shape (16, 8), 0.bias of shape (16,), "
        "1.weight of shape (8, 16); the test loads (10, 8), (10,), (8, 10): the module's sizes differ from the "
        "handout's for these arguments (its default widths?)")


def test_missing_and_unexpected_keys_say_which_side_has_them():
    module = nn.Sequential(nn.Linear(2, 2, bias=False))
    with pytest.raises(RuntimeError) as caught:
        _child._load_state(module, {"0.bias": torch.zeros(2)})
    assert "your module has no '0.bias' (the test loads them)" in str(caught.value)
    assert "the test loads no '0.weight' (your module has them)" in str(caught.value)


def test_one_root_cause_is_explained_once(tmp_path):
    """SwiGLU's default width taken as 4 * d_model: every hidden test that loads the reference's
    state_dict fails on it; the first explains it, the others point there."""
    source = (REFERENCE / "feedforward.py").read_text()
    wrong = source.replace("d_ff = swiglu_hidden_dim(d_model, multiple_of) if d_ff is None else d_ff",
                           "d_ff = 4 * d_model if d_ff is None else d_ff")
    assert wrong != source
    entry = chapter_entry(grade(tree_with(tmp_path, "feedforward", wrong), tmp_path / "report",
                                "feedforward_networks", tasks=("SwiGLU",)), "feedforward_networks")
    raised = [t for t in entry["tests"] if "your SwiGLU(" in t["message"]]
    assert len(raised) >= 3, [t["message"] for t in entry["tests"]]
    first, *others = raised
    assert "the module's sizes differ from the handout's" in first["message"] and "same cause" not in first["message"]
    for test in others:
        assert f"(same cause as {first['name']}, above)" in test["message"], test["message"]
        assert test["message"].startswith("Property: "), test["message"]
    for test in entry["tests"]:
        if test["visibility"] == "hidden" and test["status"] != "passed":
            assert hidden_leaks(test["message"]) == [], test["message"]
            assert "Failing case: " not in test["message"] or "seed" not in test["message"], test["message"]


# --- the hidden share, shown to the student ---------------------------------------------------

COUNT_POINTS = """
import collections, json, sys
import pytest
from graders.plugin import chapter_of, visibility_of

class Count:
    points = collections.Counter()
    def pytest_collection_finish(self, session):
        for item in session.items:
            key = f"{chapter_of(item.path).id} {visibility_of(item.path)}"
            self.points[key] += float(item.get_closest_marker("points").args[0])

code = pytest.main(["-c", "graders/pytest.ini", "--collect-only", "-q", "-p", "graders.plugin",
                    "graders/public", "graders/hidden"], plugins=[Count()])
print(json.dumps(Count.points))
sys.exit(code)
"""


def test_chapter_table_holds_each_suites_points():
    """The release has no hidden suite: its reports and README take the hidden share from the
    chapter table, so the table's figures must be the suites' own (counted by collecting them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")} | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", COUNT_POINTS], cwd=ROOT, capture_output=True, text=True, env=env,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    counted = json.loads(result.stdout.strip().splitlines()[-1])
    suites = {c.id: (counted.get(f"{c.id} public", 0.0), counted.get(f"{c.id} hidden", 0.0)) for c in chapters.CHAPTERS}
    table = {c.id: (c.public_points, c.hidden_points) for c in chapters.CHAPTERS}
    assert table == suites, f"graders/chapters.py's public_points, hidden_points should be {suites}"


def record(visibility: str, status: str, points: float = 2.0) -> plugin.TestRecord:
    return plugin.TestRecord("feedforward_networks", f"test_{visibility}_{status}", visibility, points, status, "")


def test_a_public_grade_says_what_the_hidden_tests_hold():
    chapter = chapters.find("feedforward_networks")
    grade = report.grade_json(REFERENCE, [chapter], [record("public", "passed"), record("public", "failed")])
    entry = grade["chapters"][0]
    assert entry["public"] == {"score": 2.0, "max_score": 4.0}
    assert entry["hidden"] == {"ran": False, "score": None, "max_score": chapter.hidden_points}
    assert entry["summary"] == f"2/4 public; {chapter.hidden_points:g} more points in hidden tests your instructor runs"
    assert grade["score"] == 2.0 and grade["max_score"] == 4.0 and grade["hidden_points_not_run"] == chapter.hidden_points
    text = report.table(grade)
    row = next(line for line in text.splitlines() if line.startswith("feedforward_networks"))
    assert row.split()[1:4] == ["2", "/", "4"] and row.endswith(f"2 / 4  {chapter.hidden_points:g} more, not run")
    assert f"{chapter.hidden_points:g} more points are in hidden tests your instructor runs" in text


def test_an_instructor_grade_shows_public_and_hidden_scores_apart():
    chapter = chapters.find("feedforward_networks")
    grade = report.grade_json(REFERENCE, [chapter], [record("public", "passed"), record("hidden", "passed", 3.0),
                                                     record("hidden", "failed", 5.0)])
    entry = grade["chapters"][0]
    assert entry["hidden"] == {"ran": True, "score": 3.0, "max_score": 8.0} and entry["summary"] == "2/2 public, 3/8 hidden"
    assert grade["hidden_points_not_run"] == 0
    text = report.table(grade)
    assert "more points are in hidden tests" not in text
    assert next(line for line in text.splitlines() if line.startswith("feedforward_networks")).endswith("2 / 2  3 / 8")


def test_release_readme_splits_the_points_per_chapter():
    section = release.points_section()
    for chapter in chapters.CHAPTERS:
        assert (f"| {chapter.number:02d} {chapter.id} | {chapter.public_points:g} | {chapter.hidden_points:g} | "
                f"{chapter.public_points + chapter.hidden_points:g} |") in section
    public = sum(c.public_points for c in chapters.CHAPTERS)
    hidden = sum(c.hidden_points for c in chapters.CHAPTERS)
    assert f"| all | {public:g} | {hidden:g} | {public + hidden:g} |" in section
