"""Mutants: small, plausible student bugs written as text edits of a reference module.

The project's own tests apply each mutant to a reference solution, grade the mutated tree
and check that the grader takes marks off, so a suite that lets a real bug through fails CI.
One module per chapter (``ch02.py``, ...) holds a list ``MUTANTS``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    """One student bug, as a single text replacement in the reference module."""

    name: str  # short id, e.g. "scale_by_dk"
    description: str  # the student bug in one line
    old: str  # exact text in the reference module
    new: str  # replacement
    also: tuple[tuple[str, str], ...] = ()  # further (old, new) edits, applied in order after the first
    # The chapter's tasks (`grade --task`) whose tests must catch it; empty: the whole chapter.
    # Grading only these is faster, and says more: the bug is caught where it lives.
    tasks: tuple[str, ...] = ()
    # Why no public test can catch it without the reference (e.g. a wrong default that only the
    # reference's outputs reveal); empty: it must lose at least one public point.
    hidden_only: str = ""

    def apply(self, source: str) -> str:
        """Return ``source`` with ``old`` replaced by ``new`` (then each edit in ``also``).

        Raises:
            ValueError: unless each ``old`` occurs exactly once when applied (so a mutant never
                silently stops applying when the reference changes).
        """
        for old, new in ((self.old, self.new), *self.also):
            count = source.count(old)
            if count != 1:
                raise ValueError(
                    f"mutant {self.name!r}: its `old` text must occur exactly once in the source, found {count}"
                )
            source = source.replace(old, new, 1)
        return source
