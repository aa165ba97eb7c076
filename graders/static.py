"""Banned APIs, found by reading the submission's syntax tree (never by importing it).

Each chapter lists fully qualified names it bans (`torch.softmax`, ...). The scan resolves
import aliases (`import torch.nn.functional as F` makes `F.softmax` mean
`torch.nn.functional.softmax`, `from torch import softmax as s` makes `s` mean it too) and
flags method calls such as `x.softmax(...)` for a banned `Tensor.softmax`. Each hit carries
the line and the top-level function or class it sits in, so the grader can fail exactly the
tests of the tasks that used it.

The file is the student's: it is read through `safe_files.read_regular` (no links, no special
files, at most `SOURCE_LIMIT_BYTES`), and the tree is walked with an explicit stack, so no
nesting depth makes the scan itself fail.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from graders.safe_files import SOURCE_LIMIT_BYTES, UnsafeFile, read_regular

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass(frozen=True)
class Violation:
    name: str  # the banned name, e.g. "torch.softmax"
    line: int
    owner: str  # the top-level def/class it sits in, "" at module level

    def describe(self, module: str) -> str:
        where = f" in {self.owner}" if self.owner else ""
        return f"{module}.py line {self.line}{where} uses {self.name}, which this chapter bans"


class _Scanner:
    def __init__(self, banned: tuple[str, ...]) -> None:
        self.banned = set(banned)
        self.methods = {name.split(".", 1)[1] for name in banned if name.startswith("Tensor.")}
        self.aliases: dict[str, str] = {}
        self.hits: list[Violation] = []

    def scan(self, tree: ast.AST) -> None:
        """Visit every node in source order (depth first), each with its top-level owner.
        An explicit stack rather than recursion: a student's 900-term sum is 900 levels deep."""
        stack: list[tuple[ast.AST, str]] = [(tree, "")]
        while stack:
            node, owner = stack.pop()
            if isinstance(node, _SCOPES):
                owner = owner or node.name
            if not self._visit(node, owner):
                continue
            stack.extend((child, owner) for child in reversed(list(ast.iter_child_nodes(node))))

    def _visit(self, node: ast.AST, owner: str) -> bool:
        """Record what `node` itself uses; False when its children need no visit."""
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.aliases[alias.asname] = alias.name
                else:
                    self.aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
                self._check(alias.name, node, owner)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                full = f"{node.module}.{alias.name}" if node.module else alias.name
                self.aliases[alias.asname or alias.name] = full
                self._check(full, node, owner)
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted is not None:
                head, _, rest = dotted.partition(".")
                if head in self.aliases:
                    self._check(f"{self.aliases[head]}.{rest}" if rest else self.aliases[head], node, owner)
                    return False
            if node.attr in self.methods:
                self._check(f"Tensor.{node.attr}", node, owner)
        elif isinstance(node, ast.Name):
            if node.id in self.aliases:
                self._check(self.aliases[node.id], node, owner)
            return False
        return True

    def _check(self, name: str, node: ast.AST, owner: str) -> None:
        # `torch.nn.functional` itself is fine; `torch.nn.functional.softmax` and anything under it is not.
        if any(name == banned or name.startswith(banned + ".") for banned in self.banned):
            self.hits.append(Violation(name, node.lineno, owner))  # type: ignore[attr-defined]


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def scan(path: Path, banned: tuple[str, ...], *, limit: int = SOURCE_LIMIT_BYTES) -> list[Violation]:
    """Banned names used in the file at `path`. Raises SyntaxError if it does not parse,
    `safe_files.UnsafeFile` if the grader will not read it (a link, a special file, over
    `limit` bytes, or nested too deeply to parse), FileNotFoundError if it is missing."""
    source = read_regular(path, limit)
    try:
        tree = ast.parse(source, filename=path.name)
    except ValueError as exc:  # null bytes, on Pythons older than this one (now a SyntaxError)
        raise SyntaxError(str(exc), (path.name, 1, 0, "")) from None
    except (RecursionError, MemoryError):
        raise UnsafeFile(f"{path.name} is nested too deeply for the grader to parse") from None
    scanner = _Scanner(banned)
    scanner.scan(tree)
    unique = {(v.name, v.line, v.owner): v for v in scanner.hits}
    return sorted(unique.values(), key=lambda v: v.line)
