"""Hostile or broken submissions cost their own tests, never the grade run.

Each case in `tests.mutants.ch02.HOSTILE` is the reference with one hostile change, graded
through the CLI like a student's tree. The catalogue below says, per case, the status every
test of each task must get; tasks it does not name must pass, and the chapter's score must be
exactly the points of the tests that passed. To keep a full run short, a case grades only the
task it attacks and a canary task that it leaves alone (`--task`), so "the rest of the run is
intact" is checked on every case.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from graders import _sandbox
from graders.chapters import ROOT
from tests.conftest import REFERENCE, grade, tree_with
from tests.mutants.ch02 import HOSTILE

SOURCE = (REFERENCE / "multi_head_attention.py").read_text()
CANARY = "causal_mask"  # two quick tests, which no case touches


@dataclass(frozen=True)
class Expect:
    """What grading one hostile tree must give."""

    statuses: dict[str, set[str]]  # task -> the statuses its tests get; unnamed graded tasks pass
    message: str = ""  # a fragment every non-passing test's message shows
    passes: tuple[str, ...] = ()  # tests of an attacked task that rightly pass all the same
    tasks: tuple[str, ...] = ("softmax", CANARY)  # what the case grades
    namespaces_only: bool = False  # unsafe to run without the kernel's sandbox
    messages: dict[str, str] = field(default_factory=dict)  # test -> the fragment it shows instead of `message`


ALL_ERROR = {"softmax": {"error"}, CANARY: {"error"}}
# Properties that relate softmax's outputs to each other (shift invariance, slices independent)
# or pin the all -inf row to zeros hold for zeros too: a wrong answer can rightly pass them.
ZEROS_PASS = ("test_softmax_shift_invariant", "test_softmax_slices_independent",
              "test_softmax_all_neg_inf_row_is_zero")

CATALOGUE: dict[str, Expect] = {
    # the module does not import: every test of the chapter is 0, with the reason
    "syntax_error": Expect({"softmax": {"error"}, CANARY: {"error"}}, "syntax error on line"),
    "exit_at_import": Expect(ALL_ERROR, "called sys.exit"),
    "os_exit_at_import": Expect(ALL_ERROR, "killed the worker"),
    "infinite_loop_at_import": Expect(ALL_ERROR, "did not finish"),
    # the student's own process ends: that task's tests only
    "sys_exit_in_softmax": Expect({"softmax": {"error"}}, "sys.exit"),
    "os_exit_in_softmax": Expect({"softmax": {"error"}}, "exited with code 3"),
    "kills_itself_in_softmax": Expect({"softmax": {"error"}}, "SIGKILL"),
    "segfault_in_mha_init": Expect({"MultiHeadAttention": {"error"}}, "SIGSEGV",
                                   tasks=("MultiHeadAttention", CANARY)),
    "stack_overflow_in_softmax": Expect({"softmax": {"error"}}, "SIGSEGV"),
    # resources
    "infinite_loop_in_causal_mask": Expect({CANARY: {"timeout"}}, "no answer within", tasks=("softmax", CANARY)),
    "memory_blowup_in_kvcache": Expect({"KVCache": {"error"}}, "ran out of memory", tasks=("KVCache", CANARY)),
    "allocates_100gb_in_softmax": Expect({"softmax": {"error"}}, "ran out of memory"),
    "infinite_recursion_in_softmax": Expect({"softmax": {"failed"}}, "RecursionError"),
    "fork_bomb_in_softmax": Expect({"softmax": {"failed"}}, "may not start processes"),
    "ctypes_fork_bomb_in_softmax": Expect({}, namespaces_only=True),  # bounded, and the forks never answer
    "megabytes_of_output": Expect({}),
    "prints_garbage": Expect({}, tasks=("MultiHeadAttention", CANARY)),
    # cheating: attempts that would change the result if they got through
    "fake_summary_and_report": Expect({"softmax": {"failed"}}, "59 passed", passes=ZEROS_PASS),
    "writes_reports": Expect({}),
    "writes_graders": Expect({}),
    "reads_reference": Expect({}),
    "reads_hidden_tests": Expect({}),
    "connects_to_listener": Expect({}),
    "monkeypatches_comparisons": Expect({"softmax": {"failed"}}, passes=ZEROS_PASS),
    "forges_reply_frame": Expect({"softmax": {"error"}}, "out of order"),
    "banned_softmax": Expect({"softmax": {"failed"}}, "bans"),
    # banned APIs the scan cannot see, refused by the worker's run-time guards
    "getattr_softmax": Expect({"softmax": {"failed"}}, "bans"),
    "alias_saved_at_import": Expect({"softmax": {"failed"}}, "bans"),
    "tensor_method_by_getattr": Expect({"softmax": {"failed"}}, "bans"),
    "softmax_rebound_at_import": Expect({"softmax": {"failed"}}, "bans"),
    "mha_via_import_module": Expect({"MultiHeadAttention": {"failed"}}, "bans", tasks=("MultiHeadAttention", CANARY)),
    # answers the grader must refuse, each with a message that says why
    "wrong_shape": Expect({"softmax": {"failed"}}, "shape"),
    # the golden, large-logit, row and gradient tests compare values only (gradients in float64); the dtype
    # is checked by the others
    "wrong_dtype": Expect({"softmax": {"failed"}}, "dtype", passes=ZEROS_PASS + (
        "test_softmax_golden", "test_softmax_large_logits", "test_softmax_rows_are_normalized_on_their_own",
        "test_softmax_gradient", "test_softmax_gradient_matches_reference")),
    "wrong_device": Expect({"softmax": {"failed"}}, "device meta"),
    # the gradient test fails these for what autograd says of them, not for the value
    "returns_nans": Expect({"softmax": {"failed"}}, "NaN", passes=("test_softmax_slices_independent",),
                           messages={"test_softmax_gradient": "grad",
                                     "test_softmax_gradient_matches_reference": "grad"}),
    "lying_tensor_subclass": Expect({"softmax": {"failed"}}, passes=ZEROS_PASS),
    "returns_numpy": Expect({"softmax": {"failed"}}, "numpy.ndarray", messages={"test_softmax_gradient": "numpy()",
                                                                       "test_softmax_gradient_matches_reference": "numpy()"}),
}

# Cases also graded with the sandbox's fallback (audit hooks), as on a machine without namespaces.
BASIC_MODE = ("reads_reference", "reads_hidden_tests", "writes_graders", "writes_reports", "connects_to_listener",
              "fork_bomb_in_softmax")


@dataclass
class Attack:
    """One hostile tree, graded; with what the test set up around it."""

    result: dict
    report: Path
    listener: socket.socket
    tests: dict[str, list[dict]] = field(default_factory=dict)
    tree: Path | None = None  # the hostile tree: its path is in every worker's command line


@pytest.fixture(scope="session")
def namespaces(tmp_path_factory) -> bool:
    """Whether this machine's kernel lets the worker enter its namespaces."""
    from graders.submission import Submission

    tree = tmp_path_factory.mktemp("probe")
    (tree / "probe.py").write_text("def f():\n    return None\n")
    worker = Submission(tree, ("probe",))
    try:
        worker.call("f")
        return worker.sandbox.get("mode") == "namespaces"
    finally:
        worker.close()


