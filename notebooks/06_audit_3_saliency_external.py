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
# # 06 Audit 3: where the network looks, and how it does elsewhere
#
# Both experiments need a trained network: the main run's kept weights of one fold if it has
# any (`python -m cxrlib run --save-weights-folds 0`), otherwise the patient-grouped
# retraining's (notebook 06 audit 1 keeps them).
#
# 5. **Saliency**: Grad-CAM maps of the class the network answered, for test images of that
#    fold, and the share of each map inside the lung fields, in the border band of the frame
#    and on the padding; then the randomisation check (`cxrlib.explain`).
# 6. **External data**: the same network on images from another collection. On synthetic
#    data that is a collection with the same disease signs and none of the collection cues;
#    on the real bundle, images no run trained on from the same collections (there is no
#    other), which is only partly external.

# %% tags=["parameters"]
profile = "default"  # a name from cxrlib.profiles.PROFILES
run = ""  # the main run's name; empty: the profile's name
data = ""  # folder of the real sources; empty: the profile's data

# %%
from pathlib import Path

from IPython.display import Markdown, display

from cxrlib import audit, audit_report, dataset, explain, paths, report, results
from cxrlib.curation_figures import may_show_images
from cxrlib.profiles import audit_settings

run = run or profile
base = audit.main_profile(profile, run, data or None)
settings = audit_settings(base)
config = settings.config
run_path = results.run_dir(run)
explained = audit.explained_fold(run_path, config)
if explained is None:
    display(Markdown(f"No trained weights are kept for `{config}` in `{run}` or "
                     f"`{audit.variant_run(run, audit.EXPLAINED_VARIANT)}`: run notebook 06 "
                     f"audit 1 first (or `python -m cxrlib run --configs {config} "
                     f"--save-weights-folds 0`)."))
else:
    weights_run, fold = explained
    display(Markdown(f"**{report.run_label(run_path)}**; explained: `{weights_run.name}`, "
                     f"`{config}` fold {fold}"))

# %% [markdown]
# ## 5. Grad-CAM: shares of saliency by region
#
# `saliency_<region>` is the mean share of a map in the region, `area_<region>` the region's
# share of the image (what a map blind to the image would give). `lung_enrichment` is the
# ratio for the lung fields: above 1, the maps favour the lungs.

# %%
if explained is not None:
    table, maps, check = audit.saliency_audit(weights_run, config, fold,
                                              settings.saliency_per_class,
                                              settings.randomisation_images,
                                              data_dir=data or None)
    summary = audit.saliency_summary(table)
    audit.write_table(run_path, "saliency", table)
    audit.write_table(run_path, "saliency_maps", maps)
    audit.write_table(run_path, "saliency_summary", summary)
    audit.write_table(run_path, "randomisation", check)
    audit.write_table(run_path, "randomisation_summary", explain.randomisation_summary(check))
    display(summary.round(3))
    display(audit_report.mean_maps_figure(maps, size=base.image_size))

# %% [markdown]
# Examples (synthetic images, or real ones only where `CXRLIB_SHOW_REAL_IMAGES=1`): the map of
# the answered class over the image, the lung fields outlined.

# %%
if explained is not None:
    from cxrlib.book import curated_dir

    folder = curated_dir(weights_run)
    if folder is not None and may_show_images(folder):
        shown = {i: dataset.load_image(folder, i) for i in maps["image_id"]}
        display(audit_report.saliency_examples_figure(maps, shown))
    else:
        display(Markdown("Real X-rays are not drawn here (set `CXRLIB_SHOW_REAL_IMAGES=1`)."))

# %% [markdown]
# ## 5b. The randomisation check
#
# Weights destroyed from the top down; the maps should stop resembling the trained ones.
# Maps that stay alike show the image, not the model.

# %%
if explained is not None:
    display(explain.randomisation_summary(check).round(3))
    display(audit_report.randomisation_figure(check))

# %% [markdown]
# ## 6. External data

# %%
if explained is not None:
    if base.dataset == "synthetic":
        external, images = audit.synthetic_external(base, settings.external_per_class)
        kind = "another collection (synthetic-external: same signs, no collection cues)"
        same_collections = False
    else:
        from cxrlib.curate import curated_dir_for

        data_dir = Path(data) if data else paths.default_data_dir()
        external, images = audit.unused_real_images(curated_dir_for(base), data_dir,
                                                    base.classes, base.image_size,
                                                    per_class=settings.external_per_class)
        kind = ("the same collections: images no run trained on (the shared bundle holds no "
                "other collection)")
        same_collections = True
    comparison, external_predictions = audit.external_evaluation(weights_run, config, fold,
                                                                 external, images)
    audit.write_table(run_path, "external", comparison)
    audit.write_table(run_path, "external_predictions", external_predictions)
    views = external.get("view", audit.pd.Series("", index=external.index)).replace("", "?")
    record = {"kind": kind, "same_collections": same_collections,
              "images": int(len(external)),
              "by_class": external["label"].value_counts().to_dict(),
              "by_class_and_view": {f"{c} ({v})": int(n) for (c, v), n in
                                    external.groupby([external["label"], views]).size().items()},
              "new_patients": int(external.get("new_patient", audit.pd.Series(
                  True, index=external.index)).sum()),
              "run": weights_run.name, "config": config, "fold": fold}
    audit.write_record(run_path, "external", record)
    display(Markdown(f"External images: {record['images']} ({kind})"))
    display(comparison.round(3))
    display(audit.external_recall(run_path).round(3))
