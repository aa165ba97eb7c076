"""The reading site builds with `mkdocs build --strict`, serves nothing from a CDN, and links
every anchor the graders' feedback points at."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from graders import chapters
from tests.conftest import ROOT

# Its module fixture runs once: under xdist (--dist loadgroup) the whole file shares one worker.
pytestmark = pytest.mark.xdist_group("site")

CDN_HOSTS = ("cdn.", "jsdelivr", "unpkg", "googleapis", "cdnjs", "gstatic")


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "site/scripts/figures.py"], cwd=ROOT, check=True, capture_output=True)
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
