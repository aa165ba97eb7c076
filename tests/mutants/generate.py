"""Mutants generated from the reference's solution regions, for `nox -s mutation`.

The hand-written mutants (`ch01.py` ...) are the bugs a teacher thought of; these are the bugs
nobody chose: every operator, constant and call of the code a student writes (the lines between
``### BEGIN SOLUTION`` and ``### END SOLUTION``), changed one at a time. Each generated mutant is
an ordinary `Mutant` (one exact text edit of whole lines, unique in the module), so it grades
through the same path as the hand-written ones.

The operators, each named in the mutant's id:
    binop      ``+`` <-> ``-``, ``*`` <-> ``/``, ``//`` -> ``/``, ``**`` -> ``*``, ``%`` -> ``//``
    augassign  the same swaps in ``+=``, ``-=``, ``*=``, ``/=``
    compare    ``<`` <-> ``<=``, ``>`` <-> ``>=``, ``==`` <-> ``!=``, ``is`` <-> ``is not``, ``in`` <-> ``not in``
    boolop     ``and`` <-> ``or``
    const      an int ``n`` -> ``n + 1`` and -> ``0``; a float ``x`` -> ``2x`` and -> ``0.0`` (``0.0`` -> ``1.0``);
               ``True`` <-> ``False`` (so ``keepdim=True`` -> ``False``; ``dim=-1`` -> ``dim=-2`` and ``dim=-0``)
    neg        a unary minus dropped (``-x`` -> ``x``; a negative literal is left to ``const``)
    not        a ``not`` dropped
    dropcall   a shape-keeping call replaced by its first argument or its receiver (``self.dropout(h)`` -> ``h``,
               ``x.detach()`` -> ``x``, ``torch.softmax(s, dim=-1)`` -> ``s``, ``self.norm1(x)`` -> ``x``)
    swapargs   the first two positional arguments swapped (the last two of ``torch.where``)

A mutant's id is ``module:owner:hash:operator[:k]``: the module, the qualified name of the
enclosing function (``SwiGLU.forward``), a hash of the edited line's text, the operator and
what it did, and ``k`` counting equal ids within that owner. It stays the same when lines are
added elsewhere in the module, so `equivalent.toml` can name it.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from graders import chapters

from . import Mutant

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"

# A top-level name whose tests live under a task of another name (the suites' TASKS): the
# tasks that grade it. A qualified name ("GPT.generate") overrides its class. Any other
# top-level name is its own task; a name in neither grades the whole chapter.
TASK_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "transformer_full": {
        "sinusoidal_positions": ("positions",),
        "padding_to_ignore": ("masks",),
        "future_mask": ("masks",),
        "check_heads": ("EncoderLayer", "DecoderLayer", "Transformer"),
        "TokenModel": ("embeddings",),
        # embed's dropout is checked on the models' first layer (their tasks), not by an embeddings test
        "TokenModel.embed": ("embeddings", "EncoderOnly", "DecoderOnly"),
    },
    "training_loop": {
        "cosine_schedule": ("schedules",),
        "noam_schedule": ("schedules",),
        "training_flops": ("scaling_laws",),
        "chinchilla_loss": ("scaling_laws",),
        "kaplan_loss": ("scaling_laws",),
        "compute_optimal": ("scaling_laws",),
        "fit_chinchilla": ("scaling_laws",),
    },
    "gpt": {
        # The model's forward pass and blocks also carry the KV cache, which only generation exercises.
        "GPTConfig": ("GPT",),
        "build_norm": ("GPT",),
        "build_ffn": ("GPT",),
        "Block": ("GPT", "generate", "fused"),  # Block.forward calls fused_attention when the config asks
        "GPT": ("GPT", "generate"),
        "GPT.generate": ("generate",),
        "fused_attention": ("fused",),
        "sample_next_token": ("generate",),
    },
    "train_gpt": {
        "CharTokenizer": ("data",),
        "get_batch": ("data",),
    },
}

# Calls that keep their input's shape, so dropping one leaves code that runs and computes
# something else: the name of the function or method called (the last part of `a.b.name`).
DROPPABLE = re.compile(r"(.*dropout.*|.*_drop|drop|(.*_)?norm\d*|softmax|log_softmax|relu|gelu|silu|sigmoid|tanh|exp"
                       r"|log|sqrt|rsqrt|abs|erf|act|activation)")
# Methods whose receiver has the result's shape: `x.detach()` -> `x`.
RECEIVER_DROPPABLE = frozenset({"detach", "contiguous", "clone", "float", "double", "type_as", "to", "masked_fill",
                                "clamp", "clamp_min", "clamp_max", "exp", "sqrt", "rsqrt", "abs", "tanh",
                                "sigmoid", "softmax", "log_softmax", "neg", "square"})
NAMESPACES = frozenset({"torch", "F", "math", "nn", "self", "np"})  # `torch.exp(x)`: a function, not a method
SWAPPABLE_LAST_TWO = frozenset({"where"})  # torch.where(cond, a, b): swapping a and b is the plausible bug
SYMMETRIC = frozenset({"max", "min", "maximum", "minimum", "hypot"})  # swapping their arguments changes nothing

BINOPS = {ast.Add: ("+", ["-"]), ast.Sub: ("-", ["+"]), ast.Mult: ("*", ["/"]), ast.Div: ("/", ["*"]),
          ast.FloorDiv: ("//", ["/"]), ast.Pow: ("**", ["*"]), ast.Mod: ("%", ["//"])}
COMPARES = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">"),
            ast.Eq: ("==", "!="), ast.NotEq: ("!=", "=="), ast.Is: ("is", "is not"), ast.IsNot: ("is not", "is"),
            ast.In: ("in", "not in"), ast.NotIn: ("not in", "in")}
BOOLOPS = {ast.And: ("and", "or"), ast.Or: ("or", "and")}
ATOMS = (ast.Name, ast.Attribute, ast.Call, ast.Subscript, ast.Constant, ast.List, ast.Tuple)


@dataclass(frozen=True)
class Generated:
    """One generated mutant, with where it sits and what grades it."""

    id: str
    chapter: str  # chapter id
    module: str  # module name, without ".py"
    line: int  # 1-based line of the edit in the reference module
    owner: str  # qualified name of the enclosing function or class
    operator: str  # e.g. "binop:+:-"
    before: str  # the edit's first line, stripped
    after: str  # that line once edited, stripped
    tasks: tuple[str, ...]  # the tasks that grade it (`grade --task`); empty: the whole chapter
    mutant: Mutant


def solution_lines(source: str) -> set[int]:
    """1-based numbers of the lines strictly between a BEGIN and an END SOLUTION marker."""
    inside, lines = False, set()
    for number, line in enumerate(source.splitlines(), start=1):
        if line.strip() == BEGIN:
            inside = True
        elif line.strip() == END:
            inside = False
        elif inside:
            lines.add(number)
    return lines


class _Source:
    """Character offsets of AST positions (whose columns count UTF-8 bytes) in one module."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def offset(self, lineno: int, byte_col: int) -> int:
        line = self.lines[lineno - 1]
        return self.starts[lineno - 1] + len(line.encode()[:byte_col].decode())

    def start(self, node: ast.AST) -> int:
        return self.offset(node.lineno, node.col_offset)

    def end(self, node: ast.AST) -> int:
        return self.offset(node.end_lineno, node.end_col_offset)

    def segment(self, node: ast.AST) -> str:
        return self.text[self.start(node):self.end(node)]

    def line_of(self, offset: int) -> int:
        """1-based line holding character `offset`."""
        low, high = 0, len(self.starts) - 1
        while low + 1 < high:
            middle = (low + high) // 2
            if self.starts[middle] <= offset:
                low = middle
            else:
                high = middle
        return low + 1


