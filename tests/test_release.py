"""The student release: no reference code, no hidden test, no solution text, and it grades
itself out of the box with the public tests only."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from graders import chapters, release, stubs
from tests.conftest import REFERENCE, ROOT

# Its module fixture runs once: under xdist (--dist loadgroup) the whole file shares one worker.
pytestmark = pytest.mark.xdist_group("release")

REGIONS = [(path.name, region) for path in sorted(REFERENCE.glob("*.py"))
           for region in stubs.regions(path.read_text(), path.name)]


@pytest.fixture(scope="module")
def release_tree(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("release") / "student"
    release.build(dest)
    return dest


def release_cli(tree: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m graders ARGS` run inside the release, with the release's own graders package."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")} | {"PYTHONPATH": str(tree)}
    return subprocess.run([sys.executable, "-m", "graders", *args], cwd=tree, capture_output=True, text=True,
                          timeout=600, env=env)


def release_grade(tree: Path, report: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    result = release_cli(tree, "grade", "--report", str(report), "--no-progress", *args)
    assert result.returncode == 0, f"grading in the release did not complete:\n{result.stdout}\n{result.stderr}"
    return result, json.loads((report / "grade.json").read_text())


def copy_of(tree: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "student"
    shutil.copytree(tree, copy)
    return copy


def leaked_paths(tree: Path) -> set[str]:
    return {leak.path for leak in release.scan(tree)}


# --- what is in it ----------------------------------------------------------------------


def test_release_scan_finds_nothing(release_tree):
    assert release.scan(release_tree) == []


def test_release_leaves_out_reference_hidden_tests_and_project_tests(release_tree):
    present = [entry for entry in release.FORBIDDEN if (release_tree / entry).exists()]
    present += [str(p.relative_to(release_tree)) for p in release_tree.rglob("__pycache__")]
    assert present == []


def test_release_ships_stubs_public_suites_snapshots_and_site(release_tree):
    expected = [f"assignments/{p.name}" for p in REFERENCE.glob("*.py")]
    for chapter in chapters.graded():
        expected += [f"graders/public/test_{chapter.slug}.py", f"graders/snapshots/{chapter.slug}"]
    expected += ["noxfile.py", "README.md", "pyproject.toml", "site/mkdocs.yml", "site/scripts/fetch_katex.py",
                 "site/scripts/api_pages.py"]  # the release's own site build writes the API pages from its stubs
    expected += [f"site/docs/{c.page}" for c in chapters.graded()]
    # Chapter 05's exercise 4, given as it is, and the experiment it imports its gradient flow from.
    expected += [f"assignments/{name}" for name in stubs.GIVEN] + ["site/scripts/experiment_norm.py"]
    assert [entry for entry in expected if not (release_tree / entry).exists()] == []


def test_release_ships_every_figure_its_pages_show_but_not_the_script(release_tree):
    pages = "".join(p.read_text() for p in (release_tree / "site" / "docs").glob("*.md"))
    figures = {name for name in (p.name for p in (ROOT / "site" / "docs" / "figures").glob("*.png"))
               if f"figures/{name}" in pages}
    shipped = {p.name for p in (release_tree / "site" / "docs" / "figures").glob("*.png")}
    assert figures and figures <= shipped
    assert not (release_tree / "site" / "scripts" / "figures.py").exists()


# --- the scanner catches planted leaks --------------------------------------------------


def test_scan_catches_a_solution_body_copied_into_the_release(release_tree, tmp_path):
    copy = copy_of(release_tree, tmp_path)
    _, region = max(REGIONS, key=lambda item: len(item[1].body))
    page = copy / "site" / "docs" / "index.md"
    page.write_text(page.read_text() + "\n```python\n" + textwrap.dedent("".join(region.body)) + "```\n")
    assert "site/docs/index.md" in leaked_paths(copy)


def test_scan_catches_a_hidden_test_name_in_the_release(release_tree, tmp_path):
    copy = copy_of(release_tree, tmp_path)
    name = next(n.text for n in release.needles() if n.kind == "hidden test name")
    (copy / "README.md").write_text((copy / "README.md").read_text() + f"\nTip: the grader runs {name}.\n")
    assert "README.md" in leaked_paths(copy)


@pytest.fixture(scope="module")
def needles() -> list[release.Needle]:
    return release.needles()  # what scan() looks for by default: computed once for the 100-odd cases below


@pytest.mark.parametrize("module, region", REGIONS, ids=[f"{m}:{r.owner}:{r.begin}" for m, r in REGIONS])
def test_scan_catches_every_region_reformatted_without_comments(tmp_path, needles, module, region):
    """A region's body, re-formatted by `ast.unparse` (comments gone, quotes and spacing changed),
    is still found: the generic-line rule leaves every region lines of its own."""
    reformatted = ast.unparse(ast.parse(textwrap.dedent("".join(region.body))))
    (tmp_path / "answer.py").write_text(reformatted + "\n")
    origins = {leak.origin for leak in release.scan(tmp_path, needles)}
    assert any(origin.startswith(f"reference_solutions/{module}:") and region.begin < int(origin.rsplit(":", 1)[1])
               < region.end for origin in origins)


def test_build_refuses_a_leak_and_removes_the_release(tmp_path):
    """A solution line pasted into a reading page of an instructor tree stops the build."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT, root, ignore=shutil.ignore_patterns(".git", ".venv", ".nox", "dist", "build", ".cache",
                                                              "tests", "reports", "__pycache__", ".hypothesis"))
    _, region = REGIONS[0]
    line = next(line for line in region.body
                if not stubs.HINT.match(line) and len(release.normalize(line)) >= release.MIN_CHARS)
    (root / "site" / "docs" / "index.md").write_text(f"```python\n{line.strip()}\n```\n")
    with pytest.raises(release.LeakError, match="site/docs/index.md"):
        release.build(tmp_path / "student", root=root)
    assert not (tmp_path / "student").exists()


