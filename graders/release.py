"""The student release (`python -m graders release`, `nox -s release`) and its leak scan.

`build` writes `dist/student/` from an allow-list: what `ALLOWED` does not name never ships,
so a file added to the repository later stays out until someone decides it belongs. The
steps, in order:

    clear         an empty destination, so no file of an older release survives
    copy_allowed  ALLOWED, minus SKIPPED and build junk
    write_points  a "Points per chapter" section at the end of the release's README: the
                  public and hidden points of each chapter, from the chapter table
    scan          every text file against the reference's solution lines and the hidden
                  tests' names and lines; any hit removes the tree and raises LeakError
                  (before the figures, which take half a minute: a leak fails fast)
    draw_figures  the site's figures, drawn from the reference (a failure removes the tree)
    copy_figures  the PNGs and tables drawn in the previous step
    scan          again, for the tables the figure script wrote

`site/scripts/figures.py` is left out of the release: it imports `reference_solutions`, so
it could only fail there. The release ships the PNGs it drew instead, and the noxfile's
`site`/`serve` sessions skip the drawing step when the script is absent. (Keeping the script
with a "needs the reference" guard would ship code that can never run for a student.)

`scan` is also what the project's tests call (tests/test_release.py).
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import io
import re
import shutil
import subprocess
import sys
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from graders import chapters, stubs

ROOT = chapters.ROOT
DEFAULT_DEST = ROOT / "dist" / "student"

# What ships, relative to the repository root; folders are copied whole, minus SKIPPED and JUNK.
ALLOWED = (
    "assignments",  # the stubs, generated from the reference by `nox -s stubs`
    "graders",  # the harness, the public suites (graders/public) and their snapshots (graders/snapshots)
    "site/mkdocs.yml",
    "site/docs",  # the reading pages
    "site/scripts/fetch_katex.py",  # the release's `nox -s site` fetches KaTeX with it
    # ... and writes the API pages from the release's own stubs with it (reads assignments/ only).
    "site/scripts/api_pages.py",
    # Chapter 01's experiment (attention patterns of a model trained to reverse): students rerun it
    # on their own Transformer.
    "site/scripts/experiment_attention.py",
    # Chapter 03's experiment: students rerun it on their own modules (default impl: assignments/).
    "site/scripts/experiment_positional.py",
    # Chapter 04's FFN ablation, likewise rerun on the students' own chapter 02 and 04 modules.
    "site/scripts/experiment_ffn.py",
    # Chapter 05's gradient-flow measurement, rerun on the students' own norms (no training).
    "site/scripts/experiment_norm.py",
    # Chapter 06's warm-up and peak-learning-rate grid, rerun with the students' own Trainer.
    "site/scripts/experiment_training.py",
    # What the experiments share (loading --impl, the schedule, progress, output paths): they import it.
    "site/scripts/experiment_common.py",
    "noxfile.py",
    "README.md",
    "pyproject.toml",
)
# Inside allowed folders but never shipped: the hidden suites, and three build products that are
# not committed (the figures are drawn afresh by `draw_figures`; `nox -s site` fetches KaTeX and
# writes the API pages from the stubs).
SKIPPED = ("graders/hidden", "site/docs/figures", "site/docs/javascripts/katex", "site/docs/api")
# Caches and bytecode: never source, and bytecode of a hidden suite would be one.
JUNK = ("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis", ".ruff_cache", ".DS_Store")
# Never in a release, whatever the lists above say; `scan` reports each one it finds.
FORBIDDEN = ("reference_solutions", "graders/hidden", "tests", ".ci", ".git", "reports", ".venv", ".nox")
# Written into every release, so `clear` never removes a folder that is not one.
MARKER = ".student-release"
FIGURES_SCRIPT = ROOT / "site" / "scripts" / "figures.py"
FIGURES_DIR = "site/docs/figures"

# A solution or hidden-test line shorter than this, once its whitespace is removed, is too
# generic to identify a solution: `if mask is not None:`, `return out, weights`,
# `raise ValueError(` occur in any attention code and in the harness. 20 keeps every line that
# computes something (the shortest in chapter 02's regions has exactly 20; this comment must not
# quote it, or the scan finds it here); tests/test_release.py checks that every solution region
# keeps lines of its own, so a copied region body is always caught.
MIN_CHARS = 20


class ReleaseError(RuntimeError):
    """The release cannot be built (no reference to draw from or scan against, a bad --dest)."""


@dataclass(frozen=True)
class Needle:
    """One piece of secret text the release must not contain, normalized (see `normalize`)."""

    text: str
    kind: str  # "solution line" | "hidden test name" | "hidden test line"
    origin: str  # where it comes from, e.g. "reference_solutions/multi_head_attention.py:55"


@dataclass(frozen=True)
class Leak:
    """A needle found in the scanned tree (line 0: a forbidden path is present)."""

    path: str  # relative to the scanned tree
    line: int
    kind: str
    origin: str

    def __str__(self) -> str:
        where = self.path if self.line == 0 else f"{self.path}:{self.line}"
        return f"{where}: {self.kind} ({self.origin})"


class LeakError(ReleaseError):
    """The built release contained secret text; it has been removed."""

    def __init__(self, leaks: list[Leak], dest: Path) -> None:
        self.leaks = leaks
        listing = "\n".join(f"  {leak}" for leak in leaks)
        super().__init__(f"release refused: {len(leaks)} leak(s) of reference or hidden-test text; "
                         f"{dest} was removed. Fix the source files at the same paths:\n{listing}")


@dataclass
class Release:
    """What `build` wrote: each allowed entry -> its files (relative to dest), and the scan's size."""

    dest: Path
    written: dict[str, list[str]] = field(default_factory=dict)
    needles: dict[str, int] = field(default_factory=dict)  # kind -> how many were checked

    @property
    def files(self) -> int:
        return sum(len(files) for files in self.written.values())


