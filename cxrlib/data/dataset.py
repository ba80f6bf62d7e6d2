"""The curated dataset on disk: the contract between curation and everything downstream.

A curated dataset is a folder::

    OUT/manifest.csv      one row per candidate image (columns: MANIFEST_COLUMNS first)
    OUT/images/<image_id>.jpg   the curated image: 8-bit grayscale, square, image_size px
    OUT/curation.json     parameters, counts (ours vs the paper), exclusions, duplicates, timing

Rows with a non-empty ``excluded`` reason stay in the manifest (so every decision is visible)
but are not used for training. :func:`load_curated` returns the included rows and their pixels.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from cxrlib.core.errors import UserError

#: Columns every manifest has, in this order (a curation may add more after them).
MANIFEST_COLUMNS: tuple[str, ...] = (
    "image_id",      # stable, unique, filename-safe id (e.g. "cohen-000123" or "synthetic-00042")
    "label",         # one of cxrlib.core.paper.CLASSES (or "No Finding" for the audit's extras)
    "source",        # the collection: cohen, kermany, nih, nih_rxtorax, synthetic-...
    "finding",       # the source's own finding string, verbatim
    "patient_id",    # reconciled patient id, prefixed by source ("cohen:23"); never empty
    "view",          # PA, AP, AP Supine, L, ... or "" when unknown
    "age",           # years (float) or empty
    "sex",           # M, F or empty
    "orig_width",    # the source file's pixel size before curation
    "orig_height",
    "orig_path",     # the source file, relative to the data folder
    "sha256",        # of the curated image file's bytes
    "excluded",      # "" when the image is used, else the reason (low_contrast, ...)
)
#: The columns :mod:`cxrlib.data.curate` adds after those, in this order: the measures and decisions
#: of the curation (see its docstring), for the book's curation chapter and the audit.
CURATION_COLUMNS: tuple[str, ...] = (
    "source_patient_id", "subtype", "population", "split", "preference", "selection_rank",
    "content_width", "content_height", "content_aspect", "contrast_range", "contrast_std",
    "mean_intensity", "layout_corr", "phash", "duplicate_group", "planted_fault",
)


def read_manifest(out_dir: str | Path) -> pd.DataFrame:
    """The manifest as strings (ids stay ids), with ``age`` numeric and ``excluded`` never NaN."""
    path = Path(out_dir) / "manifest.csv"
    if not path.is_file():
        raise UserError(f"{path} does not exist",
                        f"curate a dataset first, e.g. `python -m cxrlib curate --out {out_dir}` "
                        f"(synthetic) or `python -m cxrlib curate --profile paper-bundle --data "
                        f"../shared/data --out {out_dir}` (real)")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"{path} cannot be read ({type(e).__name__})",
                        "curate the dataset again") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {missing}", "curate the dataset again")
    df["age"] = pd.to_numeric(df["age"], errors="coerce")
    return df


def read_summary(out_dir: str | Path) -> dict:
    return json.loads((Path(out_dir) / "curation.json").read_text())


def load_image(out_dir: str | Path, image_id: str) -> np.ndarray:
    path = Path(out_dir) / "images" / f"{image_id}.jpg"
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as e:  # missing, truncated, not an image
        raise UserError(f"{path}: cannot be read as an image ({e.__class__.__name__})",
                        "curate the dataset again (its images must not be edited)") from None


def load_curated(out_dir: str | Path, classes=None, include_excluded: bool = False,
                 ) -> tuple[pd.DataFrame, np.ndarray]:
    """Included manifest rows (optionally only ``classes``) and their pixels, shape (N, S, S), uint8.

    The returned frame has a fresh 0..N-1 index aligned with the first axis of the array.
    """
    df = read_manifest(out_dir)
    if not include_excluded:
        df = df[df["excluded"] == ""]
    if classes is not None:
        unknown = sorted(set(classes) - set(df["label"]))
        if unknown:
            raise ValueError(f"{out_dir}: no included images of class(es) {unknown}")
        df = df[df["label"].isin(list(classes))]
    df = df.reset_index(drop=True)
    images = np.stack([load_image(out_dir, i) for i in df["image_id"]]) if len(df) else \
        np.zeros((0, 0, 0), np.uint8)
    return df, images


def timings_path(out: str | Path) -> Path:
    """Where the wall time of the last curation into ``out`` is kept: beside the folder, not in
    it, so that the folder is the same, byte for byte, whenever the inputs are."""
    return Path(out).with_name(f"{Path(out).name}.timings.json")


def read_timings(out: str | Path) -> dict:
    """The last curation's ``wall_time_seconds`` and ``workers`` ({} if not recorded)."""
    path = timings_path(out)
    return json.loads(path.read_text()) if path.is_file() else {}
