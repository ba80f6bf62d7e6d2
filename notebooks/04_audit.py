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
# # 04 Audit: biomarkers or shortcuts?
#
# The paper's classes come from different collections: COVID-19 from publications and
# websites, Pneumonia and Normal from one children's hospital, the other findings from NIH. A
# network can score well by recognising the collection, the patients' age, the frame or
# burned-in text instead of the disease. Eight experiments look for that, all on the
# configuration whose features the paper reads as possible biomarkers (training from
# scratch); the chapter "Biomarkers or shortcuts?" of the book explains each and reads the
# results.
#
# Five of them retrain the network with one thing changed, each as a run of its own
# (`<run>-patient`, `<run>-source-probe`, `<run>-border-only`, `<run>-lung-only`,
# `<run>-adult-normal`), cross-validated fold by fold and resumable like the main run. The
# library does all of it (`cxrlib.audit.run_audit`, the same as `python -m cxrlib audit`) and
# stores every table under `results/<run>/audit/`; this notebook shows them.

# %% tags=["parameters"]
profile = "default"  # a name from cxrlib.core.profiles.PROFILES
run = ""  # the main run's name; empty: the profile's name
data = ""  # folder of the real sources; empty: the profile's data
train = True  # False: only analyse the folds already stored (e.g. retrainings made on a GPU)

# %% [markdown]
# ## Running the audit
#
# With `train`, the main run's audit folds and the five retrainings are trained first (finished
# folds are skipped); then every experiment reads the stored folds and writes its table. An
# experiment whose inputs are missing says so in the log and stores nothing.

# %%
from IPython.display import Markdown, display

from cxrlib import audit
from cxrlib.data import dataset
from cxrlib.analysis import explain
from cxrlib.experiment import results, runs
from cxrlib.audit import external, figures, numbers, store, verdict
from cxrlib.report.curation_figures import may_show_images

stored = audit.run_audit(profile, run, data_dir=data or None, train=train)
run_path = results.run_dir(runs.run_name(run, profile))
display(Markdown(f"**{runs.run_label(run_path)}**"))
numbers.status_table(run_path)

# %% [markdown]
# ## 1. Image-level against patient-grouped folds
#
# Images of one patient look alike; with image-level folds a patient can be in training and in
# test at once. `difference` is image-level minus patient-grouped, with a 95% bootstrap
# interval; `leakage` is the share of test images whose patient was also in training. The
# patient-grouped retraining keeps its trained weights of one fold for section 5.

# %%
stored.get("patient_folds")

# %% [markdown]
# ## 2. Source probe, and accuracy inside one collection
#
# The probe is the same network and training, asked for the collection instead of the
# disease. Inside a collection that holds several classes the collection gives nothing away:
# there the network's answers are restricted to that collection's classes and compared with
# the majority class. The adult-normal retraining (section 7) adds a collection with two
# classes on real data (NIH: Effusion and adult normal images).

# %%
display(stored.get("source_probe"))
stored.get("within_collection")

# %% [markdown]
# ## 3. Lung fields blacked out, and lung fields alone
#
# `retained` is the share of the full images' accuracy above chance (the majority class) that
# each input keeps: near 1 without the lungs means the lungs were not needed.

# %%
masked = stored.get("masked_inputs")
if masked is not None:
    display(masked[masked["metric"] == "accuracy"])
    display(figures.masked_figure(masked))

# %% [markdown]
# ## 4. What trivial image statistics know about the class
#
# No deep learning: a logistic regression and gradient-boosted trees on statistics of the
# curated image the network sees (an intensity histogram, the padding and aspect of the frame,
# sharpness), cross-validated with the main run's own folds. Gradient boosting is also given
# each group of statistics alone. What they predict well, the network can learn without
# looking at the lungs. Apart: the dataset confound, the original file's size alone, which the
# network never sees (curation letterboxes every image to one size).

