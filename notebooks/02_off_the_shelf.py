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
# # 02 Off the shelf: ImageNet features, only the head learns
#
# The first of the three ways Apostolopoulos et al. (2020) use MobileNetV2 is as a fixed feature
# extractor: the network keeps the weights it learned on ImageNet, none of them changes, and
# only the small classifier on top (global average pooling, a dense layer of 2,500 units, batch
# normalisation, dropout, softmax) is trained on the chest X-rays. It asks how far features
# learned on everyday photographs carry over to radiographs. The paper reports this strategy
# with 10-fold cross-validation (its Tables 1-3).
#
# This notebook cross-validates the `off_the_shelf` configuration of a run profile with
# `cxrlib.cv.run_profile` (folds already finished are skipped, so rerunning it is cheap), then
# shows the accuracy of every test fold, the confusion matrix pooled over the folds (rows
# predicted, columns actual, as the paper prints it) and the training curves. The model is
# `cxrlib.model.build_model`; the training settings are the profile's (`cxrlib.profiles`).

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

config = "off_the_shelf"
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
