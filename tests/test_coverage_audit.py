"""The contract-coverage audit (`tests/coverage/`) stays true to the handouts and the suites.

Each chapter's data maps every requirement a stub docstring states to the tests that check it;
these tests fail when a quote leaves its docstring, a named test disappears, a documented object
or structured docstring entry (an argument, an error, a shape, a submodule, a return value) has
no row, a row has no test, or the instructor guide's table no longer matches the data.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter

import pytest

from graders import chapters
from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("coverage_table", ROOT / "site" / "scripts" / "coverage_table.py")
coverage_table = importlib.util.module_from_spec(_spec)
sys.modules["coverage_table"] = coverage_table  # its dataclasses look their module up there
_spec.loader.exec_module(coverage_table)

CHAPTERS = [pytest.param(chapter, id=chapter.slug) for chapter in chapters.CHAPTERS]


@pytest.fixture(scope="module")
def audits() -> dict:
    return {chapter.slug: coverage_table.load(chapter) for chapter in chapters.CHAPTERS}


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_ids_are_unique(audits, chapter):
    counts = Counter(r.id for r in audits[chapter.slug].requirements)
    assert not [rid for rid, n in counts.items() if n > 1], "requirement ids must be unique in a chapter"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_quote_is_in_its_docstring(audits, chapter):
    docstrings = coverage_table.documented_objects(chapter)
    for r in audits[chapter.slug].requirements:
        assert r.object in docstrings, f"{r.id}: {r.object!r} is not a documented object of {chapter.modules}"
        assert coverage_table.normalize(r.quote) in coverage_table.normalize(docstrings[r.object]), (
            f"{r.id}: the quote is not in {r.object}'s docstring: {r.quote!r}")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_named_test_exists(audits, chapter):
    for visibility in ("public", "hidden"):
        for r in audits[chapter.slug].requirements:
            for name in getattr(r, visibility):
                suite, bare = coverage_table.split_name(chapter, name)
                assert bare in coverage_table.suite_tests(suite, visibility), (
                    f"{r.id}: no {visibility} test named {bare} in {suite.suite(visibility).name}")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_documented_object_has_rows(audits, chapter):
    mapped = {r.object for r in audits[chapter.slug].requirements}
    unmapped = [name for name in coverage_table.documented_objects(chapter) if name not in mapped]
    assert not unmapped, f"documented objects without a requirement row: {unmapped}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_structured_entry_is_covered(audits, chapter):
    rows = audits[chapter.slug].requirements
    uncovered = [f"{name}: {entry.section} {entry.text!r}"
                 for name, docstring in coverage_table.documented_objects(chapter).items()
                 for entry in coverage_table.structured_entries(docstring)
                 if not any(r.object == name and coverage_table.covers(r, entry) for r in rows)]
    assert not uncovered, "docstring entries no requirement row covers:\n" + "\n".join(uncovered)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_requirement_is_tested(audits, chapter):
    for r in audits[chapter.slug].requirements:
        assert r.public or r.hidden, f"{r.id} is checked by no test"
        if not r.public:
            assert r.reason.strip(), f"{r.id} is checked by hidden tests only: say why no public test can"


def test_structured_entries_parse_a_google_docstring():
    docstring = """Summary.

    Args:
        d_ff: hidden width;
            default ``4 * d_model``.
        bias: biases or not.

    Shapes:
        ``forward(x)``: ``(..., D) -> (..., D)``.

    Returns:
        the output,
        in x's dtype.

    Raises:
        ValueError: an unknown ``activation``.

    Example:
        >>> f(1)
    """
    import inspect
    entries = coverage_table.structured_entries(inspect.cleandoc(docstring))
    assert [(e.section, e.key, e.text) for e in entries] == [
        ("Args", "d_ff", "d_ff: hidden width; default ``4 * d_model``."), ("Args", "bias", "bias: biases or not."),
        ("Shapes", "``forward(x)``: ``(..., D) -> (..., D)``.", "``forward(x)``: ``(..., D) -> (..., D)``."),
        ("Returns", "", "the output, in x's dtype."),
        ("Raises", "ValueError", "ValueError: an unknown ``activation``.")]


def test_guide_table_is_generated_from_the_data(audits):
    """Regenerate with `.venv/bin/python site/scripts/coverage_table.py --write`."""
    rendered = coverage_table.render(list(audits.values()))
    assert coverage_table.guide_section(coverage_table.GUIDE.read_text()) == rendered, (
        "the instructor guide's Contract coverage section is stale: run "
        "`.venv/bin/python site/scripts/coverage_table.py --write`")


def test_guide_never_names_a_hidden_test(audits):
    section = coverage_table.guide_section(coverage_table.GUIDE.read_text())
    public = {name for chapter in chapters.CHAPTERS for name in coverage_table.suite_tests(chapter, "public")}
    for chapter in chapters.CHAPTERS:
        # A name a public suite shares with a hidden test ships anyway, with the public suite.
        leaked = [name for name in coverage_table.suite_tests(chapter, "hidden") - public if f"{name}`" in section]
        assert not leaked, f"the guide ships to students and names hidden tests: {leaked}"
