"""The mutation generator (`tests/mutants/generate.py`) and one small run through the real grading path.

The full run is `nox -s mutation`; here CI grades a handful of chapter 04 mutants, so the path
from a generated edit to a report entry is exercised on every change.
"""

from __future__ import annotations

import ast
import difflib
import json

import pytest

from graders import chapters
from tests.mutants import generate as gen
from tests.mutants import run

GRADED = chapters.graded()
# Chapter 04 mutants for the sample run: one any suite catches (dropout left out of the FFN,
# so training mode is deterministic), and one `equivalent.toml` lists (not graded).
KILLABLE = "feedforward:FeedForward.forward:61ef90e5:dropcall:dropout"
EQUIVALENT = "feedforward:relu:f977b3bc:compare:>:>="


@pytest.fixture(scope="module")
def generated() -> dict[str, list[gen.Generated]]:
    return {chapter.id: gen.generate(chapter) for chapter in GRADED}


def _changed_lines(source: str, mutated: str) -> list[int]:
    """1-based lines of `source` that `mutated` changes or removes."""
    matcher = difflib.SequenceMatcher(a=source.splitlines(), b=mutated.splitlines(), autojunk=False)
    return [line + 1 for tag, i1, i2, _, _ in matcher.get_opcodes() if tag != "equal" for line in range(i1, i2)]


@pytest.mark.parametrize("chapter", GRADED, ids=lambda c: c.id)
def test_mutants_apply_cleanly_inside_solution_regions(chapter, generated):
    sources = {module: (chapters.REFERENCE / f"{module}.py").read_text() for module in chapter.modules}
    for index, g in enumerate(generated[chapter.id]):
        source = sources[g.module]
        mutated = g.mutant.apply(source)  # raises unless `old` occurs exactly once
        if index % 5 == 0:  # the generator parses each edit's definition; a whole module per mutant is seconds
            ast.parse(mutated)
        changed = _changed_lines(source, mutated)
        assert changed and changed[0] == g.line, g.id
        assert set(changed) <= gen.solution_lines(source), g.id


@pytest.mark.parametrize("chapter", GRADED, ids=lambda c: c.id)
def test_ids_are_unique_and_stable(chapter, generated):
    ids = [g.id for g in generated[chapter.id]]
    assert len(ids) == len(set(ids))
    assert ids == [g.id for g in gen.generate(chapter)]
    # Code added above the regions (here: a line at the top) moves every line, and changes no id.
    module = chapter.module
    source = (chapters.REFERENCE / f"{module}.py").read_text()
    moved = gen.generate_module(chapter, module, "import os  # moved\n" + source)
    assert [g.id for g in moved] == [g.id for g in generated[chapter.id] if g.module == module]
    assert all(m.line == g.line + 1 for m, g in zip(moved, (g for g in generated[chapter.id] if g.module == module)))


@pytest.mark.parametrize("chapter", GRADED, ids=lambda c: c.id)
def test_every_mutant_grades_named_tasks(chapter, generated):
    # A mutant graded without --task would grade the whole chapter: slower, and blind to where it lives.
    tasks = gen.known_tasks(chapter)
    for g in generated[chapter.id]:
        assert g.tasks and set(g.tasks) <= tasks, (g.id, g.tasks)


@pytest.mark.parametrize("chapter", GRADED, ids=lambda c: c.id)
def test_a_reasonable_number_per_chapter(chapter, generated):
    kept = run.per_line(generated[chapter.id], run.DEFAULT_PER_LINE)
    assert 30 <= len(kept) <= 180, len(kept)
    assert {g.operator.split(":")[0] for g in kept} >= {"const", "binop", "compare", "swapargs"}


def test_operators_do_what_they_say():
    chapter = chapters.find("feedforward_networks")
    source = (chapters.REFERENCE / "feedforward.py").read_text()
    edits = {g.operator: (g.before, g.after) for g in gen.generate_module(chapter, "feedforward", source)
             if g.owner in ("SwiGLU.forward", "relu")}
    assert edits["dropcall:dropout"] == ("return self.dropout(self.w2(gated))  # (..., D)",
                                         "return self.w2(gated)  # (..., D)")
    assert edits["dropcall:silu"][1] == "gated = self.w1(x) * self.w3(x)  # (..., F)"
    assert edits["compare:>:>="][1] == "return torch.where(x >= 0, x, torch.zeros_like(x))"
    assert edits["swapargs:where"][1] == "return torch.where(x > 0, torch.zeros_like(x), x)"


def test_nothing_outside_the_solution_regions():
    # Docstrings, hints (comments), messages and code outside the markers are never mutated.
    chapter = chapters.find("feedforward_networks")
    source = ('def f(x):\n    """Doc 2 * 3."""\n    y = x + 1\n    ### BEGIN SOLUTION\n    # hint: 4 * x\n'
              '    if x < 0:\n        raise ValueError(f"x={x + 1}")\n    return y * 2\n    ### END SOLUTION\n')
    found = {(g.line, g.operator) for g in gen.generate_module(chapter, "feedforward", source)}
    assert found == {(6, "compare:<:<="), (6, "const:n+1"), (8, "binop:*:/"), (8, "const:n+1"), (8, "const:0")}


def test_equivalent_entries_name_generated_mutants(generated):
    every = {g.id for mutants in generated.values() for g in mutants}
    for mutant_id, reason in run.load_equivalent().items():
        assert mutant_id in every, f"equivalent.toml names {mutant_id}, which is no longer generated"
        assert len(reason.split()) >= 4, f"{mutant_id}: say why no test can tell it from the reference"


@pytest.mark.slow
def test_a_sample_run_reports_killed_and_equivalent(tmp_path):
    code = run.main(["--chapter", "4", "--id", KILLABLE, "--id", EQUIVALENT, "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report) == {"options", "chapters", "stale_equivalent", "mutants"}
    row = report["chapters"]["feedforward_networks"]
    assert row == {"generated": 2, "killed": 1, "survived": 0, "equivalent": 1, "public_killed": row["public_killed"],
                   "score": 1.0}
    by_id = {m["id"]: m for m in report["mutants"]}
    assert by_id[KILLABLE]["status"] == "killed" and by_id[KILLABLE]["how"] == "points"
    assert by_id[KILLABLE]["tasks"] == ["FeedForward"] and by_id[KILLABLE]["failed"]
    assert by_id[EQUIVALENT]["status"] == "equivalent" and by_id[EQUIVALENT]["how"]
    markdown = (tmp_path / "report.md").read_text()
    assert "| feedforward_networks | 2 | 1 | 0 | 1 |" in markdown and EQUIVALENT in markdown
