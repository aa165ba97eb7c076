"""An nbgrader course directory generated from the repository (`python -m graders nbgrader-course DIR`).

    DIR/nbgrader_config.py               course id, the kept student files, the autograde steps, the kernel
    DIR/source/NN_id/NN_id.ipynb         one assignment per graded chapter: its autograded notebook
    DIR/source/NN_id/<module>.py         the chapter's student modules, as stubs

The steps, in order:

    write_config     nbgrader_config.py (below)
    write_sources    per chapter of `chapters.graded()` (or those asked for): a fresh
                     source/NN_id/ with the stubs and the notebook

What each choice is for:

- **Stubs, not references, in source/.** nbgrader's `generate_assignment` copies a `.py` file
  verbatim (it strips solution regions from notebooks only), so source/ holds what
  `stubs.make_stub` writes from the reference, the same text as `assignments/`. The modules of
  earlier chapters a chapter's tests also call (`Chapter.uses`) travel with it: students put
  their own versions there.
- **Students' modules survive autograde.** `autograde` replaces every non-notebook file with
  the source version unless `Autograde.exclude_overwriting` names it; the config names each
  assignment's modules.
- **One test cell per rubric item** (`graders.rubric`): the tests of one task at one
  visibility, worth their points. A cell is one call, `check(chapter, visibility, task,
  points=N)`, whose value is the points earned (nbgrader's partial credit), so the gradebook
  holds grade.json's scores; hidden items sit between `### BEGIN HIDDEN TESTS` and
  `### END HIDDEN TESTS`, which `generate_assignment` strips and `autograde` restores. The
  feedback shows hidden cells' source, which is that one call.
- **Only the instructor's cells run.** Every cell is locked; autograde restores locked cells
  and, with `graders.nbgrader_preprocessors.DropUnknownCells`, drops any code cell a student
  added, so no student code runs in the kernel that reports the points.
- **Collect never follows a student's link.** A student can replace a file of their inbound
  submission with a link (to the reference, to another student's work) or a FIFO after
  submitting; nbgrader's own collect would copy the link's target as their file. The config
  sets `ExchangeFactory.collect` to `graders.nbgrader_exchange.SafeExchangeCollect`, whose
  copy leaves links and special files out, with a warning naming each.
- **The kernel imports this repository's graders, and nothing from the submission.** The
  kernel's working directory is the submission folder, which Python puts on `sys.path` ahead
  of the standard library, so a submitted `graders/` or `tempfile.py` would be imported. The
  config starts kernels (`IPKernelApp.exec_lines`) with that folder taken off `sys.path` and
  this repository first.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import v4

from graders import chapters, rubric, stubs

DEFAULT_COURSE_ID = "transformers"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
EXECUTE_TIMEOUT_S = 3600  # per cell; the first cell of a notebook grades the whole chapter

GENERATED = "written by `python -m graders nbgrader-course`"
CONFIG = '''\
"""nbgrader configuration for the course {course_id!r}, written by `python -m graders nbgrader-course`.

Regenerate it rather than edit it (the generator rewrites this file and source/). Settings of
your own (the exchange, JupyterHub) can go in your Jupyter config folder's nbgrader_config.py.
"""

import sys

GRADERS_ROOT = {root!r}  # the repository whose graders grade this course

sys.path.insert(0, GRADERS_ROOT)
from graders.nbgrader_preprocessors import sanitize_preprocessors  # noqa: E402

c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {course_id!r}
# The students' modules are their work: autograde keeps the submitted files instead of the stubs.
c.Autograde.exclude_overwriting = {exclude!r}
# No code cell but the source notebook's own runs in the grading kernel.
c.Autograde.sanitize_preprocessors = sanitize_preprocessors()
# Collect copies the students' inbound folders without following a link they planted there
# (to the reference, or to another student's work) and without opening a FIFO or device.
c.ExchangeFactory.collect = "graders.nbgrader_exchange.SafeExchangeCollect"
# The first test cell grades the whole chapter (hidden tests included) in one run.
c.Execute.timeout = {timeout}
# Kernels run in the submission folder: take it off sys.path (a submitted `graders/` or
# `tempfile.py` must never be imported) and import the graders from GRADERS_ROOT.
c.Execute.extra_arguments = [
    "--HistoryManager.hist_file=:memory:",
    "--IPKernelApp.exec_lines=import os, sys; sys.path[:] = [" + repr(GRADERS_ROOT)
    + "] + [p for p in sys.path if os.path.abspath(p or '.') != os.getcwd()]",
]
'''


class CourseError(RuntimeError):
    """The course cannot be generated (no reference, a bad destination)."""


@dataclass
class Course:
    dest: Path
    course_id: str
    assignments: dict[str, list[rubric.Item]] = field(default_factory=dict)  # assignment name -> its items


def assignment_name(chapter: chapters.Chapter) -> str:
    return chapter.slug


def assignment_files(chapter: chapters.Chapter) -> list[str]:
    """The student modules an assignment carries: the chapter's own, then the earlier ones it uses."""
    return [f"{module}.py" for module in dict.fromkeys(chapter.modules + chapter.uses)]


