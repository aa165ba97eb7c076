"""Put KaTeX's assets into ``site/docs/javascripts/katex/`` so the site renders math offline.

Run from the repository root, before ``mkdocs build``::

    python site/scripts/fetch_katex.py            # fails if KaTeX cannot be had
    python site/scripts/fetch_katex.py --optional # warns instead (math then shows as TeX)

The site loads no CDN: ``mkdocs.yml`` names ``javascripts/katex/katex.min.js``,
``contrib/auto-render.min.js`` and ``katex.min.css`` as local files, and
``javascripts/katex-init.js`` (committed) renders every ``.arithmatex`` element. This script
supplies the KaTeX files, which are not committed:

1. ``npm pack katex@VERSION`` downloads the package tarball from the npm registry into the
   cache folder ``site/.cache/`` (skipped when the tarball is already there, so later builds
   run offline);
2. the tarball's SHA-512 is checked against the pinned ``INTEGRITY`` (the registry's
   ``dist.integrity``), so a build uses exactly the bytes reviewed here;
3. ``katex.min.js``, ``katex.min.css``, ``contrib/auto-render.min.js``, ``fonts/`` and the
   MIT ``LICENSE`` are copied into ``site/docs/javascripts/katex/`` (replacing what was there).

Without these files ``mkdocs build --strict`` still succeeds (MkDocs does not check
``extra_javascript`` targets); the browser then shows the TeX source.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "0.16.47"
# `npm view katex@0.16.47 dist.integrity`
INTEGRITY = "sha512-Eeo8Ys1doU1z+x8AZsPpQu+p/QcZBI5PeOo7QGQdy2x2m0MU/hYagBbGOmXwr5KVbEfVuWv9LpnQWeehogurjg=="

ROOT = Path(__file__).resolve().parents[2]  # the repository root
CACHE = ROOT / "site" / ".cache"
DEST = ROOT / "site" / "docs" / "javascripts" / "katex"
# Paths inside the tarball's `package/` folder -> paths under DEST.
FILES = {
    "dist/katex.min.js": "katex.min.js",
    "dist/katex.min.css": "katex.min.css",
    "dist/contrib/auto-render.min.js": "contrib/auto-render.min.js",
    "LICENSE": "LICENSE",
}
FONTS = "dist/fonts/"  # every file under it goes to DEST/fonts/ (katex.min.css points there)


def _integrity(path: Path) -> str:
    """The npm-style Subresource Integrity string of a file."""
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def download(cache: Path = CACHE) -> Path:
    """Return the verified tarball, fetching it with ``npm pack`` unless it is cached."""
    tarball = cache / f"katex-{VERSION}.tgz"
    if not tarball.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not on PATH; install Node.js or copy the tarball into " + str(cache))
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            subprocess.run(
                [npm, "pack", f"katex@{VERSION}", "--pack-destination", tmp, "--silent"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            (Path(tmp) / tarball.name).replace(tarball)
    found = _integrity(tarball)
    if found != INTEGRITY:
        tarball.unlink()
        raise RuntimeError(f"{tarball.name}: integrity {found} does not match the pinned {INTEGRITY}; removed it")
    return tarball


def install(tarball: Path, dest: Path = DEST) -> list[Path]:
    """Copy the assets the site needs out of ``tarball`` into ``dest``; return them."""
    if dest.exists():
        shutil.rmtree(dest)
    written = []
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("package/")
            if name in FILES:
                target = dest / FILES[name]
            elif name.startswith(FONTS) and member.isfile():
                target = dest / "fonts" / Path(name).name  # flat folder: no path from the archive is trusted
            else:
                continue
            source = tar.extractfile(member)
            if source is None:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())
            written.append(target)
    missing = [FILES[name] for name in FILES if not (dest / FILES[name]).exists()]
    if missing:
        raise RuntimeError(f"{tarball.name} lacks {missing}")
    return written


def main(argv: list[str] | None = None) -> int:
    """Fetch and install KaTeX; with ``--optional`` a failure is only a warning."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optional", action="store_true", help="warn and exit 0 if KaTeX cannot be fetched")
    args = parser.parse_args(argv)
    try:
        written = install(download())
    except (RuntimeError, OSError, subprocess.CalledProcessError, tarfile.TarError) as err:
        print(f"fetch_katex: {err}", file=sys.stderr)
        if args.optional:
            print("fetch_katex: continuing without KaTeX; math shows as TeX source", file=sys.stderr)
            return 0
        return 1
    print(f"KaTeX {VERSION}: {len(written)} files in {DEST.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
