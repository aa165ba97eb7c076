"""The command line: `python -m graders grade | grade-batch | stubs | snapshots | release | bench |
rubric | nbgrader-course | gradescope`. Parsing only."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from graders import chapters

STUDENT_RELEASE = ("this is the student release: `python -m graders {command}` is for instructors "
                   "(it needs reference_solutions/)")


def _without_reference(command: str) -> bool:
    """True, after one line on stderr, where this tree has no reference (the student release)."""
    if chapters.REFERENCE.is_dir():
        return False
    print(STUDENT_RELEASE.format(command=command), file=sys.stderr)
    return True


def _grade(args: argparse.Namespace) -> int:
    from graders.grade import GraderError, Run, grade, main_error

    run = Run(impl=Path(args.impl), requested=args.chapter, report_dir=Path(args.report),
              hidden=not args.public_only, progress=not args.no_progress, tasks=args.task,
              budget_factor=args.budget_factor)
    try:
        grade(run)
    except (GraderError, chapters.UnknownChapter) as exc:
        return main_error(str(exc))
    return 0  # grading completed, whatever the score


def _grade_batch(args: argparse.Namespace) -> int:
    from graders import batch

    try:
        for key in args.chapter:
            chapters.find(key)
        batch.run(batch.Batch(Path(args.submissions), Path(args.report), chapters=args.chapter, tasks=args.task,
                              scheduler=args.scheduler, workers=args.workers, timeout=args.timeout,
                              progress=not args.no_progress))
    except (batch.BatchError, chapters.UnknownChapter) as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0  # the batch completed, whatever the scores and however many rows are errors


def _stubs(args: argparse.Namespace) -> int:
    from graders import stubs

    if _without_reference("stubs"):
        return 2  # without the reference, --check would call every stub a drift
    if args.check:
        problems = stubs.check(chapters.REFERENCE, chapters.ASSIGNMENTS)
        for problem in problems:
            print(problem)
        if problems:
            print("assignments/ has drifted from reference_solutions/: run `nox -s stubs`", file=sys.stderr)
        return 1 if problems else 0
    for path in stubs.generate(chapters.REFERENCE, chapters.ASSIGNMENTS):
        print(f"wrote {path.relative_to(chapters.ROOT)}")
    return 0


def _snapshots(args: argparse.Namespace) -> int:
    import pytest

    if _without_reference("snapshots"):
        return 2
    selected = [chapters.find(c) for c in args.chapter] if args.chapter else list(chapters.graded())
    files = [str(c.suite("public")) for c in selected]
    return int(pytest.main([*files, "-p", "graders.plugin", "--impl", str(chapters.REFERENCE), "--snapshot-update",
                            "-c", str(chapters.GRADERS / "pytest.ini"), "--rootdir", str(chapters.GRADERS),
                            "-p", "no:cacheprovider", "-q"]))


def _release(args: argparse.Namespace) -> int:
    from graders import release

    if _without_reference("release"):
        return 2
    try:
        built = release.build(Path(args.dest))
    except release.ReleaseError as exc:
        print(exc, file=sys.stderr)
        return 1
    for entry, files in built.written.items():
        folder = "/" if (built.dest / entry).is_dir() else ""
        print(f"wrote {_shown(built.dest / entry)}{folder} ({len(files)} file{'s' if len(files) != 1 else ''})")
    checked = ", ".join(f"{count} {kind}s" for kind, count in built.needles.items())
    print(f"student release: {built.files} files in {_shown(built.dest)}/; leak scan clean ({checked} checked)")
    return 0


def _shown(path: Path) -> Path:
    """`path` relative to the working directory where it lies below it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _bench(args: argparse.Namespace) -> int:
    if _without_reference("bench"):
        return 2  # it times the reference's attention
    from graders import bench

    sections = tuple(args.only) or bench.SECTIONS
    return bench.main(args.impl, sections, Path(args.json) if args.json else None)


def _rubric(args: argparse.Namespace) -> int:
    import json

    from graders import rubric

    selected = [chapters.find(c) for c in args.chapter] if args.chapter else None
    try:
        items = rubric.collect(selected)
    except rubric.RubricError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps({chapter: [item.as_json() for item in found] for chapter, found in items.items()}, indent=2))
    return 0


def _nbgrader_course(args: argparse.Namespace) -> int:
    from graders import nbgrader_course, rubric

    if _without_reference("nbgrader-course"):
        return 2
    selected = [chapters.find(c) for c in args.chapter] if args.chapter else None
    try:
        course = nbgrader_course.build(Path(args.dest), selected, course_id=args.course_id)
    except (nbgrader_course.CourseError, rubric.RubricError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"wrote {_shown(course.dest / 'nbgrader_config.py')} (course {course.course_id!r})")
    for name, items in course.assignments.items():
        points = {v: sum(i.points for i in items if i.visibility == v) for v in ("public", "hidden")}
        print(f"wrote {_shown(course.dest / 'source' / name)}/: {len(items)} test cells, "
              f"{points['public']:g} public + {points['hidden']:g} hidden points")
    return 0


