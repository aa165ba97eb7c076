"""Stubs are generated from the reference's solution regions and never drift."""

from __future__ import annotations

import ast

import pytest

from graders import stubs
from tests.conftest import ASSIGNMENTS, REFERENCE, run_cli


def test_assignments_match_generated_stubs():
    result = run_cli("stubs", "--check")
    assert result.returncode == 0, f"assignments/ drifted from reference_solutions/:\n{result.stdout}"


def test_every_reference_module_has_solution_regions():
    for path in REFERENCE.glob("*.py"):
        text = path.read_text()
        assert text.count(stubs.BEGIN) == text.count(stubs.END) > 0, path.name


def _public_signatures(tree: ast.Module) -> dict[str, tuple[str, str | None]]:
    """Module-level functions and classes, and methods, with their arguments and docstrings
    (helpers nested inside a function body belong to the solution, not the handout)."""
    found = {}
    for node in tree.body:
        members = node.body if isinstance(node, ast.ClassDef) else []
        for item in [node, *members]:
            if isinstance(item, (ast.FunctionDef, ast.ClassDef)):
                args = ast.unparse(item.args) if isinstance(item, ast.FunctionDef) else ""
                found[f"{node.name}.{item.name}" if item is not node else item.name] = (args, ast.get_docstring(item))
    return found


def test_stub_keeps_signatures_and_docstrings():
    for path in REFERENCE.glob("*.py"):
        ref = _public_signatures(ast.parse(path.read_text()))
        stub = _public_signatures(ast.parse((ASSIGNMENTS / path.name).read_text()))
        assert ref and stub == ref, path.name


def test_region_becomes_raise_with_hint_at_its_indentation():
    source = (
        "def f(x):\n"
        '    """Doc."""\n'
        "    ### BEGIN SOLUTION\n"
        "    # hint: double it\n"
        "    return 2 * x\n"
        "    ### END SOLUTION\n"
    )
    stub = stubs.make_stub(source, "m.py")
    assert "    raise NotImplementedError('f: double it')\n" in stub
    assert "return 2 * x" not in stub and "# hint" not in stub
    namespace: dict = {}
    exec(compile(stub, "m.py", "exec"), namespace)
    with pytest.raises(NotImplementedError, match="f: double it"):
        namespace["f"](1)


@pytest.mark.parametrize("source", [
    "### BEGIN SOLUTION\nx = 1\n",
    "### END SOLUTION\n",
    "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n",
])
def test_malformed_regions_are_rejected(source):
    with pytest.raises(stubs.RegionError):
        stubs.make_stub(source, "m.py")
