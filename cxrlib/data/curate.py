"""Curation: from source images to the curated dataset on disk (see :mod:`cxrlib.data.dataset`).

``python -m cxrlib curate --data ../shared/data --out OUT`` (real) or ``--out OUT`` alone
(the built-in synthetic set). Steps, in order:

1. **Candidates**: every image the readers (:mod:`cxrlib.data.sources`) label with a requested class
   (the paper's seven by default) or extra ("No Finding": NIH adults, for the audit).
2. **Order**: per class, candidates are ranked by the source's preference (Kermany images at
   their original aspect ratio before the squashed 224x224 copies; NIH images with an NIH name
   and patient id before the nameless Kaggle copies), then by a seeded hash of the file's path.
   Adding files elsewhere does not reorder a class.
3. **Examination** (both cores): decode to 8-bit grayscale, letterbox to ``image_size`` (the
   paper: aspect kept, black padding; with ``harmonise_px``, first reduce the long side to
   that), and measure the content inside uniform borders.
4. **Exclusions** (first that applies, see :class:`cxrlib.data.screening.Criteria`; notebook 01):
   ``too_small`` (short side below 3/4 of ``image_size``: more upsampling than that invents
   detail), ``multilabel`` (NIH image naming two or more of the four target findings, policy
   "exclude"), ``low_contrast`` (the central region's 2-98 % intensity spread covers less
   than a quarter of the grey scale), ``partial_thorax`` (the content is more than 1.8 times as
   wide as tall, or less than 0.6: a whole thorax, apices to costophrenic angles, is about as
   tall as wide in adults and children alike, so such an image is a strip or a one-lung crop),
   ``inverted`` (the layout is anti-correlated with the average radiograph of the candidates:
   an inverted grey scale), ``duplicate_of:<image_id>`` and ``duplicate_label_conflict``.
5. **Duplicates** (:mod:`cxrlib.data.screening`): the same radiograph by perceptual hash and
   thumbnail correlation; the first member of a group in the class order is kept, the others
   are excluded as ``duplicate_of:<kept>``; a group with two labels is excluded entirely.
6. **Selection**: walk each class in its order and keep included images up to the paper's count
   (``cxrlib.core.paper.class_counts()``); where fewer exist all are kept and the shortfall is
   reported. Excluded images met on the way stay in the manifest with their reason; unreadable
   files are listed in ``curation.json`` (there are no pixels to store).
7. **Patients**: union-find over the sources' patient ids, joining the patients of every
   duplicate group, so no radiograph and no patient can sit on both sides of a fold
   (``patient_id``: the smallest id of the joined group; ``source_patient_id``: the source's).
8. **Output**, written into a temporary folder beside OUT and renamed at the end:
   ``manifest.csv``, ``images/<image_id>.jpg``, ``curation.json``. The same inputs and seed
   give a byte-identical folder (the wall time goes beside it, ``<folder>.timings.json``).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
import PIL

from cxrlib import __version__
from cxrlib.core import paths
from cxrlib.core.paper import CLASSES, class_counts
from cxrlib.core.profiles import Profile
from cxrlib.data.dataset import CURATION_COLUMNS, MANIFEST_COLUMNS, timings_path
from cxrlib.data.download import missing_data_message
from cxrlib.data.screening import (
    CRITERIA,
    Criteria,
    Examination,
    duplicate_groups,
    examine_enough,
    reconcile_patients,
)
from cxrlib.data.sources import SourceError, read_sources
from cxrlib.data.synthetic import SHORTCUT_NOTE, make_synthetic

#: Bump when the curation's output for the same inputs changes (it is part of folder names).
CURATION_VERSION = 1
EXTRAS_DEFAULT: tuple[str, ...] = ("No Finding",)
#: At most this many images of each extra label: the paper's Normal count, so the audit can
#: compare adults without findings with the (paediatric) Normal class at equal size. The shared
#: bundle has 572 adult "No Finding" images; the full NIH download has about 60,000.
EXTRAS_MAX_DEFAULT = 1341


# ---------------------------------------------------------------------------------------------
# names


def curated_dir_for(profile: Profile, collection_style: str | None = None) -> Path:
    """Where the curated dataset of ``profile`` lives (all classes it can; not the class subset)."""
    collection_style = collection_style or profile.collection_style
    name = f"{profile.dataset}-{profile.image_size}px-seed{profile.seed}"
    if profile.dataset == "synthetic":
        name += f"-n{profile.synthetic_per_class}"
        if collection_style != "paper":
            name += f"-{collection_style}"
    else:
        name += f"-ml_{profile.multilabel}"
    if profile.harmonise_px:
        name += f"-h{profile.harmonise_px}"
    return paths.curated_root() / f"{name}-v{CURATION_VERSION}"


def ensure_curated(profile: Profile, data_dir=None, collection_style: str | None = None,
                   log=print) -> Path:
    """The curated folder of ``profile``, curating it first if it does not exist yet.

    Synthetic profiles need nothing; real ones read ``data_dir`` or
    :func:`cxrlib.core.paths.default_data_dir` and fail with download instructions if neither exists.
    """
    collection_style = collection_style or profile.collection_style
    out = curated_dir_for(profile, collection_style)
    if (out / "manifest.csv").is_file():
        return out
    if profile.dataset == "synthetic":
        return curate(out, data_dir=None, image_size=profile.image_size, seed=profile.seed,
                      synthetic_per_class=profile.synthetic_per_class,
                      collection_style=collection_style, harmonise_px=profile.harmonise_px,
                      log=log)
    data_dir = data_dir or paths.default_data_dir()
    if data_dir is None or not Path(data_dir).is_dir():
        raise SourceError(f"profile {profile.name!r} needs the real data and none was found "
                          f"(CXRLIB_DATA or ../shared/data).\n"
                          f"{missing_data_message(data_dir or paths.root() / 'data' / 'sources')}")
    return curate(out, data_dir=data_dir, image_size=profile.image_size, seed=profile.seed,
                  multilabel=profile.multilabel, harmonise_px=profile.harmonise_px, log=log)


def image_id_for(source: str, orig_path: str) -> str:
    """A readable, filename-safe id from the source and the file's path inside it."""
    parts = list(Path(orig_path).with_suffix("").parts)
    if parts and parts[0] == source:
        parts = parts[1:]
    parts = [p for p in parts if p not in ("images", "chest_xray")] or ["image"]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join([source, *parts]))


