"""Tables and figures of a curated dataset (notebook 01 and the book's data chapter call these).

Every table comes from ``manifest.csv`` and ``curation.json`` of one curated folder (or of the
copy a run stores with its results, :func:`cxrlib.experiment.runs.curated_dir`). Images are
shown only for synthetic data, or for real data when ``CXRLIB_SHOW_REAL_IMAGES=1`` is set, so
that no committed or CI output embeds a real X-ray. Every title of synthetic data says so.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlparse

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cxrlib.core import paper, paths
from cxrlib.core.paper import CLASSES
from cxrlib.data import download
from cxrlib.data.dataset import load_image, read_manifest, read_summary
from cxrlib.experiment import results

SHOW_REAL_ENV = "CXRLIB_SHOW_REAL_IMAGES"


def is_synthetic(out) -> bool:
    return bool(read_summary(out).get("synthetic"))


def data_label(out) -> str:
    """"SYNTHETIC data" or "real data", for titles."""
    return "SYNTHETIC data (generated, not X-rays)" if is_synthetic(out) else "real data"


def may_show_images(out) -> bool:
    return is_synthetic(out) or os.environ.get(SHOW_REAL_ENV) == "1"


def _labels(manifest: pd.DataFrame, summary: dict) -> list[str]:
    """The classes of a curated set: the paper's, in its order, then any others (e.g. NIH's
    "No Finding") in the order curation met them."""
    found = dict.fromkeys([*summary.get("counts", {}), *manifest["label"]])
    return [c for c in CLASSES if c in found] + [c for c in found if c not in CLASSES]


def counts_table(out) -> pd.DataFrame:
    """Per class: the paper's count, what the sources offer and what curation examined (as
    ``curation.json`` records them), the images excluded, unreadable and included, and the
    shortfall against the paper (none for synthetic data, generated at a chosen size); then the
    total over the paper's seven classes. Included and excluded are counted in the manifest."""
    m = read_manifest(out)
    s = read_summary(out)
    logged = s.get("counts", {})
    reported = paper.class_counts()
    rows = []
    for label in _labels(m, s):
        theirs = reported.get(label)
        mine = m[m["label"] == label]
        included = int((mine["excluded"] == "").sum())
        rows.append({"class": label, "paper": theirs,
                     "available": logged.get(label, {}).get("available"),
                     "examined": logged.get(label, {}).get("examined"),
                     "excluded": int((mine["excluded"] != "").sum()),
                     "unreadable": logged.get(label, {}).get("unreadable", 0),
                     "included": included,
                     "shortfall": None if theirs is None or s.get("synthetic")
                     else max(theirs - included, 0)})
    df = pd.DataFrame(rows).set_index("class")
    total = df.drop(index=[i for i in df.index if i not in CLASSES]).sum(numeric_only=True)
    df.loc["total (7 classes)"] = total
    return df.astype("Int64")


def counts_against_paper(out) -> pd.DataFrame:
    """The data chapter's view of :func:`counts_table`: per class, the paper's count, the images
    we use, the shortfall and the exclusions (a synthetic set is generated at a chosen size, so
    it has no shortfall to report)."""
    table = counts_table(out).drop(index="total (7 classes)")
    shown = pd.DataFrame({"paper": table["paper"], "ours (used)": table["included"],
                          "short of the paper": table["shortfall"],
                          "excluded": table["excluded"]}).astype(object)
    shown = shown.where(shown.notna(), "")
    return shown.drop(columns="short of the paper") if is_synthetic(out) else shown


def paper_counts() -> pd.DataFrame:
    """The paper's images per class and the source it names for each."""
    counts = paper.class_counts()
    sources = paper.reported()["sources"]
    return pd.DataFrame({"paper's images": counts,
                         "paper's source": {c: sources.get(c, "") for c in counts}})


