# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 Data curation
#
# Apostolopoulos, Aznaouridis and Tzani (2020) trained MobileNetV2 on 3,905 chest X-rays of
# seven classes gathered from three public collections: COVID-19 cases from Cohen's collection
# (and web repositories), bacterial and viral pneumonia and normal children from Kermany et al.,
# and edema, effusion, emphysema and fibrosis from NIH ChestX-ray14. They resized every image to
# 200x200 keeping its aspect ratio with black padding, and left out low-contrast images and
# images showing only part of the thorax, without saying how they judged either.
#
# This notebook builds (or reuses) the curated dataset of a run profile and reports what the
# curation did: the counts beside the paper's, where each class comes from, what was excluded
# and why, the duplicates and patients it found, and the distributions of intensity and image
# geometry that the audit chapter later uses to look for shortcuts. All logic lives in
# `cxrlib.data.curate` and `cxrlib.report.curation_figures`; the rules are in the docstring of
# `cxrlib.data.curate`.

# %% tags=["parameters"]
profile = "default"  # a name from cxrlib.core.profiles.PROFILES
data = ""  # real sources folder; empty: synthetic, or the default data folder for a real profile
run = ""  # output folder of the curated set; empty: the profile folder under data/curated
image_size = 0  # 0: use the profile value
seed = 0  # 0: use the profile value

# %%
from pathlib import Path

from IPython.display import Markdown, display

from cxrlib import arguments
from cxrlib.core import paths
from cxrlib.core.paper import CITATION
from cxrlib.data import curate, dataset
from cxrlib.data.dataset import read_summary
from cxrlib.report import curation_figures as cf

# The parameters, checked as the command line checks them (`--data` only with a real profile).
settings = [f"{k}={v}" for k, v in dict(image_size=image_size, seed=seed).items() if v]
chosen = arguments.choose(profile, None, data or None, settings=settings).profile
data_dir = Path(data) if data else (paths.default_data_dir() if chosen.dataset == "real" else None)
out = Path(run) if run else curate.curated_dir_for(chosen)
if not run:
    out = curate.ensure_curated(chosen, data_dir=data_dir)
elif not (out / "manifest.csv").is_file():
    if chosen.dataset == "real" and data_dir is None:
        from cxrlib.data.download import missing_data_message
        raise FileNotFoundError(missing_data_message(paths.root() / "data" / "sources"))
    curate.curate(out, data_dir=data_dir, image_size=chosen.image_size, seed=chosen.seed,
                  multilabel=chosen.multilabel, synthetic_per_class=chosen.synthetic_per_class)
summary = read_summary(out)
synthetic = summary["synthetic"]
print(f"profile {chosen.name!r}: {out}")

# %% [markdown]
# ## What this dataset is

# %%
if synthetic:
    display(Markdown(
        "**These are SYNTHETIC images**, drawn by `cxrlib.data.synthetic` from geometric shapes; none "
        "is an X-ray, and nothing here is a finding about real patients. Each class carries a "
        "simplified version of its radiographic sign, and each class group comes from its own "
        "made-up collection, on purpose:\n\n> " + summary["shortcut_note"]))
else:
    display(Markdown(
        "**Real images** from the public collections named below; no image of them is shown "
        f"here unless `{cf.SHOW_REAL_ENV}=1` is set."))
p = summary["parameters"]
print(f"image size {p['image_size']} px, seed {p['seed']}, multilabel policy "
      f"{p['multilabel']!r}, lateral views {'kept' if p['lateral'] else 'left out'}, "
      f"JPEG quality {p['jpeg_quality']}")
timings = dataset.read_timings(out)
print("curated:", summary["output"]["images"], "images,",
      round(summary["output"]["image_bytes"] / 2 ** 20, 1), "MiB;",
      "wall time", timings.get("wall_time_seconds", {}).get("total_s", "not recorded"), "s on",
      timings.get("workers", "?"), "core(s)")

# %% [markdown]
# ## Counts beside the paper's
#
# For the real data the target per class is the paper's count; classes with fewer usable
# images take all of them and report the shortfall. For synthetic data every class has the
# profile's size, so the paper column is only for reference.