@dataclass(frozen=True)
class _Edit:
    start: int  # character offsets in the module
    end: int
    replacement: str
    operator: str
    owner: str


def _token(src: _Source, left_end: int, right_start: int, token: str) -> tuple[int, int] | None:
    """Offsets of `token` (an operator or keyword) in the gap between two operands."""
    gap = src.text[left_end:right_start]
    pattern = r"\s+".join(re.escape(part) for part in token.split())
    if token[0].isalpha():
        pattern = rf"(?<![\w]){pattern}(?![\w])"
    match = re.search(pattern, gap)
    return None if match is None else (left_end + match.start(), left_end + match.end())


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _wrapped(src: _Source, node: ast.AST) -> str:
    """`node`'s source, parenthesized unless it is an atom (so it can replace a call anywhere)."""
    text = src.segment(node)
    return text if isinstance(node, ATOMS) and "\n" not in text else f"({text})"


def _float_text(value: float) -> str:
    return repr(value) if "e" in repr(value) or "." in repr(value) else f"{value!r}.0"


class _Collector(ast.NodeVisitor):
    """Every edit of the nodes that sit wholly on solution lines."""

    def __init__(self, src: _Source, allowed: set[int]) -> None:
        self.src, self.allowed = src, allowed
        self.edits: list[_Edit] = []
        self.owner: list[str] = []
        self.skip_constants: set[int] = set()  # ids of Constant nodes another operator handles

    def _inside(self, node: ast.AST) -> bool:
        return all(line in self.allowed for line in range(node.lineno, node.end_lineno + 1))

    def _add(self, start: int, end: int, replacement: str, operator: str) -> None:
        self.edits.append(_Edit(start, end, replacement, operator, ".".join(self.owner) or "<module>"))

    # --- scopes and what is not code -----------------------------------------------------------

    def _scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.owner.append(node.name)
        for child in node.body:
            if isinstance(child, ast.Expr) and isinstance(child.value, ast.Constant) and isinstance(
                    child.value.value, str):
                continue  # a docstring
            self.visit(child)
        self.owner.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scope

    def visit_Raise(self, node: ast.Raise) -> None:
        pass  # the exception's message is not behaviour; the condition that raises is elsewhere

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        pass  # f-strings: messages and keys

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)  # not the annotation

    def visit_Assert(self, node: ast.Assert) -> None:
        self.visit(node.test)

    # --- operators ----------------------------------------------------------------------------

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if self._inside(node) and type(node.op) in BINOPS:
            symbol, replacements = BINOPS[type(node.op)]
            where = _token(self.src, self.src.end(node.left), self.src.start(node.right), symbol)
            if where:
                for new in replacements:
                    self._add(*where, new, f"binop:{symbol}:{new}")
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if self._inside(node) and type(node.op) in BINOPS:
            symbol, replacements = BINOPS[type(node.op)]
            where = _token(self.src, self.src.end(node.target), self.src.start(node.value), symbol + "=")
            if where:
                for new in replacements:
                    self._add(*where, new + "=", f"augassign:{symbol}=:{new}=")
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        if self._inside(node):
            left = node.left
            for op, right in zip(node.ops, node.comparators):
                old, new = COMPARES[type(op)]
                where = _token(self.src, self.src.end(left), self.src.start(right), old)
                if where:
                    self._add(*where, new, f"compare:{old}:{new}")
                left = right
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        if self._inside(node):
            old, new = BOOLOPS[type(node.op)]
            where = _token(self.src, self.src.end(node.values[0]), self.src.start(node.values[1]), old)
            if where:
                self._add(*where, new, f"boolop:{old}:{new}")
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if self._inside(node):
            if isinstance(node.op, ast.USub) and not isinstance(node.operand, ast.Constant):
                self._add(self.src.start(node), self.src.start(node.operand), "", "neg:drop")
            elif isinstance(node.op, ast.Not):
                self._add(self.src.start(node), self.src.start(node.operand), "", "not:drop")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if not self._inside(node) or id(node) in self.skip_constants:
            return
        value, start, end = node.value, self.src.start(node), self.src.end(node)
        if isinstance(value, bool):
            self._add(start, end, str(not value), f"const:{value}:{not value}")
        elif isinstance(value, int):
            self._add(start, end, str(value + 1), "const:n+1")
            if value != 0:
                self._add(start, end, "0", "const:0")
        elif isinstance(value, float):
            if value == 0.0:
                self._add(start, end, "1.0", "const:0.0:1.0")
            else:
                self._add(start, end, _float_text(2 * value), "const:x2")
                self._add(start, end, "0.0", "const:0.0")

    # --- calls --------------------------------------------------------------------------------

    def visit_Call(self, node: ast.Call) -> None:
        if self._inside(node):
            name = _call_name(node)
            positional = [a for a in node.args if not isinstance(a, ast.Starred)]
            simple = len(positional) == len(node.args)
            start, end = self.src.start(node), self.src.end(node)
            if DROPPABLE.fullmatch(name) and simple and positional:
                self._add(start, end, _wrapped(self.src, positional[0]), f"dropcall:{name}")
            elif (isinstance(node.func, ast.Attribute) and name in RECEIVER_DROPPABLE
                  and not (isinstance(node.func.value, ast.Name) and node.func.value.id in NAMESPACES)):
                self._add(start, end, _wrapped(self.src, node.func.value), f"dropcall:.{name}")
            if simple and len(positional) >= 2 and name not in SYMMETRIC:
                a, b = (positional[-2], positional[-1]) if name in SWAPPABLE_LAST_TWO else positional[:2]
                text_a, text_b = self.src.segment(a), self.src.segment(b)
                both_constant = isinstance(a, ast.Constant | ast.UnaryOp) and isinstance(b, ast.Constant | ast.UnaryOp)
                if text_a != text_b and not both_constant:
                    # one edit over both arguments, the text between them kept
                    middle = self.src.text[self.src.end(a):self.src.start(b)]
                    self._add(self.src.start(a), self.src.end(b), text_b + middle + text_a, f"swapargs:{name}")
        self.generic_visit(node)


