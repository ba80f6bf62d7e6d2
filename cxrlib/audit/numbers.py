"""Numbers and short phrases the audit chapter's prose quotes, by glue name.

The findings are written in ``book/audit.md``; this module only reads the stored tables
(:mod:`.store`) and gives each figure as a short text (``"84.9% [80.4, 89.6]"``), or
:data:`NOT_RUN` where an experiment has no stored result for the run, so that the chapter reads
either way. Plus which experiments are stored (:func:`status_table`) and the headline figure
of every real-data run's audit (:func:`real_data_figures`).
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from cxrlib.audit.elsewhere import HANNOVER, NIH_NORMAL, NIH_PNEUMONIA
from cxrlib.audit.external import lateral_recall
from cxrlib.audit.pairs import PAIRS
from cxrlib.audit.retrain import HARMONISE_PX, VARIANTS, variant_path
from cxrlib.audit.store import AUDIT_FOLDER, audit_dir, read_record, read_table
from cxrlib.audit.verdict import (
    CANNOT_TELL,
    NOT_SUPPORTED,
    SUPPORTED,
    Figure,
    biomarker_verdict,
    collect_evidence,
    table_figure,
    verdict_table,
)
from cxrlib.core import paper, paths
from cxrlib.core.profiles import PROFILES, audit_settings
from cxrlib.experiment import results
from cxrlib.experiment.runs import run_classes

NOT_RUN = "not run yet"
#: Each experiment and the stored table that holds its result.
EXPERIMENT_TABLES = {
    "1. patient-grouped folds": "patient_folds",
    "2. source probe": "source_probe",
    "2. accuracy within a collection": "within_collection",
    "3. masked inputs": "masked_inputs",
    "3b. one resolution for every source": "harmonised",
    "4. trivial image statistics": "image_statistics",
    "4. dataset confound (original size)": "dataset_confound",
    "4. disease against disease": "pairs",
    "5. saliency": "saliency_summary",
    "5. randomisation check": "randomisation_summary",
    "6. external data": "external",
    "7. age and source swap": "age_swap",
    "8. intervals and trivial baselines": "uncertainty",
    "controls of the shortcut tests": "controls",
}


#: The sources from elsewhere by their glue names' key.
ELSEWHERE_SOURCES = {"hannover": HANNOVER, "nih_pneumonia": NIH_PNEUMONIA,
                     "nih_normal": NIH_NORMAL}


def status_table(run_path: str | Path) -> pd.DataFrame:
    """Which experiments have stored results for the run (``python -m cxrlib audit`` makes
    them)."""
    rows = [{"experiment": experiment, "table": f"audit/{table}.csv",
             "stored": "yes" if (audit_dir(run_path) / f"{table}.csv").is_file() else "no"}
            for experiment, table in EXPERIMENT_TABLES.items()]
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


def _share(value: float | None, digits: int = 0) -> str:
    return NOT_RUN if value is None or math.isnan(value) else f"{100 * value:.{digits}f}%"


def folds_numbers(run_path: Path) -> dict:
    """The run, its profile, the audit's configuration and the test folds its retrainings
    cross-validate."""
    profile = results.read_profile(run_path) if (run_path / "profile.json").is_file() else None
    if profile is None:
        return {"audit_folds_text": "no run yet", "audit_config": "from_scratch",
                "audit_run": run_path.name, "audit_profile": "PROFILE"}
    folds = audit_settings(profile).test_folds
    text = f"all {profile.n_folds} test folds{_partial_retrainings(run_path, profile)}" \
        if folds is None else (
        f"test fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))} of "
        f"{profile.n_folds} (to keep the run within its time budget on a CPU)")
    return {"audit_folds_text": text, "audit_config": audit_settings(profile).config,
            "audit_run": run_path.name, "audit_profile": profile.name}


def _partial_retrainings(run_path: Path, profile) -> str:
    """Where a full audit's stored retrainings lack folds: ', except ...' naming them."""
    config = audit_settings(profile).config
    partial = []
    for variant in VARIANTS:
        path = variant_path(run_path, variant)
        done = len(results.done_folds(path, config)) if (path / "profile.json").is_file() else 0
        if 0 < done < profile.n_folds:
            partial.append(f"{path.name}, {done} of {profile.n_folds}")
    return f" where stored (partial: {'; '.join(partial)})" if partial else ""


