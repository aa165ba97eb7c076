"""Fixtures shared by every suite, and the Hypothesis profiles (registered here, once).

Profiles, chosen by GRADERS_HYPOTHESIS_PROFILE:
    grading   (default) Hypothesis's `ci` profile (derandomized, no deadline, no database)
              with few examples, so the same submission gets the same score everywhere, fast.
    thorough  the same, with many more examples: for instructors checking a suite.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import Phase, settings

from graders import chapters, plugin
from graders.snapshots import Snapshot

settings.register_profile(
    "grading",
    parent=settings.get_profile("ci"),
    max_examples=chapters.GRADING_MAX_EXAMPLES,
    print_blob=False,  # the blob would let a student replay hidden inputs; the shrunk example is shown
    report_multiple_bugs=False,  # one clear failure per test
    # No `explain` phase: it names lines of the grader's own source, which is no help to a student.
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink),
)
settings.register_profile("thorough", parent=settings.get_profile("grading"), max_examples=300)
settings.load_profile(os.environ.get("GRADERS_HYPOTHESIS_PROFILE", "grading"))


@pytest.fixture(scope="module")
def chapter(request: pytest.FixtureRequest):
    return plugin.chapter_of(request.path)


@pytest.fixture(scope="module")
def student(request: pytest.FixtureRequest, chapter):
    """The student's chapter modules, behind the worker process (reset before each test)."""
    return plugin.grading(request.config).worker(chapter)


@pytest.fixture(scope="module")
def reference(chapter):
    """The chapter's reference module, imported in the trusted process (hidden suites only)."""
    return plugin.load_reference(chapter.module)


@pytest.fixture(scope="module")
def static_scan(request: pytest.FixtureRequest, chapter):
    """(banned-API violations, parse problem) for the student's chapter modules."""
    return plugin.grading(request.config).scan(chapter)


@pytest.fixture
def snapshot(request: pytest.FixtureRequest, chapter) -> Snapshot:
    """Golden values for this test, generated from the reference by `python -m graders snapshots`."""
    return Snapshot(chapter.slug, request.node.name, update=plugin.grading(request.config).snapshot_update)
