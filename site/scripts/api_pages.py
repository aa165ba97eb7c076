"""Write the site's API reference from the stubs' docstrings: one page per chapter.

Run from the repository root, before ``mkdocs build`` (``nox -s site`` does)::

    python site/scripts/api_pages.py

The stub docstrings in ``assignments/`` are the handout; these pages put the same text on
the site, so the two cannot disagree. For every chapter of ``graders/chapters.py`` whose
student modules exist (a chapter whose stubs are not written yet is skipped), it writes
``site/docs/api/<slug>.md``: the module docstring, then every public module-level function
and class in file order (a class with its public methods, ``__init__`` included), each with
its signature and its docstring. It also writes ``site/docs/api/index.md`` and removes any
other page left in that folder. The folder is generated and git-ignored, like ``figures/``.

The modules are read with ``ast``, never imported: the script needs no torch, runs on stubs
that do not work yet, and runs unchanged in the student release. Signatures are rebuilt from
the syntax tree, parameter by parameter, each annotation and default in the stub's own spelling
(its source text; ``ast.unparse`` for one that spans lines). Output is deterministic: running
it twice writes the same bytes.

Docstrings are Google style with RST's double-backtick code spans; ``render`` turns them into Markdown
in a few plain rules (its docstring lists them). Anything it does not recognise stays a
paragraph of text, so a new docstring can look plainer than intended but never loses words.
"""

from __future__ import annotations

import ast
import io
import re
import sys
import textwrap
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository (or release) root
sys.path.insert(0, str(ROOT))  # `from graders import chapters`: the chapter table (stdlib only)

from graders import chapters  # noqa: E402

DOCS = ROOT / "site" / "docs"
OUT = DOCS / "api"
ASSIGNMENTS = ROOT / "assignments"
WIDTH = 88  # a signature longer than this is written one parameter per line

# Google-style sections. Entry sections list `name: description` items; the others hold prose
# (or a doctest) and are rendered like the rest of a docstring.
ENTRY_SECTIONS = {"Args", "Arguments", "Parameters", "Keyword Args", "Keyword Arguments", "Attributes", "Raises"}
PROSE_SECTIONS = {"Returns", "Yields", "Shapes", "Example", "Examples", "Note", "Notes", "Warning", "See Also"}

LIST_ITEM = re.compile(r"(?P<marker>[*+-]|\d+\.)\s+(?P<text>.*)")
ENTRY = re.compile(r"(?P<name>\*{0,2}[\w.]+(?:\s*,\s*[\w.]+)*)(?P<type>\s*\([^)]*\))?\s*:(?:\s+(?P<text>.*))?$")
RST_CODE = re.compile(r"``(.+?)``")
MD_CODE = re.compile(r"(`+)(.+?)\1")


# --------------------------------------------------------------------------------------
# docstrings -> Markdown
# --------------------------------------------------------------------------------------


def inline(text: str) -> str:
    """One line of prose as Markdown: ````x```` becomes `` `x` ``; outside code spans, ``<``,
    ``[`` and ``]`` are escaped so that no text reads as HTML or as a link. ``*emphasis*`` is
    the same in both syntaxes and stays."""
    text = RST_CODE.sub(lambda m: _code_span(m.group(1)), text)
    pieces, last = [], 0
    for match in MD_CODE.finditer(text):
        pieces += [_escape(text[last:match.start()]), match.group(0)]
        last = match.end()
    pieces.append(_escape(text[last:]))
    return "".join(pieces)


def _code_span(code: str) -> str:
    return f"`` {code} ``" if "`" in code else f"`{code}`"


def _escape(prose: str) -> str:
    return prose.replace("\\", "\\\\").replace("<", "&lt;").replace("[", "\\[").replace("]", "\\]")


def _fence(lines: list[str], language: str) -> list[str]:
    return [f"```{language}", *lines, "```", ""]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _dedent(lines: list[str]) -> list[str]:
    return textwrap.dedent("\n".join(lines)).splitlines()


