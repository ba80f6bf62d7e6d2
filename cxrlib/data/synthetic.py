"""Built-in SYNTHETIC chest-radiograph-like images: the default data when no real data is given.

Nothing here is a real X-ray. Every image is drawn from a few geometric primitives (body outline,
two lung fields, mediastinum, heart, diaphragm, ribs, vessel texture) and, for the six disease
classes, a simplified version of the sign a radiologist looks for:

=============  ================================================================================
COVID-19       patchy ground-glass opacities in the periphery of both lower zones
Edema          perihilar "bat-wing" haze on both sides, a larger heart, short Kerley B lines
Effusion       a basal fluid level with a meniscus that blunts the costophrenic angle
Emphysema      hyperlucent, enlarged lungs with a low, flattened diaphragm, fewer vessel markings
Fibrosis       a fine reticular (net-like) pattern in both lower zones, slightly smaller lungs
Pneumonia      dense consolidation of one lobe of one lung, bounded by a fissure
Normal         clear lungs (also "No Finding", an extra class for the audit)
=============  ================================================================================

Nuisance variation: position, size, rotation, exposure and contrast, noise, breast shadows,
follow-up images of the same patient (same anatomy, new position and exposure).

**The built-in shortcut, on purpose.** The paper's classes come from different collections, and
so do ours, so that the audit chapter can show that it catches a shortcut:

- ``synthetic-web`` (all COVID-19 images): adults, varied crops and aspect ratios, a burned-in
  caption block in a corner and sometimes arrows, as in figures taken from papers and websites;
- ``synthetic-paediatric`` (all Pneumonia and Normal images): small children centred in a wide
  landscape frame, an "R" marker, one bright exposure style;
- ``synthetic-hospital`` (Edema, Effusion, Emphysema, Fibrosis and the extra "No Finding"): adults
  in a square frame with an "L" marker in the top right corner.

So collection (and with it the class group) can be read from markers, frame and body size alone,
without looking at the lungs. ``collection_style="external"`` makes a second collection with the
same signs but none of these cues (``synthetic-external``: adults, no markers, one neutral
style for every class), for the audit's external test.

The signs are real but not trivial: the strength of each image's sign is drawn between
``0.35`` and ``1`` times ``sign_strength``, so some cases are subtle.

A few deliberately faulty images (``fault_fraction`` of each class, on top of the requested
count) exercise the curation's exclusions: washed-out (low contrast), a strip of the thorax
(partial), inverted grey scale, and copies of another image under another patient id
(duplicates). Everything is a pure function of the seed.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from cxrlib.core.paper import CLASSES

EXTRA_CLASSES: tuple[str, ...] = ("No Finding",)
COLLECTIONS: dict[str, str] = {
    "COVID-19": "synthetic-web",
    "Edema": "synthetic-hospital", "Effusion": "synthetic-hospital",
    "Emphysema": "synthetic-hospital", "Fibrosis": "synthetic-hospital",
    "Pneumonia": "synthetic-paediatric", "Normal": "synthetic-paediatric",
    "No Finding": "synthetic-hospital",
}
EXTERNAL = "synthetic-external"
FAULTS: tuple[str, ...] = ("low_contrast", "partial_thorax", "duplicate", "inverted")

#: The sentence every figure and table of synthetic data carries.
SYNTHETIC_NOTICE = "SYNTHETIC images (procedurally generated, not real X-rays)"

SHORTCUT_NOTE = (
    "Built-in shortcut: COVID-19 images come only from 'synthetic-web' (caption block, arrows, "
    "varied crops), Pneumonia and Normal only from 'synthetic-paediatric' (small child in a wide "
    "frame, 'R' marker, bright exposure), Edema/Effusion/Emphysema/Fibrosis/No Finding only from "
    "'synthetic-hospital' (square frame, 'L' marker). The collection is visible without looking "
    "at the lungs, as in the paper's real data. 'synthetic-external' has the same signs "
    "without these cues.")


# ---------------------------------------------------------------------------------------------
# The collection: who, which images, which recipe


def _patient_sizes(rng, n_images: int, max_per_patient: int = 4) -> list[int]:
    sizes, left = [], n_images
    while left > 0:
        k = int(min(left, rng.choice([1, 1, 2, 2, 3, 4][:max_per_patient + 2])))
        sizes.append(k)
        left -= k
    return sizes


def _demographics(rng, collection: str) -> tuple[float, str, str]:
    sex = "F" if rng.random() < 0.5 else "M"
    if collection == "synthetic-paediatric":
        return float(rng.integers(1, 6)), sex, ""
    if collection == "synthetic-web":
        return float(rng.integers(30, 86)), sex, str(rng.choice(["PA", "AP", "AP Supine"]))
    return float(rng.integers(20, 91)), sex, str(rng.choice(["PA", "PA", "AP"]))


def _class_rows(label: str, ci: int, collection: str, prefix: str, rng, per_class: int,
                native_size: int, sign_strength: float) -> list[dict]:
    """The good images of one class: patients of 1-4 images each, one recipe per image."""
    rows, patient_no = [], 0
    for size in _patient_sizes(rng, per_class):
        patient_no += 1
        patient_seed = int(rng.integers(2 ** 31))
        age, sex, view = _demographics(rng, collection)
        for follow_up in range(size):
            rows.append(dict(
                label=label, source=collection, finding=label,
                patient_id=f"{prefix}:{ci}-{patient_no:04d}", view=view,
                age=age, sex=sex, subtype="", population=(
                    "paediatric" if collection == "synthetic-paediatric" else "adult"),
                recipe=dict(seed=int(rng.integers(2 ** 31)), patient_seed=patient_seed,
                            label=label, collection=collection, sex=sex,
                            native_size=int(native_size), fault="",
                            sign=float(sign_strength * rng.uniform(0.35, 1.0)),
                            follow_up=follow_up)))
    return rows


def _faulty_rows(good: list[dict], ci: int, prefix: str, rng, per_class: int,
                 n_faults: int) -> list[dict]:
    """``n_faults`` faulty images made from the class's good ones, each under a patient id of
    its own, the faults taken in turn from :data:`FAULTS`."""
    rows, patient_no = [], len({r["patient_id"] for r in good})
    for k in range(n_faults):
        fault = FAULTS[k % len(FAULTS)]
        base = good[int(rng.integers(len(good[:per_class])))]
        row = dict(base, recipe=dict(base["recipe"]))
        patient_no += 1
        row["patient_id"] = f"{prefix}:{ci}-{patient_no:04d}"
        if fault == "duplicate":
            # The same radiograph published again under another patient id; every other
            # duplicate is a re-encoded (near-identical) copy.
            row["recipe"]["variant"] = int(k // len(FAULTS)) % 2
        else:
            row["recipe"]["seed"] = int(rng.integers(2 ** 31))
            row["recipe"]["fault"] = fault
        row["planted_fault"] = fault
        rows.append(row)
    return rows


def make_synthetic(per_class: int = 80, seed: int = 2020, classes=CLASSES,
                   extras=EXTRA_CLASSES, native_size: int = 128, sign_strength: float = 1.0,
                   fault_fraction: float = 0.05, collection_style: str = "paper",
                   ) -> pd.DataFrame:
    """The synthetic candidates: one row per image, in the readers' table format.

    Rows have ``recipe`` (a dict for :func:`cxrlib.data.synthetic_render.render`) instead of a file ``path``; the curation
    renders them in its worker processes. ``per_class`` good images per class (and per extra
    class), plus ``round(fault_fraction * per_class)`` faulty ones per class.
    ``collection_style``: ``"paper"`` (each class from its own collection, with the shortcut)
    or ``"external"`` (every class from ``synthetic-external``, no markers).
    """
    if collection_style not in ("paper", "external"):
        raise ValueError("collection_style must be 'paper' or 'external'")
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise ValueError(f"unknown class(es) {unknown}; classes are {CLASSES}")
    root = np.random.SeedSequence([int(seed), 0 if collection_style == "paper" else 1])
    rows: list[dict] = []
    prefix = "synthetic-ext" if collection_style == "external" else "synthetic"
    for ci, label in enumerate(list(classes) + [e for e in extras if e not in classes]):
        rng = np.random.default_rng(root.spawn(ci + 1)[-1])
        collection = EXTERNAL if collection_style == "external" else COLLECTIONS[label]
        good = _class_rows(label, ci, collection, prefix, rng, per_class, native_size,
                           sign_strength)
        rows.extend(good + _faulty_rows(good, ci, prefix, rng, per_class,
                                        int(round(fault_fraction * per_class))))
    df = pd.DataFrame(rows)
    df["planted_fault"] = df.get("planted_fault", pd.Series("", index=df.index)).fillna("")
    df.insert(0, "image_id", [f"{prefix}-{i:05d}" for i in range(len(df))])
    df["source_patient_id"] = df["patient_id"]
    df["path"] = ""
    df["orig_path"] = ""
    return df
