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
# # 04 From scratch: MobileNetV2 learns everything from the X-rays
#
# The third strategy of Apostolopoulos et al. (2020) uses MobileNetV2's architecture without
# its ImageNet weights: every layer starts from random values and everything is trained on the
# chest X-rays. In the paper this strategy did best (its Tables 5-7), which the authors take to
# suggest that features mined from the radiographs themselves, rather than borrowed from
# photographs, may be relevant biomarkers. Learning a whole network from a few thousand images is also the setting most
# open to shortcuts, which the audit chapter examines.
#
# This notebook cross-validates the `from_scratch` configuration with
# `cxrlib.cv.run_profile` (finished folds are skipped), then shows the accuracy of every test
# fold, the confusion matrix pooled over the folds (rows predicted, columns actual, as the
# paper prints it) and the training curves.

# %% tags=["parameters"]
profile = "default"  # a name from cxrlib.profiles.PROFILES
run = ""  # results run name; empty: the profile's name
data = ""  # folder of the real sources; empty: the profile's data (synthetic or the default)
folds = ""  # folds to run, e.g. "0,1"; empty: all
executor = "local"  # where folds train: "local" (this kernel), "dask" or "dask:N" (a local
# Dask cluster of N workers), a scheduler address, or "slurm:<config.yaml>" (cxrlib.cluster)

# %%
from IPython.display import Markdown, display

from cxrlib import cv, metrics, report, results
from cxrlib.profiles import get_profile

config = "from_scratch"
chosen = get_profile(profile)
if data:  # real sources given: as the curation notebook does, read them
    chosen = chosen.replace(dataset="real")
run_path = cv.run_profile(chosen, configs=[config], folds=cv.split_folds(folds),
                          run=run or None, data_dir=data or None, executor=executor)
display(Markdown(f"**{report.run_label(run_path)}** (results: `{run_path}`)"))

# %% [markdown]
# ## Every test fold
#
# Accuracy over the seven classes (the paper's figure is the mean of these), COVID-19 against
# the rest, and what training took.

# %%
display(report.fold_table(run_path, config).round(2))
pred = results.read_predictions(run_path, config)
classes = report.run_classes(run_path)
accuracy = metrics.fold_accuracies(pred, classes)["accuracy"] * 100
display(Markdown(f"{len(classes)}-class accuracy over {len(accuracy)} test folds: "
                 f"{accuracy.mean():.1f} +/- {accuracy.std(ddof=1):.1f} % (mean +/- sd)"))

# %% [markdown]
# ## Confusion matrix, pooled over the test folds (rows predicted, columns actual)

# %%
confusion = metrics.confusion(pred, classes)
display(report.confusion_heatmap(confusion, f"{report.config_label(config)}: pooled test folds"))

# %% [markdown]
# ## Training curves
#
# Loss and accuracy per epoch of every fold; training early-stops on the validation loss
# (validation images come from the training folds) and keeps the best epoch.

# %%
display(report.training_curves(run_path, config))