def build(dest: Path, selected: list[chapters.Chapter] | None = None, *,
          course_id: str = DEFAULT_COURSE_ID) -> Course:
    """Write (or rewrite) the course in `dest`; other files there (the gradebook, submissions) are kept."""
    if not chapters.REFERENCE.is_dir():
        raise CourseError("reference_solutions/ is missing: the course is generated from the instructor tree")
    dest = Path(dest).resolve()
    if dest == chapters.ROOT or chapters.ROOT in dest.parents:
        raise CourseError(f"{dest} is inside the repository; generate the course somewhere else")
    selected = list(selected or chapters.graded())
    course = Course(dest, course_id)
    items = rubric.collect(selected)  # before anything is written: a suite that fails to collect changes nothing
    dest.mkdir(parents=True, exist_ok=True)
    write_config(course)
    for chapter in selected:
        write_source(course, chapter, items[chapter.id])
    return course


def write_config(course: Course) -> None:
    """The course-wide config: it names every graded chapter's files, whichever sources this run writes."""
    target = course.dest / "nbgrader_config.py"
    if target.exists() and GENERATED not in target.read_text():
        raise CourseError(f"{target} exists and was not written by this generator; move it or choose another folder")
    exclude = {assignment_name(c): assignment_files(c) for c in chapters.graded()}
    text = CONFIG.format(course_id=course.course_id, root=str(chapters.ROOT), exclude=exclude,
                         timeout=EXECUTE_TIMEOUT_S)
    target.write_text(text)


def write_source(course: Course, chapter: chapters.Chapter, items: list[rubric.Item]) -> None:
    folder = course.dest / "source" / assignment_name(chapter)
    if folder.exists():
        shutil.rmtree(folder)  # a module or notebook the chapter no longer has must not linger
    folder.mkdir(parents=True)
    for name in assignment_files(chapter):
        reference = chapters.REFERENCE / name
        (folder / name).write_text(stubs.make_stub(reference.read_text(), name))
    nbformat.write(notebook(chapter, items), folder / f"{assignment_name(chapter)}.ipynb")
    course.assignments[assignment_name(chapter)] = items


# --- the notebook ----------------------------------------------------------------------------


def notebook(chapter: chapters.Chapter, items: list[rubric.Item]) -> nbformat.NotebookNode:
    """The chapter's autograded notebook: an introduction, then per task its public and hidden cells."""
    cells = [_markdown("intro", introduction(chapter, items))]
    for task in dict.fromkeys(item.task for item in items):
        mine = [item for item in items if item.task == task]
        cells.append(_markdown(f"about-{task}", f"## `{task}`\n\n"
                               + "\n".join(f"- {item.visibility} checks: {_points(item.points)}" for item in mine)))
        cells += [_test_cell(item) for item in mine]
    nb = v4.new_notebook(cells=cells)
    nb.metadata.kernelspec = dict(KERNELSPEC)
    nb.metadata.language_info = {"name": "python"}
    return nb


def introduction(chapter: chapters.Chapter, items: list[rubric.Item]) -> str:
    total = sum(item.points for item in items)
    own = ", ".join(f"`{name}`" for name in assignment_files(chapter)[:len(chapter.modules)])
    lines = [f"# Chapter {chapter.number:02d}: `{chapter.id}`", "",
             f"Write your code in {own}, in this folder, with the reading page `{chapter.page}` beside you. "
             "The docstrings are the handout. This notebook holds no code of yours: each cell below runs the "
             "course's grader on your modules and shows the points one part earned "
             f"({_points(total)} in all).", ""]
    if chapter.uses:
        earlier = ", ".join(f"`{module}.py`" for module in chapter.uses)
        lines += [f"This chapter's tests also call your earlier work: put your own {earlier} in this folder "
                  "(the copies here are stubs).", ""]
    lines += ["Hidden checks run when your work is graded. Do not add or change cells: when it is graded, "
              "the cells are restored to these and any cell you added is removed."]
    return "\n".join(lines)


def _test_cell(item: rubric.Item) -> nbformat.NotebookNode:
    call = (f"from graders.nbgrader_cells import check\n"
            f"check({item.chapter!r}, {item.visibility!r}, {item.task!r}, points={item.points:g})")
    if item.visibility == "hidden":
        source = (f"# The hidden checks of {item.task} ({_points(item.points)}) run when your work is graded.\n"
                  f"### BEGIN HIDDEN TESTS\n{call}\n### END HIDDEN TESTS")
    else:
        source = call
    cell = v4.new_code_cell(source, id=item.grade_id)
    cell.metadata = {"deletable": False, "editable": False,
                     "nbgrader": _nbgrader(item.grade_id, grade=True, points=item.points)}
    return cell


def _points(points: float) -> str:
    return f"{points:g} point" + ("" if points == 1 else "s")


def _markdown(grade_id: str, source: str) -> nbformat.NotebookNode:
    cell = v4.new_markdown_cell(source, id=grade_id)
    cell.metadata = {"deletable": False, "editable": False, "nbgrader": _nbgrader(grade_id, grade=False)}
    return cell


def _nbgrader(grade_id: str, *, grade: bool, points: float = 0) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": True, "schema_version": 3, "solution": False,
            "task": False}
    if grade:
        meta["points"] = points
    return meta
