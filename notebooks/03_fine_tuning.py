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
# # 03 Fine-tuning: the top blocks of MobileNetV2 re-learn
#
# The second strategy of Apostolopoulos et al. (2020) starts from the ImageNet weights, as the
# off-the-shelf one does, but lets the top of the network learn again on the chest X-rays while
# the lower blocks stay frozen. The paper re-trains 1, 3, 5, 7, 9 or 11 blocks and reports the
# six variants side by side (its Table 4). It does not say what it counts as a block; we count
# MobileNetV2's 17 inverted-residual blocks and its final 1x1 convolution as 18 blocks, top
# first, so one block is the final convolution alone and eleven blocks reach down to
# `block_7` (the exact layers are listed in the docstring of `cxrlib.model`). Batch
# normalisation layers inside the re-trained blocks learn too; frozen ones keep their ImageNet
# statistics.
#
# This notebook cross-validates `fine_tune_<trainable_blocks>` with `cxrlib.cv.run_profile`
# (finished folds are skipped), then shows the accuracy of every test fold, the confusion matrix
# pooled over the folds (rows predicted, columns actual, as the paper prints it) and the
# training curves.

# %% tags=["parameters"]
profile = "default"  # a name from cxrlib.profiles.PROFILES
run = ""  # results run name; empty: the profile's name
data = ""  # folder of the real sources; empty: the profile's data (synthetic or the default)
folds = ""  # folds to run, e.g. "0,1"; empty: all
executor = "local"  # where folds train: "local" (this kernel), "dask" or "dask:N" (a local
# Dask cluster of N workers), a scheduler address, or "slurm:<config.yaml>" (cxrlib.cluster)
trainable_blocks = 1  # top blocks that learn: the paper uses 1, 3, 5, 7, 9, 11

# %%
from IPython.display import Markdown, display

from cxrlib import cv, metrics, report, results
from cxrlib.profiles import get_profile

config = f"fine_tune_{int(trainable_blocks)}"
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
