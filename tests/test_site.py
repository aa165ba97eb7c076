"""The reading site builds with `mkdocs build --strict`, serves nothing from a CDN, links every
anchor the graders' feedback points at, carries an API page per chapter generated from the
stubs, and reads well in a real browser: every page served on 127.0.0.1 and opened in headless
Chromium at a desktop width, with its math rendered, its images loaded, no console errors and
no dead links; on the home page and the chapter pages nothing is wider than the content column,
every figure opens full size on a click, and its text is shown at a readable size; screenshots
of the home page and a chapter page, and the figures' text sizes, land in reports/site/."""

from __future__ import annotations

import ast
import html
import json
import re
import subprocess
import sys

import pytest

from graders import chapters
from tests import site_browser
from tests.conftest import ROOT

# Its module fixture runs once: under xdist (--dist loadgroup) the whole file shares one worker.
pytestmark = pytest.mark.xdist_group("site")

CDN_HOSTS = ("cdn.", "jsdelivr", "unpkg", "googleapis", "cdnjs", "gstatic")


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "site/scripts/figures.py"], cwd=ROOT, check=True, capture_output=True)
    subprocess.run([sys.executable, "site/scripts/api_pages.py"], cwd=ROOT, check=True, capture_output=True)
    subprocess.run([sys.executable, "site/scripts/fetch_katex.py", "--optional"], cwd=ROOT, check=True,
                   capture_output=True)
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "site/mkdocs.yml", "-d", str(out)],
                           cwd=ROOT, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return out


def test_no_cdn_in_built_html(built_site):
    for page in built_site.rglob("*.html"):
        text = page.read_text()
        assert not [host for host in CDN_HOSTS if host in text], page


def _sections(suite) -> dict[str, str]:
    """A suite's SECTIONS table (task -> anchor), read without importing the suite."""
    tree = ast.parse(suite.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "SECTIONS")
    return ast.literal_eval(node.value)


def test_feedback_anchors_exist(built_site):
    for chapter in chapters.graded():
        page = (built_site / chapter.page.removesuffix(".md") / "index.html").read_text()
        for visibility in ("public", "hidden"):
            for anchor in _sections(chapter.suite(visibility)).values():
                assert f'id="{anchor}"' in page, (chapter.id, anchor)


def test_figures_are_reproducible(tmp_path):
    figures = ROOT / "site" / "docs" / "figures"
    subprocess.run([sys.executable, "site/scripts/figures.py"], cwd=ROOT, check=True, capture_output=True)
    first = {p.name: p.read_bytes() for p in figures.glob("*.png")}
    subprocess.run([sys.executable, "site/scripts/figures.py"], cwd=ROOT, check=True, capture_output=True)
    second = {p.name: p.read_bytes() for p in figures.glob("*.png")}
    assert first and first == second


# --- the reading list, and the further reading that ends every chapter page -------------------

DOCS = ROOT / "site" / "docs"
READING_LIST = DOCS / "reading_list.md"
REQUIRED_PAPERS = {  # arXiv identifier -> title, the course's four required papers
    "1706.03762": "Attention Is All You Need",
    "1607.06450": "Layer Normalization",
    "2104.09864": "RoFormer: Enhanced Transformer with Rotary Position Embedding",
    "2108.12409": "Train Short, Test Long: Attention with Linear Biases Enables Input Length Extrapolation",
}
ARXIV_ABS = re.compile(r"https://arxiv\.org/abs/\d{4}\.\d{4,5}")  # YYMM.NNNNN (4 digits after the dot before 2015)


def _h2_sections(markdown: str) -> list[tuple[str, str]]:
    """(heading line, body) for every `## ` section of a page, code fences skipped (a `# comment`
    in a code block is not a heading)."""
    sections, fenced = [], False
    for line in markdown.splitlines():
        if re.match(r"\s*(```|~~~)", line):
            fenced = not fenced
        elif not fenced and line.startswith("## "):
            sections.append((line.strip(), ""))
            continue
        if sections:
            sections[-1] = (sections[-1][0], sections[-1][1] + line + "\n")
    return sections


def test_chapter_pages_end_with_further_reading_linking_the_reading_list():
    for chapter in chapters.CHAPTERS:
        sections = _h2_sections((DOCS / chapter.page).read_text())
        heading, body = sections[-1]
        assert heading == "## Further reading {#further-reading}", \
            f"{chapter.page} ends with {heading!r}, not with a '## Further reading {{#further-reading}}' section"
        assert "](reading_list.md" in body, f"{chapter.page}: its further reading has no link to reading_list.md"


def test_reading_list_names_the_required_papers_with_their_arxiv_links():
    required = dict(_h2_sections(READING_LIST.read_text())).get("## Required papers {#required}", "")
    missing = [f"{title} (https://arxiv.org/abs/{arxiv})" for arxiv, title in REQUIRED_PAPERS.items()
               if title not in " ".join(required.split()) or f"(https://arxiv.org/abs/{arxiv})" not in required]
    assert not missing, f"the reading list's 'Required papers' section lacks: {missing}"