def render(text: str) -> list[str]:
    """A docstring (already dedented, as ``ast.get_docstring`` returns it) as Markdown lines.

    The rules, tried in this order on each block of lines:

    * a line starting with ``>>>`` starts a doctest, kept as a ``pycon`` code block up to the
      next blank line;
    * a line starting with ``*``, ``-``, ``+`` or ``1.`` starts a list item, which runs on
      over indented continuation lines;
    * an indented block after a paragraph ending in ``::`` is a literal block: a ``text`` code
      block (``pycon`` if it starts with ``>>>``), and the ``::`` becomes ``:``;
    * an indented block right under a one-line ``Section:`` line is a Google section: a bold
      label, then for ``Args``/``Raises``/``Attributes`` one list item per ``name: text``
      entry, and for ``Returns``/``Example``/``Shapes``/... the block rendered by these rules;
    * any other indented block is a list if it is one, a doctest if it is one, and otherwise a
      ``text`` code block, which keeps aligned tables (the shape notation) aligned;
    * everything else is prose: each paragraph joined into one line and passed to ``inline``.
    """
    lines = text.expandtabs().splitlines()
    out: list[str] = []
    paragraph: list[str] = []
    literal = False  # the last paragraph ended with "::": an indented block after it is code
    i = 0

    def flush() -> None:
        nonlocal literal
        if paragraph:
            # RST: "text::" reads "text:"; "text ::" and a bare "::" read as nothing
            last = paragraph[-1].rstrip()
            literal = last.endswith("::")
            if literal:
                paragraph[-1] = last[:-3] if last.endswith(" ::") else last[:-1]
            text = " ".join(line.strip() for line in paragraph if line.strip())
            out.extend([inline(text), ""] if text else [])
            paragraph.clear()

    while i < len(lines):
        line = lines[i]
        if not line.strip():
            flush()
            i += 1
            continue
        if _indent(line) > 0:
            end = _block_end(lines, i)
            block = _dedent(lines[i:end])
            header = paragraph[-1].strip() if len(paragraph) == 1 and lines[i - 1].strip() else ""
            if header.endswith(":") and not header.endswith("::"):
                paragraph.clear()
                out += _section(header[:-1], block)
            else:
                flush()
                out += _literal(block) if literal else _indented(block)
            i = end
        elif line.startswith(">>>"):
            flush()
            end = i
            while end < len(lines) and lines[end].strip():
                end += 1
            out += _fence(lines[i:end], "pycon")
            i = end
        elif LIST_ITEM.match(line):
            flush()
            i = _list(lines, i, out)
        else:
            paragraph.append(line)
            i += 1
        literal = False
    flush()
    while out and not out[-1]:
        out.pop()
    return out


def _block_end(lines: list[str], start: int) -> int:
    """The end of the indented block starting at `start`: the next non-blank line at indent 0
    (trailing blank lines are left out)."""
    end = start
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > 0):
        end += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return end


def _list(lines: list[str], start: int, out: list[str]) -> int:
    """Append the list starting at `start` (one Markdown item per item, each on one line) to
    `out`; return the index after it."""
    i = start
    while i < len(lines):
        match = LIST_ITEM.match(lines[i]) if _indent(lines[i]) == 0 else None
        if match is None:
            break
        text = [match.group("text")]
        i += 1
        while i < len(lines) and lines[i].strip() and not (_indent(lines[i]) == 0 and LIST_ITEM.match(lines[i])):
            text.append(lines[i].strip())
            i += 1
        marker = "-" if match.group("marker") in "*+-" else match.group("marker")
        out.append(f"{marker} {inline(' '.join(text))}")
        if i < len(lines) and not lines[i].strip() and i + 1 < len(lines) and LIST_ITEM.match(lines[i + 1]):
            i += 1  # a blank line between two items: still one list
    out.append("")
    return i


def _literal(block: list[str]) -> list[str]:
    return _fence(block, "pycon" if block[0].startswith(">>>") else "text")


def _indented(block: list[str]) -> list[str]:
    """An indented block that is neither a literal block nor a section."""
    if block[0].startswith(">>>"):
        return _literal(block)
    if all(LIST_ITEM.match(line) for line in block if line.strip() and _indent(line) == 0):
        return render("\n".join(block)) + [""]
    return _fence(block, "text")


def _section(name: str, block: list[str]) -> list[str]:
    label = [f"**{inline(name)}:**", ""]
    if name in ENTRY_SECTIONS:
        entries = _entries(block)
        if entries is not None:
            return label + entries + [""]
    if name in ENTRY_SECTIONS | PROSE_SECTIONS:
        return label + render("\n".join(block)) + [""]
    return [inline(name) + ":", ""] + _indented(block)


