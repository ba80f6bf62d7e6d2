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
# # 06 Audit 2: what trivial image statistics know about the class
#
# No deep learning: a logistic regression and gradient-boosted trees (scikit-learn) on
# statistics any image has (an intensity histogram, the padding and aspect of the frame,
# sharpness, the original file's size), cross-validated with the main run's own folds. What
# they predict well, the network can learn without looking at the lungs. Gradient boosting is
# also given each group of statistics alone (`cxrlib.audit.image_statistics`).

# %% tags=["parameters"]
profile = "default"  # a name from cxrlib.profiles.PROFILES
run = ""  # the main run's name; empty: the profile's name
data = ""  # folder of the real sources; empty: the profile's data

# %%
from IPython.display import Markdown, display

from cxrlib import audit, cv, report, results

run = run or profile
base = audit.main_profile(profile, run, data or None)
manifest, images = cv.load_dataset(base, data_dir=data or None)
run_path = results.run_dir(run)
# The run's stored folds when it has them; otherwise the same assignment, made the same way.
folds = results.read_folds(run_path) if (run_path / "folds.csv").is_file() else \
    cv.make_folds(manifest, base)
display(Markdown(f"**{report.run_label(run_path)}**: {len(manifest)} images, "
                 f"{folds['fold'].nunique()} folds"))

# %%
statistics, statistics_predictions = audit.image_statistics(manifest, images, folds,
                                                            base.classes)
audit.write_table(run_path, "image_statistics", statistics)
audit.write_table(run_path, "image_statistics_predictions", statistics_predictions)
statistics.pivot_table(index=["model", "features"], columns="metric", values="value",
                       sort=False).round(3)