# --------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------


def build(dest: Path = DEFAULT_DEST, root: Path = ROOT) -> Release:
    """Build the student release in `dest` (replacing it); raise LeakError if the scan finds anything."""
    dest = Path(dest).resolve()
    _check_sources(root)
    _check_dest(dest, root)
    clear(dest)
    release = Release(dest)
    release.written.update(copy_allowed(root, dest))
    write_points(dest)
    found = needles(root)
    # Scanned before the figures are drawn (half a minute): a leak in a copied page stops the
    # build in seconds. Scanned again after, for the tables the figure script writes.
    _refuse_leaks(dest, found)
    try:
        figures = draw_figures(root)
    except ReleaseError:
        shutil.rmtree(dest)  # a release without its figures is not one to hand out
        raise
    release.written[FIGURES_DIR] = copy_figures(figures, dest)
    _refuse_leaks(dest, found)
    for needle in found:
        release.needles[needle.kind] = release.needles.get(needle.kind, 0) + 1
    return release


def _refuse_leaks(dest: Path, found: list[Needle]) -> None:
    leaks = scan(dest, found)
    if leaks:
        shutil.rmtree(dest)  # a leaky tree left on disk could still be handed out
        raise LeakError(leaks, dest)


def _check_sources(root: Path) -> None:
    """The release is drawn from, and scanned against, the reference and the hidden suites."""
    for needed in ("reference_solutions", "graders/hidden", "site/scripts/figures.py"):
        if not (root / needed).exists():
            raise ReleaseError(f"{needed} is missing: a release is built from the instructor tree "
                               "(this looks like a student release already)")


def _check_dest(dest: Path, root: Path) -> None:
    """Refuse a destination whose removal or filling would damage the repository or another folder."""
    if dest == root or dest in root.parents:
        raise ReleaseError(f"--dest {dest} contains the repository; choose an empty or release folder")
    if any(dest == root / entry or (root / entry) in dest.parents for entry in ALLOWED):
        raise ReleaseError(f"--dest {dest} lies inside a folder the release copies")
    if dest.exists() and any(dest.iterdir()) and not (dest / MARKER).exists():
        raise ReleaseError(f"--dest {dest} exists and is not a student release; remove it or choose another")


