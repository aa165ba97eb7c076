"""A Gradescope autograder (`python -m graders gradescope`, `nox -s gradescope`): `autograder.zip`.

    setup.sh         Gradescope runs it once to build the image: a virtualenv with the grading
                     dependencies (torch's CPU build, the rest from pyproject.toml)
    run_autograder   Gradescope runs it per submission: `python -m graders grade` on
                     /autograder/submission, reports into /autograder/results, whose results.json
                     is already Gradescope's format (public tests `visible`, hidden `after_published`)
    source/          graders/ (hidden suites and snapshots included), reference_solutions/, pyproject.toml

The same grade command as `nox -s grade`, so the same submission gets the same points, and
the same guards: the student's upload is read only through `safe_files` (no link followed, no
special file opened, sizes bounded), and every message in results.json is cleaned of control
characters and capped (`student_text`).
`AUTOGRADER_ROOT` (default /autograder) and `AUTOGRADER_PYTHON` (default the setup's
virtualenv) let a test run `run_autograder` against a fake tree.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
import zipfile
from pathlib import Path

from graders import chapters

ROOT = chapters.ROOT
SOURCES = ("graders", "reference_solutions", "pyproject.toml")
JUNK = ("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
GRADING_PACKAGES = ("torch", "einops", "numpy", "pytest", "hypothesis")  # what a grade run imports

SETUP = """\
#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
apt-get update -q && apt-get install -y -q python3 python3-venv
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install -q "{torch}" --index-url https://download.pytorch.org/whl/cpu
/autograder/venv/bin/pip install -q {dependencies}
"""

RUN = """\
#!/usr/bin/env bash
# Gradescope runs this for each submission; the student's modules are in $AUTOGRADER/submission.
set -euo pipefail
AUTOGRADER="${{AUTOGRADER_ROOT:-/autograder}}"
PYTHON="${{AUTOGRADER_PYTHON:-$AUTOGRADER/venv/bin/python}}"
cd "$AUTOGRADER/source"
exec "$PYTHON" -m graders grade --impl "$AUTOGRADER/submission" --report "$AUTOGRADER/results" --no-progress{chapters}
"""


def dependencies() -> list[str]:
    """The grading packages' requirements as pyproject.toml states them (torch is pinned apart)."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = set(GRADING_PACKAGES) - {"torch"}
    return [req for req in listed if re.split(r"[<>=!~\[ ]", req, maxsplit=1)[0] in wanted]


def build(dest: Path, selected: list[chapters.Chapter] | None = None, *, torch: str = "torch==2.13.0") -> Path:
    """Write `dest/autograder.zip`; return its path."""
    if not chapters.REFERENCE.is_dir() or not (chapters.GRADERS / "hidden").is_dir():
        raise RuntimeError("reference_solutions/ or graders/hidden/ is missing: build from the instructor tree")
    flags = "".join(f" --chapter {c.id}" for c in selected or ())
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "autograder.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        _script(archive, "setup.sh", SETUP.format(torch=torch, dependencies=" ".join(f'"{d}"' for d in dependencies())))
        _script(archive, "run_autograder", RUN.format(chapters=flags))
        for entry in SOURCES:
            path = ROOT / entry
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            for file in files:
                relative = file.relative_to(ROOT)
                if not any(fnmatch.fnmatch(part, junk) for part in relative.parts for junk in JUNK):
                    archive.write(file, f"source/{relative.as_posix()}")
    return target


def _script(archive: zipfile.ZipFile, name: str, text: str) -> None:
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o755 << 16  # executable once unzipped
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, text)
