"""Where the audit keeps what it finds: small tidy tables under ``results/<run>/audit/``.

Each experiment writes ``<name>.csv`` (and the external evaluation a ``<name>.json`` record),
atomically, so a killed audit leaves the previous table or the new one, never half of one.
The verdict, the notebooks and the book read them back from here.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from cxrlib.experiment import results

AUDIT_FOLDER = "audit"

#: Columns that are names, never numbers (an NIH id such as 00029548_010 must stay text).
TEXT_COLUMNS = {c: str for c in ("image_id", "patient_id", "source", "label", "predicted",
                                 "collection", "run", "model", "features", "class", "other")}


def audit_dir(run_path: str | Path) -> Path:
    return Path(run_path) / AUDIT_FOLDER


def write_table(run_path: str | Path, name: str, frame: pd.DataFrame) -> Path:
    path = audit_dir(run_path) / f"{name}.csv"
    results.write_text_atomic(path, frame.to_csv(index=False, float_format="%.6g"))
    return path


def read_table(run_path: str | Path, name: str) -> pd.DataFrame | None:
    path = audit_dir(run_path) / f"{name}.csv"
    if not path.is_file():
        return None
    return pd.read_csv(path, dtype=TEXT_COLUMNS, keep_default_na=False, na_values=[""])


def write_record(run_path: str | Path, name: str, record: dict) -> Path:
    path = audit_dir(run_path) / f"{name}.json"
    results.write_text_atomic(path, json.dumps(record, indent=2, sort_keys=True, default=str)
                              + "\n")
    return path


def read_record(run_path: str | Path, name: str) -> dict | None:
    path = audit_dir(run_path) / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None