def patient_numbers(run_path: Path) -> dict:
    """1. Image-level against patient-grouped folds."""
    table = read_table(run_path, "patient_folds")
    accuracy = {"metric": "accuracy"}
    return {
        "audit_patient_image_text": _pct(table_figure(table, accuracy, "image_level",
                                                      "image_level_low", "image_level_high")),
        "audit_patient_grouped_text": _pct(table_figure(
            table, accuracy, "patient_level", "patient_level_low", "patient_level_high")),
        "audit_patient_gap_text": _points(table_figure(table, accuracy, "difference",
                                                       "diff_low", "diff_high")),
        "audit_patient_leakage_text": NOT_RUN if table is None else
        _share(float(table["leakage_image_level"].iloc[0])),
    }


def probe_numbers(run_path: Path) -> dict:
    """2. The source probe."""
    table = read_table(run_path, "source_probe")
    majority = table_figure(table, {"collection": "all"}, "majority")
    return {
        "audit_probe_text": _pct(table_figure(table, {"collection": "all"}, "accuracy")),
        "audit_probe_majority_text": NOT_RUN if majority is None else _share(majority.value, 1),
        "audit_probe_collections": NOT_RUN if table is None else
        str(int((table["collection"] != "all").sum())),
    }


def masked_numbers(run_path: Path) -> dict:
    """3. Accuracy with the lungs blacked out and with the lungs alone, and what each keeps."""
    table = read_table(run_path, "masked_inputs")
    n = {}
    for key, name in (("full", "full image"), ("border", "border only"),
                      ("lung", "lung fields only")):
        where = {"input": name, "metric": "accuracy"}
        n[f"audit_{key}_text"] = _pct(table_figure(table, where))
        kept = table_figure(table, where, "retained")
        n[f"audit_{key}_retained_text"] = _share(None if kept is None else kept.value)
    chance = table_figure(table, {"input": "full image", "metric": "accuracy"}, "chance")
    n["audit_masked_chance_text"] = _share(None if chance is None else chance.value, 1)
    return n


def harmonised_numbers(run_path: Path) -> dict:
    """3b. Disease and source-probe accuracy before and after harmonising the resolution, at
    248 px (``main``) and at the profile's lower common long side (``low``), by glue name
    ``audit_harmonised_<level>_<disease|probe>_<before|after|change>_text``."""
    table = read_table(run_path, "harmonised")
    profile = results.read_profile(run_path) if (run_path / "profile.json").is_file() else None
    also = audit_settings(profile).harmonise_also_px if profile else ()
    levels = {"main": HARMONISE_PX, "low": also[0] if also else None}
    n = {f"audit_harmonised_{level}_px": NOT_RUN if px is None else str(px)
         for level, px in levels.items()}
    for level, px in levels.items():
        for measure, key in (("disease", "disease"), ("source probe", "probe")):
            where = {"harmonise_px": px, "measure": measure}
            name = f"audit_harmonised_{level}_{key}"
            for side in ("before", "after"):
                n[f"{name}_{side}_text"] = _pct(table_figure(table, where, side, f"{side}_low",
                                                             f"{side}_high"))
            n[f"{name}_change_text"] = _points(table_figure(table, where, "change",
                                                            "change_low", "change_high"))
    return n


def statistics_numbers(run_path: Path) -> dict:
    """4. The better image-statistics classifier on all features."""
    stats = read_table(run_path, "image_statistics")
    if stats is None:
        return {"audit_stats_best_text": NOT_RUN, "audit_stats_best_model": NOT_RUN,
                "audit_stats_2class_text": NOT_RUN}
    best = stats[(stats["metric"] == "accuracy") & (stats["features"] == "all")] \
        .sort_values("value", ascending=False).iloc[0]
    return {"audit_stats_best_model": str(best["model"]),
            "audit_stats_best_text": _pct(Figure(best["value"], best["ci_low"],
                                                 best["ci_high"])),
            "audit_stats_2class_text": _pct(table_figure(
                stats, {"model": best["model"], "features": "all", "metric": "acc_2class"}))}