def _as_mutant(src: _Source, edit: _Edit, name: str, description: str, tasks: tuple[str, ...]) -> Mutant | None:
    """The edit as whole-line text replacement, widened by neighbouring lines until unique."""
    first, last = src.line_of(edit.start), src.line_of(max(edit.start, edit.end - 1))
    while True:
        old = "".join(src.lines[first - 1:last])
        if src.text.count(old) == 1:
            break
        if first == 1 and last == len(src.lines):
            return None
        first, last = max(1, first - 1), min(len(src.lines), last + 1)
    block_start = src.starts[first - 1]
    new = old[:edit.start - block_start] + edit.replacement + old[edit.end - block_start:]
    if new == old:
        return None
    return Mutant(name=name, description=description, old=old, new=new, tasks=tasks)


def tasks_for(module: str, owner: str) -> tuple[str, ...]:
    """The tasks whose tests grade code in `owner` (a qualified name) of `module`; () for all."""
    aliases = TASK_ALIASES.get(module, {})
    parts = owner.split(".")
    for depth in range(len(parts), 0, -1):
        qualified = ".".join(parts[:depth])
        if qualified in aliases:
            return aliases[qualified]
    return (parts[0],)


def known_tasks(chapter: chapters.Chapter) -> set[str]:
    """The task names of the chapter's public suite (its TASKS)."""
    tree = ast.parse(chapter.suite("public").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "TASKS" for t in node.targets):
            return set(ast.literal_eval(node.value))
    return set()


