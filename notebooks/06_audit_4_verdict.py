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
# # 06 Audit 4: intervals for every headline figure, and the verdict
#
# 8. Every configuration's figures with patient-level bootstrap intervals, beside the trivial
#    rule (always the most frequent class; its 2-class accuracy is the "never COVID-19" rule's)
#    and the image-statistics classifiers of notebook 06 audit 2.
#
# Then the paired accuracy differences between from-scratch training and every other
# configuration, and the verdict on each of the paper's claims from everything stored
# (`cxrlib.verdict.verdict_table`; the thresholds are `cxrlib.verdict.Thresholds`).

# %% tags=["parameters"]
profile = "default"  # a name from cxrlib.profiles.PROFILES
run = ""  # the main run's name; empty: the profile's name
data = ""  # unused here (declared so the pipeline passes every notebook the same parameters)

# %%
import pandas as pd
from IPython.display import Markdown, display

from cxrlib import audit, report, results, verdict
from cxrlib.profiles import audit_settings

pd.set_option("display.max_colwidth", None)
run = run or profile
run_path = results.run_dir(run)
config = audit_settings(audit.main_profile(profile, run, data or None)).config
display(Markdown(f"**{report.run_label(run_path)}**"))

# %%
headline = audit.headline_uncertainty(run_path,
                                      audit.read_table(run_path, "image_statistics_predictions"))
audit.write_table(run_path, "uncertainty", headline)
headline.pivot_table(index="model", columns="metric", values="value", sort=False).round(3)

# %%
differences = audit.strategy_differences(run_path, config)
audit.write_table(run_path, "strategies", differences)
differences.round(3)

# %%
claims = verdict.verdict_table(verdict.collect_evidence(run_path))
audit.write_table(run_path, "verdict", claims)
claims