def _entries(block: list[str]) -> list[str] | None:
    """`name: text` entries as list items, continuation lines joined; None if the block does
    not start with one."""
    items: list[tuple[str, list[str]]] = []
    for line in block:
        match = ENTRY.match(line) if _indent(line) == 0 else None
        if match:
            name = ", ".join(f"`{part.strip()}`" for part in match.group("name").split(","))
            kind = f" ({inline(match.group('type').strip()[1:-1])})" if match.group("type") else ""
            items.append((name + kind, [match.group("text") or ""]))
        elif items:
            items[-1][1].append(line.strip())
        else:
            return None
    return [f"- {name}: {inline(' '.join(t for t in text if t))}" for name, text in items]


# --------------------------------------------------------------------------------------
# modules -> pages
# --------------------------------------------------------------------------------------


def code(node: ast.AST, source: str) -> str:
    """`node` as the stub spells it (`8.8e13` stays `8.8e13`, quotes stay as they are); a node
    that spans lines is rebuilt with `ast.unparse` instead, on one line."""
    segment = ast.get_source_segment(source, node)
    return segment if segment is not None and "\n" not in segment else ast.unparse(node)


def _param(arg: ast.arg, default: ast.expr | None, source: str) -> str:
    text = arg.arg + (f": {code(arg.annotation, source)}" if arg.annotation else "")
    if default is not None:
        text += f" = {code(default, source)}" if arg.annotation else f"={code(default, source)}"
    return text


def parameters(args: ast.arguments, source: str) -> list[str]:
    """Each parameter (name, annotation, default) in order, with the `/` and `*` markers, laid
    out as `ast.unparse` lays them out."""
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    found = []
    for index, (arg, default) in enumerate(zip(positional, defaults)):
        found.append(_param(arg, default, source))
        if args.posonlyargs and index == len(args.posonlyargs) - 1:
            found.append("/")
    if args.vararg:
        found.append("*" + _param(args.vararg, None, source))
    elif args.kwonlyargs:
        found.append("*")
    found += [_param(arg, default, source) for arg, default in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        found.append("**" + _param(args.kwarg, None, source))
    return found


def signature(node: ast.FunctionDef | ast.AsyncFunctionDef, source: str) -> list[str]:
    """`def name(...) -> T` with the decorators above it; one parameter per line when long."""
    lines = [f"@{code(d, source)}" for d in node.decorator_list]
    keyword = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    returns = f" -> {code(node.returns, source)}" if node.returns else ""
    params = parameters(node.args, source)
    head = f"{keyword} {node.name}("
    if len(head) + len(", ".join(params)) + len(returns) + 1 <= WIDTH:
        return lines + [f"{head}{', '.join(params)}){returns}"]
    body = [f"    {param}," for param in params]
    body[-1] = body[-1][:-1]  # no trailing comma: the same text as the one-line form, but for spaces
    return lines + [head, *body, f"){returns}"]


def _comments(source: str) -> dict[int, str]:
    """Line number -> the comment on that line (tokenize knows a `#` inside a string)."""
    found = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found[token.start[0]] = token.string
    return found


def _assignment(node: ast.stmt, source: str, comments: dict[int, str], indent: str = "") -> list[str]:
    """A public assignment as one line of code, with its end-of-line comment."""
    comment = comments.get(node.end_lineno) if node.lineno == node.end_lineno else None
    return [f"{indent}{code(node, source)}" + (f"  {comment}" if comment else "")]


def _public_assignment(node: ast.stmt) -> bool:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    names = [t.id for t in targets if isinstance(t, ast.Name)]
    return bool(names) and len(names) == len(targets) and not any(name.startswith("_") for name in names)


def _comment_above(node: ast.stmt, lines: list[str]) -> list[str]:
    """The full-line comments right above `node` (no blank line between), rulers left out."""
    found = []
    number = node.lineno - 1 - len(getattr(node, "decorator_list", []))
    while number >= 1 and lines[number - 1].lstrip().startswith("#"):
        text = lines[number - 1].strip()
        if text.strip("#-= "):
            found.insert(0, text)
        number -= 1
    return found


def _public_method(node: ast.stmt) -> bool:
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
        not node.name.startswith("_") or node.name in ("__init__", "__call__"))


def _heading(level: int, title: str, anchor: str) -> list[str]:
    """A heading with the id `anchor`: the qualified name (`softmax`, `KVCache.update`), but a
    dunder loses its underscores (`KVCache.__init__` is `#KVCache.init`): in an attribute list
    Markdown reads `__init__` as bold, and no escape of it survives MkDocs' table of contents."""
    anchor = re.sub(r"\b__(\w+?)__\b", r"\1", anchor)
    return [f"{'#' * level} `{title}` {{ #{anchor} }}", ""]


def _docstring(node: ast.AST) -> list[str]:
    text = ast.get_docstring(node)
    return render(text) + [""] if text else []


