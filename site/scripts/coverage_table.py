"""The contract-coverage audit: every requirement a handout docstring states, and the tests that check it.

The data live in `tests/coverage/NN_<chapter>.toml` (never shipped: it names hidden tests), one
`[[requirement]]` table per requirement:

    id = "04.FeedForward.d_ff"          # unique in the chapter
    object = "FeedForward"              # the docstring it comes from ("module" for the module's own)
    quote = "d_ff: hidden width; default ``4 * d_model``."  # text of that docstring
    public = ["test_feedforward_parameter_names"]           # public tests that check it
    hidden = ["test_swiglu_default_width"]                  # hidden tests that check it
                                        # (a test of another chapter: "03_positional_encodings::test_...")
    reason = "..."                      # why no public test can (required when `public` is empty)

`tests/test_coverage_audit.py` keeps the data honest against the reference docstrings and the
suites; this script renders the instructor guide's "Contract coverage" section from it. The
guide ships to students, so it shows hidden tests by count, never by name.

    .venv/bin/python site/scripts/coverage_table.py --write   # regenerate the guide's section
    .venv/bin/python site/scripts/coverage_table.py --hidden  # print the table with hidden names
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from graders import chapters

DATA = ROOT / "tests" / "coverage"
GUIDE = ROOT / "site" / "docs" / "instructor_guide.md"
HEADING = "## Contract coverage"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
# Docstring sections whose every entry must be covered by a requirement row.
STRUCTURED = ("Args", "Raises", "Shapes", "Submodule", "Returns")


@dataclass(frozen=True)
class Requirement:
    id: str
    object: str
    quote: str
    public: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class Entry:
    """One structured entry of a docstring: a section ("Args", ...), its key and its whole text."""

    section: str
    key: str
    text: str


@dataclass
class Audit:
    chapter: chapters.Chapter
    requirements: list[Requirement] = field(default_factory=list)


def normalize(text: str) -> str:
    """`text` with every run of whitespace made one space (docstrings wrap lines anywhere)."""
    return " ".join(text.split())


def data_file(chapter: chapters.Chapter) -> Path:
    return DATA / f"{chapter.slug}.toml"


def load(chapter: chapters.Chapter) -> Audit:
    """The chapter's requirement rows, in file order."""
    rows = tomllib.loads(data_file(chapter).read_text())["requirement"]
    return Audit(chapter, [Requirement(id=r["id"], object=r["object"], quote=r["quote"],
                                       public=tuple(r.get("public", ())), hidden=tuple(r.get("hidden", ())),
                                       reason=r.get("reason", "")) for r in rows])


def documented_objects(chapter: chapters.Chapter) -> dict[str, str]:
    """Docstring of every object a student writes in the chapter's modules: each top-level function
    or class holding a solution region, each method holding one and documented on its own, and
    each module ("module", or "module:<name>" for a chapter's further modules)."""
    found: dict[str, str] = {}
    for position, name in enumerate(chapter.modules):
        source = (chapters.REFERENCE / f"{name}.py").read_text()
        tree = ast.parse(source)
        regions = [n for n, line in enumerate(source.splitlines(), 1) if BEGIN in line]

        def solved(node: ast.AST, regions: list[int] = regions) -> bool:
            return any(node.lineno <= line <= node.end_lineno for line in regions)

        found["module" if position == 0 else f"module:{name}"] = ast.get_docstring(tree) or ""
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and solved(node):
                found[node.name] = ast.get_docstring(node) or ""
                if isinstance(node, ast.ClassDef):
                    for sub in node.body:
                        if isinstance(sub, ast.FunctionDef) and solved(sub) and ast.get_docstring(sub):
                            found[f"{node.name}.{sub.name}"] = ast.get_docstring(sub)
    return found