# %%
statistics = stored.get("image_statistics")
if statistics is not None:
    display(statistics.pivot_table(index=["model", "features"], columns="metric",
                                   values="value", sort=False))
confound = stored.get("dataset_confound")
if confound is not None:
    display(confound.set_index("metric")[["value", "ci_low", "ci_high"]])
    display(figures.interval_figure(figures.confound_rows(confound, statistics),
                                    "Dataset confound beside the rival"))

# %% [markdown]
# ## 5. Where the network looks
#
# Grad-CAM maps of the class the network answered, for test images of one trained fold (the
# main run's kept weights if it has any, else the patient-grouped retraining's).
# `saliency_<region>` is the mean share of a map in the region, `area_<region>` the region's
# share of the image (what a map blind to the image would give); `lung_enrichment` is their
# ratio for the lung fields: above 1, the maps favour the lungs.

# %%
maps = stored.get("saliency_maps")
if maps is not None:
    display(stored["saliency_summary"])
    display(figures.mean_maps_figure(maps, size=runs.run_profile(run_path).image_size))

# %% [markdown]
# Examples, on synthetic images (real ones only where `CXRLIB_SHOW_REAL_IMAGES=1`): the map of
# the answered class over the image, the lung fields outlined.

# %%
folder = runs.curated_dir(run_path)
if maps is not None and folder is not None and may_show_images(folder):
    display(figures.saliency_examples_figure(
        maps, {i: dataset.load_image(folder, i) for i in maps["image_id"]}))

# %% [markdown]
# ### The randomisation check
#
# The weights are destroyed from the top of the network down; the maps should stop resembling
# the trained ones. Maps that stay alike show the image, not the model.

# %%
check = stored.get("randomisation")
if check is not None:
    display(explain.randomisation_summary(check))
    display(figures.randomisation_figure(check))

# %% [markdown]
# ## 6. Images from elsewhere
#
# The same trained fold on images from another collection: on synthetic data one with the same
# disease signs and none of the collection cues; on the real bundle, images no run trained on
# from the same collections (there is no other), which is only partly external. `difference`
# is its own test fold minus the other images; below, each class's recall on both.

# %%
display(store.read_record(run_path, "external"))
display(stored.get("external"))
external.external_recall(run_path)

# %% [markdown]
# ## 7. Children's Normal images against adult ones
#
# Every other class stays as it was; `difference` is the paediatric-Normal run minus the
# adult-Normal run (a fall is positive); `recall_Normal` is the Normal images' own accuracy.
# Below: each class's recall in both.

# %%
display(stored.get("age_swap"))
stored.get("age_swap_recall")

# %% [markdown]
# ## 8. Every headline figure with its interval, and the verdict
#
# Every configuration's figures with patient-level bootstrap intervals, beside the majority
# rule (always the most frequent class; its 2-class accuracy is the "never COVID-19" rule's)
# and the image-statistics classifiers of section 4; then from scratch's accuracy minus every
# other configuration's, paired on the same images.

# %%
display(stored["uncertainty"].pivot_table(index="model", columns="metric", values="value",
                                          sort=False))
stored["strategies"]

# %% [markdown]
# ## Controls of the shortcut tests
#
# Each shortcut test on the synthetic run with the planted shortcut (positive control: it
# should fire) and on the same generator's images without it (negative control, profile
# `default-no-shortcut`: it should stay quiet). The verdict counts only tests that passed;
# the others are uninformative, or have no control. The forest plot shows each test's effect
# on this run with its threshold (red), black where the test is counted.

# %%
display(stored.get("controls"))
evidence = verdict.collect_evidence(run_path)
forest = figures.forest_rows(evidence)
figures.forest_figure(forest) if forest else None

# %% [markdown]
# Each of the paper's claims, the verdict the stored evidence gives under fixed rules
# (`cxrlib.audit.verdict.Thresholds`), the figures it rests on and the rule applied.

# %%
stored["verdict"].set_index("claim")
