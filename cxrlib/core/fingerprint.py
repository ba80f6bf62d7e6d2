"""Digests of what a step reads, so that a step whose inputs have not changed is not done again
(a notebook's run record, :mod:`cxrlib.report.pipeline`; the book's execution cache, :mod:`cxrlib.report.book`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path


def hash_files(h, files, base: Path) -> None:
    """Feed each file's path (relative to ``base``) and contents to the digest ``h``."""
    for path in files:
        h.update(path.relative_to(base).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())


def visible_files(folder: Path) -> list[Path]:
    """Files under ``folder`` except hidden ones (half-written folds are hidden temp folders)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def library_fingerprint() -> str:
    """The library code and data the notebooks and chapters call (cxrlib/**.py, data files)."""
    package = Path(__file__).resolve().parents[1]  # cxrlib/, from cxrlib/core/
    h = hashlib.sha256()
    hash_files(h, [p for p in visible_files(package)
                   if p.suffix in (".py", ".json", ".csv") and "__pycache__" not in p.parts],
               package)
    return h.hexdigest()
