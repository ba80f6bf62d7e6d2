"""Curation: from source images to the curated dataset on disk (see :mod:`cxrlib.dataset`).

``python -m cxrlib curate --data ../shared/data --out OUT`` (real) or ``--out OUT`` alone
(the built-in synthetic set). Steps, in order:

1. **Candidates**: every image the readers (:mod:`cxrlib.sources`) label with a requested class
   (the paper's seven by default) or extra ("No Finding": NIH adults, for the audit).
2. **Order**: per class, candidates are ranked by the source's preference (Kermany images at
   their original aspect ratio before the squashed 224x224 copies; NIH images with an NIH name
   and patient id before the nameless Kaggle copies), then by a seeded hash of the file's path.
   Adding files elsewhere does not reorder a class.
3. **Examination** (both cores): decode to 8-bit grayscale, letterbox to ``image_size`` (the
   paper: aspect kept, black padding), and measure the content inside uniform borders.
4. **Exclusions** (first that applies, see :data:`CRITERIA`; measured and shown in notebook 01):
   ``too_small`` (short side below 3/4 of ``image_size``: more upsampling than that invents
   detail), ``multilabel`` (NIH image naming two or more of the four target findings, policy
   "exclude"), ``low_contrast`` (the central region's 2-98 % intensity spread covers less
   than a quarter of the grey scale), ``partial_thorax`` (the content is more than 1.8 times as
   wide as tall, or less than 0.6: a whole thorax, apices to costophrenic angles, is about as
   tall as wide in adults and children alike, so such an image is a strip or a one-lung crop),
   ``inverted`` (the layout is anti-correlated with the average radiograph of the candidates:
   an inverted grey scale), ``duplicate_of:<image_id>`` and ``duplicate_label_conflict``.
5. **Duplicates**: pairs whose perceptual hashes differ in at most 6 of 64 bits AND whose
   32x32 thumbnails (content squashed to a square, so a squashed copy matches its original)
   correlate at 0.96 or more are the same radiograph (on the shared bundle the same
   radiograph re-published with a caption or another crop scores 0.97-0.99; different
   children in similar frames reach 0.95). Connected pairs form a group; the first
   member in the class order is kept, the others are excluded as ``duplicate_of:<kept>``; a
   group with two labels is excluded entirely.
6. **Selection**: walk each class in its order and keep included images up to the paper's count
   (``cxrlib.paper.class_counts()``); where fewer exist all are kept and the shortfall is
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
import multiprocessing
import os
import platform
import re
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
import PIL

from . import __version__, imaging, paths
from .dataset import MANIFEST_COLUMNS
from .download import missing_data_message
from .paper import CLASSES, class_counts
from .profiles import Profile
from .sources import SourceError, read_sources
from .synthetic import SHORTCUT_NOTE, make_synthetic, render

#: Bump when the curation's output for the same inputs changes (it is part of folder names).
CURATION_VERSION = 1
EXTRAS_DEFAULT: tuple[str, ...] = ("No Finding",)
#: At most this many images of each extra label: the paper's Normal count, so the audit can
#: compare adults without findings with the (paediatric) Normal class at equal size. The shared
#: bundle has 572 adult "No Finding" images; the full NIH download has about 60,000.
EXTRAS_MAX_DEFAULT = 1341


@dataclass(frozen=True)
class Criteria:
    """Thresholds of the exclusion and duplicate rules (module docstring, step 4-5)."""

    min_side_fraction: float = 0.75
    min_contrast_range: float = 64.0
    max_content_aspect: float = 1.8
    min_content_aspect: float = 0.6
    min_layout_corr: float = -0.3
    duplicate_max_hamming: int = 6
    duplicate_min_corr: float = 0.96


CRITERIA = Criteria()

#: Manifest columns after the contract's, in this order.
EXTRA_COLUMNS: tuple[str, ...] = (
    "source_patient_id", "subtype", "population", "split", "preference", "selection_rank",
    "content_width", "content_height", "content_aspect", "contrast_range", "contrast_std",
    "mean_intensity", "layout_corr", "phash", "duplicate_group", "planted_fault",
)


# ---------------------------------------------------------------------------------------------
# names


def curated_dir_for(profile: Profile, collection_style: str = "paper") -> Path:
    """Where the curated dataset of ``profile`` lives (all classes it can; not the class subset)."""
    name = f"{profile.dataset}-{profile.image_size}px-seed{profile.seed}"
    if profile.dataset == "synthetic":
        name += f"-n{profile.synthetic_per_class}"
        if collection_style != "paper":
            name += f"-{collection_style}"
    else:
        name += f"-ml_{profile.multilabel}"
    return paths.curated_root() / f"{name}-v{CURATION_VERSION}"


def ensure_curated(profile: Profile, data_dir=None, collection_style: str = "paper",
                   log=print) -> Path:
    """The curated folder of ``profile``, curating it first if it does not exist yet.

    Synthetic profiles need nothing; real ones read ``data_dir`` or
    :func:`cxrlib.paths.default_data_dir` and fail with download instructions if neither exists.
    """
    out = curated_dir_for(profile, collection_style)
    if (out / "manifest.csv").is_file():
        return out
    if profile.dataset == "synthetic":
        return curate(out, data_dir=None, image_size=profile.image_size, seed=profile.seed,
                      synthetic_per_class=profile.synthetic_per_class,
                      collection_style=collection_style, log=log)
    data_dir = data_dir or paths.default_data_dir()
    if data_dir is None or not Path(data_dir).is_dir():
        raise SourceError(f"profile {profile.name!r} needs the real data and none was found "
                          f"(CXRLIB_DATA or ../shared/data).\n"
                          f"{missing_data_message(data_dir or paths.root() / 'data' / 'sources')}")
    return curate(out, data_dir=data_dir, image_size=profile.image_size, seed=profile.seed,
                  multilabel=profile.multilabel, log=log)


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
# examination (runs in worker processes)


def examine(task: tuple) -> dict:
    """Decode (or render) one candidate, letterbox and measure it. Pure; bad data -> "error"."""
    index, path, recipe, image_size, jpeg_quality = task
    try:
        if recipe is not None:
            gray = render(recipe)
            orig_w, orig_h = gray.shape[1], gray.shape[0]
        else:
            gray, (orig_w, orig_h) = imaging.decode(path, draft_side=image_size)
    except imaging.ImageError as e:
        return {"index": index, "error": str(e)}
    # Measures come from a small copy without uniform borders (fast, resolution-independent).
    small = imaging.resize_keep_aspect(gray, imaging.ANALYSIS_SIDE) \
        if max(gray.shape) > imaging.ANALYSIS_SIDE else gray
    top, bottom, left, right = imaging.content_box(small)
    content = small[top:bottom, left:right]
    quality = imaging.measure_quality(content)
    curated = imaging.letterbox(gray, image_size)
    jpeg = imaging.encode_jpeg(curated, jpeg_quality)
    cw = round((right - left) * gray.shape[1] / small.shape[1])
    ch = round((bottom - top) * gray.shape[0] / small.shape[0])
    return {
        "index": index, "error": "", "orig_width": orig_w, "orig_height": orig_h,
        "content_width": cw, "content_height": ch,
        "content_aspect": round((right - left) / (bottom - top), 4),
        **asdict(quality), "phash": imaging.perceptual_hash(content),
        "thumb": imaging.squashed_thumbnail(content), "jpeg": jpeg,
        "sha256": imaging.sha256_bytes(jpeg),
    }


def _start_method() -> str:
    """fork (fast) unless a deep-learning framework is loaded: its threads do not survive a fork."""
    loaded = any(m in sys.modules for m in ("tensorflow", "jax", "torch"))
    available = multiprocessing.get_all_start_methods()
    return "fork" if "fork" in available and not loaded else "spawn"


def _run_examination(tasks: list[tuple], workers: int, log=print) -> list[dict]:
    if workers <= 1 or len(tasks) < 64:
        return [examine(t) for t in tasks]
    ctx = multiprocessing.get_context(_start_method())
    chunk = max(1, min(64, len(tasks) // (4 * workers)))
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            return list(pool.map(examine, tasks, chunksize=chunk))
    except BrokenProcessPool as e:  # e.g. spawn from an interactive __main__
        log(f"curate: worker processes failed ({e}); examining in this process instead")
        return [examine(t) for t in tasks]


# ---------------------------------------------------------------------------------------------
# rules


def exclusion_reason(row: dict, image_size: int, criteria: Criteria = CRITERIA,
                     multilabel: str = "exclude") -> str:
    """The first exclusion rule an examined candidate meets, or "" (module docstring, step 4)."""
    if min(row["orig_width"], row["orig_height"]) < criteria.min_side_fraction * image_size:
        return "too_small"
    if row.get("multilabel") and multilabel == "exclude":
        return "multilabel"
    if row["contrast_range"] < criteria.min_contrast_range:
        return "low_contrast"
    if not criteria.min_content_aspect <= row["content_aspect"] <= criteria.max_content_aspect:
        return "partial_thorax"
    if row["layout_corr"] < criteria.min_layout_corr:
        return "inverted"
    return ""


def layout_template(thumbs: np.ndarray, sources) -> np.ndarray:
    """The average radiograph layout (mean thumbnail, every source weighted equally)."""
    sources = np.asarray(sources)
    means = [thumbs[sources == s].mean(axis=0) for s in sorted(set(sources))]
    t = np.mean(means, axis=0)
    t = t - t.mean()
    return t / (np.linalg.norm(t) or 1.0)


def _hash_bits(hexes) -> np.ndarray:
    return np.array([int(h, 16) for h in hexes], dtype=np.uint64)


def duplicate_pairs(phashes, thumbs: np.ndarray, criteria: Criteria = CRITERIA,
                    block: int = 1024) -> list[tuple[int, int, int, float]]:
    """(i, j, hamming, corr) for every pair i < j that is the same radiograph (step 5)."""
    bits = _hash_bits(phashes)
    flat = thumbs.reshape(len(thumbs), -1).astype(np.float32)
    pairs = []
    for start in range(0, len(bits), block):
        stop = min(start + block, len(bits))
        ham = np.bitwise_count(bits[start:stop, None] ^ bits[None, :])
        ii, jj = np.nonzero(ham <= criteria.duplicate_max_hamming)
        keep = (ii + start) < jj
        ii, jj = ii[keep], jj[keep]
        if len(ii) == 0:
            continue
        corr = np.einsum("ij,ij->i", flat[ii + start], flat[jj])
        for i, j, h, c in zip(ii + start, jj, ham[ii, jj], corr):
            if c >= criteria.duplicate_min_corr:
                pairs.append((int(i), int(j), int(h), round(float(c), 4)))
    return pairs


class UnionFind:
    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # the smaller id becomes the root, so the group's name does not depend on order
            lo, hi = sorted((ra, rb))
            self.parent[hi] = lo

    def groups(self) -> dict:
        out: dict = {}
        for x in self.parent:
            out.setdefault(self.find(x), []).append(x)
        return out


def reconcile_patients(source_patient_ids, duplicate_groups) -> dict[str, str]:
    """source patient id -> reconciled id (the smallest id among patients joined by duplicates)."""
    uf = UnionFind()
    for pid in source_patient_ids:
        uf.find(pid)
    for members in duplicate_groups:
        first = members[0]
        for other in members[1:]:
            uf.union(first, other)
    return {pid: uf.find(pid) for pid in uf.parent}


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


def select(cands: pd.DataFrame, examined: dict[int, dict], groups_of: dict[int, int],
           group_labels: dict[int, set], targets: dict[str, int], image_size: int,
           multilabel: str, criteria: Criteria) -> tuple[dict[int, str], dict[str, int], bool]:
    """Walk each class in order (step 6): ({row: reason or ""}, walked per class, needs_more).

    ``needs_more``: some class is short of its target but has unexamined candidates.
    """
    decision: dict[int, str] = {}
    walked: dict[str, int] = {}
    kept_of_group: dict[int, str] = {}
    needs_more = False
    for label, rows in cands.groupby("label", sort=False):
        target, included, n = targets[label], 0, 0
        for idx in rows.index:  # already in rank order
            if included >= target:
                break
            if idx not in examined:
                needs_more = True
                break
            n += 1
            ex = examined[idx]
            if ex["error"]:
                decision[idx] = "unreadable: " + ex["error"]
                continue
            reason = exclusion_reason(ex, image_size, criteria, multilabel)
            group = groups_of.get(idx)
            if not reason and group is not None:
                if len(group_labels[group]) > 1:
                    reason = "duplicate_label_conflict"
                elif group in kept_of_group:
                    reason = f"duplicate_of:{kept_of_group[group]}"
                else:
                    kept_of_group[group] = cands.at[idx, "image_id"]
            decision[idx] = reason
            included += reason == ""
        walked[label] = n
    return decision, walked, needs_more


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
                    data_dir=None if synthetic else str(data_dir))


@dataclass
class Examination:
    """What examining the candidates found (rows are ``cands`` index labels)."""

    examined: dict[int, dict]      # row -> measures, or its decoding error
    ok: list[int]                  # rows decoded, in order
    pairs: list[tuple]             # duplicate pairs (positions in ``ok``, hamming, correlation)
    groups: list[list[int]]        # duplicate groups of rows
    decision: dict[int, str]       # row -> exclusion reason, "" if included
    walked: dict[str, int]         # candidates walked per class

    @property
    def groups_of(self) -> dict[int, int]:
        return {i: g for g, members in enumerate(self.groups) for i in members}


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
    found = _examine_enough(cands, labels, targets, options, workers, log)
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


def _examine_enough(cands: pd.DataFrame, labels: list[str], targets: dict[str, int],
                    options: CurationOptions, workers: int, log) -> Examination:
    """Examine a generous prefix of each class; extend it while a class is short and more
    candidates exist (step 6 of the module docstring)."""
    examined: dict[int, dict] = {}
    available = {lab: int((cands["label"] == lab).sum()) for lab in labels}
    budget = {lab: min(available[lab], int(targets[lab] * 1.25) + 20) for lab in labels}
    while True:
        todo = [i for lab in labels
                for i in cands.index[cands["label"] == lab][:budget[lab]] if i not in examined]
        tasks = [(i, cands.at[i, "path"] or None, cands.at[i, "recipe"], options.image_size,
                  options.jpeg_quality) for i in todo]
        for r in _run_examination(tasks, workers, log):
            examined[r.pop("index")] = r
        ok, pairs, groups = _duplicates(cands, examined, options.criteria)
        found = Examination(examined, ok, pairs, groups, {}, {})
        group_labels = {g: set(cands.loc[members, "label"]) for g, members in enumerate(groups)}
        found.decision, found.walked, needs_more = select(
            cands, examined, found.groups_of, group_labels, targets, options.image_size,
            options.multilabel, options.criteria)
        if not needs_more:
            return found
        for lab in labels:
            short = targets[lab] - sum(1 for i, r in found.decision.items()
                                       if r == "" and cands.at[i, "label"] == lab)
            if short > 0:
                budget[lab] = min(available[lab], budget[lab] + int(short * 1.5) + 20)


def _duplicates(cands: pd.DataFrame, examined: dict[int, dict], criteria: Criteria):
    """The decoded rows, their layout correlation (set in ``examined``), duplicate pairs and
    duplicate groups."""
    ok = [i for i in sorted(examined) if not examined[i]["error"]]
    thumbs = np.stack([examined[i]["thumb"] for i in ok]) if ok else np.zeros((0, 32, 32))
    template = layout_template(thumbs, cands.loc[ok, "source"]) if ok else None
    for k, i in enumerate(ok):
        examined[i]["layout_corr"] = round(float(np.sum(thumbs[k] * template)), 4)
        examined[i]["multilabel"] = bool(cands.at[i, "multilabel"])
    pairs = duplicate_pairs([examined[i]["phash"] for i in ok], thumbs, criteria)
    uf = UnionFind()
    for a, b, _, _ in pairs:
        uf.union(ok[a], ok[b])
    return ok, pairs, [sorted(m) for m in uf.groups().values()]


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
    return pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS) + list(EXTRA_COLUMNS))


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]


def _class_counts(cands, manifest, found: Examination, targets, unreadable,
                  synthetic: bool) -> dict:
    """Per class: the paper's count, the target, what was available, examined, included,
    short of the paper, excluded (per reason) and unreadable."""
    paper = class_counts()
    counts = {}
    for label in dict.fromkeys(cands["label"]):
        m = manifest[manifest["label"] == label]
        included = int((m["excluded"] == "").sum())
        reasons = m.loc[m["excluded"] != "", "excluded"].map(_reason_kind).value_counts()
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


def _duplicate_groups(cands, found: Examination) -> list[dict]:
    """Each duplicate group: its images, labels, sources, patients, kind and decisions."""
    id_of = cands["image_id"]
    pair_info = {}
    for a, b, h, c in found.pairs:
        pair_info.setdefault(found.ok[a], []).append((h, c))
    groups = []
    for g, members in enumerate(found.groups):
        identical = len({found.examined[i]["sha256"] for i in members}) == 1
        groups.append({
            "group": f"dup{g:04d}", "image_ids": [id_of[i] for i in members],
            "labels": sorted(set(cands.loc[members, "label"])),
            "sources": sorted(set(cands.loc[members, "source"])),
            "source_patient_ids": sorted(set(cands.loc[members, "source_patient_id"])),
            "kind": "identical" if identical else "near",
            "min_corr": min((c for i in members for _, c in pair_info.get(i, [])), default=None),
            "max_hamming": max((h for i in members for h, _ in pair_info.get(i, [])),
                               default=None),
            "decisions": {id_of[i]: found.decision.get(i, "not walked (beyond the class's count)")
                          for i in members},
        })
    return groups


def _summary(cands, manifest, found: Examination, targets, reconciled, unreadable, problems,
             data_dir, parameters) -> dict:
    """``curation.json``: what was curated from what, counted every way the book reports."""
    synthetic = data_dir is None
    inc = manifest[manifest["excluded"] == ""]
    dup_groups = _duplicate_groups(cands, found)
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


def timings_path(out: Path) -> Path:
    """Where the wall time of the last curation into ``out`` is kept (beside the folder)."""
    return Path(out).with_name(f"{Path(out).name}.timings.json")


def read_timings(out: Path) -> dict:
    """The last curation's ``wall_time_seconds`` and ``workers`` ({} if not recorded)."""
    path = timings_path(out)
    return json.loads(path.read_text()) if path.is_file() else {}