# %%
cf.counts_table(out)

# %% [markdown]
# ## Where each class comes from

# %%
cf.per_source_table(out)

# %% [markdown]
# ## Exclusions
#
# The paper names two reasons to leave an image out, low contrast and a partial view of the
# thorax, but not how it measured them. Our rules are below; the first that applies is the
# image's reason, and excluded images stay in the manifest with it. The figure shows every
# examined image on the two measured scales with the thresholds in red, so the reader can see
# how many images sit near a threshold and whether a rule hits one class more than others.

# %%
cf.criteria_table(out)

# %%
cf.exclusions_table(out)

# %%
fig = cf.criteria_figure(out)

# %%
if cf.may_show_images(out) and (cf.exclusions_table(out).to_numpy().sum() > 0):
    fig = cf.exclusion_examples(out)
else:
    print("examples of excluded images are shown for synthetic data only")

# %% [markdown]
# ## Duplicates and patients
#
# Public collections repeat themselves: a case published on two websites enters Cohen's
# collection twice under two patient ids, and Kermany's folders hold byte-identical files under
# different names. Two images are taken to be the same radiograph when their perceptual hashes
# and their small thumbnails agree closely (rule above). One copy is kept; the patients of all
# copies are joined, so that cross-validation grouped by patient cannot put one radiograph or
# one person on both sides of a fold.

# %%
d = summary["duplicates"]
print(f"{d['groups']} group(s) of copies ({d['identical_groups']} pixel-identical), "
      f"{d['cross_patient_groups']} under more than one patient id, "
      f"{d['cross_source_groups']} across sources, {d['label_conflict_groups']} with "
      f"conflicting labels")
pt = summary["patients"]
print(f"included images belong to {pt['source_patient_ids']} source patient ids, "
      f"{pt['reconciled_patient_ids']} after joining copies; "
      f"{len(pt['merged'])} patient group(s) were joined")
cf.duplicates_table(out)

# %% [markdown]
# ## Samples per class

# %%
if cf.may_show_images(out):
    fig = cf.sample_grid(out)
else:
    print(f"real X-rays are not shown (set {cf.SHOW_REAL_ENV}=1 to see them locally)")

# %% [markdown]
# ## Explore the curated dataset
#
# Every image of the manifest, filtered by class, source, view, curation decision or patient,
# with its metadata and what curation decided (used, or excluded and why; its duplicate group;
# the patients a duplicate joined). Images appear under the same rule as above. Live in
# JupyterLab; the explorer lives in `cxrlib.explore`.

# %%
from cxrlib import explore

explore.explore_dataset(out)

# %% [markdown]
# ## Intensity and geometry by class and source
#
# If one class comes from one collection, anything that marks the collection (exposure,
# aspect ratio, resolution, burned-in text) marks the class too, and a network can learn it
# instead of the disease. These distributions are the first place to look; the audit chapter
# tests it.

# %%
fig = cf.distributions_figure(out)

# %% [markdown]
# ## Problems met while reading

# %%
for line in summary["problems"] or ["none"]:
    print("-", line)

# %% [markdown]
# ## Checksums
#
# The SHA-256 of the manifest this curation wrote (every examined image and its decision): a
# committed run stores a copy of it, and the data chapter shows its checksum, so a rerun can be
# checked against it.

# %%
print(f"manifest.csv: {cf.file_sha256(out / 'manifest.csv')}")

# %% [markdown]
# ### Sources
#
# - The paper (full citation printed below): Apostolopoulos, Aznaouridis & Tzani (2020).
# - Cohen, J. P., Morrison, P., Dao, L. et al. (2020). COVID-19 image data collection.
#   arXiv:2006.11988.
# - Kermany, D., Zhang, K. & Goldbaum, M. (2018). Labeled optical coherence tomography (OCT) and
#   chest X-ray images for classification. Mendeley Data, doi:10.17632/rscbjbr9sj.2.
# - Wang, X., Peng, Y., Lu, L. et al. (2017). ChestX-ray8. CVPR 2017.

# %%
print(CITATION)
