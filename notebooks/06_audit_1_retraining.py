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
# # 06 Audit 1: the same training with one thing changed
#
# Four of the audit's experiments retrain the from-scratch network with one change and compare
# it with the main run (`cxrlib.audit`; the chapter "Biomarkers or shortcuts?" explains each):
#
# 1. **patient-grouped folds** (no patient on both sides of a fold) against image-level folds;
# 2. **a source probe**: the same pipeline predicting the collection an image comes from, and
#    the disease accuracy inside each collection that holds several classes;
# 3. **masked inputs**: the lung fields blacked out, or the lung fields alone (`cxrlib.regions`);
# 7. **the age and source swap**: the children's Normal class replaced by adult NIH
#    "No Finding" images.
#
# Each retraining is a run of its own (`<run>-patient`, `<run>-source-probe`,
# `<run>-border-only`, `<run>-lung-only`, `<run>-adult-normal`), cross-validated fold by fold
# and resumable like the main run; the baseline is the main run's stored from-scratch folds.
# The summaries go to `results/<run>/audit/`.

# %% tags=["parameters"]
profile = "default"  # a name from cxrlib.profiles.PROFILES
run = ""  # the main run's name; empty: the profile's name
data = ""  # folder of the real sources; empty: the profile's data
train = True  # False: only analyse the folds already stored (e.g. retrainings made on a GPU)

# %%
from IPython.display import Markdown, display

from cxrlib import audit, audit_report, report, results, verdict
from cxrlib.profiles import audit_settings

run = run or profile
base = audit.main_profile(profile, run, data or None)
settings = audit_settings(base)
config = settings.config
kept_fold = (settings.test_folds or (0,))[0]
main_run = audit.ensure_baseline(base, run, data_dir=data or None) if train else \
    results.run_dir(run)


def retraining(variant, **kwargs):
    """The variant's run folder: trained (resuming) when ``train``, else as stored."""
    if train:
        return audit.run_variant(base, variant, run, data or None, **kwargs)
    return audit.variant_path(main_run, variant)


def finished(*paths):
    """Whether every run has a finished fold of the configuration (else say so)."""
    missing = [p.name for p in paths if not results.done_folds(p, config)]
    if missing:
        display(Markdown(f"*No finished `{config}` fold in {', '.join(missing)}: not "
                         f"analysed.*"))
    return not missing


display(Markdown(f"**{report.run_label(main_run)}**; audit configuration `{config}`, test "
                 f"folds {settings.test_folds or 'all'}"))

# %% [markdown]
# ## 1. Image-level against patient-grouped folds
#
# Images of one patient look alike; with image-level folds a patient can be in training and in
# test at once. `difference` is image-level minus patient-grouped, with a 95% bootstrap
# interval; `leakage` is the share of test images whose patient was also in training. The
# patient-grouped run keeps its trained weights of one fold for the saliency experiment.

# %%
patient_run = retraining("patient", save_weights_folds=(kept_fold,))
if finished(main_run, patient_run):
    table = audit.patient_folds(main_run, patient_run, config)
    audit.write_table(main_run, "patient_folds", table)
    display(table.round(3))

# %% [markdown]
# ## 2. Source probe, and accuracy inside one collection
#
# The probe is the same network and training, asked for the collection instead of the disease.
# Inside a collection that holds several classes the collection gives nothing away: there the
# network's answers are restricted to that collection's classes and compared with the majority
# class. The adult-normal retraining (section 7) adds a collection with two classes on real
# data (NIH: Effusion and adult normal images).

# %%
probe_run = retraining("source-probe")
if finished(probe_run):
    probe = audit.source_probe(probe_run, config)
    audit.write_table(main_run, "source_probe", probe)
    display(probe.round(3))
swap_run = retraining("adult-normal")
within = [audit.within_collection(audit.predictions(path, config)).assign(run=name)
          for name, path in (("main", main_run), ("adult-normal", swap_run))
          if results.done_folds(path, config)]
if within:
    within = audit.pd.concat(within, ignore_index=True)
    audit.write_table(main_run, "within_collection", within)
    display(within.round(3))

# %% [markdown]
# ## 3. Lung fields blacked out, and lung fields alone
#
# `retained` is the share of the full images' accuracy above chance (the majority class) that
# each input keeps: near 1 without the lungs means the lungs were not needed.

# %%
border_run = retraining("border-only")
lung_run = retraining("lung-only")
if finished(main_run, border_run, lung_run):
    masked = audit.masked_inputs(main_run, border_run, lung_run, config)
    audit.write_table(main_run, "masked_inputs", masked)
    accuracy = masked[masked["metric"] == "accuracy"]
    display(accuracy.round(3))
    display(audit_report.interval_figure(
        [(r["input"], verdict.Figure(r["value"], r["ci_low"], r["ci_high"]))
         for _, r in accuracy.iterrows()],
        "Accuracy by what the network sees", chance=accuracy["chance"].iloc[0]))

# %% [markdown]
# ## 7. Children's Normal images against adult ones
#
# Every other class stays as it was; `difference` is the paediatric-Normal run minus the
# adult-Normal run (a fall is positive); `recall_Normal` is the Normal images' own accuracy.
# Below: each class's recall in both.

# %%
if finished(main_run, swap_run):
    swap, recall = audit.age_swap(main_run, swap_run, config)
    audit.write_table(main_run, "age_swap", swap)
    audit.write_table(main_run, "age_swap_recall", recall)
    display(swap.round(3))
    display(recall.round(3))
