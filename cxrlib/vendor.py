"""The JavaScript the built book loads, vendored from npm so the HTML works with no network.

Sphinx and myst-nb point at CDNs by default (MathJax, require.js, the ipywidgets HTML manager).
The book instead serves pinned copies from ``_vendor/``, which ``_config.yml`` lists in
``html_static_path`` (so they land in ``_build/html/_static/``). Not ``_static/``: jupyter-book
injects every ``.js`` under the static paths into every page once a ``_static/`` folder
exists, which would load all of MathJax's components on each page; :func:`check_no_static_dir`
guards that.

``package.json`` pins the versions and ``package-lock.json`` the whole tree; ``npm ci`` installs
them into ``node_modules/`` (about 150 MB, kept between builds), and only the files the pages
load are copied into ``_vendor/`` (about 12 MB). Neither folder is committed.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from . import paths

#: What each page loads, per npm package: (path inside the package, path inside ``_vendor/``).
#: Folders are copied whole (MathJax loads its fonts and extensions from beside its script).
VENDORED_FILES: dict[str, tuple[tuple[str, str], ...]] = {
    "mathjax": (
        ("es5/tex-mml-chtml.js", "mathjax/tex-mml-chtml.js"),
        ("es5/core.js", "mathjax/core.js"),
        ("es5/loader.js", "mathjax/loader.js"),
        ("es5/startup.js", "mathjax/startup.js"),
        ("es5/input", "mathjax/input"),
        ("es5/output/chtml.js", "mathjax/output/chtml.js"),
        ("es5/output/chtml", "mathjax/output/chtml"),
        ("es5/adaptors", "mathjax/adaptors"),
        ("es5/ui", "mathjax/ui"),
        ("es5/a11y", "mathjax/a11y"),
        ("es5/sre", "mathjax/sre"),
    ),
    "requirejs": (
        ("require.js", "requirejs/require.js"),
    ),
    "@jupyter-widgets/html-manager": (
        ("dist/embed-amd.js", "html-manager/embed-amd.js"),
        # Font Awesome files the widget styles reference by content hash.
        ("dist/*.woff2", "html-manager/"),
        ("dist/*.woff", "html-manager/"),
        ("dist/*.ttf", "html-manager/"),
        ("dist/*.eot", "html-manager/"),
        ("dist/*.svg", "html-manager/"),
    ),
}

#: Where the pages find each entry point, relative to ``_static/`` (``_config.yml`` uses these).
MATHJAX_PATH = "mathjax/tex-mml-chtml.js"
REQUIREJS_PATH = "requirejs/require.js"
WIDGETS_EMBED_PATH = "html-manager/embed-amd.js"

VERSIONS_FILE = "versions.json"


def project_root() -> Path:
    return paths.root()


def vendor_dir(root: Path | None = None) -> Path:
    return (root or project_root()) / "_vendor"


def pinned_versions(root: Path | None = None) -> dict[str, str]:
    """The versions ``package.json`` pins (exact versions only: a range would not be a pin)."""
    package_json = (root or project_root()) / "package.json"
    deps = json.loads(package_json.read_text())["dependencies"]
    loose = {k: v for k, v in deps.items() if not v[:1].isdigit()}
    if loose:
        raise ValueError(f"{package_json}: pin exact versions, not ranges: {loose}")
    missing = sorted(set(VENDORED_FILES) - set(deps))
    if missing:
        raise ValueError(f"{package_json}: add the vendored package(s) {missing}")
    return dict(sorted(deps.items()))


def _lock_digest(root: Path) -> str:
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        path = root / name
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def installed_version(root: Path, package: str) -> str | None:
    manifest = root / "node_modules" / package / "package.json"
    return json.loads(manifest.read_text())["version"] if manifest.is_file() else None


def npm_install(root: Path | None = None, log=print) -> None:
    """``npm ci`` (or ``npm install`` without a lock file) unless node_modules already matches."""
    root = root or project_root()
    stamp = root / "node_modules" / ".cxrlib-lock-digest"
    pins = pinned_versions(root)
    up_to_date = (stamp.is_file() and stamp.read_text() == _lock_digest(root)
                  and all(installed_version(root, p) == v for p, v in pins.items()))
    if up_to_date:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm was not found: the book vendors MathJax, require.js and the ipywidgets manager "
            "from the npm registry so that it works offline. Install Node.js and npm (e.g. "
            "`apt-get install -y nodejs npm`) and rerun.")
    verb = "ci" if (root / "package-lock.json").is_file() else "install"
    log(f"[vendor] npm {verb} ({', '.join(f'{p}@{v}' for p, v in pins.items())})")
    cmd = [npm, verb, "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed in {root}:\n{done.stdout}{done.stderr}")
    for package, version in pins.items():
        if installed_version(root, package) != version:
            raise RuntimeError(f"npm installed {package} {installed_version(root, package)}, "
                               f"package.json pins {version}: delete node_modules and rerun")
    stamp.write_text(_lock_digest(root))


def _copy(package_dir: Path, pattern: str, staging: Path, dest: str) -> int:
    """Copy one entry of :data:`VENDORED_FILES`; ``dest`` ending in "/" means "into that folder".

    Returns the number of files copied.
    """
    sources = sorted(package_dir.glob(pattern)) if "*" in pattern else [package_dir / pattern]
    if not sources or not all(s.exists() for s in sources):
        raise FileNotFoundError(f"{package_dir / pattern} is missing from the npm package: was "
                                f"its version in package.json changed? Update VENDORED_FILES.")
    count = 0
    for source in sources:
        target = staging / dest / source.name if dest.endswith("/") else staging / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.map", "*.d.ts"))
            count += sum(1 for p in target.rglob("*") if p.is_file())
        else:
            shutil.copy2(source, target)
            count += 1
    return count


def vendor(root: Path | None = None, log=print) -> dict[str, str]:
    """Install the pinned packages and copy what the pages load into ``_vendor/``.

    Returns the vendored versions (also written to ``_vendor/versions.json``). Fast when
    ``_vendor/`` already holds these versions: nothing is installed or copied.
    """
    root = root or project_root()
    check_no_static_dir(root)
    pins = pinned_versions(root)
    out = vendor_dir(root)
    record = out / VERSIONS_FILE
    if record.is_file() and json.loads(record.read_text()).get("packages") == pins \
            and all((out / p).is_file() for p in (MATHJAX_PATH, REQUIREJS_PATH,
                                                   WIDGETS_EMBED_PATH)):
        return pins
    npm_install(root, log=log)
    staging = root / "_vendor.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    count = 0
    for package, entries in VENDORED_FILES.items():
        for pattern, dest in entries:
            count += _copy(root / "node_modules" / package, pattern, staging, dest)
    (staging / VERSIONS_FILE).write_text(json.dumps({"packages": pins}, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log(f"[vendor] {count} files, {size / 1e6:.1f} MB in {out}")
    return pins


def check_no_static_dir(root: Path) -> None:
    static = root / "_static"
    if static.exists():
        raise RuntimeError(
            f"{static} exists: jupyter-book would then add every .js file of every static path "
            f"(including all of vendored MathJax in _vendor/) to every page. Put custom CSS/JS "
            f"in _vendor/ via cxrlib/vendor.py, or under another static folder listed in "
            f"_config.yml, and remove {static}.")


def versions(root: Path | None = None) -> dict[str, str]:
    """The vendored package versions, as recorded when they were copied (for the appendix)."""
    record = vendor_dir(root) / VERSIONS_FILE
    return json.loads(record.read_text())["packages"] if record.is_file() else {}
