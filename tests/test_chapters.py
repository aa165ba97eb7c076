"""What every graded chapter's suites must do, checked for each chapter in the table.

The reference gets full marks, the stub zero (with the stub's own "not implemented yet"
message), and both the public and the hidden suite carry points. Each chapter's own file
(`test_chapterNN.py`) adds its mutants and valid variants.
"""

from __future__ import annotations

import pytest

from graders import chapters
from tests.conftest import chapter_entry, failing

GRADED = [c.id for c in chapters.graded()]


@pytest.mark.parametrize("chapter_id", GRADED)
def test_reference_gets_full_marks(reference_grade, chapter_id):
    chapter = chapter_entry(reference_grade, chapter_id)
    assert not failing(chapter)
    assert chapter["score"] == chapter["max_score"] > 0


@pytest.mark.parametrize("chapter_id", GRADED)
def test_stub_gets_zero(stub_grade, chapter_id):
    chapter = chapter_entry(stub_grade, chapter_id)
    assert chapter["score"] == 0
    assert any("not implemented yet" in t["message"] for t in chapter["tests"])


@pytest.mark.parametrize("chapter_id", GRADED)
def test_public_and_hidden_tests_both_carry_points(reference_grade, chapter_id):
    tests = chapter_entry(reference_grade, chapter_id)["tests"]
    for visibility in ("public", "hidden"):
        assert sum(t["max_score"] for t in tests if t["visibility"] == visibility) > 0
