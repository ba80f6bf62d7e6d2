"""The evidence the verdict rests on, read from the audit's stored tables.

:func:`collect_evidence` reads what the audit stored under ``results/<run>/audit/``
(:mod:`cxrlib.audit.store`) into one dictionary of :class:`Figure` values (a figure with its
95% interval) and short lists; :mod:`cxrlib.audit.verdict` applies its rules to it. It includes
the shortcut tests' controls as stored beside the run (``controls.csv``, made by
:mod:`cxrlib.audit.controls`): each test's status, ``passed`` when it fired on the synthetic
run with the planted shortcut and stayed quiet on the run without it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cxrlib.analysis.comparison import paper_figure, protocol_difference
from cxrlib.audit.store import read_record, read_table
from cxrlib.core import paper
from cxrlib.core.profiles import audit_settings
from cxrlib.experiment import results


@dataclass(frozen=True)
class Figure:
    """A figure with its 95% interval (fractions)."""

    value: float
    low: float = math.nan
    high: float = math.nan

    def text(self, unit: str = "%") -> str:
        """``"84.9% [80.4, 89.6]"`` (fractions shown in percent; ``unit=" points"`` for a
        difference)."""
        if math.isnan(self.value):
            return "n/a"
        interval = "" if math.isnan(self.low) else \
            f" [{100 * self.low:.1f}, {100 * self.high:.1f}]"
        return f"{100 * self.value:.1f}{unit}{interval}"

    def auc_text(self) -> str:
        """An AUC as it is: ``"0.705 [0.665, 0.746]"``."""
        if math.isnan(self.value):
            return "n/a"
        interval = "" if math.isnan(self.low) else f" [{self.low:.3f}, {self.high:.3f}]"
        return f"{self.value:.3f}{interval}"


def table_figure(table: pd.DataFrame | None, where: dict, value="value", low="ci_low",
                 high="ci_high") -> Figure | None:
    """The first row of a stored table matching ``where`` (column: value), as a Figure from its
    ``value``, ``low`` and ``high`` columns (NaN where a column is absent); None if none."""
    if table is None or table.empty:
        return None
    part = table
    for column, wanted in where.items():
        part = part[part[column] == wanted]
    if part.empty:
        return None
    row = part.iloc[0]
    return Figure(float(row[value]), float(row.get(low, math.nan)),
                  float(row.get(high, math.nan)))


def collect_evidence(run_path: str | Path) -> dict:
    """The figures the verdicts rest on, read from the stored audit tables and runs."""
    run_path = Path(run_path)
    profile = results.read_profile(run_path) if (run_path / "profile.json").is_file() else None
    config = audit_settings(profile).config if profile else "from_scratch"
    evidence: dict = {"config": config, "synthetic": profile is None or
                      profile.dataset != "real",
                      "classes": tuple(profile.classes) if profile else (),
                      "protocol": _protocol_difference(profile)}
    headline = read_table(run_path, "uncertainty")
    for metric in ("accuracy", "acc_2class"):
        evidence[metric] = table_figure(headline, {"model": config, "metric": metric})
    evidence["paper_acc_2class"] = _paper_fraction(config, "acc_2class")
    evidence["paper_accuracy"] = _paper_fraction(config, "acc_7class")
    restricted = paper.restricted_figures(config, evidence["classes"]) if profile else None
    evidence["paper_accuracy_restricted"] = None if restricted is None else \
        restricted["acc_nclass"] / 100
    strategies = read_table(run_path, "strategies")
    evidence["strategy_differences"] = {} if strategies is None else {
        row["other"]: Figure(row["difference"], row["diff_low"], row["diff_high"])
        for _, row in strategies.iterrows()}
    patient = read_table(run_path, "patient_folds")
    evidence["patient_gap"] = table_figure(patient, {"metric": "accuracy"}, "difference",
                                           "diff_low", "diff_high")
    masked = read_table(run_path, "masked_inputs")
    for key, name in (("border_retained", "border only"), ("lung_retained", "lung fields only")):
        row = table_figure(masked, {"input": name, "metric": "accuracy"}, "retained")
        evidence[key] = None if row is None else row.value
    stats = read_table(run_path, "image_statistics")
    if stats is not None and not stats.empty:
        best = stats[(stats["metric"] == "accuracy") & (stats["features"] == "all")]
        best = best.sort_values("value", ascending=False).head(1)
        evidence["statistics_accuracy"] = table_figure(best, {})
    else:
        evidence["statistics_accuracy"] = None
    evidence["chance"] = table_figure(headline, {"model": "majority-class rule",
                                            "metric": "accuracy"})
    probe = read_table(run_path, "source_probe")
    evidence["source_probe"] = table_figure(probe, {"collection": "all"}, "accuracy")
    within = read_table(run_path, "within_collection")
    evidence["within_collection"] = [] if within is None else [
        (f"{r['collection']} ({r['run']})", Figure(r["accuracy"], r["ci_low"], r["ci_high"]),
         float(r["majority"])) for _, r in within.iterrows()]
    evidence["pairs_within"] = _pairs_within(read_table(run_path, "pairs"), config)
    saliency = read_table(run_path, "saliency_summary")
    for key, name in (("lung_enrichment", "all"), ("covid_lung_enrichment", paper.POSITIVE_CLASS)):
        row = table_figure(saliency, {"class": name}, "lung_enrichment")
        evidence[key] = None if row is None else row.value
    check = read_table(run_path, "randomisation_summary")
    evidence["randomised_spearman"] = None if check is None or check.empty else \
        float(check.sort_values("layers").iloc[-1]["spearman"])
    swap = read_table(run_path, "age_swap")
    evidence["age_swap_fall"] = table_figure(swap, {"metric": "accuracy"}, "difference",
                                             "diff_low", "diff_high")
    evidence["age_swap_normal_fall"] = table_figure(swap, {"metric": "recall_Normal"},
                                                    "difference", "diff_low", "diff_high")
    evidence.update(_external_evidence(run_path))
    evidence["controls"] = stored_controls(run_path)
    return evidence


def stored_controls(run_path: str | Path) -> dict[str, str] | None:
    """Each shortcut test's control status stored beside the run (test -> ``passed``,
    ``failed``, ``not run`` or ``no control available``); None where none is stored."""
    table = read_table(run_path, "controls")
    if table is None or table.empty:
        return None
    return dict(zip(table["test"], table["status"]))


def _external_evidence(run_path: Path) -> dict:
    """Experiment 6: unused images of the same collections (6a) and, on real data, images from
    another hospital and adult patients (6b: each class's recall fall)."""
    external = read_table(run_path, "external")
    record = read_record(run_path, "external") or {}
    falls = read_table(run_path, "external_validation_falls")
    return {
        "external_gap": table_figure(external, {"metric": "accuracy"}, "difference",
                                     "diff_low", "diff_high"),
        "external_kind": record.get("kind"),
        "external_same_collections": bool(record.get("same_collections", False)),
        "elsewhere_falls": [] if falls is None else [
            (f"{r['class']}, {r['source']}", Figure(r["difference"], r["diff_low"],
                                                    r["diff_high"]))
            for _, r in falls.iterrows()]}


def _pairs_within(pairs: pd.DataFrame | None, config: str) -> list:
    """(pair, the network's AUC, the best image statistics' AUC) of every pair of classes from
    one collection (:mod:`cxrlib.audit.pairs`)."""
    if pairs is None or pairs.empty:
        return []
    found = []
    for (a, b), rows in pairs[pairs["same_collection"].astype(str) == "True"].groupby(
            ["a", "b"], sort=False):
        network = table_figure(rows, {"model": config}, "auc", "auc_low", "auc_high")
        rival = rows[rows["model"].str.startswith("image statistics")].sort_values("auc")
        statistics = table_figure(rival.tail(1), {}, "auc", "auc_low", "auc_high")
        if network is not None and statistics is not None:
            found.append((f"{a} vs {b} ({rows['collections_a'].iloc[0]})", network, statistics))
    return found


def _protocol_difference(profile) -> str:
    return protocol_difference(profile) if profile is not None else ""


def _paper_fraction(config: str, metric: str) -> float | None:
    value = paper_figure(config, metric)
    return None if value is None else float(value) / 100
