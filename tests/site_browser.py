"""The built reading site in a real browser: Debian's Chromium, driven by Playwright.

A plain module, not a test file: `tests/test_site.py` uses it on the site its fixture built.
`serve` serves a built site on 127.0.0.1 from a thread; `open_browser` starts headless
Chromium with the flags this machine needs (no sandbox as root, no GPU, no background
networking: the machine's closed network refuses Chromium's own connections); `visit` loads
one page at a desktop width and reports what a reader would see go wrong: math left as TeX,
images that did not load, console errors, links to pages that are not there, anything wider
than the content column, and how large each figure is shown.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# A desktop width: Material shows both sidebars (from 1220 px) and its content column at its
# widest, 688 px at this width.
DESKTOP = {"width": 1400, "height": 1600}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
# .ci/run sets it: there the browser must run. Elsewhere (a student's laptop without Debian's
# chromium) the browser tests skip and say what to install.
REQUIRED = "COURSE_BROWSER_REQUIRED"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the stdlib's name)
        pass


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 at a free port; yields the base URL ("http://127.0.0.1:PORT/")."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def chromium_path() -> str:
    """Debian's chromium, or skip (fail where REQUIRED is set) with what to install."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "no chromium on PATH: install Debian's package (apt-get install chromium) to run the browser tests"
        if os.environ.get(REQUIRED):
            pytest.fail(message)
        pytest.skip(message)
    return path


@contextmanager
def open_browser() -> Iterator[object]:
    """A headless Chromium browser (Playwright's sync API)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = "playwright is not installed: pip install playwright (nox -s tests installs it, pyproject's dev extra)"
        if os.environ.get(REQUIRED):
            pytest.fail(message)
        pytest.skip(message)
    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Figure:
    """One image of a page, as the reader sees it."""

    src: str  # its URL
    shown: float  # its width on the page, CSS px
    natural: int  # its width in the file, px
    zoom: str | None  # the URL that clicking it opens in the lightbox (GLightbox's link), if any


@dataclass
class PageReport:
    """What one page showed in the browser."""

    url: str
    math: int = 0  # arithmatex elements on the page
    rendered: int = 0  # of those, the ones KaTeX rendered
    katex_errors: int = 0  # KaTeX's own error spans (bad TeX)
    raw_tex: list[str] = field(default_factory=list)  # math text still showing its delimiters
    images: int = 0
    broken_images: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    links: set[str] = field(default_factory=set)  # same-site links, without their fragment
    column_width: float = 0.0  # of the content column (.md-content__inner), CSS px
    overflows: list[str] = field(default_factory=list)  # what reaches past the column (see _INSPECT)
    figures: list[Figure] = field(default_factory=list)  # every image in the column
    zoomed: str | None = None  # the image the lightbox showed after a click on the first figure (visit(zoom=True))

    def problems(self) -> list[str]:
        found = []
        if self.rendered != self.math:
            found.append(f"{self.math - self.rendered} of {self.math} math elements not rendered by KaTeX")
        if self.katex_errors:
            found.append(f"{self.katex_errors} KaTeX errors")
        if self.raw_tex:
            found.append(f"raw TeX left on the page: {self.raw_tex[:3]}")
        if self.broken_images:
            found.append(f"images that did not load: {self.broken_images}")
        if self.console_errors:
            found.append(f"console errors: {self.console_errors[:3]}")
        return found


# Runs in the page after load: counts math and images, collects same-site links, and checks
# the content column. The column is `.md-content__inner`, Material's box between the two
# sidebars. An element overflows it when one of its boxes (one per line for inline text)
# reaches more than 1 px past the column's left or right edge, with these exceptions:
# - a box that scrolls sideways (overflow-x auto or scroll: Material's code blocks and tables,
#   display math) is checked itself, and what it holds is not: that content scrolls inside it;
# - KaTeX's MathML copy of each formula (.katex-mathml) is for screen readers, clipped to a
#   pixel by KaTeX's stylesheet: the visible rendering beside it is checked;
# - what is drawn inside an <svg> is clipped by it: the <svg> itself is checked.
# Elements that are not displayed (a closed <details>, a hidden tab) have no boxes.
_INSPECT = """() => {
  const column = document.querySelector('.md-content__inner');
  const edge = column.getBoundingClientRect();
  const overflows = [];
  const describe = e => {
    const name = e.tagName.toLowerCase() + (typeof e.className === 'string' && e.className.trim()
        ? '.' + e.className.trim().split(/\\s+/).join('.') : '');
    return `${name} "${(e.textContent || '').trim().replace(/\\s+/g, ' ').slice(0, 50)}"`;
  };
  const check = e => {
    for (const box of e.getClientRects()) {
      const past = Math.max(box.right - edge.right, edge.left - box.left);
      if (box.width > 0 && past > 1) {
        overflows.push(`${describe(e)}: ${Math.round(past)} px past the column`);
        break;
      }
    }
    const scrolls = ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
    if (scrolls || e.tagName.toLowerCase() === 'svg') return;
    for (const child of e.children) {
      if (!child.classList.contains('katex-mathml')) check(child);
    }
  };
  for (const child of column.children) check(child);
  const page = document.documentElement;
  if (page.scrollWidth > page.clientWidth) {
    overflows.push(`the page scrolls sideways by ${page.scrollWidth - page.clientWidth} px`);
  }
  const math = [...document.querySelectorAll('.arithmatex')];
  const raw = math.filter(e => !e.querySelector('.katex'))
                  .map(e => e.textContent.trim().slice(0, 60));
  const images = [...document.images];
  const links = [...document.querySelectorAll('a[href]')]
      .map(a => a.href).filter(h => h.startsWith(location.origin));
  return {
    column_width: edge.width,
    overflows: overflows,
    figures: [...column.querySelectorAll('img')].map(i => ({
      src: i.currentSrc || i.src, shown: i.getBoundingClientRect().width, natural: i.naturalWidth,
      zoom: i.closest('a.glightbox') ? i.closest('a.glightbox').href : null})),
    math: math.length,
    rendered: math.filter(e => e.querySelector('.katex')).length,
    katex_errors: document.querySelectorAll('.katex-error').length,
    raw_tex: raw,
    images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
    links: links,
  };
}"""


# Material renders the page's math when its document$ observable emits, which can come after
# the network has gone idle on a loaded machine (CI's 2 cores run two test workers, their
# grading subprocesses and Chromium).
SETTLE_MS = 20_000
_MATH_DONE = "() => [...document.querySelectorAll('.arithmatex')].every(e => e.querySelector('.katex'))"


def settle(page) -> None:
    """Wait, up to SETTLE_MS, until every math element holds KaTeX's output. A page that never
    gets there is not an error here: the inspection that follows reports what is left as TeX."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(_MATH_DONE, timeout=SETTLE_MS)
    except PlaywrightTimeout:
        pass


