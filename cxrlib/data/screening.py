"""Screening the curation's candidates (:mod:`cxrlib.data.curate`, steps 3-7): examining each
image, the exclusion rules and their thresholds, duplicates, and the walk of each class that
includes images up to its count.

- **Examination** (:func:`examine`, in worker processes): decode to 8-bit grayscale (or render
  a synthetic recipe), letterbox to ``image_size`` (the paper: aspect kept, black padding),
  and measure the content inside uniform borders.
- **Exclusions** (:func:`exclusion_reason`, thresholds in :class:`Criteria`): the first rule
  that applies, in the order of :mod:`cxrlib.data.curate`'s step 4.
- **Duplicates** (:func:`duplicate_pairs`, :func:`find_duplicates`): pairs whose perceptual
  hashes differ in at most 6 of 64 bits AND whose 32x32 thumbnails (content squashed to a
  square, so a squashed copy matches its original) correlate at 0.96 or more are the same
  radiograph (on the shared bundle the same radiograph re-published with a caption or another
  crop scores 0.97-0.99; different children in similar frames reach 0.95). Connected pairs
  form a group (:class:`UnionFind`), which also joins patients (:func:`reconcile_patients`).
- **Selection** (:func:`select`, :func:`examine_enough`): each class walked in its order,
  included images kept up to the class's count, more candidates examined while a class is
  short and more exist.
"""
from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from cxrlib.data import imaging
from cxrlib.data.synthetic_render import render


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


# ---------------------------------------------------------------------------------------------
# examination (runs in worker processes)


def examine(task: tuple) -> dict:
    """Decode (or render) one candidate, letterbox and measure it. Pure; bad data -> "error"."""
    index, path, recipe, image_size, jpeg_quality, harmonise_px = task
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
    # Harmonising changes only the stored pixels: the measures, hashes and so the selection are
    # those of the unharmonised image, and a harmonised folder holds the same images.
    curated = imaging.letterbox(imaging.harmonise(gray, harmonise_px), image_size)
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


def run_examination(tasks: list[tuple], workers: int, log=print) -> list[dict]:
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


def find_duplicates(cands: pd.DataFrame, examined: dict[int, dict], criteria: Criteria):
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


def duplicate_groups(cands, found: Examination) -> list[dict]:
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


# ---------------------------------------------------------------------------------------------
# selection


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


def examine_enough(cands: pd.DataFrame, labels: list[str], targets: dict[str, int], options,
                   workers: int, log) -> Examination:
    """Examine a generous prefix of each class; extend it while a class is short and more
    candidates exist (step 6 of the module docstring)."""
    examined: dict[int, dict] = {}
    available = {lab: int((cands["label"] == lab).sum()) for lab in labels}
    budget = {lab: min(available[lab], int(targets[lab] * 1.25) + 20) for lab in labels}
    while True:
        todo = [i for lab in labels
                for i in cands.index[cands["label"] == lab][:budget[lab]] if i not in examined]
        tasks = [(i, cands.at[i, "path"] or None, cands.at[i, "recipe"], options.image_size,
                  options.jpeg_quality, options.harmonise_px) for i in todo]
        for r in run_examination(tasks, workers, log):
            examined[r.pop("index")] = r
        ok, pairs, groups = find_duplicates(cands, examined, options.criteria)
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