def structured_entries(docstring: str) -> list[Entry]:
    """Each entry of the docstring's Args, Raises, Shapes, Submodule(s) and Returns sections
    (Google style): a `name: text` item (a Shapes item: ```name``: text``) with its continuation lines (indented,
    or wrapped lines that start no item); the whole of a Returns section."""
    lines = docstring.splitlines()
    entries: list[Entry] = []
    index = 0
    while index < len(lines):
        header = re.fullmatch(r"( *)([A-Z][A-Za-z ]*?)( \(.*\))?:", lines[index])
        section = next((s for s in STRUCTURED if header and header.group(2).startswith(s)), None)
        index += 1
        if section is None:
            continue
        indent = len(header.group(1))
        body: list[str] = []
        while index < len(lines) and (not lines[index].strip()
                                      or len(lines[index]) - len(lines[index].lstrip()) > indent):
            body.append(lines[index])
            index += 1
        while body and not body[-1].strip():
            body.pop()
        if section == "Returns":
            entries.append(Entry(section, "", normalize("\n".join(body))))
            continue
        first = len(entries)
        item_indent = min(len(line) - len(line.lstrip()) for line in body if line.strip())
        for line in body:
            if not line.strip():
                continue
            item = r"``[^`]+``:" if section == "Shapes" else r"[A-Za-z_][\w.]*( \(.*?\))?:"
            starts_item = re.match(item, line.strip())
            if len(line) - len(line.lstrip()) == item_indent and (starts_item or len(entries) == first):
                key = line.strip().split(":")[0] if section != "Shapes" else line.strip()
                entries.append(Entry(section, key, normalize(line)))
            else:  # a continuation of the item above (indented, or a wrapped line that names nothing)
                last = entries[-1]
                entries[-1] = Entry(last.section, last.key, normalize(f"{last.text} {line}"))
    return entries


def covers(requirement: Requirement, entry: Entry) -> bool:
    """A row covers an entry when its quote is part of the entry's text, or the entry part of the quote."""
    quote, text = normalize(requirement.quote), entry.text
    return quote in text or text in quote


def suite_tests(chapter: chapters.Chapter, visibility: str) -> set[str]:
    """Names of the test functions in the chapter's suite, read from its source."""
    tree = ast.parse(chapter.suite(visibility).read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def split_name(chapter: chapters.Chapter, name: str) -> tuple[chapters.Chapter, str]:
    """The chapter whose suite holds the test `name` ("SLUG::test_x" for another chapter's), and its bare name."""
    if "::" in name:
        slug, name = name.split("::", 1)
        return chapters.find(slug), name
    return chapter, name


def _cell(text: str) -> str:
    return normalize(text).replace("|", "\\|")


def render(audits: list[Audit], hidden_names: bool = False) -> str:
    """The guide's section: a summary table per chapter, then each chapter's rows."""
    out = [HEADING, "",
           "Every requirement a stub docstring states (the handout) and the tests that check it, generated from",
           "`tests/coverage/` by `.venv/bin/python site/scripts/coverage_table.py --write`;",
           "`tests/test_coverage_audit.py` fails when",
           "a quote leaves its docstring, a test named here no longer exists, or a documented argument, error, shape,",
           "submodule or return value has no row. Hidden tests are counted, not named (this guide ships to students;",
           "`coverage_table.py --hidden` prints their names). A row without a public test says why.",
           "",
           "| chapter | requirements | public and hidden | public only | hidden only |",
           "|---|---:|---:|---:|---:|"]
    for audit in audits:
        rows = audit.requirements
        both = sum(bool(r.public and r.hidden) for r in rows)
        public = sum(bool(r.public and not r.hidden) for r in rows)
        hidden = sum(bool(r.hidden and not r.public) for r in rows)
        out.append(f"| {audit.chapter.slug} | {len(rows)} | {both} | {public} | {hidden} |")
    for audit in audits:
        out += ["", f"### {audit.chapter.slug}", "",
                "| id | object | requirement (quoted) | public tests | hidden | why hidden only |",
                "|---|---|---|---|---|---|"]
        for r in audit.requirements:
            public = "<br>".join(f"`{name}`" for name in r.public) or "none"
            hidden = "<br>".join(f"`{name}`" for name in r.hidden) if hidden_names else str(len(r.hidden))
            out.append(f"| {r.id} | `{r.object}` | {_cell(r.quote)} | {public} | {hidden} | {_cell(r.reason)} |")
    return "\n".join(out) + "\n"


def all_audits() -> list[Audit]:
    return [load(chapter) for chapter in chapters.CHAPTERS]


def guide_section(text: str) -> str:
    """The guide's "Contract coverage" section, from its heading to the next `## ` heading."""
    start = text.index(HEADING + "\n")
    end = text.find("\n## ", start + len(HEADING))
    return text[start:] if end == -1 else text[start:end + 1]


def write_guide(section: str) -> None:
    """Replace the guide's section with `section`, or append it when the guide has none."""
    text = GUIDE.read_text()
    if HEADING + "\n" in text:
        text = text.replace(guide_section(text), section)
    else:
        text = text.rstrip("\n") + "\n\n\n" + section
    GUIDE.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the section into site/docs/instructor_guide.md")
    parser.add_argument("--hidden", action="store_true", help="name the hidden tests (never for the guide)")
    args = parser.parse_args(argv)
    if args.write and args.hidden:
        parser.error("the guide ships to students: --write never names hidden tests")
    section = render(all_audits(), hidden_names=args.hidden)
    if args.write:
        write_guide(section)
    else:
        print(section, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
