"""Solution regions -> stubs, and the drift check.

Reference modules mark the code students write with nbgrader's delimiters:

    ### BEGIN SOLUTION
    # hint: one line that goes into the stub's error message
    ...the solution...
    ### END SOLUTION

`regions` parses them (the release's leak scan in `graders/release.py` reads the same ones);
`make_stub` replaces each region with `raise NotImplementedError("<where>: <hint>")` at the
region's indentation; everything outside the regions (signatures, docstrings, helper code)
is kept verbatim. `assignments/` is generated from `reference_solutions/` and never edited by
hand; `check` reports any file that differs from what generation would write. The one
exception is `GIVEN`: scripts that live in `assignments/` only, with nothing to fill in.
"""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass
from pathlib import Path

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HINT = re.compile(r"^\s*#\s*hint:\s*(?P<hint>.+?)\s*$", re.IGNORECASE)
# Student files with no reference module: given as they are, never generated, so `check`
# leaves them alone. layer_norm_comparison.py (chapter 05's exercise 4) runs on the student's
# own normalization.py beside it. Kept out of reference_solutions/, whose every module is one
# to fill in (it has solution regions) and ships in the Gradescope bundle.
GIVEN = ("layer_norm_comparison.py",)
HEADER = '# Generated from reference_solutions/{name} by `nox -s stubs`; fill in every NotImplementedError.\n'


class RegionError(ValueError):
    """A malformed solution region (unclosed, nested, or a stray END)."""


@dataclass(frozen=True)
class Region:
    """One `### BEGIN SOLUTION` ... `### END SOLUTION` region of a reference module."""

    begin: int  # line number (1-based) of the BEGIN marker
    end: int  # line number of the END marker
    indent: str  # the BEGIN marker's indentation, where the stub's `raise` goes
    owner: str  # the function it sits in, e.g. `MultiHeadAttention.forward`
    body: tuple[str, ...]  # the lines between the markers, line endings kept

    @property
    def hint(self) -> str:
        """The region's `# hint:` text, or "" if it has none."""
        return next((m["hint"] for m in map(HINT.match, self.body) if m), "")


def regions(source: str, name: str = "module.py") -> list[Region]:
    """Every solution region of a reference module, in order; malformed markers raise RegionError."""
    owners = _region_owners(source)
    found: list[Region] = []
    begin: int | None = None
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if begin is not None:
                raise RegionError(f"{name}:{number}: nested {BEGIN}")
            begin, indent, body = number, line[: len(line) - len(line.lstrip())], []
        elif stripped == END:
            if begin is None:
                raise RegionError(f"{name}:{number}: {END} without {BEGIN}")
            found.append(Region(begin, number, indent, owners.get(begin, "this part"), tuple(body)))
            begin = None
        elif begin is not None:
            body.append(line)
    if begin is not None:
        raise RegionError(f"{name}: {BEGIN} is never closed")
    return found


def make_stub(source: str, name: str = "module.py") -> str:
    """The student's version of a reference module."""
    lines = source.splitlines(keepends=True)
    out: list[str] = []
    kept_from = 0  # index of the first line not yet copied
    for region in regions(source, name):
        out.extend(lines[kept_from : region.begin - 1])
        message = f"{region.owner}: {region.hint}" if region.hint else region.owner
        out.append(f"{region.indent}# YOUR CODE HERE\n")
        out.append(f"{region.indent}raise NotImplementedError({message!r})\n")
        kept_from = region.end
    out.extend(lines[kept_from:])
    return HEADER.format(name=name) + "".join(out)


def _region_owners(source: str) -> dict[int, str]:
    """Line number of each BEGIN marker -> the function it sits in, e.g. `MultiHeadAttention.forward`."""
    tree = ast.parse(source)
    spans: list[tuple[int, int, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qualname = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    spans.append((child.lineno, child.end_lineno or child.lineno, qualname))
                visit(child, qualname + ".")

    visit(tree, "")
    owners = {}
    for number, line in enumerate(source.splitlines(), start=1):
        if line.strip() == BEGIN:
            inside = [s for s in spans if s[0] <= number <= s[1]]
            if inside:
                owners[number] = min(inside, key=lambda s: s[1] - s[0])[2]
    return owners


def generate(reference: Path, assignments: Path) -> list[Path]:
    """Write a stub for every reference module; return the paths written."""
    written = []
    assignments.mkdir(parents=True, exist_ok=True)
    for path in sorted(reference.glob("*.py")):
        target = assignments / path.name
        target.write_text(make_stub(path.read_text(), path.name))
        written.append(target)
    return written


def check(reference: Path, assignments: Path) -> list[str]:
    """Human-readable differences between `assignments/` and freshly generated stubs."""
    problems = []
    expected = {p.name: make_stub(p.read_text(), p.name) for p in sorted(reference.glob("*.py"))}
    actual = {p.name for p in assignments.glob("*.py")}
    for name in sorted(actual - set(expected) - set(GIVEN)):
        problems.append(f"assignments/{name} has no reference module")
    for name, text in expected.items():
        target = assignments / name
        if not target.exists():
            problems.append(f"assignments/{name} is missing")
        elif target.read_text() != text:
            diff = difflib.unified_diff(target.read_text().splitlines(), text.splitlines(),
                                        f"assignments/{name}", "generated", lineterm="", n=1)
            problems.append("\n".join(list(diff)[:40]))
    return problems
