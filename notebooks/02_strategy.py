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
# # 02 One strategy: cross-validate one configuration of MobileNetV2
#
# Apostolopoulos et al. (2020) use MobileNetV2 in three ways, and this notebook runs any one
# of them, named by the parameter `config`:
#
# - **`off_the_shelf`**: a fixed feature extractor. The network keeps the weights it learned on
#   ImageNet, none of them changes, and only the small classifier on top (global average
#   pooling, a dense layer of 2,500 units, batch normalisation, dropout, softmax) learns the
#   chest X-rays. It asks how far features learned on everyday photographs carry over to
#   radiographs (the paper's Tables 1-3).
# - **`fine_tune_<n>`**: the same start, but the top `n` blocks learn again while the lower ones
#   stay frozen. The paper re-trains 1, 3, 5, 7, 9 or 11 blocks (its Table 4). It does not say
#   what a block is; we count MobileNetV2's 17 inverted-residual blocks and its final 1x1
#   convolution as 18 blocks, top first, so one block is the final convolution alone and eleven
#   reach down to `block_7` (the layers are listed in `cxrlib.experiment.model`). Batch normalisation
#   layers inside the re-trained blocks learn too; frozen ones keep their ImageNet statistics.
# - **`from_scratch`**: the architecture without its ImageNet weights; every layer starts from
#   random values. In the paper this did best (its Tables 5-7), which the authors take to
#   suggest that features mined from the radiographs themselves may be relevant biomarkers.
#   Learning a whole network from a few thousand images is also the setting most open to
#   shortcuts, which the audit examines (notebook 04).
#
# The configuration is cross-validated on the run profile's folds (`cxrlib.experiment.cv`; finished folds
# are skipped, so rerunning is cheap, and a killed run resumes at the first unfinished fold).
# Then: the accuracy of every test fold, the confusion matrix pooled over the folds (rows
# predicted, columns actual, as the paper prints it) and the training curves.

# %% tags=["parameters"]
profile = "default"  # a name from cxrlib.core.profiles.PROFILES
run = ""  # results run name; empty: the profile's name
data = ""  # folder of the real sources; empty: the profile's data (synthetic or the default)
config = "from_scratch"  # off_the_shelf, fine_tune_<n> (n: 1, 3, 5, 7, 9, 11) or from_scratch
folds = ""  # folds to run, e.g. "0,1"; empty: all
executor = "local"  # where folds train: "local" (this kernel), "dask" or "dask:N" (a local
# Dask cluster of N workers), a scheduler address, or "slurm:<config.yaml>" (cxrlib.experiment.cluster)

# %% [markdown]
# ## Training
#
# Each fold's predictions, history and timing are written atomically to
# `results/<run>/<config>/fold-<k>/` as soon as it ends.

# %%
from IPython.display import Markdown, display

from cxrlib import arguments
from cxrlib.experiment import cluster, results, runs
from cxrlib.report import figures
from cxrlib.core import metrics
from cxrlib.analysis import tables

# The parameters, checked as the command line checks them (a clear error for a wrong one).
chosen = arguments.choose(profile, run or None, data or None, configs=config, folds=folds)
run_path = cluster.run_profile(chosen.profile, configs=chosen.configs, folds=chosen.folds,
                               run=chosen.run, data_dir=chosen.data, executor=executor)
display(Markdown(f"**{runs.run_label(run_path)}**; `{config}` (results: `{run_path}`)"))

# %% [markdown]
# ## Every test fold
#
# Accuracy over the run's classes (the paper's figure is the mean of these), COVID-19 against
# the rest, and what training took; then the mean and spread over the folds.

# %%
display(tables.fold_table(run_path, config).round(2))
pred = results.read_predictions(run_path, config)
classes = runs.run_classes(run_path)
accuracy = metrics.fold_accuracies(pred, classes)["accuracy"] * 100
print(f"{len(classes)}-class accuracy over {len(accuracy)} test folds: "
      f"{accuracy.mean():.1f} +/- {accuracy.std(ddof=1):.1f} % (mean +/- sd)")

# %% [markdown]
# ## Confusion matrix, pooled over the test folds (rows predicted, columns actual)

# %%
confusion = metrics.confusion(pred, classes)
figures.confusion_heatmap(confusion, f"{tables.config_label(config)}: pooled test folds")

# %% [markdown]
# ## Training curves
#
# Loss and accuracy per epoch of every fold; training stops early on the validation loss
# (validation images come from the training folds) and keeps the best epoch.

# %%
figures.training_curves(run_path, config)
