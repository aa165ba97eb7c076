"""The instructors' nbgrader cycle, end to end with nbgrader's own command line (no mocks).

One chapter (05, quick to grade), a generated course and a local exchange in a temporary
folder, and four students simulated as one Unix user (each with their own exchange cache and
`--student` id): alice submits the reference, bob the untouched stub, carol a mutant, and
mallory the stub with a notebook cell and a planted `graders/` package that try to forge full
marks. The gradebook must hold what `python -m graders grade` gives the same files.
"""

from __future__ import annotations

import ast
import csv
import html
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from graders import chapters, release, stubs
from tests.conftest import REFERENCE, ROOT, grade
from tests.mutants.ch05 import MUTANTS

# One module fixture runs the whole cycle: under xdist the file stays on one worker.
pytestmark = pytest.mark.xdist_group("nbgrader")

CHAPTER = chapters.find(5)
ASSIGNMENT = CHAPTER.slug
MODULE = f"{CHAPTER.module}.py"
MUTANT = next(m for m in MUTANTS if m.name == "layernorm_bias_ignored")
STUDENTS = ("alice", "bob", "carol", "mallory")

FORGED_CELL = """\
import graders.nbgrader_cells as cells
cells.check = lambda chapter, visibility, task, *, points, impl=None: float(points)
"""
PLANTED_MODULE = "def check(chapter, visibility, task, *, points, impl=None):\n    return float(points)\n"