def draw_figures(root: Path = ROOT) -> list[Path]:
    """Run the site's figure script (in a subprocess: it puts the reference on sys.path); return its PNGs."""
    result = subprocess.run([sys.executable, str(root / "site" / "scripts" / "figures.py")], cwd=root,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise ReleaseError(f"site/scripts/figures.py failed:\n{result.stderr.strip()}")
    # The script prints each figure it wrote, relative to the root: exactly those ship, never a
    # stale file left in site/docs/figures/ by an older version of the script. Besides PNGs it
    # writes Markdown snippets (tables drawn from recorded results) that pages include.
    return [root / line.strip() for line in result.stdout.splitlines() if line.strip().endswith((".png", ".md"))]


def clear(dest: Path) -> None:
    """An empty `dest` (its parent created if needed), marked as a release at once, so that a
    build that fails half-way can still be replaced by the next one."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / MARKER).write_text("Built by `nox -s release`; a rebuild removes only folders that hold this file.\n")


def _ignored(root: Path):
    """A `shutil.copytree` ignore function for SKIPPED paths and JUNK names."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder).resolve().relative_to(root.resolve())
        return {name for name in names
                if (here / name).as_posix() in SKIPPED or any(fnmatch.fnmatch(name, junk) for junk in JUNK)}

    return ignore


def copy_allowed(root: Path, dest: Path) -> dict[str, list[str]]:
    """Copy every ALLOWED entry; return entry -> the files written, relative to `dest`."""
    written = {}
    for entry in ALLOWED:
        source, target = root / entry, dest / entry
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=_ignored(root))
            written[entry] = sorted(p.relative_to(dest).as_posix() for p in target.rglob("*") if p.is_file())
        else:
            shutil.copy2(source, target)
            written[entry] = [entry]
    return written


POINTS_HEADING = "## Points per chapter"


def points_section(graded: tuple[chapters.Chapter, ...] = chapters.CHAPTERS) -> str:
    """The release README's section on how the points split: per chapter, the public tests'
    points (what `nox -s grade` gives) and the hidden tests' (run when the instructor grades)."""
    rows = [f"| {c.number:02d} {c.id} | {c.public_points:g} | {c.hidden_points:g} | "
            f"{c.public_points + c.hidden_points:g} |" for c in graded]
    public = sum(c.public_points for c in graded)
    hidden = sum(c.hidden_points for c in graded)
    intro = (f"`nox -s grade` runs the public tests: {public:g} of the course's {public + hidden:g} points. The other "
             f"{hidden:g} are in hidden tests that run when your instructor grades; they check the same handouts "
             "(the docstrings) on other inputs, so a full public score is a good sign, not the whole grade. "
             "The report shows, per chapter, your public score and the points its hidden tests hold.")
    return "\n".join([
        POINTS_HEADING, "", intro, "",
        "| chapter | public | hidden | total |", "|---|---:|---:|---:|", *rows,
        f"| all | {public:g} | {hidden:g} | {public + hidden:g} |", ""])


def write_points(dest: Path) -> None:
    """Append `points_section` to the release's README (the repository's README has no such
    section: the instructor tree grades with the hidden tests, and shows their scores)."""
    readme = dest / "README.md"
    readme.write_text(readme.read_text().rstrip("\n") + "\n\n" + points_section())


def copy_figures(figures: list[Path], dest: Path) -> list[str]:
    target = dest / FIGURES_DIR
    target.mkdir(parents=True, exist_ok=True)
    for png in figures:
        shutil.copy2(png, target / png.name)
    return sorted(f"{FIGURES_DIR}/{png.name}" for png in figures)


