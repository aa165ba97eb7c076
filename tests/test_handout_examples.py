"""The examples in the handout are right: every `>>>` example in a reference module's
docstrings runs and prints what it says. The stubs carry the same docstrings (they are
generated from the references), so this checks the students' handout."""

from __future__ import annotations

import doctest
import importlib.util
import sys

import pytest
import torch
from torch import nn

from tests.conftest import REFERENCE

MODULES = sorted(p.stem for p in REFERENCE.glob("*.py"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run_as_written(name, monkeypatch):
    monkeypatch.syspath_prepend(str(REFERENCE))  # a module may import an earlier chapter's
    spec = importlib.util.spec_from_file_location(f"handout_{name}", REFERENCE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, extraglobs={"torch": torch, "nn": nn}):
        runner.run(test, out=lambda text: None)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {attempted} examples in {name}.py print something else (python -m doctest)"