def test_reading_list_arxiv_links_are_abstract_pages(built_site):
    page = (built_site / "reading_list" / "index.html").read_text()
    links = re.findall(r'href="([^"]*arxiv\.org[^"]*)"', page)
    malformed = [link for link in links if not ARXIV_ABS.fullmatch(link)]
    assert links and not malformed, f"arXiv links not of the form https://arxiv.org/abs/NNNN.NNNNN: {malformed}"


def test_reading_list_anchors_linked_from_the_pages_exist(built_site):
    page = (built_site / "reading_list" / "index.html").read_text()
    linked = {(md.relative_to(DOCS).as_posix(), anchor) for md in DOCS.rglob("*.md")
              for anchor in re.findall(r"reading_list\.md#([\w-]+)", md.read_text())}
    missing = sorted((source, anchor) for source, anchor in linked if f'id="{anchor}"' not in page)
    assert linked and not missing, f"links to reading_list.md#ANCHOR with no such anchor on the list: {missing}"


# --- the API pages, generated from the stubs by site/scripts/api_pages.py ------------------


def _api_chapters() -> list[chapters.Chapter]:
    """Graded chapters whose stubs exist (the script skips a chapter whose stubs are not written yet)."""
    return [c for c in chapters.graded() if all((chapters.ASSIGNMENTS / f"{m}.py").exists() for m in c.modules)]