# --- grading inside the release ---------------------------------------------------------


@pytest.fixture(scope="module")
def stub_grade_in_release(release_tree, tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    return release_grade(release_tree, tmp_path_factory.mktemp("release-stub-report"))


def test_release_grades_with_public_tests_only(stub_grade_in_release):
    _, grade = stub_grade_in_release
    visibilities = {t["visibility"] for c in grade["chapters"] for t in c["tests"]}
    assert visibilities == {"public"}


def test_release_gives_its_stubs_zero(stub_grade_in_release):
    _, grade = stub_grade_in_release
    assert grade["score"] == 0 and grade["max_score"] > 0


def test_release_says_hidden_tests_run_when_the_instructor_grades(stub_grade_in_release):
    result, _ = stub_grade_in_release
    assert "hidden tests run when your instructor grades." in result.stdout


def test_release_gives_the_reference_full_public_marks(release_tree, tmp_path):
    _, grade = release_grade(release_tree, tmp_path, "--impl", str(REFERENCE))
    assert grade["max_score"] > 0 and grade["score"] == grade["max_score"]


def test_release_runs_exercise_4_on_a_students_finished_norms(release_tree, tmp_path):
    """`cd assignments && python layer_norm_comparison.py --impl DIR` inside the release, on a
    normalization.py that passes (the reference's, copied out as a student's own), with nothing of
    the repository on its path: it imports the release's graders/ and site/scripts/, and compares
    every norm."""
    student = tmp_path / "mine"
    student.mkdir()
    shutil.copy(REFERENCE / "normalization.py", student)
    script = release_tree / "assignments" / "layer_norm_comparison.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, str(script), "--quick", "--impl", str(student), "--out", str(tmp_path)],
                            check=False, cwd=script.parent, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert {norm: entry["status"] for norm, entry in data["norms"].items()} == dict.fromkeys(
        ("layernorm", "rmsnorm", "batchnorm"), "ok")
    assert all(row[phase]["time_ratio"] > 0 for entry in data["norms"].values() for row in entry["rows"]
               for phase in ("forward", "forward_backward"))
    assert "configurations" in data["gradient_flow"]


def test_release_stub_generator_says_it_needs_the_reference(release_tree):
    result = release_cli(release_tree, "stubs", "--check")
    assert result.returncode != 0
    assert "student release" in result.stderr and "Traceback" not in result.stderr