@dataclass
class Cycle:
    root: Path  # the temporary folder
    course: Path
    exchange: Path
    env: dict[str, str]

    def nbgrader(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd or self.course, env=self.env,
                                capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    def as_student(self, student: str, *args: str) -> subprocess.CompletedProcess:
        home = self.root / "students" / student
        home.mkdir(parents=True, exist_ok=True)
        return self.nbgrader(*args, "--course", "transformers", "--student", student,
                             f"--Exchange.root={self.exchange}", f"--Exchange.cache={self.root / 'cache' / student}",
                             cwd=home)

    def fetched(self, student: str) -> Path:
        return self.root / "students" / student / ASSIGNMENT


def isolated_env(root: Path) -> dict[str, str]:
    """Jupyter's and IPython's folders inside `root`; the environment's bin/ on PATH (nbgrader
    runs `alembic` from there to create the gradebook)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "JUPYTER", "PYTHONPATH"))}
    home = root / "home"
    return env | {"HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
                  "JUPYTER_DATA_DIR": str(home / ".local" / "share" / "jupyter"),
                  "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / ".ipython"),
                  "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


@pytest.fixture(scope="module")
def cycle(tmp_path_factory) -> Cycle:
    root = tmp_path_factory.mktemp("nbgrader")
    course, exchange = root / "course", root / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)
    cycle = Cycle(root, course, exchange, isolated_env(root))
    generated = subprocess.run([sys.executable, "-m", "graders", "nbgrader-course", str(course),
                                "--chapter", str(CHAPTER.number)], cwd=ROOT, env=cycle.env,
                               capture_output=True, text=True, timeout=600)
    assert generated.returncode == 0, generated.stderr

    for student in STUDENTS:
        cycle.nbgrader("db", "student", "add", student, f"--last-name={student.title()}")
    cycle.nbgrader("generate_assignment", ASSIGNMENT)
    cycle.nbgrader("release_assignment", ASSIGNMENT, f"--Exchange.root={exchange}")

    reference = (REFERENCE / MODULE).read_text()
    for student in STUDENTS:
        cycle.as_student(student, "fetch_assignment", ASSIGNMENT)
    (cycle.fetched("alice") / MODULE).write_text(reference)
    (cycle.fetched("carol") / MODULE).write_text(MUTANT.apply(reference))
    forge(cycle.fetched("mallory"))
    for student in STUDENTS:
        cycle.as_student(student, "submit", ASSIGNMENT)

    # One Unix user plays every student, so the inbound files are not owned by their students.
    cycle.nbgrader("collect", ASSIGNMENT, f"--Exchange.root={exchange}", "--CollectApp.check_owner=False")
    cycle.nbgrader("autograde", ASSIGNMENT)
    cycle.nbgrader("generate_feedback", ASSIGNMENT)
    cycle.nbgrader("export")
    return cycle


def forge(folder: Path) -> None:
    """Mallory's attempts at full marks for the stub: a first cell that replaces `check`, and a
    `graders` package in the submission folder (the kernel's working directory)."""
    notebook = folder / f"{ASSIGNMENT}.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(FORGED_CELL))
    nbformat.write(nb, notebook)
    (folder / "graders").mkdir()
    (folder / "graders" / "__init__.py").write_text("")
    (folder / "graders" / "nbgrader_cells.py").write_text(PLANTED_MODULE)


def exported(cycle: Cycle) -> dict[str, dict[str, str]]:
    with open(cycle.course / "grades.csv", newline="") as handle:
        return {row["student_id"]: row for row in csv.DictReader(handle) if row["assignment"] == ASSIGNMENT}


@pytest.fixture(scope="module")
def cli_grades(cycle, tmp_path_factory) -> dict[str, dict]:
    """`python -m graders grade` on each student's submitted files: their chapter entry."""
    found = {}
    for student in STUDENTS:
        report = tmp_path_factory.mktemp(f"grade-{student}")
        graded = grade(cycle.course / "submitted" / student / ASSIGNMENT, report, CHAPTER.id)
        found[student] = next(c for c in graded["chapters"] if c["id"] == CHAPTER.id)
    return found


# --- the gradebook ---------------------------------------------------------------------------


def test_gradebook_equals_the_grade_command(cycle, cli_grades):
    rows = exported(cycle)
    assert set(rows) == set(STUDENTS)
    for student in STUDENTS:
        assert float(rows[student]["score"]) == cli_grades[student]["score"], student
        assert float(rows[student]["max_score"]) == cli_grades[student]["max_score"], student


def test_reference_gets_full_marks_stub_zero_mutant_partial(cycle):
    rows = {student: (float(row["score"]), float(row["max_score"])) for student, row in exported(cycle).items()}
    full = rows["alice"][1]
    assert full > 0 and rows["alice"] == (full, full)
    assert rows["bob"] == (0.0, full)
    assert 0 < rows["carol"][0] < full


def test_forged_cells_and_planted_graders_earn_nothing(cycle):
    assert float(exported(cycle)["mallory"]["score"]) == 0.0
    autograded = nbformat.read(cycle.course / "autograded" / "mallory" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4)
    assert not any("cells.check = lambda" in cell.source for cell in autograded.cells)


# --- what students see -----------------------------------------------------------------------


def test_feedback_names_failed_hidden_checks_without_their_code(cycle, cli_grades):
    page = feedback_text(cycle, "carol")
    failed = [t["name"] for t in cli_grades["carol"]["tests"]
              if t["visibility"] == "hidden" and t["status"] != "passed"]
    assert failed and all(name in page for name in failed)
    assert "check('layer_normalization', 'hidden'" in page  # nbgrader shows hidden cells' source: one call
    normalized = release.normalize(page)
    needles = hidden_code_needles()
    assert len(needles) > 20  # the suite's code lines, long enough to identify it
    leaked = [n.origin for n in needles if n.text in normalized]
    assert leaked == []


def feedback_text(cycle: Cycle, student: str) -> str:
    """A student's feedback page as text: tags (the code highlighting splits every line) removed."""
    page = (cycle.course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def hidden_code_needles() -> list[release.Needle]:
    """The chapter's hidden tests' code lines, without their docstrings (a failed test's message
    states its property, the docstring's first line, on purpose)."""
    suite = CHAPTER.suite("hidden")
    docstrings = set()
    for node in ast.walk(ast.parse(suite.read_text())):
        if isinstance(node, ast.FunctionDef) and ast.get_docstring(node) is not None:
            docstrings |= set(range(node.body[0].lineno, node.body[0].end_lineno + 1))
    origin = suite.relative_to(ROOT).as_posix()
    return [n for n in release.needles() if n.kind == "hidden test line" and n.origin.startswith(origin + ":")
            and int(n.origin.rsplit(":", 1)[1]) not in docstrings]


def released_text(folder: Path, into: Path) -> Path:
    """The released files as plain text for the leak scan: each notebook's cell sources, other files as they are."""
    into.mkdir()
    for path in folder.iterdir():
        if path.suffix == ".ipynb":
            nb = nbformat.read(path, as_version=4)
            (into / f"{path.stem}.txt").write_text("\n".join(cell.source for cell in nb.cells))
        else:
            shutil.copy(path, into / path.name)
    return into


def test_released_assignment_holds_no_solution_and_no_hidden_test(cycle, tmp_path):
    outbound = cycle.exchange / "transformers" / "outbound" / ASSIGNMENT
    assert sorted(p.name for p in outbound.iterdir()) == sorted([f"{ASSIGNMENT}.ipynb", MODULE])
    assert (outbound / MODULE).read_text() == stubs.make_stub((REFERENCE / MODULE).read_text(), MODULE)
    text = released_text(outbound, tmp_path / "plain")
    sources = (text / f"{ASSIGNMENT}.txt").read_text()
    assert "BEGIN HIDDEN TESTS" not in sources and "'hidden'" not in sources
    assert release.scan(text) == []


def test_source_notebook_has_a_cell_per_rubric_item_with_its_points(cycle):
    listing = subprocess.run([sys.executable, "-m", "graders", "rubric", "--chapter", CHAPTER.id], cwd=ROOT,
                             capture_output=True, text=True, timeout=600, check=True)
    items = json.loads(listing.stdout)[CHAPTER.id]
    nb = nbformat.read(cycle.course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4)
    cells = {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"]["points"] for c in nb.cells
             if c.metadata["nbgrader"]["grade"]}
    assert cells == {f"{i['visibility']}-{i['task']}": i["points"] for i in items}


# --- chapters that build on earlier ones -----------------------------------------------------


def test_a_chapter_using_earlier_modules_carries_and_keeps_them(tmp_path):
    """A chapter whose tests call earlier chapters' modules (chapter 03 calls chapter 02's
    attention; the capstone calls 02-06) ships stubs of them, and autograde keeps the student's own."""
    users = [c for c in chapters.graded() if c.uses]
    assert users, "no graded chapter uses an earlier module"
    course = tmp_path / "course"
    args = [arg for c in users for arg in ("--chapter", str(c.number))]
    subprocess.run([sys.executable, "-m", "graders", "nbgrader-course", str(course), *args], cwd=ROOT,
                   capture_output=True, text=True, timeout=600, check=True)
    config = (course / "nbgrader_config.py").read_text()
    for chapter in users:
        folder = course / "source" / chapter.slug
        expected = [f"{m}.py" for m in dict.fromkeys(chapter.modules + chapter.uses)]
        assert sorted(p.name for p in folder.glob("*.py")) == sorted(expected), chapter.id
        for name in expected:
            assert (folder / name).read_text() == stubs.make_stub((REFERENCE / name).read_text(), name)
        kept = re.search(r"exclude_overwriting = (\{.*\})", config).group(1)
        assert sorted(ast.literal_eval(kept)[chapter.slug]) == sorted(expected), chapter.id
