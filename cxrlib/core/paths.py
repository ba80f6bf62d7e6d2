"""Where things live. Every folder can be moved with an environment variable.

- ``CXRLIB_ROOT``: the project folder (default: the checkout this package sits in).
- ``CXRLIB_DATA``: the real sources in their original layouts (default: ``../shared/data``
  beside the checkout, when it exists).
- ``CXRLIB_RESULTS``: the results store (default ``<root>/results``; real-data results there are
  committed, synthetic ones are ignored by git).
- ``CXRLIB_CURATED``: curated datasets (default ``<root>/data/curated``; never committed).
- ``CXRLIB_RUNS``: run records, i.e. executed notebooks (default ``<root>/runs``; never committed).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from cxrlib.core.errors import UserError


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def root() -> Path:
    return _env_path("CXRLIB_ROOT", Path(__file__).resolve().parents[2])


def results_dir() -> Path:
    return _env_path("CXRLIB_RESULTS", root() / "results")


def curated_root() -> Path:
    return _env_path("CXRLIB_CURATED", root() / "data" / "curated")


def runs_dir() -> Path:
    return _env_path("CXRLIB_RUNS", root() / "runs")


def default_data_dir() -> Path | None:
    """The real sources, if this machine has them (``CXRLIB_DATA`` or ``../shared/data``)."""
    value = os.environ.get("CXRLIB_DATA")
    if value:
        return Path(value).expanduser().resolve()
    shared = root().parent / "shared" / "data"
    return shared.resolve() if shared.is_dir() else None


# A run name becomes a folder under results/, runs/ and data/curated/: it must be a name, never a
# path, or ``--run ../../etc`` would write outside the project.
_RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
RUN_NAME_RULE = ("letters, digits, '-', '_' and '.', not starting with '.' "
                 "(e.g. paper-bundle_grouping-patient)")


def check_run_name(name: str, what: str = "run name") -> str:
    """``name`` if it is a valid run (or curated set) name; a :class:`UserError` otherwise."""
    if not isinstance(name, str) or not _RUN_NAME.fullmatch(name):
        raise UserError(f"{what} {name!r} is not a name", f"use {RUN_NAME_RULE}")
    return name


def inside(root_dir: Path, path: Path) -> Path:
    """``path``, after checking that it lies under ``root_dir`` (where everything of a run goes)."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(Path(root_dir).resolve()):
        raise UserError(f"{path} lies outside {root_dir}",
                        "run names and configuration names must not contain '/' or '..'")
    return resolved
