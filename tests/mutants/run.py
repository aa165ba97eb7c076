"""`nox -s mutation`: grade every generated mutant of the reference and report what survives.

Each mutant (`generate.py`) replaces one module of a copy of `reference_solutions/` and is
graded with the chapter's public and hidden suites, only the tasks that hold the mutated code,
through the real `python -m graders grade` command; a mutant that keeps full marks there is
then graded by every chapter that also calls its module (`uses` in graders/chapters.py). It is

    killed      when the grade takes points off, or the grade itself fails (a crash or a timeout);
    survived    when it keeps full marks: a bug, or a behaviour no test looks at;
    equivalent  when `equivalent.toml` names it with the reason no test can tell it apart from
                the reference (those are not graded).

The report (``reports/mutation/report.json`` and ``report.md``) lists every survivor with its
file, line and edit, every equivalent mutant with its reason, and per chapter the score
``killed / (generated - equivalent)``.

Usage: ``python -m tests.mutants [--chapter ID ...] [--sample N | --limit N] [--jobs N] [--id ID ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tomllib

from graders import chapters
from tests import forked_cli

from .generate import Generated, generate

ROOT = chapters.ROOT
EQUIVALENT = Path(__file__).with_name("equivalent.toml")
DEFAULT_OUT = ROOT / "reports" / "mutation"
# A mutant's grade takes a few seconds per task; a mutant that loops or slows the code to a
# crawl is stopped by the chapter's own budget (240 s at least), so this only ends a grade
# that hangs past it.
DEFAULT_TIMEOUT_S = 300.0
# Generated mutants kept per source line: the first ones in FAMILY_ORDER, one per family. A
# line with five constants would otherwise outweigh five lines with one bug each.
DEFAULT_PER_LINE = 2
FAMILY_ORDER = ("dropcall", "compare", "binop", "augassign", "neg", "not", "boolop", "swapargs", "const")


@dataclass
class Outcome:
    """What grading one mutant gave."""

    id: str
    chapter: str
    module: str
    line: int
    owner: str
    operator: str
    before: str
    after: str
    tasks: list[str]
    status: str  # "killed", "survived" or "equivalent"
    how: str = ""  # killed: "points", "crash" or "timeout"; equivalent: the reason
    public_killed: bool = False  # lost at least one public point
    failed: list[str] = field(default_factory=list)  # the tests that lost points
    seconds: float = 0.0


def load_equivalent(path: Path = EQUIVALENT) -> dict[str, str]:
    """Mutant id -> why no test can tell it from the reference (`equivalent.toml`'s [equivalent])."""
    if not path.exists():
        return {}
    return {str(k): str(v) for k, v in tomllib.loads(path.read_text()).get("equivalent", {}).items()}


def per_line(mutants: list[Generated], cap: int) -> list[Generated]:
    """At most `cap` mutants per source line, the first of each operator family in FAMILY_ORDER
    (then the rest in that order); `cap` 0 keeps them all. Source order is kept."""
    if cap <= 0:
        return mutants
    by_line: dict[tuple[str, int], list[Generated]] = {}
    for g in mutants:
        by_line.setdefault((g.module, g.line), []).append(g)
    kept: set[str] = set()
    for group in by_line.values():
        # within a family, a changed constant before a zeroed one (`dim=-1` -> `-2` before `-0`)
        ranked = sorted(group, key=lambda g: (FAMILY_ORDER.index(g.operator.split(":")[0]),
                                              g.operator in ("const:0", "const:0.0")))
        families, chosen = set(), []
        for g in ranked:  # one per family first
            if g.operator.split(":")[0] not in families and len(chosen) < cap:
                chosen.append(g)
                families.add(g.operator.split(":")[0])
        for g in ranked:
            if len(chosen) < cap and g not in chosen:
                chosen.append(g)
        kept.update(g.id for g in chosen)
    return [g for g in mutants if g.id in kept]


def select(chapter_ids: Iterable[str], per_line_cap: int = DEFAULT_PER_LINE, sample: int = 0, limit: int = 0,
           seed: int = 0, ids: Iterable[str] = ()) -> list[Generated]:
    """The mutants to consider, chapter by chapter: capped per line, then sampled (a fixed seed)
    or cut to the first `limit`; `ids` (when given) keeps only those."""
    wanted = set(ids)
    chosen: list[Generated] = []
    for chapter_id in chapter_ids:
        mutants = per_line(generate(chapters.find(chapter_id)), per_line_cap)
        if wanted:
            mutants = [g for g in mutants if g.id in wanted]
        if sample and sample < len(mutants):
            picked = {g.id for g in random.Random(f"{seed}:{chapter_id}").sample(mutants, sample)}
            mutants = [g for g in mutants if g.id in picked]
        if limit:
            mutants = mutants[:limit]
        chosen += mutants
    return chosen


def users_of(module: str, own: str) -> list[str]:
    """The chapters other than `own` whose tests also call `module` (their `uses`), in course order."""
    return [c.id for c in chapters.CHAPTERS if module in c.uses and c.id != own]


def _grade_tree(tree: Path, folder: Path, chapter: str, tasks: Iterable[str], timeout: float,
                outcome: Outcome) -> bool:
    """Grade `tree` on `chapter` (only `tasks`, or all when empty) and record in `outcome` how it
    was killed; True when it lost points there, crashed or timed out."""
    report = folder / f"report_{chapter}"
    args = ["grade", "--impl", str(tree), "--report", str(report), "--no-progress", "--chapter", chapter]
    args += [arg for task in tasks for arg in ("--task", task)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    prefix = "" if chapter == outcome.chapter else f"{chapter}: "
    try:
        result = forked_cli.run(args, env, timeout)
    except subprocess.TimeoutExpired:
        outcome.how = "timeout"
        return True
    grade_json = report / "grade.json"
    if result.returncode != 0 or not grade_json.exists():
        outcome.how = "crash"
        said = (result.stderr or result.stdout).strip()
        outcome.failed = [prefix + (said.splitlines()[-1][:200] if said else f"exit {result.returncode}")]
        return True
    entry = next(c for c in json.loads(grade_json.read_text())["chapters"] if c["id"] == chapter)
    lost = [t for t in entry["tests"] if t["score"] < t["max_score"]]
    outcome.failed = [prefix + t["name"] for t in lost]
    outcome.public_killed = any(t["visibility"] == "public" for t in lost)
    if entry["score"] < entry["max_score"]:
        outcome.how = "points"
        return True
    return False


def grade_one(g: Generated, timeout: float) -> Outcome:
    """Grade `g` (a copy of the reference with its module mutated) through the CLI: its own
    chapter's tasks first, then, while it keeps full marks, every chapter that uses its module
    (chapter 03 grades chapter 02's attention with RoPE), whole."""
    outcome = Outcome(id=g.id, chapter=g.chapter, module=g.module, line=g.line, owner=g.owner, operator=g.operator,
                      before=g.before, after=g.after, tasks=list(g.tasks), status="killed")
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutation_") as folder:
        tree = Path(folder) / "impl"
        shutil.copytree(chapters.REFERENCE, tree, ignore=shutil.ignore_patterns("__pycache__"))
        path = tree / f"{g.module}.py"
        path.write_text(g.mutant.apply(path.read_text()))
        graded = [(g.chapter, tuple(g.tasks))] + [(user, ()) for user in users_of(g.module, g.chapter)]
        if not any(_grade_tree(tree, Path(folder), chapter, tasks, timeout, outcome) for chapter, tasks in graded):
            outcome.status = "survived"
    outcome.seconds = round(time.monotonic() - began, 1)
    return outcome


class _Progress:
    """done / total, killed and survived so far, and the time left, on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled, self.done, self.survived = total, enabled, 0, 0
        self.began, self.live = time.monotonic(), sys.stderr.isatty()
        self.lock = threading.Lock()

    def update(self, outcome: Outcome) -> None:
        with self.lock:
            self.done += 1
            self.survived += outcome.status == "survived"
            if not self.enabled:
                return
            left = (time.monotonic() - self.began) / self.done * (self.total - self.done)
            line = (f"mutants [{'#' * (30 * self.done // max(self.total, 1)):<30}] {self.done}/{self.total}, "
                    f"{self.survived} survived, ETA {left / 60:.0f} min")
            sys.stderr.write(("\r" + line) if self.live else (line + f"  ({outcome.status}: {outcome.id})\n"))
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.live:
            sys.stderr.write("\n")


def run(mutants: list[Generated], equivalent: dict[str, str], jobs: int = 2, timeout: float = DEFAULT_TIMEOUT_S,
        progress: bool = True, on_result=None) -> list[Outcome]:
    """Grade `mutants` `jobs` at a time (the equivalent ones are listed, not graded); outcomes in input order."""
    outcomes: dict[str, Outcome] = {}
    to_grade = []
    for g in mutants:
        if g.id in equivalent:
            outcomes[g.id] = Outcome(id=g.id, chapter=g.chapter, module=g.module, line=g.line, owner=g.owner,
                                     operator=g.operator, before=g.before, after=g.after, tasks=list(g.tasks),
                                     status="equivalent", how=equivalent[g.id])
        else:
            to_grade.append(g)
    bar = _Progress(len(to_grade), progress)

    def one(g: Generated) -> Outcome:
        outcome = grade_one(g, timeout)
        bar.update(outcome)
        if on_result is not None:
            on_result(outcome)
        return outcome

    # Graded in a fixed shuffled order, so a run stopped early has graded a sample of every chapter.
    random.Random(0).shuffle(to_grade)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:  # each thread drives its own grading process
        for outcome in pool.map(one, to_grade):
            outcomes[outcome.id] = outcome
    bar.close()
    return [outcomes[g.id] for g in mutants]


def summary(outcomes: list[Outcome]) -> dict[str, dict]:
    """Per chapter (course order): generated, killed, survived, equivalent, killed by public tests, score."""
    table = {}
    for chapter in chapters.CHAPTERS:
        mine = [o for o in outcomes if o.chapter == chapter.id]
        if not mine:
            continue
        counts = {status: sum(o.status == status for o in mine) for status in ("killed", "survived", "equivalent")}
        graded = len(mine) - counts["equivalent"]
        table[chapter.id] = {"generated": len(mine), **counts,
                             "public_killed": sum(o.public_killed for o in mine),
                             "score": round(counts["killed"] / graded, 4) if graded else None}
    return table


def write_report(outcomes: list[Outcome], out: Path, options: dict, stale: list[str]) -> dict:
    """reports/mutation/report.json and report.md; returns the JSON's content."""
    out.mkdir(parents=True, exist_ok=True)
    report = {"options": options, "chapters": summary(outcomes), "stale_equivalent": stale,
              "mutants": [asdict(o) for o in outcomes]}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "report.md").write_text(markdown(report))
    return report


def table_text(chapter_table: dict[str, dict]) -> str:
    """The per-chapter table, as Markdown (also readable in a terminal)."""
    rows = ["| chapter | generated | killed | survived | equivalent | killed by public tests | score |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for chapter_id, row in chapter_table.items():
        score = "-" if row["score"] is None else f"{100 * row['score']:.0f} %"
        rows.append(f"| {chapter_id} | {row['generated']} | {row['killed']} | {row['survived']} | {row['equivalent']} "
                    f"| {row['public_killed']} | {score} |")
    return "\n".join(rows) + "\n"


def markdown(report: dict) -> str:
    lines = ["# Mutation testing", "",
             ("Mutants generated from the reference's solution regions (`tests/mutants/generate.py`), each graded with "
              "its tasks' public and hidden tests. Score: killed / (generated - equivalent)."), "",
             f"Options: `{json.dumps(report['options'])}`", "", table_text(report["chapters"])]
    for chapter_id in report["chapters"]:
        mine = [m for m in report["mutants"] if m["chapter"] == chapter_id]
        survivors = [m for m in mine if m["status"] == "survived"]
        equivalent = [m for m in mine if m["status"] == "equivalent"]
        lines += [f"## {chapter_id}", ""]
        lines += [f"### Survived ({len(survivors)})", ""] + [
            f"- `{m['module']}.py:{m['line']}` ({m['owner']}, {m['operator']}, tasks {', '.join(m['tasks']) or 'all'}):"
            f" `{m['before']}` -> `{m['after']}`  \n  id `{m['id']}`" for m in survivors] + [""]
        if equivalent:
            lines += [f"### Equivalent ({len(equivalent)})", ""] + [
                f"- `{m['module']}.py:{m['line']}` `{m['before']}` -> `{m['after']}`: {m['how']}  \n  id `{m['id']}`"
                for m in equivalent] + [""]
    if report["stale_equivalent"]:
        lines += ["## Stale entries of equivalent.toml (no such mutant)", ""]
        lines += [f"- `{i}`" for i in report["stale_equivalent"]] + [""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapter", action="append", default=[], help="a chapter id or number; repeat for more "
                        "(default: every chapter)")
    parser.add_argument("--sample", type=int, default=0, help="grade N mutants per chapter, drawn with --seed")
    parser.add_argument("--limit", type=int, default=0, help="grade the first N mutants per chapter")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    parser.add_argument("--id", action="append", default=[], help="grade only this mutant id; repeat for more")
    parser.add_argument("--per-line", type=int, default=DEFAULT_PER_LINE,
                        help=f"mutants kept per source line (default {DEFAULT_PER_LINE}; 0: all)")
    parser.add_argument("--jobs", type=int, default=2, help="grades at once (default 2)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per mutant's grade")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="report folder (default reports/mutation)")
    parser.add_argument("--list", action="store_true", help="list the selected mutants and stop")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chapter_ids = [chapters.find(c).id for c in args.chapter] or [c.id for c in chapters.graded()]
    mutants = select(chapter_ids, args.per_line, args.sample, args.limit, args.seed, args.id)
    if args.list:
        for g in mutants:
            print(f"{g.id}\t{g.module}.py:{g.line}\t{g.before}  ->  {g.after}")
        return 0
    equivalent = load_equivalent()
    every_id = {g.id for c in chapter_ids for g in generate(chapters.find(c))}
    stale = sorted(i for i in equivalent if i.split(":")[0] in {m for c in chapter_ids
                                                                 for m in chapters.find(c).modules}
                   and i not in every_id)
    options = {"chapters": chapter_ids, "per_line": args.per_line, "sample": args.sample, "limit": args.limit,
               "seed": args.seed, "ids": args.id, "jobs": args.jobs}
    done: list[Outcome] = []
    lock = threading.Lock()

    def checkpoint(outcome: Outcome) -> None:  # a long run's partial report, rewritten every 10 grades
        with lock:
            done.append(outcome)
            if len(done) % 10 == 0:
                write_report(sorted(done, key=lambda o: o.id), args.out / "partial", options, stale)

    outcomes = run(mutants, equivalent, args.jobs, args.timeout, not args.no_progress, checkpoint)
    report = write_report(outcomes, args.out, options, stale)
    shutil.rmtree(args.out / "partial", ignore_errors=True)
    print(table_text(report["chapters"]))
    print(f"report: {args.out / 'report.md'} (survivors listed per chapter), {args.out / 'report.json'}")
    if stale:
        print(f"equivalent.toml names {len(stale)} mutant(s) no longer generated: see the report")
    return 0