def confound_numbers(run_path: Path) -> dict:
    """4. The dataset confound: the original files' size alone, apart from the rival."""
    table = read_table(run_path, "dataset_confound")
    return {"audit_confound_text": _pct(table_figure(table, {"metric": "accuracy"})),
            "audit_confound_2class_text": _pct(table_figure(table, {"metric": "acc_2class"}))}


def controls_numbers(run_path: Path) -> dict:
    """How many shortcut tests passed their controls (stored beside the run), failed them,
    were not run on them or have none, and the passed tests by name."""
    table = read_table(run_path, "controls")
    statuses = ("passed", "failed", "not run", "no control available")
    counts = {s: 0 if table is None else int((table["status"] == s).sum()) for s in statuses}
    numbers = {f"audit_controls_{s.replace(' ', '_')}": n for s, n in counts.items()}
    numbers["audit_controls_tests"] = 0 if table is None else len(table)
    numbers["audit_controls_passed_names"] = NOT_RUN if table is None else \
        "; ".join(table.loc[table["status"] == "passed", "test"]) or "none"
    numbers["audit_controls_runs"] = NOT_RUN if table is None or table.empty else \
        f"{table['positive_run'].iloc[0]} and {table['negative_run'].iloc[0]}"
    for side in ("positive", "negative"):
        column = f"{side}_network"
        numbers[f"audit_controls_{side}_network"] = NOT_RUN if table is None or \
            column not in table else str(table[column].iloc[0])
    return numbers


def saliency_numbers(run_path: Path) -> dict:
    """5. Saliency shares over all images (and the COVID-19 images' lung enrichment)."""
    saliency = read_table(run_path, "saliency_summary")
    overall = None if saliency is None else saliency[saliency["class"] == "all"]
    if overall is None or overall.empty:
        keys = ("lung_share", "lung_area", "enrichment", "covid_enrichment", "border_share",
                "padding_share")
        return {f"audit_saliency_{key}_text": NOT_RUN for key in keys}
    row = overall.iloc[0]
    covid = saliency[saliency["class"] == paper.POSITIVE_CLASS]
    return {
        "audit_saliency_lung_share_text": _share(row["saliency_lung_fields"]),
        "audit_saliency_lung_area_text": _share(row["area_lung_fields"]),
        "audit_saliency_enrichment_text": f"{row['lung_enrichment']:.2f}",
        "audit_saliency_covid_enrichment_text": "n/a" if covid.empty else
        f"{covid['lung_enrichment'].iloc[0]:.2f}",
        "audit_saliency_border_share_text": _share(row["saliency_border_band"]
                                                   + row["saliency_padding"]),
        "audit_saliency_padding_share_text": _share(row["area_border_band"]
                                                    + row["area_padding"]),
    }


def explained_numbers(run_path: Path) -> dict:
    """5. Which trained network was explained, and the randomisation check's correlations."""
    explained = read_table(run_path, "saliency")
    if explained is None or explained.empty:
        text = "a trained fold's network (none is stored yet)"
    else:
        row = explained.iloc[0]
        text = (f"the {row['config']} network of test fold {int(row['fold'])} of run "
                f"{row['run']}" + ("" if row["run"] == run_path.name else
                                   f" (the main run {run_path.name} kept no trained weights; "
                                   f"its patient-grouped retraining did)"))
    check = read_table(run_path, "randomisation_summary")
    ordered = None if check is None or check.empty else check.sort_values("layers")
    return {"audit_explained_text": text,
            "audit_logits_spearman_text": NOT_RUN if ordered is None else
            f"{ordered.iloc[0]['spearman']:.2f}",
            "audit_randomised_spearman_text": NOT_RUN if ordered is None else
            f"{ordered.iloc[-1]['spearman']:.2f}"}


def external_numbers(run_path: Path) -> dict:
    """6. A trained fold on its own test fold and on the external images."""
    table = read_table(run_path, "external")
    accuracy = {"metric": "accuracy"}
    record = read_record(run_path, "external") or {}
    views = record.get("by_class_and_view", record.get("by_class", {}))
    return {
        "audit_external_internal_text": _pct(table_figure(table, accuracy, "internal",
                                                          "internal_low", "internal_high")),
        "audit_external_external_text": _pct(table_figure(table, accuracy, "external",
                                                          "external_low", "external_high")),
        "audit_external_gap_text": _points(table_figure(table, accuracy, "difference",
                                                        "diff_low", "diff_high")),
        "audit_external_kind": record.get("kind", NOT_RUN),
        "audit_external_images": record.get("images", 0),
        "audit_external_views_text": ", ".join(f"{k}: {v}" for k, v in views.items()) or NOT_RUN,
        **lateral_numbers(run_path),
    }


