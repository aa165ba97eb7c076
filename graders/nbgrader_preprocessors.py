"""An nbgrader preprocessor for the course's autograde step; imported by the generated
`nbgrader_config.py` only (the rest of the graders never import nbgrader).

The course's notebooks hold no student code: students write their modules, and every code
cell of a notebook is a locked test cell that calls into the graders. nbgrader restores the
source of locked cells (`OverwriteCells`) but keeps and runs any cell a student added, in the
same kernel as the test cells, where it could replace `graders.nbgrader_cells.check` before
the tests run. `DropUnknownCells` runs right after `OverwriteCells` and removes every code
cell that is not one of the source notebook's locked cells, so the kernel runs exactly the
instructor's code.
"""

from __future__ import annotations

from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor, OverwriteCells


class DropUnknownCells(NbGraderPreprocessor):
    """Remove code cells the source notebook does not have (after OverwriteCells, which has
    removed the `grade_id` of any cell the gradebook does not know and restored the source of
    the locked ones)."""

    def preprocess(self, nb, resources):
        kept = [cell for cell in nb.cells if cell.cell_type != "code" or _instructors(cell)]
        dropped = len(nb.cells) - len(kept)
        if dropped:
            self.log.warning("Dropped %d code cell(s) that the source notebook does not have", dropped)
        nb.cells = kept
        return nb, resources


def _instructors(cell) -> bool:
    return bool(cell.metadata.get("nbgrader", {}).get("grade_id")) and utils.is_locked(cell)


def sanitize_preprocessors() -> list:
    """nbgrader's own sanitize steps for autograde, with DropUnknownCells right after OverwriteCells."""
    from nbgrader.converters import Autograde

    steps = list(Autograde.class_traits()["sanitize_preprocessors"].default())
    steps.insert(steps.index(OverwriteCells) + 1, DropUnknownCells)
    return steps
