# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 Results: the paper's Tables 1-7 regenerated from stored predictions
#
# Apostolopoulos et al. (2020) report MobileNetV2 on seven chest X-ray classes in seven tables:
# the accuracies, sensitivity and specificity of each strategy (Tables 1, 4, 5) and pooled
# confusion matrices for off-the-shelf features and for training from scratch (Tables 2, 3,
# 6, 7). This notebook rebuilds every one of them from the out-of-fold predictions the
# strategy notebook stored, next to the paper's printed figures, with the difference, our
# patient-level bootstrap 95% intervals, the spread across folds and, beside every
# COVID-19-vs-rest figure, what always answering "not COVID-19" would score. It trains
# nothing: it reads `results/<run>/` only (`cxrlib.analysis.tables`, `cxrlib.analysis.comparison`,
# `cxrlib.report.figures`).

# %% tags=["parameters"]
profile = "default"  # a name from cxrlib.core.profiles.PROFILES
run = ""  # the run to report; empty: the profile's name

# %%
import pandas as pd
from IPython.display import Markdown, display

from cxrlib.analysis import comparison, tables
from cxrlib.report import figures, glue
from cxrlib.core import profiles
from cxrlib.experiment import results, runs

pd.set_option("display.max_columns", 20)
pd.set_option("display.width", 160)
run_path = results.run_dir(runs.run_name(run, profile))
display(Markdown(f"**{runs.run_label(run_path)}** (results: `{run_path}`)"))

# %% [markdown]
# ## What this run holds
#
# Every configuration of the profile, with the folds finished so far. A configuration
# without results is listed with the command that fills it; the tables below leave it blank.

# %%
configs = runs.run_configs(run_path) or profiles.PAPER_CONFIGS
overview = tables.strategy_overview(run_path, configs)
display(tables.display_overview(overview))
incomplete = [tables.missing_note(run_path, c) for c in configs
              if len(results.done_folds(run_path, c)) < (runs.run_profile(run_path).n_folds
                                                         if runs.run_profile(run_path) else 1)]
display(Markdown("\n\n".join(incomplete) if incomplete else "Every configuration is complete."))

# %% [markdown]
# ## Tables 1, 4 and 5: accuracies, sensitivity and specificity
#
# `paper` is the printed figure; `ours` is computed as the paper defines it (accuracies: mean
# over test folds; sensitivity and specificity: pooled counts); `difference` is ours minus
# the paper's, in percentage points; `ci_low`/`ci_high` bound our 95% patient-level bootstrap
# interval; `baseline_ours`/`baseline_paper` are the figures of always answering "not
# COVID-19" on our images and on the paper's class counts.

# %%
for n in comparison.FIGURE_TABLES:
    table = comparison.comparison_table(run_path, n)
    display(Markdown(f"### Table {n}. {comparison.TABLE_TITLES[n]}\n\n"
                     + comparison.comparison_notes(table)))
    display(comparison.display_comparison(table))

# %% [markdown]
# ## Tables 2, 3, 6 and 7: confusion matrices
#
# Rows are the predicted class and columns the actual class, as the paper prints them; each
# cell reads "paper / ours". Datasets of different sizes compare through each cell's share of
# its actual class (`paper_pct`, `ours_pct` in the long table), which is also what the colours
# show.

# %%
for n in comparison.SEVEN_CLASS_MATRICES + comparison.TWO_CLASS_MATRICES:
    table = comparison.comparison_table(run_path, n)
    display(Markdown(f"### Table {n}. {comparison.TABLE_TITLES[n]}\n\n"
                     + comparison.comparison_notes(table)))
    display(figures.comparison_figure(run_path, n))
    display(comparison.display_comparison(table))
    display(table.drop(columns=["comparable", "note"]).set_index(["predicted", "actual"])
            .round(2))

# %% [markdown]
# ## Confusion matrices of every configuration
#
# The paper prints matrices for two strategies only; here are all of ours.

# %%
figures.confusion_grid(run_path, configs)

# %% [markdown]
# ## Spread across folds
#
# The paper gives one number per configuration; the folds it averages can differ a lot.

# %%
figures.fold_spread(run_path)

# %% [markdown]
# ## Per-class precision, recall and F1 (pooled over folds)

# %%
for config in configs:
    if runs.has_results(run_path, config):
        display(Markdown(f"**{tables.config_label(config)}**"))
        display(tables.per_class_table(run_path, config).round(2))

# %% [markdown]
# ## The trivial baseline
#
# A rule that never answers COVID-19 scores the share of non-COVID images as its 2-class
# accuracy, with sensitivity 0% and specificity 100%. Every 2-class accuracy above is to be
# read against it.

# %%
numbers = glue.prose_numbers(run_path)
pd.DataFrame({
    "images": [numbers["paper_total_images"], numbers["ours_n_images"]],
    "COVID-19 images": [numbers["paper_covid_images"], numbers["ours_n_covid"]],
    "always 'not COVID-19': 2-class accuracy (%)": [numbers["paper_not_covid_baseline"],
                                                     numbers["ours_not_covid_baseline"]],
}, index=["paper's counts", f"run {run_path.name}"]).round(2)

# %% [markdown]
# ## Explore the predictions
#
# The confusion matrix of any configuration and test fold, with the images behind each cell,
# misclassifications first; then COVID-19 against the rest at any probability threshold,
# beside the arg-max rule's point and the paper's. Live in JupyterLab; an executed copy keeps
# the state it was left in. The explorers live in `cxrlib.explore`.

# %%
from cxrlib import explore

explore.explore_predictions(run_path)

# %%
explore.explore_threshold(run_path)