def _stub_objects(module: str):
    """(name, node, source) for every public function and class of a stub, and every public method
    (and `__init__`) of its classes, as `Class.method`."""
    source = (chapters.ASSIGNMENTS / f"{module}.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            yield node.name, node, source
            methods = [m for m in node.body if isinstance(m, ast.FunctionDef)] if isinstance(node, ast.ClassDef) else []
            for method in methods:
                if not method.name.startswith("_") or method.name == "__init__":
                    yield f"{node.name}.{method.name}", method, source


def _api_html(built_site, chapter: chapters.Chapter) -> str:
    return (built_site / "api" / chapter.slug / "index.html").read_text()


def _visible(page: str) -> str:
    """A built page's text: no tags, entities decoded, no whitespace (layout is not content)."""
    return re.sub(r"\s+", "", html.unescape(re.sub(r"<[^>]+>", "", page)))


def _markup_free(text: str) -> str:
    """Text without the markup the two syntaxes spell differently: code-span backticks, emphasis
    stars, the `::` that opens an RST literal block (`:` on the page)."""
    return text.replace("`", "").replace("*", "").replace("::", ":")


def test_api_pages_have_a_heading_for_every_public_name(built_site):
    for chapter in _api_chapters():
        page = _api_html(built_site, chapter)
        for module in chapter.modules:
            anchors = {name: re.sub(r"\b__(\w+?)__\b", r"\1", name) for name, _, _ in _stub_objects(module)}
            missing = [name for name, anchor in anchors.items()  # `KVCache.__init__` is `#KVCache.init`
                       if f'id="{anchor}"' not in page and f'id="{module}.{anchor}"' not in page]
            assert missing == [], (chapter.slug, missing)


def test_api_pages_show_every_docstring_whole(built_site):
    # Every word of every docstring, in order: the page may change the markup (list markers,
    # code spans, line breaks), never the text.
    for chapter in _api_chapters():
        page = _markup_free(_visible(_api_html(built_site, chapter)))
        for module in chapter.modules:
            source = (chapters.ASSIGNMENTS / f"{module}.py").read_text()
            nodes = [(module, ast.parse(source))] + [(name, node) for name, node, _ in _stub_objects(module)]
            for name, node in nodes:
                docstring = ast.get_docstring(node)
                if docstring:
                    text = re.sub(r"^\s*([*+-]|\d+\.)\s+", "", docstring, flags=re.MULTILINE)  # list markers
                    shown = re.sub(r"\s+", "", _markup_free(text)) in page
                    assert shown, f"{chapter.slug}: the docstring of {name} is not on its API page as written"


def test_api_pages_show_each_signature_as_the_stub_writes_it(built_site):
    for chapter in _api_chapters():
        page = _visible(_api_html(built_site, chapter))
        for module in chapter.modules:
            for name, node, source in _stub_objects(module):
                if isinstance(node, ast.FunctionDef):
                    header = "\n".join(source.splitlines()[node.lineno - 1:node.body[0].lineno - 1])
                    header = re.sub(r"#[^\n]*", "", header)  # comments inside a long parameter list
                    header = re.sub(r"\s+", "", header).removesuffix(":").replace(",)", ")")
                    shown = header in page
                    assert shown, f"{chapter.slug}: {name}'s signature differs from the stub's: {header}"


def test_api_pages_are_reproducible():
    api = ROOT / "site" / "docs" / "api"
    subprocess.run([sys.executable, "site/scripts/api_pages.py"], cwd=ROOT, check=True, capture_output=True)
    first = {p.name: p.read_bytes() for p in api.glob("*.md")}
    subprocess.run([sys.executable, "site/scripts/api_pages.py"], cwd=ROOT, check=True, capture_output=True)
    second = {p.name: p.read_bytes() for p in api.glob("*.md")}
    assert first and first == second


# --- in a real browser ---------------------------------------------------------------------------
# Debian's Chromium, headless, driven by Playwright (tests/site_browser.py); .ci/run installs it.

SCREENSHOTS = ROOT / "reports" / "site"  # the test's artifacts: the home page and a chapter page
CHAPTER_SHOT = "03_positional_encodings/"  # a page with display math beside its first figure
# Written by site/scripts/figures.py: the floor (CSS px) and each PNG's smallest text, in its own pixels.
TEXT_SIZES = DOCS / "figures" / "text_sizes.json"


@pytest.fixture(scope="module")
def site_in_browser(built_site):
    """(every page's PageReport by URL, the HTTP status of every same-site link they hold),
    from one visit of each page of the built site served on 127.0.0.1."""
    with site_browser.serve(built_site) as base, site_browser.open_browser() as browser:
        reports = {}
        for url in site_browser.page_urls(built_site, base):
            if url == base:
                reports[url] = site_browser.visit(browser, url, SCREENSHOTS / "home.png")
            elif url == base + CHAPTER_SHOT:
                reports[url] = site_browser.visit(browser, url, SCREENSHOTS / "chapter.png", at="img", zoom=True)
            else:
                reports[url] = site_browser.visit(browser, url)
        links = {link for report in reports.values() for link in report.links}
        statuses = {link: site_browser.status(link) for link in sorted(links)}
    return reports, statuses


def test_every_page_renders_cleanly_in_chromium(site_in_browser):
    """Math rendered by KaTeX (no TeX left showing), every image loaded, no console errors."""
    reports, _ = site_in_browser
    problems = {report.url: report.problems() for report in reports.values() if report.problems()}
    assert not problems, problems


def test_chapter_pages_show_math_and_figures(site_in_browser):
    reports, _ = site_in_browser
    for chapter in chapters.graded():
        report = next(r for url, r in reports.items() if url.endswith(chapter.page.removesuffix(".md") + "/"))
        assert report.math > 0 and report.rendered == report.math, report.url
        assert report.images > 0 and not report.broken_images, report.url


def test_internal_links_resolve(site_in_browser):
    _, statuses = site_in_browser
    assert statuses and all(code == 200 for code in statuses.values()), {u: c for u, c in statuses.items() if c != 200}


def test_screenshots_saved(site_in_browser):
    for name in ("home.png", "chapter.png"):
        assert (SCREENSHOTS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def _reading_pages(reports: dict) -> list[site_browser.PageReport]:
    """The reports of the home page and the chapter pages."""
    slugs = [""] + [chapter.page.removesuffix(".md") + "/" for chapter in chapters.CHAPTERS]
    base = min(reports, key=len)  # the home page's URL is the shortest
    return [reports[base + slug] for slug in slugs]


def test_pages_fit_the_content_column(site_in_browser):
    """At a desktop width nothing on the home page or a chapter page reaches past the content
    column, except inside a box that scrolls sideways and itself fits (site_browser._INSPECT
    says exactly what is checked)."""
    reports, _ = site_in_browser
    pages = _reading_pages(reports)
    assert all(report.column_width > 0 for report in pages)
    wide = {report.url: report.overflows for report in pages if report.overflows}
    assert not wide, wide


def test_figures_open_full_size_on_click(site_in_browser):
    """Every figure of the home page and the chapter pages is a GLightbox link to its own file,
    and clicking one opens it in the lightbox."""
    reports, _ = site_in_browser
    figures = [figure for report in _reading_pages(reports) for figure in report.figures]
    unlinked = [figure.src for figure in figures if figure.zoom != figure.src]
    assert figures and not unlinked, f"figures without a zoom link to themselves: {unlinked}"
    chapter = next(report for url, report in reports.items() if url.endswith(CHAPTER_SHOT))
    assert chapter.zoomed == chapter.figures[0].src, "clicking the first figure did not show it in the lightbox"


def test_figure_text_is_readable_at_its_displayed_size(site_in_browser):
    """The smallest text of each figure, scaled by how wide the page shows the image against its
    width in the file, is at least the floor figures.py draws for (READABLE_PT at 72 px per inch
    of the column). The sizes shown are saved to reports/site/figure_text.json."""
    reports, _ = site_in_browser
    sizes = json.loads(TEXT_SIZES.read_text())
    floor, smallest = sizes["floor_px"], sizes["smallest_text_px"]
    shown: dict[str, float] = {}
    for report in _reading_pages(reports):
        for figure in report.figures:
            name = figure.src.rsplit("/", 1)[-1]
            assert name in smallest, f"{report.url}: {name} is not a figure of site/scripts/figures.py"
            size = smallest[name] * figure.shown / figure.natural
            shown[name] = round(min(size, shown.get(name, size)), 1)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / "figure_text.json").write_text(json.dumps({"floor_px": floor, "smallest_text_px_shown":
                                                              dict(sorted(shown.items()))}, indent=1) + "\n")
    small = {name: size for name, size in shown.items() if size < floor}
    assert shown and not small, f"figures with text under {floor} px as shown: {small}"
