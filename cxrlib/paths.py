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
from pathlib import Path


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def root() -> Path:
    return _env_path("CXRLIB_ROOT", Path(__file__).resolve().parent.parent)


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