def visit(browser, url: str, screenshot: Path | None = None, *, at: str | None = None,
          zoom: bool = False) -> PageReport:
    """Load `url` in a fresh page at the DESKTOP size, wait until the network is idle, inspect
    it, and save a screenshot of the viewport to `screenshot`: the top of the page, or centred
    on the first element matching the CSS selector `at`. With `zoom`, then click the page's
    first figure and report which image the lightbox opened (None if none did)."""
    page = browser.new_page(viewport=DESKTOP)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    zoomed = None
    try:
        page.goto(url, wait_until="networkidle")
        settle(page)
        found = page.evaluate(_INSPECT)
        if screenshot is not None:
            if at is not None:
                page.evaluate("(selector) => document.querySelector(selector)"
                              ".scrollIntoView({block: 'center'})", at)
                page.wait_for_timeout(500)  # Material swaps the header's title as the page scrolls
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))
        if zoom:
            zoomed = _zoom(page)
    finally:
        page.close()
    return PageReport(url=url, math=found["math"], rendered=found["rendered"], katex_errors=found["katex_errors"],
                      raw_tex=found["raw_tex"], images=found["images"], broken_images=found["broken"],
                      console_errors=errors, links={link.split("#", 1)[0] for link in found["links"]},
                      column_width=found["column_width"], overflows=found["overflows"],
                      figures=[Figure(**figure) for figure in found["figures"]], zoomed=zoomed)


def _zoom(page) -> str | None:
    """Click the first figure of the column; the URL of the image GLightbox then shows, if it
    shows one within a few seconds."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.click(".md-content__inner img")
    shown = page.locator(".glightbox-container .gslide-image img").first
    try:
        shown.wait_for(state="visible", timeout=5_000)
    except PlaywrightTimeout:
        return None
    return shown.evaluate("(image) => image.complete && image.naturalWidth > 0 ? image.currentSrc : null")


def status(url: str) -> int:
    """The HTTP status of a GET of `url` (the server is local)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def page_urls(site: Path, base: str) -> list[str]:
    """The URL of every page of a built site (each index.html, the 404 page left out)."""
    pages = sorted(p.relative_to(site) for p in site.rglob("index.html"))
    return [base + ("" if p.parent == Path(".") else f"{p.parent.as_posix()}/") for p in pages]
