"""The book command's last step: build the book from the stored results.

It vendors the JavaScript the pages load (:mod:`cxrlib.report.vendor`), keeps the chapters' execution
cache only while what they read is unchanged, and runs ``jupyter-book build`` with warnings as
errors. The chapters are executed through jupyter-cache, which keys on cell code only; so this
module fingerprints what the chapters read (the results store, the curated summaries of its
runs, the library code and the settings they take from the environment) and clears the cache
when that changed since the last build. The run the chapters show is
:func:`cxrlib.experiment.runs.book_run`'s choice, passed to their kernels in ``$CXRLIB_BOOK_RUN``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cxrlib.core import paths
from cxrlib.core.fingerprint import hash_files, library_fingerprint, visible_files
from cxrlib.experiment import results, runs
from cxrlib.report.vendor import vendor

#: The fingerprint of the chapters' inputs at the last successful build, in ``_build/``.
FINGERPRINT_FILE = "cxrlib-book-inputs.json"


def book_inputs_fingerprint(book_run: str, results_root: Path | None = None) -> str:
    """A digest of everything the chapters read, so the command can tell when outputs are stale.

    Covers the run shown, every stored run (chapters may compare with the demonstration run),
    the curated summaries of those runs, the library code, and the settings the chapters read
    from the environment.
    """
    results_root = Path(results_root) if results_root else paths.results_dir()
    h = hashlib.sha256()
    h.update(f"book_run={book_run}\0".encode())
    for name in ("CXRLIB_SHOW_REAL_IMAGES", "CXRLIB_DATA", "KERAS_BACKEND"):
        h.update(f"{name}={os.environ.get(name, '')}\0".encode())
    hash_files(h, visible_files(results_root), results_root)
    for run in results.list_runs(results_root):
        try:
            curated = runs.curated_dir(results_root / run)
        except ValueError:  # an unreadable profile.json: the results above already count it
            continue
        if curated is not None:
            summaries = [curated / n for n in ("curation.json", "manifest.csv")
                         if (curated / n).is_file()]
            h.update(f"curated:{run}\0".encode())
            hash_files(h, summaries, curated)
    h.update(library_fingerprint().encode())
    return h.hexdigest()


def stored_fingerprint(build_dir: Path) -> str | None:
    path = build_dir / FINGERPRINT_FILE
    try:
        return json.loads(path.read_text())["fingerprint"]
    except (OSError, json.JSONDecodeError, KeyError):
        return None


def prepare_execution_cache(build_dir: Path, fingerprint: str, log=print) -> bool:
    """Clear the executed chapter outputs (jupyter-cache) and Sphinx's parsed pages when the
    chapters' inputs changed since the last successful build; returns whether it cleared."""
    if stored_fingerprint(build_dir) == fingerprint:
        return False
    for name in (".jupyter_cache", ".doctrees"):
        if (build_dir / name).exists():
            shutil.rmtree(build_dir / name)
    log("[book] chapter inputs changed since the last build (or first build): "
        "chapters will be executed")
    return True


def jupyter_book_command(root: Path, output: Path) -> list[str]:
    script = Path(sys.executable).with_name("jupyter-book")
    exe = [str(script)] if script.exists() else [sys.executable, "-m", "jupyter_book.cli.main"]
    # -W: warnings are errors (--keep-going shows them all); -n: nitpicky references.
    return exe + ["build", str(root), "--path-output", str(output), "-W", "-n", "--keep-going"]


def build_book(book_run: str, root: Path, results_root: Path, output: Path | None = None,
               log=print) -> float:
    """Vendor the JavaScript, refresh the execution cache if stale, run ``jupyter-book build``.

    The book goes to ``<output>/_build/html`` (``output`` defaults to the checkout).
    """
    started = time.perf_counter()
    vendor(root, log=log)
    output = Path(output) if output else root
    build_dir = output / "_build"
    fingerprint = book_inputs_fingerprint(book_run, results_root)
    prepare_execution_cache(build_dir, fingerprint, log=log)
    cmd = jupyter_book_command(root, output)
    log(f"[book] {' '.join(cmd)} (showing run {book_run!r})")
    done = subprocess.run(cmd, cwd=root, env=dict(os.environ))
    if done.returncode != 0:
        raise RuntimeError(
            f"jupyter-book build failed (exit {done.returncode}); the warnings and errors are "
            f"above. A chapter that failed to execute leaves its log in "
            f"{build_dir / 'html' / 'reports'}.")
    build_dir.mkdir(parents=True, exist_ok=True)
    results.write_text_atomic(build_dir / FINGERPRINT_FILE, json.dumps(
        {"fingerprint": fingerprint, "book_run": book_run}, indent=2) + "\n")
    seconds = time.perf_counter() - started
    log(f"[book] built {build_dir / 'html' / 'index.html'} in {seconds:.0f} s")
    return seconds
