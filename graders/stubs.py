"""Solution regions -> stubs, and the drift check.

Reference modules mark the code students write with nbgrader's delimiters:

    ### BEGIN SOLUTION
    # hint: one line that goes into the stub's error message
    ...the solution...
    ### END SOLUTION

`make_stub` replaces each region with `raise NotImplementedError("<where>: <hint>")` at the
region's indentation; everything outside the regions (signatures, docstrings, helper code)
is kept verbatim. `assignments/` is generated from `reference_solutions/` and never edited by
hand; `check` reports any file that differs from what generation would write.
"""

from __future__ import annotations

import ast
import difflib
import re
from pathlib import Path

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HINT = re.compile(r"^\s*#\s*hint:\s*(?P<hint>.+?)\s*$", re.IGNORECASE)
HEADER = '# Generated from reference_solutions/{name} by `nox -s stubs`; fill in every NotImplementedError.\n'


class RegionError(ValueError):
    """A malformed solution region (unclosed, nested, or a stray END)."""


def make_stub(source: str, name: str = "module.py") -> str:
    """The student's version of a reference module."""
    owners = _region_owners(source)
    out: list[str] = []
    region: list[str] | None = None
    indent = ""
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if region is not None:
                raise RegionError(f"{name}:{number}: nested {BEGIN}")
            region, indent = [], line[: len(line) - len(line.lstrip())]
            owner = owners.get(number, "this part")
        elif stripped == END:
            if region is None:
                raise RegionError(f"{name}:{number}: {END} without {BEGIN}")
            hint = next((m["hint"] for m in map(HINT.match, region) if m), "")
            message = f"{owner}: {hint}" if hint else owner
            out.append(f"{indent}# YOUR CODE HERE\n")
            out.append(f"{indent}raise NotImplementedError({message!r})\n")
            region = None
        elif region is not None:
            region.append(line)
        else:
            out.append(line)
    if region is not None:
        raise RegionError(f"{name}: {BEGIN} is never closed")
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
    for name in sorted(actual - set(expected)):
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