def lateral_numbers(run_path: Path) -> dict:
    """6a. The lateral views set aside from the external comparison, and their recall."""
    count, recall = lateral_recall(run_path)
    return {"audit_external_lateral": count,
            "audit_external_lateral_recall_text": "none" if recall is None else
            f"{100 * recall:.1f}% of {count} predicted right"}


def swap_numbers(run_path: Path) -> dict:
    """7. Paediatric against adult Normal images: accuracy, 2-class accuracy, Normal's recall."""
    swap = read_table(run_path, "age_swap")
    n = {}
    for metric, key in (("accuracy", "acc"), ("acc_2class", "2class"),
                        ("recall_Normal", "normal")):
        where = {"metric": metric}
        for side in ("paediatric", "adult"):
            column = f"{side}_normal"
            n[f"audit_swap_{side}_{key}_text"] = _pct(table_figure(
                swap, where, column, f"{column}_low", f"{column}_high"))
        n[f"audit_swap_fall_{key}_text"] = _points(table_figure(swap, where, "difference",
                                                                "diff_low", "diff_high"))
    # The NIH disease classes, which share their collection with the adult Normal images.
    recall = read_table(run_path, "age_swap_recall")
    for name in ("Effusion", "Fibrosis"):
        for side in ("paediatric", "adult"):
            found = table_figure(recall, {"class": name}, f"{side}_normal")
            n[f"audit_swap_{name.lower()}_{side}_text"] = _share(
                None if found is None else found.value, 1)
    return n


def pairs_numbers(run_path: Path) -> dict:
    """Disease against disease: the audit configuration's AUC on each pair reported, and the
    best image-statistics classifier's, by glue name ``audit_pair_<a>_<b>_{network,statistics}``
    (class names in lower case, spaces and dashes as underscores)."""
    table = read_table(run_path, "pairs")
    config = folds_numbers(run_path)["audit_config"]
    held = set(run_classes(run_path)) if (run_path / "profile.json").is_file() else set()
    numbers = {}
    for a, b in PAIRS:
        key = f"audit_pair_{a}_{b}".lower().replace("-", "_").replace(" ", "_")
        if held and not {a, b} <= held:
            lacking = " and ".join(c for c in (a, b) if c not in held)
            numbers[f"{key}_network"] = numbers[f"{key}_statistics"] = \
                numbers[f"{key}_confound"] = f"not in this run (it has no {lacking} class)"
            continue
        rows = None if table is None else table[(table["a"] == a) & (table["b"] == b)]
        network = table_figure(rows, {"model": config}, "auc", "auc_low", "auc_high")
        rival = None if rows is None or rows.empty else \
            rows[rows["model"].str.startswith("image statistics")].sort_values("auc").tail(1)
        statistics = table_figure(rival, {}, "auc", "auc_low", "auc_high")
        numbers[f"{key}_network"] = _auc(network)
        numbers[f"{key}_statistics"] = _auc(statistics)
        numbers[f"{key}_confound"] = _auc(table_figure(
            rows, {"model": "dataset confound (gradient boosting)"}, "auc", "auc_low",
            "auc_high"))
    return numbers


def _auc(figure: Figure | None) -> str:
    return NOT_RUN if figure is None or math.isnan(figure.value) else figure.auc_text()


def elsewhere_numbers(run_path: Path) -> dict:
    """6b. Recall on each source from elsewhere and the same class's cross-validated recall,
    by glue name ``audit_elsewhere_<hannover|nih_pneumonia|nih_normal>_{text,internal}``."""
    falls = read_table(run_path, "external_validation_falls")
    record = read_record(run_path, "external_validation") or {}
    numbers = {"audit_elsewhere_folds": NOT_RUN if not record else
               f"{len(record['folds'])} fold network{'s' if len(record['folds']) > 1 else ''} "
               f"of {record['config']} (test folds {', '.join(map(str, record['folds']))}), "
               f"their probabilities averaged"}
    for key, source in ELSEWHERE_SOURCES.items():
        row = None if falls is None else falls[falls["source"] == source]
        if row is None or row.empty:
            numbers[f"audit_elsewhere_{key}_text"] = NOT_RUN
            numbers[f"audit_elsewhere_{key}_internal"] = NOT_RUN
            continue
        numbers[f"audit_elsewhere_{key}_text"] = _elsewhere_recall(run_path, source)
        numbers[f"audit_elsewhere_{key}_internal"] = f"{100 * float(row['internal'].iloc[0]):.1f}%"
    return numbers