def _gradescope(args: argparse.Namespace) -> int:
    from graders import gradescope

    if _without_reference("gradescope"):
        return 2
    selected = [chapters.find(c) for c in args.chapter] if args.chapter else None
    target = gradescope.build(Path(args.dest), selected)
    print(f"wrote {_shown(target)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graders", description="Grade the course's assignments.")
    commands = parser.add_subparsers(dest="command", required=True)

    grade = commands.add_parser("grade", help="grade a tree and write reports")
    grade.add_argument("--impl", default=str(chapters.ASSIGNMENTS), help="the tree to grade (default: assignments/)")
    grade.add_argument("--chapter", action="append", default=[], help="a chapter id or number; repeat for more")
    grade.add_argument("--report", default="reports", help="where grade.json and results.json go (default: reports/)")
    grade.add_argument("--task", action="append", default=[],
                       help="grade only this function or class (e.g. softmax); repeat for more")
    grade.add_argument("--public-only", action="store_true", help="skip hidden tests even where they exist")
    grade.add_argument("--no-progress", action="store_true", help="no progress bar")
    grade.add_argument("--budget-factor", type=float, default=None,
                       help="each chapter's student code may take this many times the reference's grading time "
                            f"in all, never under {chapters.BUDGET_FLOOR_S:g} s (default: $GRADERS_BUDGET_FACTOR "
                            f"or {chapters.BUDGET_FACTOR:g})")
    grade.set_defaults(func=_grade)

    many = commands.add_parser("grade-batch", help="grade a folder of submissions in parallel on Dask (resumable)")
    many.add_argument("submissions", help="one folder per student (an nbgrader submitted/ tree, a Gradescope export)")
    many.add_argument("--report", default="reports",
                      help="reports/<student>/grade.json and gradebook.csv go here (default: reports/)")
    many.add_argument("--scheduler", default=None,
                      help="tcp://HOST:PORT of a running Dask scheduler (default: a LocalCluster on this machine)")
    many.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                      help="LocalCluster worker processes, one grade each (default: one per core)")
    many.add_argument("--chapter", action="append", default=[], help="grade only this chapter; repeat for more")
    many.add_argument("--task", action="append", default=[], help="grade only this task; repeat for more")
    many.add_argument("--timeout", type=float, default=1800.0,
                      help="seconds one submission may take before it is an error row (default: 1800)")
    many.add_argument("--no-progress", action="store_true", help="no progress bar")
    many.set_defaults(func=_grade_batch)

    stubs = commands.add_parser("stubs", help="write assignments/ from the reference's solution regions")
    stubs.add_argument("--check", action="store_true", help="only report drift; exit 1 if any")
    stubs.set_defaults(func=_stubs)

    snapshots = commands.add_parser("snapshots", help="regenerate public golden snapshots from the reference")
    snapshots.add_argument("--chapter", action="append", default=[])
    snapshots.set_defaults(func=_snapshots)

    release = commands.add_parser("release", help="build the student release: no reference, no hidden tests")
    release.add_argument("--dest", default=str(chapters.ROOT / "dist" / "student"),
                         help="where to build it (default: dist/student/; replaced on each build)")
    release.set_defaults(func=_release)

    bench = commands.add_parser("bench", help="grading time per chapter; attention, norm and capstone GPT speed vs "
                                              "PyTorch; batch grading throughput")
    bench.add_argument("--impl", default=str(chapters.REFERENCE))
    bench.add_argument("--only", action="append", default=[],
                       choices=("grading", "attention", "norm", "capstone", "batch"),
                       help="run only this section; repeat for more (default: all)")
    bench.add_argument("--json", default=None, help="also write the norm section's figures to this JSON file")
    bench.set_defaults(func=_bench)

    listing = commands.add_parser("rubric", help="print each chapter's rubric items (task, visibility, points) as JSON")
    listing.add_argument("--chapter", action="append", default=[], help="a chapter id or number; repeat for more")
    listing.set_defaults(func=_rubric)

    course = commands.add_parser("nbgrader-course",
                                 help="write an nbgrader course directory: config, one assignment per chapter")
    course.add_argument("dest", help="the course directory (created; its config and source/ are rewritten)")
    course.add_argument("--chapter", action="append", default=[],
                        help="only this chapter; repeat for more (default: every graded chapter)")
    course.add_argument("--course-id", default="transformers", help="nbgrader's course id (default: transformers)")
    course.set_defaults(func=_nbgrader_course)

    scope = commands.add_parser("gradescope", help="build a Gradescope autograder.zip (same grade, same points)")
    scope.add_argument("--dest", default=str(chapters.ROOT / "dist" / "gradescope"),
                       help="where autograder.zip goes (default: dist/gradescope/)")
    scope.add_argument("--chapter", action="append", default=[],
                       help="grade only this chapter; repeat for more (default: every chapter)")
    scope.set_defaults(func=_gradescope)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