@pytest.fixture
def attack(tmp_path, namespaces):
    listeners: list[socket.socket] = []

    def run(name: str, *, sandbox: str = "auto") -> Attack:
        expect = CATALOGUE[name]
        if expect.namespaces_only and (not namespaces or sandbox == "basic"):
            pytest.skip("needs the kernel's namespaces: unsafe under the fallback")
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        listeners.append(listener)
        report = tmp_path / "report"
        report.mkdir()
        (report / "sentinel.txt").write_text("written by the test")
        hostile = next(h for h in HOSTILE if h.name == name)
        source = (hostile.apply(SOURCE).replace("@ROOT@", str(ROOT)).replace("@REPORT@", str(report))
                  .replace("@PORT@", str(listener.getsockname()[1])))
        tree = tree_with(tmp_path, "multi_head_attention", source)
        env = {"GRADERS_SANDBOX": sandbox}
        result = grade(tree, report, "2", tasks=expect.tasks, env=env)
        tests: dict[str, list[dict]] = {}
        for test in result["chapters"][0]["tests"]:
            tests.setdefault(task_of(test["name"]), []).append(test)
        return Attack(result, report, listener, tests, tree)

    yield run
    for listener in listeners:
        listener.close()


TASK_PREFIXES = {"softmax": "test_softmax", "scaled_dot_product_attention": "test_attention",
                 "causal_mask": "test_causal_mask", "KVCache": "test_kv_cache", "MultiHeadAttention": "test_mha"}