def _elsewhere_recall(run_path: Path, source: str) -> str:
    """``"6.7% [5.2, 8.7] of 934 images (889 patients)"`` for one source from elsewhere."""
    table = read_table(run_path, "external_validation")
    row = table[(table["source"] == source) & table["metric"].str.startswith("recall ")].iloc[0]
    return (f"{Figure(row['value'], row['ci_low'], row['ci_high']).text()} of "
            f"{int(row['n_images'])} images ({int(row['n_patients'])} patients)")


def verdict_numbers(run_path: Path) -> dict:
    """How many of the paper's claims each verdict covers."""
    verdicts = verdict_table(collect_evidence(run_path))["verdict"]
    return {f"audit_claims_{v.replace(' ', '_')}": int((verdicts == v).sum())
            for v in (SUPPORTED, NOT_SUPPORTED, CANNOT_TELL)}


NUMBERS = (folds_numbers, patient_numbers, probe_numbers, masked_numbers, harmonised_numbers,
           statistics_numbers, confound_numbers, controls_numbers,
           pairs_numbers, saliency_numbers, explained_numbers, external_numbers,
           elsewhere_numbers, swap_numbers, verdict_numbers)


def prose_numbers(run_path: str | Path) -> dict:
    """Every number and short phrase the audit chapter's prose quotes, by glue name."""
    numbers: dict = {}
    for part in NUMBERS:
        numbers.update(part(Path(run_path)))
    return numbers


def other_run_summary(run_path: str | Path) -> pd.DataFrame:
    """What another real-data run's audit covers, and what its evidence says of the paper's
    reading of the from-scratch features as possible biomarkers (a two-column table)."""
    word, tests = biomarker_verdict(collect_evidence(run_path))
    rows = [("retrainings cross-validate", folds_numbers(Path(run_path))["audit_folds_text"]),
            ("from-scratch features as possible biomarkers", word), ("shortcut tests", tests)]
    return pd.DataFrame(rows, columns=["", Path(run_path).name]).set_index("")


#: The headline figure of each experiment, by glue name (:func:`real_data_figures`).
HEADLINE_FIGURES = (
    ("1. image-level minus patient-grouped accuracy", "audit_patient_gap_text"),
    ("2. source probe accuracy", "audit_probe_text"),
    ("3. accuracy with the lungs blacked out", "audit_border_text"),
    ("3. accuracy on the lung fields alone", "audit_lung_text"),
    ("4. image statistics, best accuracy", "audit_stats_best_text"),
    ("5. saliency in the lung fields / their area", "audit_saliency_enrichment_text"),
    ("6. internal minus external accuracy", "audit_external_gap_text"),
    ("7. accuracy fall with adult Normal images", "audit_swap_fall_acc_text"))


def _is_real(folder: Path) -> bool:
    if (folder / "profile.json").is_file():
        return results.read_profile(folder).dataset == "real"
    return folder.name in PROFILES and PROFILES[folder.name].dataset == "real"


def real_data_figures(results_root: str | Path | None = None) -> pd.DataFrame:
    """The audit's headline figure of every experiment stored for a real-data run."""
    root = Path(results_root) if results_root is not None else paths.results_dir()
    rows = []
    for folder in sorted(p.parent for p in root.glob(f"*/{AUDIT_FOLDER}")):
        if not _is_real(folder):
            continue
        numbers = prose_numbers(folder)
        rows.extend({"run": folder.name, "experiment": experiment, "figure": numbers[key]}
                    for experiment, key in HEADLINE_FIGURES if numbers[key] != NOT_RUN)
    return pd.DataFrame(rows, columns=["run", "experiment", "figure"])