def _with_totals(table: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """``table`` in class order with a total row and column ("all")."""
    table = table.reindex([c for c in order if c in table.index])
    table.loc["all"] = table.sum()
    table["all"] = table.sum(axis=1)
    return table


def per_source_table(out) -> pd.DataFrame:
    """Included images per class (rows) and source (columns), with totals."""
    m = read_manifest(out)
    inc = m[m["excluded"] == ""]
    return _with_totals(pd.crosstab(inc["label"], inc["source"]), _labels(m, read_summary(out)))


def exclusions_table(out) -> pd.DataFrame:
    """Excluded images per class (rows) and reason (columns; duplicate_of:<id> grouped, files
    that could not be read as "unreadable"), with totals; empty when nothing was excluded."""
    m = read_manifest(out)
    ex = m[m["excluded"] != ""].copy()
    ex["reason"] = ex["excluded"].str.split(":").str[0]
    t = pd.crosstab(ex["label"], ex["reason"]) if len(ex) else pd.DataFrame()
    summary = read_summary(out)
    if summary.get("unreadable"):
        un = pd.Series([u["label"] for u in summary["unreadable"]]).value_counts()
        t = t.reindex(t.index.union(un.index), fill_value=0)
        t["unreadable"] = un.reindex(t.index, fill_value=0)
    return t if t.empty else _with_totals(t, _labels(m, summary))


def duplicates_table(out) -> pd.DataFrame:
    """One row per group of copies of one radiograph."""
    d = read_summary(out)["duplicates"]["list"]
    return pd.DataFrame([{
        "group": g["group"], "images": len(g["image_ids"]), "kind": g["kind"],
        "labels": ", ".join(g["labels"]), "sources": ", ".join(g["sources"]),
        "patient ids": ", ".join(g["source_patient_ids"]), "min corr": g["min_corr"],
        "max hash distance": g["max_hamming"],
        "kept": ", ".join(i for i, r in g["decisions"].items() if r == ""),
    } for g in d])


DUPLICATE_LABELS = {
    "pairs": "near-duplicate pairs found", "groups": "groups of duplicates",
    "identical_groups": "groups of byte-identical images",
    "cross_source_groups": "groups spanning two sources",
    "cross_patient_groups": "groups spanning two patient ids",
    "label_conflict_groups": "groups with two labels",
}


def duplicates_summary(out) -> pd.DataFrame | None:
    """What duplicate detection and patient reconciliation found, in counts (None when the
    curation recorded no duplicate search)."""
    summary = read_summary(out)
    duplicates = summary.get("duplicates")
    if not duplicates:
        return None
    rows = {label: duplicates[key] for key, label in DUPLICATE_LABELS.items()
            if key in duplicates}
    patients = summary.get("patients", {})
    if "source_patient_ids" in patients:
        rows["patient ids in the sources (used images)"] = patients["source_patient_ids"]
    if "reconciled_patient_ids" in patients:
        rows["patients after reconciling duplicates"] = patients["reconciled_patient_ids"]
    return pd.DataFrame({"count": rows}).rename_axis("duplicates and patients")


def criteria_table(out) -> pd.DataFrame:
    crit = read_summary(out)["parameters"]["criteria"]
    size = read_summary(out)["parameters"]["image_size"]
    return pd.DataFrame([
        ("too_small", f"shorter side < {crit['min_side_fraction']} x {size} px"),
        ("multilabel", "NIH image naming 2+ of Edema, Effusion, Emphysema, Fibrosis"),
        ("low_contrast", f"central 2-98 % intensity spread < {crit['min_contrast_range']:g} "
                         f"of 256 grey levels"),
        ("partial_thorax", f"content (inside uniform borders) wider than "
                           f"{crit['max_content_aspect']} x its height or narrower than "
                           f"{crit['min_content_aspect']} x"),
        ("inverted", f"layout correlation with the average radiograph < "
                     f"{crit['min_layout_corr']}"),
        ("duplicate_of", f"perceptual hash distance <= {crit['duplicate_max_hamming']} bits and "
                         f"thumbnail correlation >= {crit['duplicate_min_corr']}"),
    ], columns=["reason", "rule"]).set_index("reason")


# ---------------------------------------------------------------------------------------------
# figures


def criteria_figure(out):
    """Distributions of the two measured criteria per class, with the thresholds."""
    m = read_manifest(out)
    crit = read_summary(out)["parameters"]["criteria"]
    labels = _labels(m, read_summary(out))
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(labels) + 1.6), sharey=True)
    for ax, column, lines, title in (
        (axes[0], "contrast_range", [crit["min_contrast_range"]],
         "central 2-98 % intensity spread"),
        (axes[1], "content_aspect", [crit["min_content_aspect"], crit["max_content_aspect"]],
         "content width / height"),
    ):
        for y, label in enumerate(labels):
            values = pd.to_numeric(m.loc[m["label"] == label, column], errors="coerce").dropna()
            jitter = np.random.default_rng(y).uniform(-0.25, 0.25, len(values))
            ax.scatter(values, y + jitter, s=4, alpha=0.4)
        for x in lines:
            ax.axvline(x, color="crimson", lw=1)
        ax.set_title(title, fontsize=10)
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()  # the paper's class order, top to bottom
    fig.suptitle(f"Exclusion criteria, every examined image ({data_label(out)})", fontsize=11)
    fig.tight_layout()
    return fig