def _unique(ids: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        n = seen.get(i, 0)
        seen[i] = n + 1
        out.append(i if n == 0 else f"{i}-{n + 1}")
    return out


def order_key(seed: int, identity: str) -> str:
    """Seeded, stable random rank of one candidate (a hash, so other files do not shift it)."""
    return hashlib.sha256(f"{seed}:{identity}".encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# the pipeline


def _candidates(data_dir, options: CurationOptions, problems: list[str]) -> pd.DataFrame:
    """Every candidate image of the wanted classes: the synthetic set, or the real sources."""
    extras = options.extras
    if data_dir is None:
        df = make_synthetic(per_class=options.synthetic_per_class, seed=options.seed,
                            classes=options.classes, extras=extras,
                            native_size=min(512, max(64, 2 * options.image_size)),
                            sign_strength=options.sign_strength,
                            fault_fraction=options.fault_fraction,
                            collection_style=options.collection_style)
        df["preference"], df["multilabel"], df["split"] = 0, False, ""
        df["identity"] = df["image_id"]
        return df
    df = read_sources(data_dir, lateral=options.lateral, multilabel=options.multilabel,
                      problems=problems)
    wanted = set(options.classes) | set(extras)
    dropped_children = df[(df["label"].isin(extras)) & (df["population"] == "paediatric")]
    if len(dropped_children):
        problems.append(f"{len(dropped_children)} extra ({', '.join(extras)}) image(s) of "
                        f"children left out: the extras are adults, for the audit's age check")
    df = df[df["label"].isin(wanted) & ~df.index.isin(dropped_children.index)].copy()
    df["image_id"] = _unique([image_id_for(s, p) for s, p in zip(df["source"], df["orig_path"])])
    df["recipe"] = None
    df["planted_fault"] = ""
    df["identity"] = df["orig_path"]
    return df.reset_index(drop=True)


def _targets(labels, data_dir, synthetic_per_class, extras_max, counts=None) -> dict[str, int]:
    paper = class_counts()
    out = {}
    for label in labels:
        if counts and label in counts:
            out[label] = int(counts[label])
        elif data_dir is None:
            out[label] = synthetic_per_class
        elif label in paper:
            out[label] = paper[label]
        else:
            out[label] = extras_max if extras_max is not None else 10 ** 9
    return out


def _versions() -> dict:
    return {"python": platform.python_version(), "numpy": np.__version__,
            "pandas": pd.__version__, "pillow": PIL.__version__,
            "imagehash": imagehash.__version__, "cxrlib": __version__,
            "curation_version": CURATION_VERSION}


@dataclass(frozen=True)
class CurationOptions:
    """What a curation makes: everything but where it reads and writes and how many processes
    examine the images (module docstring). ``counts``: images to select per class where the
    paper's count (or, for synthetic data, ``synthetic_per_class``) should not apply, e.g.
    ``{"Normal": 100}`` for a small real set. The synthetic-only settings (per class, collection
    style, sign strength, fault fraction) are ignored for real data."""

    image_size: int = 200
    seed: int = 2020
    classes: tuple[str, ...] = CLASSES
    extras: tuple[str, ...] = EXTRAS_DEFAULT
    multilabel: str = "exclude"
    lateral: bool = False
    synthetic_per_class: int = 80
    collection_style: str = "paper"
    extras_max: int | None = EXTRAS_MAX_DEFAULT
    jpeg_quality: int = 90
    sign_strength: float = 1.0
    fault_fraction: float = 0.05
    counts: dict | None = None
    criteria: Criteria = CRITERIA
    harmonise_px: int = 0  # long side before the letterbox (imaging.harmonise); 0: off

    def checked(self) -> CurationOptions:
        """These options with classes and extras as tuples (an extra that is a class dropped);
        a wrong setting is refused."""
        classes = tuple(self.classes)
        extras = tuple(e for e in (self.extras or ()) if e not in classes)
        unknown = [c for c in classes if c not in CLASSES]
        if unknown:
            raise ValueError(f"unknown class(es) {unknown}; the paper's classes are {CLASSES}")
        if self.multilabel not in ("exclude", "first"):
            raise ValueError("multilabel must be 'exclude' or 'first'")
        if self.image_size < 16:
            raise ValueError("image_size must be at least 16 px")
        if self.harmonise_px != 0 and self.harmonise_px < 16:
            raise ValueError("harmonise_px must be 0 (off) or at least 16 px")
        return replace(self, classes=classes, extras=extras)

    def record(self, data_dir) -> dict:
        """The ``parameters`` of ``curation.json`` (synthetic-only settings None for real data)."""
        synthetic = data_dir is None
        return dict(image_size=self.image_size, seed=self.seed, classes=list(self.classes),
                    extras=list(self.extras), multilabel=self.multilabel, lateral=self.lateral,
                    jpeg_quality=self.jpeg_quality,
                    synthetic_per_class=self.synthetic_per_class if synthetic else None,
                    collection_style=self.collection_style if synthetic else None,
                    sign_strength=self.sign_strength if synthetic else None,
                    fault_fraction=self.fault_fraction if synthetic else None,
                    extras_max=self.extras_max, counts=self.counts,
                    criteria=asdict(self.criteria),
                    data_dir=None if synthetic else str(data_dir),
                    # only when on: folders curated before it existed stay byte-identical
                    **({"harmonise_px": self.harmonise_px} if self.harmonise_px else {}))


def curate(out, data_dir=None, options: CurationOptions | None = None, *,
           workers: int | None = None, log=print, **settings) -> Path:
    """Curate a dataset into ``out`` (see the module docstring). ``data_dir=None``: synthetic.

    ``options``: a :class:`CurationOptions`; its fields may also be given as keywords
    (``image_size=64``), which replace those of ``options``. ``workers``: processes examining
    images (default: the cores, at most 8).
    """
    t0 = time.perf_counter()
    out = Path(out).resolve()
    options = replace(options or CurationOptions(), **settings).checked()
    if out.exists() and not (out / "manifest.csv").is_file() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not a curated dataset; choose another --out "
                              f"(curation replaces only folders it made)")
    workers = workers or min(os.cpu_count() or 1, 8)
    problems: list[str] = []
    cands = _candidates(data_dir, options, problems)
    if cands.empty:
        raise ValueError(f"no candidate image of {options.classes + options.extras} in "
                         f"{data_dir}")
    cands = _ranked(cands, options)
    labels = list(dict.fromkeys(cands["label"]))
    targets = _targets(labels, data_dir, options.synthetic_per_class, options.extras_max,
                       options.counts)
    t_read = time.perf_counter()
    log(f"curate: {len(cands)} candidates in {len(labels)} classes "
        f"({'synthetic' if data_dir is None else data_dir}); examining on {workers} core(s)")
    found = examine_enough(cands, labels, targets, options, workers, log)
    t_examine = time.perf_counter()

    # Patients: join the patients of every duplicate group (over everything examined).
    pid_groups = [sorted(set(cands.loc[m, "source_patient_id"])) for m in found.groups]
    reconciled = reconcile_patients(cands.loc[found.ok, "source_patient_id"], pid_groups)
    manifest_idx = [i for i in cands.index if i in found.decision
                    and not found.decision[i].startswith("unreadable")]
    manifest = _manifest(cands, found, manifest_idx, reconciled)
    unreadable = [{"image_id": cands.at[i, "image_id"], "orig_path": cands.at[i, "orig_path"],
                   "label": cands.at[i, "label"], "error": found.examined[i]["error"]}
                  for i in sorted(found.decision) if found.decision[i].startswith("unreadable")]
    problems += [f"unreadable, skipped: {u['error']}" for u in unreadable]

    summary = _summary(cands, manifest, found, targets, reconciled, unreadable, problems,
                       data_dir=data_dir, parameters=options.record(data_dir))
    _write(out, manifest,
           {cands.at[i, "image_id"]: found.examined[i]["jpeg"] for i in manifest_idx},
           summary, timing=dict(read_s=t_read - t0, examine_s=t_examine - t_read), t0=t0,
           workers=workers)
    n_in = int((manifest["excluded"] == "").sum())
    log(f"curate: {n_in} images included, {len(manifest) - n_in} excluded (kept in the "
        f"manifest), {len(unreadable)} unreadable -> {out} "
        f"({time.perf_counter() - t0:.1f} s)")
    return out


def _ranked(cands: pd.DataFrame, options: CurationOptions) -> pd.DataFrame:
    """The candidates in the order they are walked: by class (the paper's, extras after), by
    the source's preference, then in a seeded order; ``selection_rank`` within each class."""
    label_order = {c: i for i, c in enumerate(CLASSES + tuple(options.extras))}
    cands["rank_key"] = [order_key(options.seed, i) for i in cands["identity"]]
    cands["label_pos"] = cands["label"].map(label_order)
    cands = cands.sort_values(["label_pos", "preference", "rank_key"], kind="stable")
    cands = cands.reset_index(drop=True)
    cands["selection_rank"] = cands.groupby("label").cumcount()
    return cands


def _manifest(cands: pd.DataFrame, found: Examination, rows_in: list[int],
              reconciled: dict[str, str]) -> pd.DataFrame:
    """One manifest row per examined, readable candidate (excluded ones say why)."""
    groups_of = found.groups_of
    rows = []
    for i in rows_in:
        c, ex = cands.loc[i], found.examined[i]
        g = groups_of.get(i)
        rows.append({
            "image_id": c["image_id"], "label": c["label"], "source": c["source"],
            "finding": c["finding"], "patient_id": reconciled[c["source_patient_id"]],
            "view": c["view"], "age": "" if pd.isna(c["age"]) else f"{float(c['age']):g}",
            "sex": c["sex"], "orig_width": ex["orig_width"], "orig_height": ex["orig_height"],
            "orig_path": c["orig_path"], "sha256": ex["sha256"], "excluded": found.decision[i],
            "source_patient_id": c["source_patient_id"], "subtype": c["subtype"],
            "population": c["population"], "split": c["split"],
            "preference": int(c["preference"]), "selection_rank": int(c["selection_rank"]),
            "content_width": ex["content_width"], "content_height": ex["content_height"],
            "content_aspect": ex["content_aspect"], "contrast_range": ex["contrast_range"],
            "contrast_std": ex["contrast_std"], "mean_intensity": ex["mean_intensity"],
            "layout_corr": ex["layout_corr"], "phash": ex["phash"],
            "duplicate_group": "" if g is None else f"dup{g:04d}",
            "planted_fault": c.get("planted_fault", "") or "",
        })
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS) + list(CURATION_COLUMNS))