def generate_module(chapter: chapters.Chapter, module: str, source: str) -> list[Generated]:
    """Every mutant of `module`'s solution regions, one per distinct mutated source, in source order."""
    src = _Source(source)
    collector = _Collector(src, solution_lines(source))
    collector.visit(ast.parse(source))
    valid_tasks = known_tasks(chapter)
    # Each edit is checked and deduplicated on the top-level definition that holds it (parsing
    # the whole module once per mutant costs seconds per chapter).
    tops = [(src.start(node), src.starts[node.end_lineno]) for node in ast.parse(source).body]  # to its last line's end
    seen: set[str] = set()
    counts: dict[str, int] = {}
    result = []
    for edit in sorted(collector.edits, key=lambda e: (e.start, e.end, e.operator)):
        line_number = src.line_of(edit.start)
        line_text = src.lines[line_number - 1].strip()
        digest = hashlib.sha1(line_text.encode()).hexdigest()[:8]
        base = f"{module}:{edit.owner}:{digest}:{edit.operator}"
        counts[base] = counts.get(base, 0) + 1
        mutant_id = base if counts[base] == 1 else f"{base}:{counts[base] - 1}"
        tasks = tasks_for(module, edit.owner)
        tasks = tasks if set(tasks) <= valid_tasks else ()
        before = src.text[edit.start:edit.end]
        description = f"{module}.py:{line_number}: {before!r} -> {edit.replacement!r} ({edit.operator})"
        mutant = _as_mutant(src, edit, mutant_id, description, tasks)
        if mutant is None:
            continue
        top_start, top_end = next((a, b) for a, b in tops if a <= edit.start and edit.end <= b)
        top = src.text[top_start:edit.start] + edit.replacement + src.text[edit.end:top_end]
        if top in seen:
            continue
        try:
            ast.parse(top)
        except SyntaxError:
            continue
        seen.add(top)
        line_start = src.starts[line_number - 1]
        after_line = (top[line_start - top_start:].split("\n", 1)[0]).strip()
        result.append(Generated(id=mutant_id, chapter=chapter.id, module=module, line=line_number, owner=edit.owner,
                                operator=edit.operator, before=line_text, after=after_line, tasks=tasks,
                                mutant=mutant))
    return result


def generate(chapter: chapters.Chapter, reference: Path = chapters.REFERENCE) -> list[Generated]:
    """Every generated mutant of the chapter's own modules (not the earlier chapters' it uses)."""
    return [g for module in chapter.modules
            for g in generate_module(chapter, module, (reference / f"{module}.py").read_text())]