def task_of(name: str) -> str:
    return next((task for task, prefix in TASK_PREFIXES.items() if name.startswith(prefix)), "static")


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def check_expected(name: str, attack: Attack) -> None:
    expect = CATALOGUE[name]
    assert set(attack.tests) == set(expect.tasks), f"graded {sorted(attack.tests)}, asked for {expect.tasks}"
    for task, tests in attack.tests.items():
        wanted = expect.statuses.get(task, {"passed"})
        passing = [t for t in tests if t["name"] in expect.passes]
        assert {t["status"] for t in passing} <= {"passed"}, f"{task}: {passing}"
        tests = [t for t in tests if t["name"] not in expect.passes]
        got = {t["status"] for t in tests}
        assert got == wanted, f"{task}: statuses {got}, expected {wanted}: " + "; ".join(
            t["message"][:300] for t in tests if t["status"] != "passed") + " | passed: " + ", ".join(
            t["name"] for t in tests if t["status"] == "passed")
        for test in tests:
            if test["status"] != "passed" and expect.message:
                token = expect.messages.get(test["name"], expect.message)
                assert token.lower() in test["message"].lower(), f"{test['name']}: {test['message'][:500]}"
    chapter = attack.result["chapters"][0]
    earned = sum(t["max_score"] for tests in attack.tests.values() for t in tests if t["status"] == "passed")
    assert chapter["score"] == earned == attack.result["score"]


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_hostile_submission_is_graded_correctly(name, attack):
    check_expected(name, attack(name))


@pytest.mark.parametrize("name", BASIC_MODE)
def test_hostile_submission_without_namespaces(name, attack):
    check_expected(name, attack(name, sandbox="basic"))


def test_writes_do_not_reach_the_report_folder(attack):
    result = attack("writes_reports")
    assert (result.report / "sentinel.txt").read_text() == "written by the test"
    assert json.loads((result.report / "grade.json").read_text())["score"] == result.result["score"]


def test_writes_do_not_reach_the_graders(attack):
    before = tree_digest(ROOT / "graders")
    attack("writes_graders")
    assert not (ROOT / "graders" / "pwned.py").exists()
    assert tree_digest(ROOT / "graders") == before


def test_no_connection_reaches_a_listener_outside_the_worker(attack):
    result = attack("connects_to_listener")
    with pytest.raises(BlockingIOError):
        result.listener.accept()


def test_fork_bomb_leaves_no_process_behind(attack):
    bombed = attack("ctypes_fork_bomb_in_softmax")
    # Workers (and anything they fork) carry the graded tree's path in their command line, so
    # this finds the bomb's survivors and not the workers of another grade running meanwhile.
    leftovers = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid >= _sandbox.UID_BASE:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if str(bombed.tree).encode() in handle.read():
                        leftovers.append(entry)
        except OSError:
            continue
    assert not leftovers


def test_every_hostile_case_is_catalogued():
    assert set(CATALOGUE) == {h.name for h in HOSTILE}