def distributions_figure(out):
    """Intensity, original aspect ratio and original size per class and source (included)."""
    m = read_manifest(out)
    inc = m[m["excluded"] == ""].copy()
    inc["group"] = inc["label"] + " / " + inc["source"]
    inc["aspect"] = inc["orig_width"].astype(float) / inc["orig_height"].astype(float)
    inc["short side"] = np.minimum(inc["orig_width"].astype(float),
                                   inc["orig_height"].astype(float))
    inc["mean intensity"] = inc["mean_intensity"].astype(float)
    order = [f"{lab} / {src}" for lab in _labels(m, read_summary(out))
             for src in sorted(inc["source"].unique()) if f"{lab} / {src}" in set(inc["group"])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.4 * len(order) + 1.8), sharey=True)
    for ax, column in zip(axes, ("mean intensity", "aspect", "short side")):
        data = [inc.loc[inc["group"] == g, column].to_numpy() for g in order]
        ax.boxplot(data, orientation="horizontal", showfliers=False)
        for y, values in enumerate(data, start=1):
            ax.scatter(values, y + np.random.default_rng(y).uniform(-0.2, 0.2, len(values)),
                       s=3, alpha=0.3)
        ax.set_title(column + (" (px, original)" if column == "short side" else
                               " (original w/h)" if column == "aspect" else " (0-255)"),
                     fontsize=10)
    axes[0].set_yticks(range(1, len(order) + 1), order, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(f"Included images by class and source ({data_label(out)})", fontsize=11)
    fig.tight_layout()
    return fig


def image_grid(out, image_ids, titles=None, columns: int = 8, title: str = ""):
    """Curated images side by side; refuses real images unless CXRLIB_SHOW_REAL_IMAGES=1."""
    if not may_show_images(out):
        raise PermissionError(f"{out} holds real X-rays: set {SHOW_REAL_ENV}=1 to show them "
                              f"(never in committed or CI output)")
    image_ids = list(image_ids)
    rows = max(1, -(-len(image_ids) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, image_id in enumerate(image_ids):
        ax = axes.ravel()[k]
        ax.imshow(load_image(out, image_id), cmap="gray", vmin=0, vmax=255)
        if titles is not None:
            ax.set_title(titles[k], fontsize=7)
    fig.suptitle(f"{title} ({data_label(out)})", fontsize=11)
    fig.tight_layout()
    return fig


def sample_grid(out, per_class: int = 6, seed: int = 0):
    """A few included images of every class, one row per class."""
    m = read_manifest(out)
    inc = m[m["excluded"] == ""]
    ids, titles = [], []
    for label in _labels(m, read_summary(out)):
        rows = inc[inc["label"] == label]
        pick = rows.sample(min(per_class, len(rows)), random_state=seed) if len(rows) else rows
        ids += list(pick["image_id"]) + [None] * (per_class - len(pick))
        titles += [f"{label}\n{s}" for s in pick["source"]] + [""] * (per_class - len(pick))
    keep = [k for k, i in enumerate(ids) if i is not None]
    fig = image_grid(out, [ids[k] for k in keep], [titles[k] for k in keep], columns=per_class,
                     title="Samples per class")
    return fig


def exclusion_examples(out, per_reason: int = 4):
    """Examples of each exclusion reason."""
    m = read_manifest(out)
    ex = m[m["excluded"] != ""].copy()
    ex["reason"] = ex["excluded"].str.split(":").str[0]
    pick = ex.groupby("reason", sort=True).head(per_reason)
    return image_grid(out, pick["image_id"], [f"{r}\n{l}" for r, l in
                                              zip(pick["reason"], pick["label"])],
                      columns=per_reason * 2 if len(pick) > per_reason * 2 else max(1, len(pick)),
                      title="Excluded images and why")


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


# --- the folders behind the committed runs ----------------------------------------------------

#: Where each folder of the shared real-data bundle was copied from (transcribed from the
#: bundle's ``provenance.json``, "sources"; tests/test_provenance.py checks the repositories and
#: commits against it wherever the bundle is present). The bundle's images were converted to
#: 8-bit grayscale JPEG (quality 90), the longest side at most 512 px.
BUNDLE_ORIGINS: dict[str, dict[str, str]] = {
    "cohen": {
        "holds": "COVID-19 radiographs of the collection of Cohen et al.",
        "repository": "ieee8023/covid-chestxray-dataset",
        "commit": "584034aa7fbf06496741f11008d72fd791c8e443",
        "licence": "per image (Apache 2.0, CC BY-NC-SA 4.0, CC BY 4.0, ...)"},
    "kermany": {
        "holds": "paediatric Normal and Pneumonia radiographs of Kermany et al. (Kaggle layout)",
        "repository": "waliatushar/ai-pneumonia-detection",
        "commit": "362d6d1be840461d0f26253972ec86bbc8533772",
        "licence": "CC BY 4.0 (the dataset, Mendeley Data doi:10.17632/rscbjbr9sj.2)"},
    "nih": {
        "holds": "NIH ChestX-ray14 images under their NIH names, with NIH's label rows",
        "repository": "mlmed/torchxrayvision (the label table) and katir4567/fibrosis (most "
                      "images; the rest from several smaller public copies)",
        "commit": "f4087a0b0d0cdc6a5877fb5456965b6d29adb1e5 and "
                  "d5d15510b22c997f45ad17f403ded30b7a56ac0c respectively",
        "licence": "NIH Clinical Center: unrestricted use with citation"},
    "nih_rxtorax": {
        "holds": "NIH single-label Effusion and No Finding images whose NIH names were lost "
                 "(a Kaggle copy, epreis/rxtorax)",
        "repository": "ashok133/Pleural-Effusion-Detection",
        "commit": "466a36d0d919839f3c3cc599a7c5dbab43713d59",
        "licence": "NIH Clinical Center: unrestricted use with citation"},
    "hannover": {
        "holds": "COVID-19 radiographs of Hannover Medical School (external validation only)",
        "repository": "ml-workgroup/covid-19-image-repository",
        "commit": "ad7ab099b425f16e06bba22322336b7d6a732965",
        "licence": "CC BY 3.0 (doi:10.6084/m9.figshare.12275009)"},
}


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _public_download(folder: str) -> str:
    """What ``python -m cxrlib download`` fetches in place of a bundle folder (Markdown)."""
    if folder in download.REMOTES:
        files = download.REMOTES[folder]
        sizes = sorted({r.size_note for r in files})
        many = len(files) > 1
        return (f"`python -m cxrlib download --source {folder}`: {len(files)} file"
                f"{'s' if many else ''} ({files[0].filename}{', ...' if many else ''}; "
                f"{', '.join(sizes)}{' each' if many else ''}) from "
                f"{urlparse(files[-1].url).netloc}")
    if folder == "nih_rxtorax":
        return "nothing to fetch, since with the full NIH download curation draws these " \
            "classes from nih/"
    return (f"not fetched by the download command (external validation only), "
            f"`git clone https://github.com/{BUNDLE_ORIGINS[folder]['repository']}`, commit "
            f"{BUNDLE_ORIGINS[folder]['commit'][:12]}")


def source_origins() -> pd.DataFrame:
    """Per folder of the shared bundle: what it holds, where it was copied from (repository and
    commit), its licence, and what the download command fetches instead."""
    return pd.DataFrame([{"folder": f"{folder}/", **origin,
                          "public download": _public_download(folder)}
                         for folder, origin in BUNDLE_ORIGINS.items()]).set_index("folder")


def real_runs(results_root: str | Path | None = None) -> list[Path]:
    """The stored runs made on real data, by name."""
    root = Path(results_root) if results_root else paths.results_dir()
    found = [root / r for r in results.list_runs(root)]
    return [p for p in found if (p / "folds.csv").is_file()
            and results.read_profile(p).dataset == "real"]


def run_images_table(run_paths) -> pd.DataFrame:
    """Images per (run, class) and source, read from each run's stored ``folds.csv``."""
    parts = {}
    for path in run_paths:
        folds = results.read_folds(Path(path))
        order = [c for c in CLASSES if c in set(folds["label"])] + sorted(
            set(folds["label"]) - set(CLASSES))
        parts[Path(path).name] = _with_totals(pd.crosstab(folds["label"], folds["source"]),
                                              order)
    table = pd.concat(parts, names=["run", "class"]).fillna(0).astype(int)
    return table.rename_axis(columns="source")


def _image_set(path: Path) -> frozenset:
    folds = results.read_folds(path)
    return frozenset(zip(folds["image_id"], folds["label"]))


def _included(curated: Path, images: frozenset) -> frozenset:
    """The manifest's included images of the classes ``images`` has, as (image_id, label)."""
    m = read_manifest(curated)
    m = m[(m["excluded"] == "") & m["label"].isin({label for _, label in images})]
    return frozenset(zip(m["image_id"], m["label"]))


def checksums_table(results_root: str | Path | None = None) -> pd.DataFrame:
    """Per real-data run: its images, the SHA-256 of its stored ``folds.csv`` (every image used,
    with label, patient, source and fold) and of its stored curation manifest (every examined
    image with its decision), and the first run with exactly the same images and labels."""
    rows, seen = [], {}
    for path in real_runs(results_root):
        images = _image_set(path)
        first = seen.setdefault(images, path.name)
        manifest = path / results.CURATION_DIR / "manifest.csv"
        rows.append({
            "run": path.name, "images": len(images),
            "folds.csv SHA-256": file_sha256(path / "folds.csv"),
            "curation manifest SHA-256": file_sha256(manifest) if manifest.is_file()
            else "not stored with the run",
            "its included images are the run's": "" if not manifest.is_file() else
            "yes" if _included(manifest.parent, images) == images else "no",
            "same images and labels as": "" if first == path.name else first})
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()


def stored_exclusions(results_root: str | Path | None = None) -> pd.DataFrame:
    """Excluded images per reason and class, for every real-data run whose curation manifest is
    stored with its results (:func:`exclusions_table` of each)."""
    parts = {p.name: exclusions_table(p / results.CURATION_DIR) for p in real_runs(results_root)
             if (p / results.CURATION_DIR / "manifest.csv").is_file()}
    parts = {run: t for run, t in parts.items() if not t.empty}
    if not parts:
        return pd.DataFrame()
    table = pd.concat(parts, names=["run", "class"]).fillna(0).astype(int)
    return table[[c for c in table.columns if c != "all"] + ["all"]]


def source_share(label: str, results_root: str | Path | None = None) -> dict:
    """Where one class's images come from in the first real-data run that has it: the run, the
    class's images and their count per source (zeros for the bundle's folders it does not use;
    run "none" when no such run is stored)."""
    found = {"run": "none", "total": 0, **{folder: 0 for folder in BUNDLE_ORIGINS}}
    for path in real_runs(results_root):
        folds = results.read_folds(path)
        mine = folds[folds["label"] == label]
        if len(mine):
            return {**found, "run": path.name, "total": len(mine),
                    **mine["source"].value_counts().astype(int).to_dict()}
    return found
