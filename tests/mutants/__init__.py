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

    def apply(self, source: str) -> str:
        """Return ``source`` with ``old`` replaced by ``new``.

        Raises:
            ValueError: unless ``old`` occurs exactly once in ``source`` (so a mutant never
                silently stops applying when the reference changes).
        """
        count = source.count(self.old)
        if count != 1:
            raise ValueError(
                f"mutant {self.name!r}: its `old` text must occur exactly once in the source, found {count}"
            )
        return source.replace(self.old, self.new, 1)