def module_page(name: str, level: int, qualify: bool) -> list[str]:
    """The Markdown of one module: its docstring, its public constants, then each public
    function and class (with its methods) in file order. `level` is the module heading's;
    with `qualify`, anchors carry the module name (a page holding several modules)."""
    path = ASSIGNMENTS / f"{name}.py"
    source = path.read_text()
    tree = ast.parse(source)
    lines, comments = source.splitlines(), _comments(source)
    prefix = f"{name}." if qualify else ""
    out = _heading(level, f"{name}.py", name) + _docstring(tree)

    constants = []
    for node in tree.body:
        if _public_assignment(node):
            constants += _comment_above(node, lines) + _assignment(node, source, comments)
    if constants:
        out += ["**Module constants:**", "", *_fence(constants, "python")]

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            out += _heading(level + 1, node.name, prefix + node.name)
            out += _fence(signature(node, source), "python") + _docstring(node)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            out += _class(node, level + 1, prefix, source, comments)
    return out


def _class(node: ast.ClassDef, level: int, prefix: str, source: str, comments: dict[int, str]) -> list[str]:
    bases = [code(b, source) for b in node.bases] + [code(k, source) for k in node.keywords]
    head = [f"@{code(d, source)}" for d in node.decorator_list]
    head.append(f"class {node.name}" + (f"({', '.join(bases)})" if bases else ""))
    fields = [line for stmt in node.body if _public_assignment(stmt)
              for line in _assignment(stmt, source, comments, "    ")]
    if fields:  # a dataclass's fields, a class's constants: the body, as code
        head[-1] += ":"
    out = _heading(level, node.name, prefix + node.name)
    out += _fence(head + fields, "python") + _docstring(node)
    for method in node.body:
        if _public_method(method):
            out += _heading(level + 1, f"{node.name}.{method.name}", f"{prefix}{node.name}.{method.name}")
            out += _fence(signature(method, source), "python") + _docstring(method)
    return out


def title(chapter: chapters.Chapter) -> str:
    """The reading page's own title (its first `# ` line), or the chapter id if it has none."""
    page = DOCS / chapter.page
    if page.exists():
        for line in page.read_text().splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return f"{chapter.number:02d} {chapter.id}"


def chapter_page(chapter: chapters.Chapter) -> str:
    files = ", ".join(f"`assignments/{m}.py`" for m in chapter.modules)
    reading = (f"The reading page, [{title(chapter)}](../{chapter.page}), explains what they ask for."
               if (DOCS / chapter.page).exists() else "")
    out = [
        f"# {title(chapter)}: API reference",
        "",
        f"Generated from {files}, the handout, by `site/scripts/api_pages.py`: every public "
        "function and class of the stub, in the order of the file, with its signature and its "
        f"docstring. The docstrings are the specification the grader checks. {reading}".rstrip(),
        "",
    ]
    several = len(chapter.modules) > 1
    for module in chapter.modules:
        out += module_page(module, 2, qualify=several)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out) + "\n"


def index_page(written: list[chapters.Chapter]) -> str:
    out = [
        "# API reference",
        "",
        "One page per chapter, generated from the stubs in `assignments/` by "
        "`site/scripts/api_pages.py`: each module's docstring, then every public function and "
        "class with its signature and docstring. The stubs' docstrings are the handout, so "
        "these pages say exactly what your file says.",
        "",
        "| chapter | module | API page |",
        "|---|---|---|",
    ]
    for chapter in written:
        modules = ", ".join(f"`{m}.py`" for m in chapter.modules)
        reading = f"[{title(chapter)}](../{chapter.page})" if (DOCS / chapter.page).exists() else title(chapter)
        out.append(f"| {reading} | {modules} | [{chapter.slug}]({chapter.slug}.md) |")
    return "\n".join(out) + "\n"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    written = [c for c in chapters.CHAPTERS if all((ASSIGNMENTS / f"{m}.py").exists() for m in c.modules)]
    pages = {f"{c.slug}.md": chapter_page(c) for c in written} | {"index.md": index_page(written)}
    for stale in sorted(set(p.name for p in OUT.glob("*.md")) - set(pages)):
        (OUT / stale).unlink()
    for name, text in pages.items():
        path = OUT / name
        if not path.exists() or path.read_text() != text:  # unchanged pages keep their mtime (mkdocs serve)
            path.write_text(text)
        print(path.relative_to(ROOT).as_posix())


if __name__ == "__main__":
    main()
