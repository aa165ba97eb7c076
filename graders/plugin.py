"""pytest plugin: points and tasks per test, visibility from the folder, outcomes -> records.

Load with `-p graders.plugin`. Each test carries `@pytest.mark.points(n)` and
`@pytest.mark.task("name")` (the student function or class it grades); collection fails
otherwise. The plugin owns the chapter's `Submission` workers, the static scan and the
per-test reset, and turns every test's outcome into a `TestRecord` for `report.py`.

Each chapter's worker gets a wall-clock budget for the whole chapter (`Chapter.budget_s`),
started when the chapter's first test is set up; a chapter module the grader refuses to read
(`safe_files.UnsafeFile`: a link, a special file, too big) fails every test of the chapter
with that reason, since the banned-API scan could not vouch for it.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import hypothesis
import pytest

from graders import chapters, static
from graders.checks import GradingFailure
from graders.safe_files import UnsafeFile
from graders.student_text import clean
from graders.submission import StudentRaised, Submission, SubmissionError

VISIBILITIES = ("public", "hidden")


@dataclass
class TestRecord:
    chapter: str
    name: str
    visibility: str
    max_score: float
    status: str  # passed | failed | error | timeout
    message: str

    @property
    def score(self) -> float:
        return self.max_score if self.status == "passed" else 0.0


def chapter_of(path: Path) -> chapters.Chapter:
    """`graders/hidden/test_02_multi_head_attention.py` -> chapter 02."""
    stem = path.stem.removeprefix("test_")
    return chapters.find(stem)


def visibility_of(path: Path) -> str:
    return path.parent.name if path.parent.name in VISIBILITIES else "public"


class Grading:
    """Session state: the tree under test, its workers, static scans and the records."""

    def __init__(self, config: pytest.Config) -> None:
        impl = config.getoption("--impl")
        self.impl = Path(impl).resolve() if impl else chapters.ASSIGNMENTS
        self.snapshot_update = config.getoption("--snapshot-update")
        self.progress = config.getoption("--grading-progress") and sys.stderr.isatty()
        self.tasks = tuple(config.getoption("--grading-task") or ())  # empty: every task
        self.budget_factor = config.getoption("--grading-budget-factor")  # None: the chapter table's default
        self.budget_s = config.getoption("--grading-budget-s")  # an absolute budget per chapter, or None
        self.config = config
        self.records: list[TestRecord] = []
        self.isolation: dict[str, dict] = {}  # chapter id -> how its worker was confined, as it said at boot
        self._workers: dict[str, Submission] = {}
        self._scans: dict[str, tuple[list[static.Violation], str]] = {}
        self._refused: dict[str, str] = {}  # chapter id -> why the grader would not read one of its modules
        self._causes: dict[tuple[str, str, str], str] = {}  # (chapter, task, what the code raised) -> first test
        self._total = 0
        self._done = 0

    # workers and scans, one per chapter ----------------------------------------------------

    def worker(self, chapter: chapters.Chapter) -> Submission:
        if chapter.id not in self._workers:
            # The worker refuses the chapter's banned APIs at run time too.
            self._workers[chapter.id] = Submission(self.impl, chapter.modules, uses=chapter.uses,
                                                   banned=chapter.banned)
        return self._workers[chapter.id]

    def budget(self, chapter: chapters.Chapter) -> float:
        """Seconds the chapter's worker may spend in all (`--grading-budget-s`, else the table's)."""
        if self.budget_s is not None:
            return self.budget_s
        factor = chapters.BUDGET_FACTOR if self.budget_factor is None else self.budget_factor
        return chapter.budget_s(factor, max_examples=hypothesis.settings.default.max_examples)

    def scan(self, chapter: chapters.Chapter) -> tuple[list[static.Violation], str]:
        """Banned-API hits in the chapter's modules, and a parse error message if any."""
        if chapter.id not in self._scans:
            hits, problem = [], ""
            for module in chapter.modules:
                path = self.impl / f"{module}.py"
                try:
                    hits += static.scan(path, chapter.banned)
                except FileNotFoundError:
                    problem = f"{module}.py was not found in {self.impl}"
                except SyntaxError as exc:
                    problem = f"{module}.py has a syntax error on line {exc.lineno}: {exc.msg}"
                except UnsafeFile as exc:
                    problem = self._refused[chapter.id] = str(exc)
            self._scans[chapter.id] = (hits, problem)
        return self._scans[chapter.id]

    def close(self) -> None:
        for chapter_id, worker in self._workers.items():
            if worker.sandbox:
                self.isolation[chapter_id] = dict(worker.sandbox)
            worker.close()

    # hooks --------------------------------------------------------------------------------

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        missing = [item.nodeid for item in items
                   if item.get_closest_marker("points") is None or item.get_closest_marker("task") is None]
        if missing:
            raise pytest.UsageError("every grading test needs @pytest.mark.points and @pytest.mark.task: "
                                    + ", ".join(missing))
        if self.tasks:
            self._select_tasks(items)
        self._total = len(items)

    def _select_tasks(self, items: list[pytest.Item]) -> None:
        """Keep only the tests of the tasks asked for (`grade --task softmax`)."""
        known = {item.get_closest_marker("task").args[0] for item in items}
        unknown = sorted(set(self.tasks) - known)
        if unknown:
            raise pytest.UsageError(f"no task named {', '.join(unknown)}; the tasks here are: "
                                    + ", ".join(sorted(known)))
        kept = [item for item in items if item.get_closest_marker("task").args[0] in self.tasks]
        dropped = [item for item in items if item not in kept]
        if dropped:
            self.config.hook.pytest_deselected(items=dropped)
        items[:] = kept

    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Reset the worker's per-test state, start the chapter's budget, and fail up front the tests
        of tasks that used a banned API (or of a chapter whose module the grader would not read)."""
        chapter = chapter_of(item.path)
        worker = self.worker(chapter)
        worker.begin_test()
        worker.start_budget(self.budget(chapter))  # the chapter's first test starts the clock; later calls keep it
        task = item.get_closest_marker("task").args[0]
        if task == "static":
            return
        hits, _ = self.scan(chapter)
        if chapter.id in self._refused:  # unread, so unscanned: nothing of it may earn points
            raise GradingFailure(f"{self._refused[chapter.id]}\nNo test of this chapter can run until the grader "
                                 "can read it.")
        module = chapter.module
        task_names = getattr(item.module, "TASKS", ())
        relevant = [v for v in hits if v.owner == task or v.owner not in task_names]
        if relevant:
            raise GradingFailure("\n".join(v.describe(module) for v in relevant)
                                 + f"\nThis test grades `{task}`, which must be written without it.")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        if call.when == "call" or (call.when == "setup" and not report.passed):
            self._record(item, call, report)
        return report

    def _record(self, item: pytest.Item, call: pytest.CallInfo, report: pytest.TestReport) -> None:
        chapter = chapter_of(item.path)
        visibility = visibility_of(item.path)
        points = float(item.get_closest_marker("points").args[0])
        if report.passed:
            status, message = "passed", ""
        elif report.skipped:
            status, message = "failed", f"skipped: {report.longrepr[-1] if isinstance(report.longrepr, tuple) else ''}"
        else:
            status, message = _describe(call.excinfo.value if call.excinfo else None, item, visibility,
                                        self._causes)
            printed = self.worker(chapter).output_during_test()
            if printed and printed not in message:
                message += f"\nYour code printed (last lines):\n{printed}"
        # Cleaned and capped here, as it is recorded: a student's 20 MiB exception name is never held per test.
        self.records.append(TestRecord(chapter.id, item.name, visibility, points, status, clean(message)))
        self._done += 1
        if self.progress:
            _progress(self._done, self._total, chapter.id)

    def pytest_sessionfinish(self) -> None:
        self.close()
        if self.progress and self._total:
            sys.stderr.write("\n")


def _describe(exc: BaseException | None, item: pytest.Item, visibility: str,
              causes: dict[tuple[str, str, str], str] | None = None) -> tuple[str, str]:
    """Status and message for a failed test. Hidden tests never show source or expected values.

    `causes` maps (chapter, task, `_cause` of what the student's code raised) to the first test
    that reported it: a later test of the same task whose code raised the same exception, up to
    the sizes and arguments in it (a module that cannot load the test's state_dict fails every
    test that builds it, each case with its own sizes), gets its own first line only and a
    pointer to that test, so one root cause is explained once. Its "Property:" line and its
    failing case stay."""
    doc = (item.function.__doc__ or "").strip().splitlines()
    prop = doc[0] if doc else item.name
    notes = _failing_case(exc, tuple(getattr(item, "fixturenames", ())), hidden=visibility == "hidden")
    exc = _unwrap(exc)
    if isinstance(exc, StudentRaised) and causes is not None:
        status, text = exc.status, str(exc)
        key = (chapter_of(item.path).id, item.get_closest_marker("task").args[0], _cause(text))
        first = causes.setdefault(key, item.name)
        if first != item.name:
            text = f"{text.splitlines()[0]}\n  (same cause as {first}, above)"
    elif isinstance(exc, SubmissionError):
        status, text = exc.status, str(exc)
    elif isinstance(exc, AssertionError):
        status, text = "failed", str(exc) or "assertion failed"
    elif exc is None:
        status, text = "error", "the test did not run"
    elif visibility == "hidden":  # a problem in the grader itself; its text may quote hidden source
        status, text = "error", f"the grader hit an internal error ({type(exc).__name__}); please tell your instructor"
    else:
        status, text = "error", f"the grader hit {type(exc).__name__}: {exc}"
    section = getattr(item.module, "SECTIONS", {}).get(item.get_closest_marker("task").args[0])
    chapter = chapter_of(item.path)
    lines = [f"Property: {prop}", text, notes]
    if section:
        lines.append(f"Read: site/docs/{chapter.page}#{section}")
    return status, "\n".join(line for line in lines if line).strip()


_NUMBERS = re.compile(r"\d+")
_BRACKETED = re.compile(r"\([^()]*\)")


def _cause(text: str) -> str:
    """What the student's code raised with its numbers and bracketed details blanked: the same
    cause met by two cases (other sizes, other constructor arguments, other line numbers)."""
    return _BRACKETED.sub("()", _NUMBERS.sub("#", text))


def _unwrap(exc: BaseException | None) -> BaseException | None:
    """The student-facing exception inside Hypothesis's groups (e.g. a FlakyFailure)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = next((e for e in exc.exceptions if isinstance(e, (SubmissionError, AssertionError))), exc.exceptions[0])
    return exc


# Hypothesis's notes hold the shrunk case ("Falsifying example: test(...)" or "Failing test
# case: ..."), one "Draw N (label): value" note per `st.data()` draw, and sometimes other text
# that may quote the test's source. Only the case and the draws are kept, without the fixture
# arguments (the worker, the reference module and its path), which are the grader's, not the case.
_CASE_START = re.compile(r"^(Falsifying (explicit )?example|Failing (explicit )?(test case|example)): \w+\($")
_DRAW = re.compile(r"^Draw (?P<number>\d+)(?: \((?P<label>[^)]*)\))?: (?P<value>.*)$", re.DOTALL)
_ARG = re.compile(r"^\s+(?P<name>\w+)=")
_CALL = re.compile(r"^(?P<name>[A-Za-z_][\w.]*)\((?P<inside>.*)\)$", re.DOTALL)
_SHOWN = 60  # characters of one value in a hidden case; a long list is cut
_SEED_FIELD = re.compile(r"['\"]?\w*seed\w*['\"]?\s*[=:]\s*[^,)\]}]*,?\s*", re.IGNORECASE)


def _failing_case(exc: BaseException | None, fixtures: tuple[str, ...] = (), hidden: bool = False) -> str:
    """The failing example Hypothesis reports. Public tests show it as Hypothesis prints it, and
    their `st.data()` draws after it. Hidden tests show it by kind, shapes and dtypes on one line
    ("Failing case: FFNCase kind swiglu, d_model 8, lead (2, 3), dtype float64; permutation [2, 0, 1]"):
    never a seed, which would let a student rebuild the input with the public strategies, nor
    Hypothesis's `data(...)` placeholder, which says nothing."""
    notes = [str(note) for note in getattr(exc, "__notes__", ()) or ()]
    case = next((note for note in notes if _CASE_START.match(note.splitlines()[0] if note else "")), None)
    draws = [m for m in (_DRAW.match(note) for note in notes) if m]
    if case is None and not draws:
        return ""
    if not hidden:
        lines = [] if case is None else [line for line in case.splitlines()
                                         if not ((arg := _ARG.match(line)) and arg["name"] in fixtures)]
        return "\n".join(lines + [_uncomment(m.group(0)) for m in draws])
    parts = [] if case is None else [_render(value, name) for name, value in _arguments(case) if name not in fixtures]
    parts += [_render(_uncomment(m["value"]), m["label"] or "") for m in draws]
    shown = [part for part in parts if part]
    return "Failing case: " + "; ".join(shown) if shown else ""


def _uncomment(text: str) -> str:
    """`text` without Hypothesis's trailing comments ("# or any other generated value")."""
    return "\n".join(re.sub(r"\s+#.*$|^\s*#.*$", "", line) for line in text.splitlines()).strip()


def _split(inside: str) -> list[str]:
    """Top-level comma-separated items of a repr's inside (commas inside brackets or quotes stay)."""
    items, depth, quote, current = [], 0, "", []
    for char in inside:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    items.append("".join(current).strip())
    return [item for item in items if item]


def _arguments(case: str) -> list[tuple[str, str]]:
    """(name, value repr) of each argument in Hypothesis's "Falsifying example: test(...)" note."""
    body = _uncomment("\n".join(case.splitlines()[1:]))
    body = " ".join(line.strip() for line in body.splitlines()).removesuffix(")")
    pairs = [item.split("=", 1) for item in _split(body)]
    return [(name.strip(), value.strip()) for name, value in (p for p in pairs if len(p) == 2)]


def _render(value: str, name: str = "") -> str:
    """One value of a hidden case in words: a case object by its class and fields (seeds left
    out), a tensor by its shape and dtype, `torch.float64` as float64; "" for what says nothing."""
    value = " ".join(value.split())
    if "seed" in name.lower() or value == "data(...)":
        return ""
    call = _CALL.match(value)
    items = _split(value[1:-1]) if value[:1] + value[-1:] in ("[]", "()") else []
    if any(_CALL.match(item) for item in items):  # a list of case objects: each in words
        return f"{name} [{', '.join(_render(item) for item in items)}]".strip()
    if call and call["name"] == "tensor":
        described = _tensor(call["inside"])
    elif call and not call["name"].startswith("torch."):
        fields = [item.split("=", 1) for item in _split(call["inside"])]
        shown = [_render(v, k) for k, v in (f for f in fields if len(f) == 2)]
        described = " ".join([call["name"], ", ".join(part for part in shown if part)]).strip()
        return described if name.lower() in call["name"].lower() else f"{name} {described}".strip()
    else:
        described = _SEED_FIELD.sub("", value).removeprefix("torch.").strip("'\"")  # a seed inside a dict or list
        if len(described) > _SHOWN:
            described = described[:_SHOWN] + " ..."
    return f"{name} {described}".strip()


def _tensor(inside: str) -> str:
    """A tensor's repr inside `tensor(...)` as "tensor (2, 3) float64" (its values left out)."""
    items = _split(inside)
    dtype = next((item.split("=", 1)[1].removeprefix("torch.") for item in items if item.startswith("dtype=")), "")
    if "..." in inside:  # torch abbreviates a large tensor's repr: its entries cannot be counted
        return " ".join(part for part in ("tensor", dtype) if part)
    shape, level = [], items[0] if items else ""
    while level.startswith("["):
        entries = _split(level[1:-1])
        shape.append(len(entries))
        level = entries[0] if entries else ""
    return " ".join(part for part in ("tensor", str(tuple(shape)), dtype) if part)


def _progress(done: int, total: int, label: str) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r  grading {label:<28} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    sys.stderr.flush()


# plugin entry points ----------------------------------------------------------------------

GRADING = pytest.StashKey[Grading]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("graders")
    group.addoption("--impl", default=None, help="student tree to grade (default: assignments/)")
    group.addoption("--snapshot-update", action="store_true", help="write snapshots instead of comparing")
    group.addoption("--grading-progress", action="store_true", help="draw a progress bar on stderr")
    group.addoption("--grading-task", action="append", help="grade only this task (repeatable)")
    group.addoption("--grading-budget-factor", type=float, default=None,
                    help="each chapter's wall-clock budget is this many times its reference's grading time")
    group.addoption("--grading-budget-s", type=float, default=None,
                    help="each chapter's wall-clock budget in seconds (overrides the factor)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "points(n): the points a grading test is worth")
    config.addinivalue_line("markers", "task(name): the student function or class the test grades")
    if not hasattr(config.option, "tbstyle"):  # a grading run: no terminal, so no --tb option
        # grade.json's messages come from the exception itself (`_describe`). pytest still
        # formats every failure, and has Hypothesis format each failing example, in its long
        # style, which parses and walks the source file of every frame: an empty tree's
        # chapter 01 spent 20 of its 22 s doing that. Native tracebacks cost next to nothing.
        config.option.tbstyle = "native"
    grading = Grading(config)
    config.stash[GRADING] = grading
    config.pluginmanager.register(grading, "graders-grading")


def grading(config: pytest.Config) -> Grading:
    return config.stash[GRADING]


def load_reference(module: str) -> types.ModuleType:
    """Import a reference module in the trusted process, under a private name."""
    path = chapters.REFERENCE / f"{module}.py"
    if not path.exists():
        raise FileNotFoundError(f"reference module {path} is missing (hidden tests need the instructor tree)")
    name = f"_reference_{module}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        # The capstone imports earlier chapters by their flat names (`from multi_head_attention
        # import ...`): while it loads, those names find the reference's modules.
        sys.path.insert(0, str(chapters.REFERENCE))
        try:
            spec.loader.exec_module(loaded)
        finally:
            sys.path.remove(str(chapters.REFERENCE))
    return sys.modules[name]
