"""Banned APIs, found by reading the submission's syntax tree (never by importing it).

Each chapter lists fully qualified names it bans (`torch.softmax`, ...). The scan resolves
import aliases (`import torch.nn.functional as F` makes `F.softmax` mean
`torch.nn.functional.softmax`, `from torch import softmax as s` makes `s` mean it too) and
flags method calls such as `x.softmax(...)` for a banned `Tensor.softmax`. Each hit carries
the line and the top-level function or class it sits in, so the grader can fail exactly the
tests of the tasks that used it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Violation:
    name: str  # the banned name, e.g. "torch.softmax"
    line: int
    owner: str  # the top-level def/class it sits in, "" at module level

    def describe(self, module: str) -> str:
        where = f" in {self.owner}" if self.owner else ""
        return f"{module}.py line {self.line}{where} uses {self.name}, which this chapter bans"


class _Scanner(ast.NodeVisitor):
    def __init__(self, banned: tuple[str, ...]) -> None:
        self.banned = set(banned)
        self.methods = {name.split(".", 1)[1] for name in banned if name.startswith("Tensor.")}
        self.aliases: dict[str, str] = {}
        self.owner = ""
        self.hits: list[Violation] = []

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                self.aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
            self._check(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            full = f"{node.module}.{alias.name}" if node.module else alias.name
            self.aliases[alias.asname or alias.name] = full
            self._check(full, node)

    def _top_level(self, node: ast.AST) -> None:
        previous, self.owner = self.owner, self.owner or node.name  # type: ignore[attr-defined]
        self.generic_visit(node)
        self.owner = previous

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _top_level

    def visit_Attribute(self, node: ast.Attribute) -> None:
        dotted = _dotted(node)
        if dotted is not None:
            head, _, rest = dotted.partition(".")
            if head in self.aliases:
                self._check(f"{self.aliases[head]}.{rest}" if rest else self.aliases[head], node)
                return
        if node.attr in self.methods:
            self._check(f"Tensor.{node.attr}", node)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.aliases:
            self._check(self.aliases[node.id], node)

    def _check(self, name: str, node: ast.AST) -> None:
        # `torch.nn.functional` itself is fine; `torch.nn.functional.softmax` and anything under it is not.
        if any(name == banned or name.startswith(banned + ".") for banned in self.banned):
            self.hits.append(Violation(name, node.lineno, self.owner))  # type: ignore[attr-defined]


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def scan(path: Path, banned: tuple[str, ...]) -> list[Violation]:
    """Banned names used in the file at `path`. Raises SyntaxError if it does not parse."""
    tree = ast.parse(path.read_text(), filename=str(path))
    scanner = _Scanner(banned)
    scanner.visit(tree)
    unique = {(v.name, v.line, v.owner): v for v in scanner.hits}
    return sorted(unique.values(), key=lambda v: v.line)