def _class_counts(cands, manifest, found: Examination, targets, unreadable,
                  synthetic: bool) -> dict:
    """Per class: the paper's count, the target, what was available, examined, included,
    short of the paper, excluded (per reason) and unreadable."""
    paper = class_counts()
    counts = {}
    for label in dict.fromkeys(cands["label"]):
        m = manifest[manifest["label"] == label]
        included = int((m["excluded"] == "").sum())
        reasons = m.loc[m["excluded"] != "", "excluded"].str.split(":").str[0].value_counts()
        counts[label] = {
            "paper": paper.get(label), "target": targets[label] if targets[label] < 10 ** 9
            else None, "available": int((cands["label"] == label).sum()),
            "examined": found.walked.get(label, 0), "included": included,
            "shortfall": max(0, paper[label] - included) if label in paper and not synthetic
            else None,
            "excluded": {k: int(v) for k, v in sorted(reasons.items())},
            "unreadable": sum(1 for u in unreadable if u["label"] == label),
        }
    return counts


def _summary(cands, manifest, found: Examination, targets, reconciled, unreadable, problems,
             data_dir, parameters) -> dict:
    """``curation.json``: what was curated from what, counted every way the book reports."""
    synthetic = data_dir is None
    inc = manifest[manifest["excluded"] == ""]
    dup_groups = duplicate_groups(cands, found)
    merged = {}
    for pid, root in reconciled.items():
        merged.setdefault(root, []).append(pid)
    return {
        "about": ("Curated dataset for the cxrlib reproduction of Apostolopoulos et al. (2020). "
                  + ("SYNTHETIC images (procedurally generated, not real X-rays). "
                     if synthetic else "Real images from public sources. ")
                  + "manifest.csv has one row per examined image; rows with a non-empty "
                    "'excluded' are not used for training."),
        "synthetic": synthetic,
        "shortcut_note": SHORTCUT_NOTE if synthetic else None,
        "parameters": parameters,
        "counts": _class_counts(cands, manifest, found, targets, unreadable, synthetic),
        "totals": {"candidates": int(len(cands)), "examined": int(len(found.examined)),
                   "in_manifest": int(len(manifest)), "included": int(len(inc)),
                   "excluded": int(len(manifest) - len(inc)), "unreadable": len(unreadable)},
        "per_source": {s: {lab: int(n) for lab, n in g.groupby("label")["image_id"].count()
                           .items()} for s, g in inc.groupby("source")},
        "duplicates": {
            "pairs": len(found.pairs), "groups": len(found.groups),
            "identical_groups": sum(g["kind"] == "identical" for g in dup_groups),
            "cross_source_groups": sum(len(g["sources"]) > 1 for g in dup_groups),
            "cross_patient_groups": sum(len(g["source_patient_ids"]) > 1 for g in dup_groups),
            "label_conflict_groups": sum(len(g["labels"]) > 1 for g in dup_groups),
            "list": dup_groups,
        },
        "patients": {
            "source_patient_ids": int(inc["source_patient_id"].nunique()),
            "reconciled_patient_ids": int(inc["patient_id"].nunique()),
            "merged": {k: sorted(v) for k, v in sorted(merged.items()) if len(v) > 1},
        },
        "unreadable": unreadable,
        "problems": problems,
        "versions": _versions(),
    }


def _write(out: Path, manifest: pd.DataFrame, jpegs: dict[str, bytes], summary: dict,
           timing: dict, t0: float, workers: int) -> None:
    """Write everything into a temporary folder beside ``out``, then swap it in."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "images").mkdir(parents=True)
        total = 0
        for image_id in manifest["image_id"]:
            data = jpegs[image_id]
            (tmp / "images" / f"{image_id}.jpg").write_bytes(data)
            total += len(data)
        manifest.to_csv(tmp / "manifest.csv", index=False, lineterminator="\n")
        summary["output"] = {"images": int(len(manifest)), "image_bytes": total,
                             "manifest_bytes": (tmp / "manifest.csv").stat().st_size}
        (tmp / "curation.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out.exists():
            os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
    # How long it took is a record of this execution, not of the dataset: beside the folder, so
    # the same sources, profile and seed give a byte-identical folder.
    seconds = {k: round(v, 2) for k, v in timing.items()}
    seconds["total_s"] = round(time.perf_counter() - t0, 2)
    timings_path(out).write_text(json.dumps({"wall_time_seconds": seconds, "workers": workers},
                                            indent=1) + "\n")
