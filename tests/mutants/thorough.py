"""`python -m tests.mutants.thorough`: the reference and every valid variant under the thorough profile.

A valid variant (each chapter's ``VALID_VARIANTS``) is a correct solution written another way;
CI grades it with the grading profile's few examples per test. This grades the reference, each
chapter whole, and each variant, on the tasks that hold its edits, with
``GRADERS_HYPOTHESIS_PROFILE=thorough`` (twenty times the examples), through the real
``python -m graders grade`` command, and reports every grade that is not full marks with the
tests that took points. A variant is graded by its own chapter only (chapter 03's tests also call
chapter 02's attention: a chapter-02 variant is not graded there).

Usage: ``python -m tests.mutants.thorough [--chapter ID ...] [--jobs N] [--out DIR]``; the report
goes to ``reports/thorough/report.json`` and the exit status is 1 when anything lost points.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from graders import chapters

from . import Mutant
from .generate import known_tasks, tasks_for

ROOT = chapters.ROOT
DEFAULT_OUT = ROOT / "reports" / "thorough"
PROFILE = "thorough"


def variants(chapter: chapters.Chapter) -> list[Mutant]:
    return list(importlib.import_module(f"tests.mutants.ch{chapter.number:02d}").VALID_VARIANTS)


def owners(source: str, variant: Mutant) -> set[str]:
    """The top-level names (a class's methods as Class.method) whose text the edits of `variant`
    touch, each edit found in the source as the edits before it left it."""
    found = set()
    for old, new in ((variant.old, variant.new), *variant.also):
        line = source[:source.index(old)].count("\n") + 1
        for node in ast.parse(source).body:
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or not node.lineno <= line <= node.end_lineno:
                continue
            name = node.name
            for item in node.body if isinstance(node, ast.ClassDef) else []:
                if isinstance(item, ast.FunctionDef) and item.lineno <= line <= item.end_lineno:
                    name = f"{node.name}.{item.name}"
            found.add(name)
        source = source.replace(old, new, 1)
    return found


def variant_tasks(chapter: chapters.Chapter, source: str, variant: Mutant) -> tuple[str, ...]:
    """The tasks that grade the variant's edits; () (the whole chapter) when one is not a task."""
    valid = known_tasks(chapter)
    tasks: set[str] = set()
    for owner in owners(source, variant):
        named = tasks_for(chapter.module, owner)
        if not set(named) <= valid:
            return ()
        tasks.update(named)
    return tuple(sorted(tasks))


def grade(chapter: chapters.Chapter, name: str, variant: Mutant | None, tasks: tuple[str, ...]) -> dict:
    """Grade the reference (`variant` None) or the reference with `variant` applied, thorough profile."""
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="thorough_") as folder:
        tree = Path(folder) / "impl"
        shutil.copytree(chapters.REFERENCE, tree, ignore=shutil.ignore_patterns("__pycache__"))
        if variant is not None:
            path = tree / f"{chapter.module}.py"
            path.write_text(variant.apply(path.read_text()))
        report = Path(folder) / "report"
        command = [sys.executable, "-m", "graders", "grade", "--impl", str(tree), "--report", str(report),
                   "--no-progress", "--chapter", chapter.id, *[a for t in tasks for a in ("--task", t)]]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env["GRADERS_HYPOTHESIS_PROFILE"] = PROFILE
        run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        entry = {"chapter": chapter.id, "name": name, "tasks": list(tasks), "seconds": 0.0}
        grade_json = report / "grade.json"
        if run.returncode != 0 or not grade_json.exists():
            said = (run.stderr or run.stdout).strip().splitlines()
            entry |= {"score": None, "max_score": None, "lost": [said[-1][:300] if said else f"exit {run.returncode}"]}
        else:
            graded = next(c for c in json.loads(grade_json.read_text())["chapters"] if c["id"] == chapter.id)
            entry |= {"score": graded["score"], "max_score": graded["max_score"],
                      "lost": [f"{t['name']} [{t['status']}]: {t['message'][:300]}" for t in graded["tests"]
                               if t["score"] < t["max_score"]]}
    entry["seconds"] = round(time.monotonic() - began, 1)
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants.thorough", description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapter", action="append", default=[], help="a chapter id or number; repeat for more")
    parser.add_argument("--jobs", type=int, default=1, help="grades at once (default 1)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder (default reports/thorough)")
    args = parser.parse_args(argv)
    selected = [chapters.find(c) for c in args.chapter] or list(chapters.graded())
    work = []
    for chapter in selected:
        source = (chapters.REFERENCE / f"{chapter.module}.py").read_text()
        work.append((chapter, "reference", None, ()))
        work += [(chapter, v.name, v, variant_tasks(chapter, source, v)) for v in variants(chapter)]
    results = []
    with ThreadPoolExecutor(args.jobs) as pool:
        for entry in pool.map(lambda w: grade(*w), work):
            results.append(entry)
            full = entry["score"] is not None and entry["score"] == entry["max_score"]
            print(f"{'ok  ' if full else 'LOST'} {entry['chapter']:<26} {entry['name']:<36} "
                  f"{entry['score']}/{entry['max_score']} ({entry['seconds']:.0f} s)"
                  + "".join(f"\n       {line}" for line in entry["lost"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps({"profile": PROFILE, "grades": results}, indent=2) + "\n")
    lost = [r for r in results if r["score"] is None or r["score"] < r["max_score"]]
    print(f"{len(results) - len(lost)} of {len(results)} grades full marks under the {PROFILE} profile; "
          f"report: {args.out / 'report.json'}")
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
