"""Figures and prose for the audit: the notebooks and the book chapter read them.

Everything here reads the tables that :mod:`cxrlib.audit` stored (``results/<run>/audit/``) and
the verdict of :mod:`cxrlib.verdict`; nothing trains. Figures draw an image only where the
caller passes its pixels (synthetic images, or real ones where ``CXRLIB_SHOW_REAL_IMAGES=1``).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import paper, paths, regions, results
from .audit import AUDIT_FOLDER, audit_dir, read_record, read_table, stored_maps
from .profiles import audit_settings
from .verdict import (CANNOT_TELL, NOT_SUPPORTED, SUPPORTED, THRESHOLDS, Figure,
                      collect_evidence, table_figure, verdict_table)

def _new_figure(*args, **kwargs):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(*args, **kwargs)
    plt.close(fig)  # shown once, where it is returned
    return fig, axes


def interval_figure(rows: list[tuple[str, Figure]], title: str, chance: float | None = None,
                    xlabel: str = "accuracy (%)"):
    """One horizontal bar per (label, figure) with its 95% interval; a dashed line at chance."""
    fig, ax = _new_figure(figsize=(6.4, 0.55 * len(rows) + 1.2))
    labels = [label for label, _ in rows]
    values = np.array([100 * f.value for _, f in rows])
    low = np.array([100 * (f.value - f.low) if not math.isnan(f.low) else 0 for _, f in rows])
    high = np.array([100 * (f.high - f.value) if not math.isnan(f.high) else 0 for _, f in rows])
    y = np.arange(len(rows))[::-1]
    ax.barh(y, values, color="#8fb3d9", xerr=[low, high], capsize=3)
    for yi, v in zip(y, values):
        ax.text(1, yi, f"{v:.1f}", va="center", fontsize=8)
    if chance is not None and not math.isnan(chance):
        ax.axvline(100 * chance, color="grey", linestyle="--", linewidth=1)
        ax.text(100 * chance, y.max() + 0.55, " chance", fontsize=8, color="grey")
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_xlim(0, 105)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _lung_outline(ax, size: int) -> None:
    """The lung ellipses of an image whose content fills the square, as a guide."""
    t = np.linspace(0, 2 * np.pi, 100)
    for side in (-1, 1):
        x = (0.5 + side * regions.LUNG_CENTRE_X + regions.LUNG_HALF_WIDTH * np.cos(t)) * size
        y = (regions.LUNG_CENTRE_Y + regions.LUNG_HALF_HEIGHT * np.sin(t)) * size
        ax.plot(x - 0.5, y - 0.5, color="white", linewidth=0.8, linestyle="--")


def mean_maps_figure(map_table: pd.DataFrame, size: int = 64):
    """Each class's mean Grad-CAM map (no image in it), with the nominal lung fields outlined."""
    from .explain import upsample

    names = list(dict.fromkeys(map_table["label"]))
    fig, axes = _new_figure(1, len(names), figsize=(1.7 * len(names), 2.1), squeeze=False)
    maps = upsample(stored_maps(map_table).astype(np.float32), size)
    for ax, name in zip(axes[0], names):
        mean = maps[(map_table["label"] == name).to_numpy()].mean(axis=0)
        ax.imshow(mean, cmap="jet", vmin=0, vmax=max(1e-6, float(mean.max())))
        _lung_outline(ax, size)
        ax.set_title(f"{name} (n={int((map_table['label'] == name).sum())})", fontsize=8)
        ax.axis("off")
    fig.suptitle("Mean Grad-CAM map per class (dashed: lung fields of a full-frame image)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def saliency_examples_figure(map_table: pd.DataFrame, images: dict, per_class: int = 2):
    """Grad-CAM over the image for up to ``per_class`` images of each class; ``images`` maps
    image ids to pixels (pass only images that may be shown)."""
    from .explain import upsample

    shown = map_table[map_table["image_id"].isin(list(images))]
    shown = shown.groupby("label", sort=False).head(per_class)
    if shown.empty:
        fig, ax = _new_figure(figsize=(6, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no images to show", ha="center", va="center")
        return fig
    columns = min(8, len(shown))
    rows = -(-len(shown) // columns)
    fig, axes = _new_figure(rows, columns, figsize=(1.6 * columns, 1.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    maps = stored_maps(shown).astype(np.float32)
    for ax, (_, row), heat in zip(axes.ravel(), shown.iterrows(), maps):
        pixels = images[row["image_id"]]
        ax.imshow(pixels, cmap="gray", vmin=0, vmax=255)
        ax.imshow(upsample(heat[None], pixels.shape[0])[0], cmap="jet", alpha=0.4, vmin=0,
                  vmax=1)
        ax.contour(regions.lung_fields(pixels), levels=[0.5], colors="white", linewidths=0.6)
        ax.set_title(f"{row['label']}\nanswered {row['predicted']}", fontsize=7)
    fig.tight_layout()
    return fig


def randomisation_figure(check: pd.DataFrame):
    """Spearman correlation and SSIM with the trained maps, by cascading step (mean +/- sd)."""
    from .explain import randomisation_summary

    summary = randomisation_summary(check)
    fig, ax = _new_figure(figsize=(6.4, 3.2))
    x = np.arange(len(summary))
    for column, label in (("spearman", "Spearman rank correlation"), ("ssim", "SSIM")):
        ax.errorbar(x, summary[column], yerr=summary[f"{column}_sd"].fillna(0), marker="o",
                    capsize=3, label=label)
    ax.axhline(THRESHOLDS.randomisation_max_corr, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(x, summary["step"], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(-0.2, 1.05)
    ax.set_ylabel("similarity to the trained maps")
    ax.set_title("Cascading randomisation, top layers first", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig




# --------------------------------------------------------------------------------------------
# For the book: what is stored, and the numbers its prose uses

#: Each experiment: its stored table, and the notebook that writes it.
EXPERIMENT_TABLES = {
    "1. patient-grouped folds": ("patient_folds", "06_audit_1_retraining"),
    "2. source probe": ("source_probe", "06_audit_1_retraining"),
    "2. accuracy within a collection": ("within_collection", "06_audit_1_retraining"),
    "3. masked inputs": ("masked_inputs", "06_audit_1_retraining"),
    "4. trivial image statistics": ("image_statistics", "06_audit_2_image_statistics"),
    "5. saliency": ("saliency_summary", "06_audit_3_saliency_external"),
    "5. randomisation check": ("randomisation_summary", "06_audit_3_saliency_external"),
    "6. external data": ("external", "06_audit_3_saliency_external"),
    "7. age and source swap": ("age_swap", "06_audit_1_retraining"),
    "8. intervals and trivial baselines": ("uncertainty", "06_audit_4_verdict"),
}
NOT_RUN = "not run yet"


def status_table(run_path: str | Path) -> pd.DataFrame:
    """Which experiments have stored results for the run, and which notebook makes the rest."""
    rows = []
    for experiment, (table, notebook) in EXPERIMENT_TABLES.items():
        done = (audit_dir(run_path) / f"{table}.csv").is_file()
        rows.append({"experiment": experiment, "stored": "yes" if done else "no",
                     "made by": f"notebooks/{notebook}.py"})
    return pd.DataFrame(rows).set_index("experiment")


def _pct(figure: Figure | None) -> str:
    return NOT_RUN if figure is None else figure.text()


def _points(figure: Figure | None) -> str:
    """A difference in percentage points with its interval."""
    if figure is None:
        return NOT_RUN
    interval = "" if math.isnan(figure.low) else \
        f" (95% CI {100 * figure.low:.1f} to {100 * figure.high:.1f})"
    return f"{100 * figure.value:.1f} percentage points{interval}"


def prose_numbers(run_path: str | Path) -> dict:
    """Every number the audit chapter's prose uses, as ready phrases, by glue name."""
    run_path = Path(run_path)
    n: dict = {}
    profile = results.read_profile(run_path) if (run_path / "profile.json").is_file() else None
    folds = audit_settings(profile).test_folds if profile else None
    n["audit_folds_text"] = "no run yet" if profile is None else (
        f"all {profile.n_folds} test folds" if folds is None else
        f"test fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))} of "
        f"{profile.n_folds} (to keep the run within its time budget on a CPU)")
    n["audit_config"] = audit_settings(profile).config if profile else "from_scratch"

    patient = read_table(run_path, "patient_folds")
    n["audit_patient_image_text"] = _pct(table_figure(patient, {"metric": "accuracy"},
                                                      "image_level", "image_level_low",
                                                      "image_level_high"))
    n["audit_patient_grouped_text"] = _pct(table_figure(patient, {"metric": "accuracy"},
                                                        "patient_level", "patient_level_low",
                                                        "patient_level_high"))
    n["audit_patient_gap_text"] = _points(table_figure(patient, {"metric": "accuracy"},
                                                       "difference", "diff_low", "diff_high"))
    n["audit_patient_leakage_text"] = NOT_RUN if patient is None else \
        f"{100 * float(patient['leakage_image_level'].iloc[0]):.0f}%"

    probe = read_table(run_path, "source_probe")
    n["audit_probe_text"] = _pct(table_figure(probe, {"collection": "all"}, "accuracy"))
    majority = table_figure(probe, {"collection": "all"}, "majority")
    n["audit_probe_majority_text"] = NOT_RUN if majority is None else \
        f"{100 * majority.value:.1f}%"
    n["audit_probe_collections"] = NOT_RUN if probe is None else \
        str(int((probe["collection"] != "all").sum()))

    masked = read_table(run_path, "masked_inputs")
    for key, name in (("full", "full image"), ("border", "border only"),
                      ("lung", "lung fields only")):
        n[f"audit_{key}_text"] = _pct(table_figure(masked, {"input": name, "metric": "accuracy"}))
        kept = table_figure(masked, {"input": name, "metric": "accuracy"}, "retained")
        n[f"audit_{key}_retained_text"] = NOT_RUN if kept is None or math.isnan(kept.value) \
            else f"{100 * kept.value:.0f}%"
    chance = table_figure(masked, {"input": "full image", "metric": "accuracy"}, "chance")
    n["audit_masked_chance_text"] = NOT_RUN if chance is None else f"{100 * chance.value:.1f}%"

    stats = read_table(run_path, "image_statistics")
    if stats is None:
        n["audit_stats_best_text"] = n["audit_stats_best_model"] = NOT_RUN
        n["audit_stats_2class_text"] = NOT_RUN
    else:
        best = stats[(stats["metric"] == "accuracy") & (stats["features"] == "all")] \
            .sort_values("value", ascending=False).iloc[0]
        n["audit_stats_best_model"] = str(best["model"])
        n["audit_stats_best_text"] = _pct(Figure(best["value"], best["ci_low"], best["ci_high"]))
        n["audit_stats_2class_text"] = _pct(table_figure(stats, {"model": best["model"],
                                                            "features": "all",
                                                            "metric": "acc_2class"}))

    saliency = read_table(run_path, "saliency_summary")
    overall = None if saliency is None else saliency[saliency["class"] == "all"]
    if overall is None or overall.empty:
        for key in ("lung_share", "lung_area", "enrichment", "border_share", "padding_share"):
            n[f"audit_saliency_{key}_text"] = NOT_RUN
        n["audit_saliency_covid_text"] = ""
    else:
        row = overall.iloc[0]
        n["audit_saliency_lung_share_text"] = f"{100 * row['saliency_lung_fields']:.0f}%"
        n["audit_saliency_lung_area_text"] = f"{100 * row['area_lung_fields']:.0f}%"
        n["audit_saliency_enrichment_text"] = f"{row['lung_enrichment']:.2f}"
        covid = saliency[saliency["class"] == paper.POSITIVE_CLASS]
        n["audit_saliency_covid_text"] = "" if covid.empty else \
            f"; for the COVID-19 images alone, {covid['lung_enrichment'].iloc[0]:.2f}"
        n["audit_saliency_border_share_text"] = \
            f"{100 * (row['saliency_border_band'] + row['saliency_padding']):.0f}%"
        n["audit_saliency_padding_share_text"] = \
            f"{100 * (row['area_border_band'] + row['area_padding']):.0f}%"
    explained = read_table(run_path, "saliency")
    if explained is None or explained.empty:
        n["audit_explained_text"] = "a trained fold's network (none is stored yet)"
    else:
        row = explained.iloc[0]
        own = row["run"] == run_path.name
        n["audit_explained_text"] = (
            f"the {row['config']} network of test fold {int(row['fold'])} of run {row['run']}"
            + ("" if own else f" (the main run {run_path.name} kept no trained weights; its "
                              f"patient-grouped retraining did)"))
    check = read_table(run_path, "randomisation_summary")
    if check is None or check.empty:
        n["audit_randomised_spearman_text"] = n["audit_logits_spearman_text"] = NOT_RUN
    else:
        ordered = check.sort_values("layers")
        n["audit_logits_spearman_text"] = f"{ordered.iloc[0]['spearman']:.2f}"
        n["audit_randomised_spearman_text"] = f"{ordered.iloc[-1]['spearman']:.2f}"

    external = read_table(run_path, "external")
    n["audit_external_internal_text"] = _pct(table_figure(external, {"metric": "accuracy"},
                                                          "internal", "internal_low",
                                                          "internal_high"))
    n["audit_external_external_text"] = _pct(table_figure(external, {"metric": "accuracy"},
                                                          "external", "external_low",
                                                          "external_high"))
    n["audit_external_gap_text"] = _points(table_figure(external, {"metric": "accuracy"},
                                                        "difference", "diff_low", "diff_high"))
    record = read_record(run_path, "external") or {}
    n["audit_external_kind"] = record.get("kind", NOT_RUN)
    n["audit_external_images"] = record.get("images", 0)
    n["audit_external_views_text"] = ", ".join(
        f"{k}: {v}" for k, v in record.get("by_class_and_view", record.get("by_class", {}))
        .items()) or NOT_RUN

    swap = read_table(run_path, "age_swap")
    for metric, key in (("accuracy", "acc"), ("acc_2class", "2class"), ("recall_Normal", "normal")):
        n[f"audit_swap_paediatric_{key}_text"] = _pct(table_figure(
            swap, {"metric": metric}, "paediatric_normal", "paediatric_normal_low",
            "paediatric_normal_high"))
        n[f"audit_swap_adult_{key}_text"] = _pct(table_figure(
            swap, {"metric": metric}, "adult_normal", "adult_normal_low", "adult_normal_high"))
        n[f"audit_swap_fall_{key}_text"] = _points(table_figure(swap, {"metric": metric},
                                                                "difference", "diff_low",
                                                                "diff_high"))
    n.update(result_sentences(n))
    verdicts = verdict_table(collect_evidence(run_path))["verdict"]
    for verdict in (SUPPORTED, NOT_SUPPORTED, CANNOT_TELL):
        n[f"audit_claims_{verdict.replace(' ', '_')}"] = int((verdicts == verdict).sum())
    return n


def result_sentences(n: dict) -> dict:
    """Each section's result as whole sentences (``audit_<section>_sentence``), or a sentence
    saying that the experiment has not been run for this run, so the prose reads either way."""
    def ready(*keys):
        return all(n.get(k) not in (None, NOT_RUN) for k in keys)

    not_run = "This experiment has not been run for the run shown yet."
    out = {}
    out["audit_patient_sentence"] = (
        f"With image-level folds {n['audit_patient_leakage_text']} of the test images had a "
        f"patient in training. Accuracy with image-level folds was "
        f"{n['audit_patient_image_text']} and with patient-grouped folds "
        f"{n['audit_patient_grouped_text']}: image-level minus patient-grouped, "
        f"{n['audit_patient_gap_text']}.") if ready("audit_patient_gap_text") else not_run
    out["audit_probe_sentence"] = (
        f"The probe named the collection of {n['audit_probe_text']} of the images "
        f"({n['audit_probe_collections']} collections; always answering the largest would "
        f"score {n['audit_probe_majority_text']}).") if ready("audit_probe_text") else not_run
    out["audit_masked_sentence"] = (
        f"With full images the accuracy was {n['audit_full_text']}; with the lungs blacked out "
        f"{n['audit_border_text']}, keeping {n['audit_border_retained_text']} of the accuracy "
        f"above chance ({n['audit_masked_chance_text']}, the largest class); with the lung "
        f"fields alone {n['audit_lung_text']}, keeping {n['audit_lung_retained_text']}.") \
        if ready("audit_border_text", "audit_lung_text") else not_run
    out["audit_stats_sentence"] = (
        f"The better of the two ({n['audit_stats_best_model']}) was right for "
        f"{n['audit_stats_best_text']} of the images over all classes and for "
        f"{n['audit_stats_2class_text']} for COVID-19 against the rest.") \
        if ready("audit_stats_best_text") else not_run
    out["audit_saliency_sentence"] = (
        f"On average {n['audit_saliency_lung_share_text']} of a map lay in the lung fields, "
        f"which cover {n['audit_saliency_lung_area_text']} of the image (a ratio of "
        f"{n['audit_saliency_enrichment_text']}; 1 is what a map blind to the lungs gives"
        f"{n['audit_saliency_covid_text']}), "
        f"and {n['audit_saliency_border_share_text']} in the border band of the frame and the "
        f"padding, which cover {n['audit_saliency_padding_share_text']}.") \
        if ready("audit_saliency_enrichment_text") else not_run
    out["audit_randomisation_sentence"] = (
        f"With only the last layer randomised the maps kept a rank correlation of "
        f"{n['audit_logits_spearman_text']} with the trained network's; with every weight "
        f"randomised, {n['audit_randomised_spearman_text']}.") \
        if ready("audit_randomised_spearman_text") else not_run
    out["audit_external_sentence"] = (
        f"The network of one trained fold was applied to {n['audit_external_images']} images "
        f"from {n['audit_external_kind']}. It was right for "
        f"{n['audit_external_internal_text']} of its own test fold and for "
        f"{n['audit_external_external_text']} of these: internal minus external, "
        f"{n['audit_external_gap_text']}.") if ready("audit_external_gap_text") else not_run
    out["audit_swap_sentence"] = (
        f"Accuracy over all classes went from {n['audit_swap_paediatric_acc_text']} to "
        f"{n['audit_swap_adult_acc_text']} (paediatric minus adult Normal, "
        f"{n['audit_swap_fall_acc_text']}), COVID-19 against the rest from "
        f"{n['audit_swap_paediatric_2class_text']} to {n['audit_swap_adult_2class_text']} "
        f"({n['audit_swap_fall_2class_text']}), and the Normal images' own accuracy from "
        f"{n['audit_swap_paediatric_normal_text']} to {n['audit_swap_adult_normal_text']} "
        f"({n['audit_swap_fall_normal_text']}).") if ready("audit_swap_fall_acc_text") \
        else not_run
    return out


def two_way_rows(table: pd.DataFrame | None, names: dict[str, str],
                 metrics_shown=("accuracy", "acc_2class")) -> list[tuple[str, Figure]]:
    """Bars for :func:`interval_figure` from a :func:`compare` table: one per name and metric."""
    if table is None:
        return []
    rows = []
    for metric in metrics_shown:
        for column, label in names.items():
            figure = table_figure(table, {"metric": metric}, column, f"{column}_low",
                                  f"{column}_high")
            if figure is not None:
                rows.append((f"{label}, {'n-class' if metric == 'accuracy' else '2-class'}",
                             figure))
    return rows


def percent_table(table: pd.DataFrame, columns) -> pd.DataFrame:
    """A copy with the named fraction columns in percent (for display)."""
    out = table.copy()
    for column in columns:
        if column in out:
            out[column] = 100 * out[column]
    return out


def other_run_sentence(run_path: str | Path) -> str:
    """What another real-data run's audit covers and what its evidence says of the paper's
    reading of the from-scratch features as possible biomarkers."""
    from .verdict import biomarker_verdict

    n = prose_numbers(run_path)
    word, tests = biomarker_verdict(collect_evidence(run_path))
    return (f"Its retrainings cross-validate {n['audit_folds_text']}. The reading of the "
            f"from-scratch features as possible biomarkers: {word} ({tests}).")


def real_data_figures(results_root: str | Path | None = None) -> pd.DataFrame:
    """The audit's headline figure of every experiment stored for a real-data run."""
    from .profiles import PROFILES

    root = Path(results_root) if results_root is not None else paths.results_dir()
    rows = []
    for folder in sorted(p.parent for p in root.glob(f"*/{AUDIT_FOLDER}")):
        profile_json = folder / "profile.json"
        if profile_json.is_file():
            real = results.read_profile(folder).dataset == "real"
        else:
            real = folder.name in PROFILES and PROFILES[folder.name].dataset == "real"
        if not real:
            continue
        numbers = prose_numbers(folder)
        for experiment, key in (
                ("1. image-level minus patient-grouped accuracy", "audit_patient_gap_text"),
                ("2. source probe accuracy", "audit_probe_text"),
                ("3. accuracy with the lungs blacked out", "audit_border_text"),
                ("3. accuracy on the lung fields alone", "audit_lung_text"),
                ("4. image statistics, best accuracy", "audit_stats_best_text"),
                ("5. saliency in the lung fields / their area",
                 "audit_saliency_enrichment_text"),
                ("6. internal minus external accuracy", "audit_external_gap_text"),
                ("7. accuracy fall with adult Normal images", "audit_swap_fall_acc_text")):
            if numbers[key] != NOT_RUN:
                rows.append({"run": folder.name, "experiment": experiment,
                             "figure": numbers[key]})
    return pd.DataFrame(rows, columns=["run", "experiment", "figure"])