# --------------------------------------------------------------------------------------
# the leak scan
# --------------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """`text` with all whitespace removed and single quotes made double.

    Removing whitespace (rather than collapsing it) makes a copy match however it was
    re-indented or re-formatted within a line (`a - b` or `a-b`, inside a function or a
    Markdown code block); formatters also swap quote styles. A false match still needs the
    same characters in the same order.
    """
    return re.sub(r"\s+", "", text).replace("'", '"')


@functools.lru_cache(maxsize=64)
def _split_comments(source: str) -> dict[int, tuple[str, str]]:
    """Line number -> (code, comment text) for every line of a Python module (tokenize knows
    a `#` inside a string from a comment). Cached: each of a module's regions and hidden tests
    asks for its own lines, and tokenizing the module once per ask made `needles()` 50x slower."""
    lines = source.splitlines()
    split = {number: (line, "") for number, line in enumerate(lines, start=1)}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            number, column = token.start
            split[number] = (lines[number - 1][:column], token.string.lstrip("#"))
    return split


def _line_needles(source: str, numbers, kind: str, origin: str) -> list[Needle]:
    """Needles for the given lines of a module: the code of each line, and each full-line comment.

    Comments at the end of a code line are dropped: they are shape annotations such as
    `# (B, H, T, Dh)`, the course's shared notation, found in every docstring and on the site.
    Comments on a line of their own are kept: they explain the solution's tricks in words
    found nowhere else, so a verbatim copy of one means the region was copied.
    """
    split = _split_comments(source)
    found = []
    for number in numbers:
        code, comment = split[number]
        text = normalize(code) or normalize(comment)
        if text:
            found.append(Needle(text, kind, f"{origin}:{number}"))
    return found


def solution_needles(root: Path = ROOT) -> list[Needle]:
    """Every line of every solution region of the reference, but its `# hint:` line (the stub
    prints the hint on purpose)."""
    found = []
    for path in sorted((root / "reference_solutions").glob("*.py")):
        source = path.read_text()
        for region in stubs.regions(source, path.name):
            numbers = [region.begin + 1 + i for i, line in enumerate(region.body) if not stubs.HINT.match(line)]
            found += _line_needles(source, numbers, "solution line", path.relative_to(root).as_posix())
    return found


def hidden_needles(root: Path = ROOT) -> list[Needle]:
    """Every hidden test's name, and every line of its body (docstring included)."""
    found = []
    for path in sorted((root / "graders" / "hidden").glob("test_*.py")):
        source, origin = path.read_text(), path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                found.append(Needle(node.name, "hidden test name", f"{origin}::{node.name}"))
                numbers = range(node.body[0].lineno, (node.end_lineno or node.lineno) + 1)
                found += _line_needles(source, numbers, "hidden test line", origin)
    return found


def _public_text(root: Path) -> tuple[str, str]:
    """Text published on purpose, normalized, one line per line: (the stubs, the stubs + every
    shipped grader module).

    A line found there identifies nothing. Solution lines are measured against the stubs alone
    (the reference outside its regions): a solution line pasted into the harness still counts.
    Hidden tests are built from the same helpers and idioms as the public suites
    (`t = case.tensors()`, `out, weights = student.call(...)`), so their lines are measured
    against the public suites and the harness too. Both are read from the repository, never
    from the tree being scanned, so nothing planted in a release can excuse itself.
    """
    stub_text = [stubs.make_stub(p.read_text(), p.name) for p in sorted((root / "reference_solutions").glob("*.py"))]
    hidden = root / "graders" / "hidden"
    harness = [p.read_text() for p in sorted((root / "graders").rglob("*.py")) if hidden not in p.parents]
    stubs_only = "\n".join(normalize(line) for text in stub_text for line in text.splitlines())
    everything = "\n".join(normalize(line) for text in stub_text + harness for line in text.splitlines())
    return stubs_only, everything


def needles(root: Path = ROOT) -> list[Needle]:
    """What the scan looks for, without the lines too generic to identify anything (see MIN_CHARS
    and `_public_text`). Test names are kept at any length: each one is a secret of its own."""
    stubs_only, everything = _public_text(root)
    kept = []
    for needle in solution_needles(root) + hidden_needles(root):
        public = stubs_only if needle.kind == "solution line" else everything
        too_short = needle.kind != "hidden test name" and len(needle.text) < MIN_CHARS
        if not too_short and needle.text not in public:
            kept.append(needle)
    return kept


def _text_lines(path: Path) -> list[str] | None:
    """A file's lines, or None for a binary file (PNGs, .npz snapshots, fonts: no source text
    can be read out of them)."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return None


def scan(dest: Path, found: list[Needle] | None = None, root: Path = ROOT) -> list[Leak]:
    """Every leak in the tree `dest`: forbidden paths, and needles (default: `needles(root)`)
    in any text file."""
    dest = Path(dest)
    found = needles(root) if found is None else found
    leaks = [Leak(entry, 0, "forbidden path", "never part of a release") for entry in FORBIDDEN
             if (dest / entry).exists()]
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        lines = _text_lines(path)
        if lines is None:
            continue
        normalized = [normalize(line) for line in lines]
        joined = "\n".join(normalized)  # one `in` per needle first; lines only for a hit
        for needle in found:
            if needle.text in joined:
                leaks += [Leak(path.relative_to(dest).as_posix(), number, needle.kind, needle.origin)
                          for number, line in enumerate(normalized, start=1) if needle.text in line]
    return leaks
