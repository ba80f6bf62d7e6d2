"""The verdict on each of the paper's claims, from the audit's stored evidence, by fixed rules.

:func:`collect_evidence` reads the tables the audit stored under ``results/<run>/audit/``
(:mod:`cxrlib.audit.store`); :func:`verdict_table` turns them into one row
per claim of the paper (in our words): supported, not supported or cannot tell, with the
figures it rests on and the rule applied. The rules and their thresholds are
:class:`Thresholds`, nothing else; missing evidence gives "cannot tell".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cxrlib.analysis.comparison import paper_figure, protocol_difference
from cxrlib.audit.scoring import retained_share
from cxrlib.audit.store import read_record, read_table
from cxrlib.core import paper
from cxrlib.core.profiles import audit_settings
from cxrlib.experiment import results


@dataclass(frozen=True)
class Thresholds:
    """The explicit rules of :func:`verdict_table` (fractions, not percent).

    - ``reproduce_margin``: our interval must reach within this of the paper's figure for a
      figure to count as reproduced, and lies wholly below it minus this when not;
    - ``retained_shortcut``: a change of input that keeps at least this share of the accuracy
      above chance shows that the removed part was not needed;
    - ``statistics_rival``: trivial statistics that reach this share of the network's accuracy
      above chance rival the network;
    - ``source_recognisable``: a source probe at or above this accuracy recognises collections;
    - ``material_gap``: a fall of accuracy at least this large (and an interval that excludes
      none) is material;
    - ``randomisation_max_corr``: mean Spearman correlation with the trained maps after full
      randomisation at or above this means the maps do not depend on the model;
    - ``lung_enrichment``: saliency in the lung fields at least this multiple of their area
      counts as looking at the lungs (below 1: less than a uniform map).
    """

    reproduce_margin: float = 0.02
    retained_shortcut: float = 0.5
    statistics_rival: float = 0.8
    source_recognisable: float = 0.9
    material_gap: float = 0.05
    randomisation_max_corr: float = 0.5
    lung_enrichment: float = 1.0


THRESHOLDS = Thresholds()
SUPPORTED, NOT_SUPPORTED, CANNOT_TELL = "supported", "not supported", "cannot tell"


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
    return evidence


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


def _missing(*items) -> bool:
    return any(i is None or (isinstance(i, float) and math.isnan(i)) for i in items)


def _reproduction(ours: Figure | None, reported: float | None, t: Thresholds,
                  comparable: bool, protocol: str = "") -> tuple[str, str]:
    if ours is None or reported is None:
        return CANNOT_TELL, "no result yet"
    text = f"ours {ours.text()} against the paper's {100 * reported:.1f}%"
    if protocol:
        return CANNOT_TELL, text + f" ({protocol})"
    if not comparable:
        return CANNOT_TELL, text + " (another class set: not the same task)"
    if ours.high >= reported - t.reproduce_margin:
        return SUPPORTED, text
    return NOT_SUPPORTED, text


def _reproduced_2class(evidence: dict, t: Thresholds) -> tuple:
    verdict, text = _reproduction(evidence.get("acc_2class"), evidence.get("paper_acc_2class"),
                                  t, comparable=True, protocol=evidence.get("protocol", ""))
    return ("Trained from scratch, the network tells COVID-19 from the other classes with "
            "about 99% accuracy.", verdict, text,
            f"reproduced if our 95% interval reaches the paper's figure minus "
            f"{100 * t.reproduce_margin:.0f} points (a run of a reduced protocol cannot tell)")


def _reproduced_7class(evidence: dict, t: Thresholds) -> tuple:
    classes = tuple(evidence.get("classes", ()))
    restricted = evidence.get("paper_accuracy_restricted")
    if classes == paper.CLASSES or restricted is None:
        verdict, text = _reproduction(evidence.get("accuracy"), evidence.get("paper_accuracy"),
                                      t, comparable=classes == paper.CLASSES,
                                      protocol=evidence.get("protocol", ""))
    else:  # fewer classes: the paper's own accuracy on the images of ours
        verdict, text = _reproduction(evidence.get("accuracy"), restricted, t, comparable=True,
                                      protocol=evidence.get("protocol", ""))
        text += f" on the images of our {len(classes)} classes (printed over seven: " \
                f"{100 * evidence.get('paper_accuracy', math.nan):.1f}%)"
    return ("Over all seven classes it is right about 88% of the time.", verdict, text,
            "as above; with fewer classes, against the paper's own accuracy on the images of "
            "those classes (its confusion matrix restricted to them: an answer into a class "
            "we lack stays an error)")


def _scratch_beats_imagenet(evidence: dict, t: Thresholds) -> tuple:
    differences = evidence.get("strategy_differences") or {}
    if not differences:
        verdict, text = CANNOT_TELL, "no other strategy has results"
    else:
        text = "; ".join(f"minus {k}: {v.text(' points')}" for k, v in differences.items())
        if all(v.low > 0 for v in differences.values()):
            verdict = SUPPORTED
        elif any(v.high < 0 for v in differences.values()):
            verdict = NOT_SUPPORTED
        else:
            verdict = CANNOT_TELL
    return ("Training from scratch beats ImageNet features, whether fixed or fine-tuned.",
            verdict, "from scratch's accuracy, paired bootstrap: " + text,
            "supported if every interval is above 0; not supported if one is below 0")


def _gap_verdict(gap: Figure, t: Thresholds, may_support: bool = True) -> str:
    """A material fall (interval above 0) refutes; an interval below the material size
    supports (where ``may_support``); anything else cannot tell."""
    if gap.value >= t.material_gap and gap.low > 0:
        return NOT_SUPPORTED
    if gap.high < t.material_gap and may_support:
        return SUPPORTED
    return CANNOT_TELL


def _new_patients(evidence: dict, t: Thresholds) -> tuple:
    gap = evidence.get("patient_gap")
    if gap is None:
        verdict, text = CANNOT_TELL, "no patient-grouped retraining yet"
    else:
        text = f"image-level minus patient-grouped accuracy: {gap.text(' points')}"
        verdict = _gap_verdict(gap, t)
    return ("Image-level cross-validation measures how the network does on new patients.",
            verdict, text, f"not supported if the gap is at least "
            f"{100 * t.material_gap:.0f} points with an interval above 0; supported if the "
            f"interval stays below {100 * t.material_gap:.0f} points")


def _biomarkers(evidence: dict, t: Thresholds) -> tuple:
    verdict, text = biomarker_verdict(evidence, t)
    return ("The features learned from scratch are signs of disease in the lungs (possible "
            "biomarkers), not marks of where an image comes from.", verdict, text,
            shortcut_rule(t))


def _carries_over(evidence: dict, t: Thresholds) -> tuple:
    external = evidence.get("external_gap")
    falls = evidence.get("elsewhere_falls") or []
    if falls:  # the real images from elsewhere, where a run has them
        _, worst = max(falls, key=lambda item: item[1].value)
        verdict = _gap_verdict(worst, t)
        text = "recall falls, internal minus elsewhere: " + "; ".join(
            f"{name} {fall.text(' points')}" for name, fall in falls)
    elif external is None:
        verdict, text = CANNOT_TELL, "no external evaluation"
    else:
        text = f"internal minus external accuracy: {external.text(' points')} " \
            f"({evidence.get('external_kind') or 'external data'})"
        verdict = _gap_verdict(external, t,
                               may_support=not evidence.get("external_same_collections"))
    return ("The classifier is ready to screen patients: its accuracy carries over to "
            "images from elsewhere.", verdict, text,
            f"not supported if accuracy (on real data: any class's recall on images from "
            f"another hospital or adult patients) falls by at least "
            f"{100 * t.material_gap:.0f} points (interval above 0) on other images; supported "
            f"if it falls by less on another collection")


#: The paper's claims, in the order the verdict lists them.
CLAIMS = (_reproduced_2class, _reproduced_7class, _scratch_beats_imagenet, _new_patients,
          _biomarkers, _carries_over)


def verdict_table(evidence: dict, thresholds: Thresholds = THRESHOLDS) -> pd.DataFrame:
    """Each claim of the paper (in our words), our verdict, the evidence and the rule applied.

    Verdicts follow :class:`Thresholds` and nothing else; a claim whose evidence is missing is
    "cannot tell". With synthetic data the verdicts only show that the rules work.
    """
    return pd.DataFrame([claim(evidence, thresholds) for claim in CLAIMS],
                        columns=["claim", "verdict", "evidence", "rule"])


def shortcut_tests(evidence: dict, t: Thresholds = THRESHOLDS) -> list[tuple[str, bool | None,
                                                                            str]]:
    """Each shortcut test: (name, fired? None if no result, the figures it read)."""
    tests = []
    border = evidence.get("border_retained")
    tests.append(("lungs blacked out", None if _missing(border) else
                  border >= t.retained_shortcut,
                  "n/a" if _missing(border) else
                  f"{100 * border:.0f}% of the accuracy above chance kept"))
    stats, network, chance = (evidence.get("statistics_accuracy"), evidence.get("accuracy"),
                              evidence.get("chance"))
    if _missing(stats, network, chance):
        tests.append(("image statistics", None, "n/a"))
    else:
        share = retained_share(stats.value, network.value, chance.value)
        tests.append(("image statistics", None if _missing(share) else
                      share >= t.statistics_rival,
                      f"{stats.text()} against the network's {network.text()} "
                      f"(chance {100 * chance.value:.1f}%)"))
    probe, within = evidence.get("source_probe"), evidence.get("within_collection") or []
    if probe is None:
        tests.append(("collections recognisable, classes not within them", None, "n/a"))
    else:
        blind = [name for name, figure, majority in within if figure.low <= majority]
        fired = probe.value >= t.source_recognisable and bool(blind)
        tests.append(("collections recognisable, classes not within them", fired,
                      f"source probe {probe.text()}; within a collection no better than its "
                      f"majority class: {', '.join(blind) or 'none'}"))
    tests.append(_pairs_test(evidence))
    enrichment, randomised = evidence.get("lung_enrichment"), evidence.get("randomised_spearman")
    covid = evidence.get("covid_lung_enrichment")
    if _missing(enrichment):
        tests.append(("saliency outside the lungs", None, "n/a"))
    else:
        meaningful = not _missing(randomised) and randomised < t.randomisation_max_corr
        lowest = min(enrichment, covid) if not _missing(covid) else enrichment
        covid_text = "" if _missing(covid) else f", for COVID-19 images {covid:.2f}"
        tests.append(("saliency outside the lungs", lowest < t.lung_enrichment and meaningful,
                      f"lung share / lung area {enrichment:.2f}{covid_text}; maps after "
                      f"randomisation correlate "
                      f"{'n/a' if _missing(randomised) else f'{randomised:.2f}'}"))
    if not evidence.get("synthetic"):  # real images from elsewhere exist for real runs only
        tests.append(_elsewhere_test(evidence, t))
    falls = [(what, f) for what, f in (("accuracy", evidence.get("age_swap_fall")),
                                        ("Normal's recall", evidence.get("age_swap_normal_fall")))
             if f is not None]
    tests.append(("adult Normal images", None if not falls else
                  any(f.value >= t.material_gap and f.low > 0 for _, f in falls),
                  "; ".join(f"{what} falls by {f.text(' points')}" for what, f in falls)
                  or "n/a"))
    return tests


def _pairs_test(evidence: dict) -> tuple[str, bool | None, str]:
    """Fires when, on a pair of classes from one collection, image statistics reach the
    network's AUC."""
    pairs = evidence.get("pairs_within") or []
    rivalled = [name for name, network, statistics in pairs if statistics.value >= network.value]
    return ("disease pairs inside one collection no better than image statistics",
            None if not pairs else bool(rivalled),
            "; ".join(f"{name}: network AUC {network.value:.3f} [{network.low:.3f}, "
                      f"{network.high:.3f}], image statistics {statistics.value:.3f}"
                      for name, network, statistics in pairs) or "n/a")


def _elsewhere_test(evidence: dict, t: Thresholds) -> tuple[str, bool | None, str]:
    """Fires when a class's recall falls materially on real images from elsewhere."""
    elsewhere = evidence.get("elsewhere_falls") or []
    return ("a class's recall falls on images from elsewhere", None if not elsewhere else
            any(f.value >= t.material_gap and f.low > 0 for _, f in elsewhere),
            "; ".join(f"{name}: {f.text(' points')}" for name, f in elsewhere) or "n/a")


def shortcut_rule(t: Thresholds = THRESHOLDS) -> str:
    """The shortcut tests' rule, in words, with the thresholds in force."""
    return (f"not supported if a shortcut test fires, supported if none fires and each has a "
            f"result. A test fires when: the lungs blacked out keep at least "
            f"{100 * t.retained_shortcut:.0f}% of the accuracy above chance; image statistics "
            f"reach {100 * t.statistics_rival:.0f}% of the network's accuracy above chance; the "
            f"source probe reaches {100 * t.source_recognisable:.0f}% while inside some "
            f"collection the classes are told apart no better than its largest class; on a "
            f"pair of classes from one collection (e.g. Effusion and Fibrosis, both NIH) image "
            f"statistics reach the network's AUC; "
            f"saliency in the lung fields is below {t.lung_enrichment:g} times their area, "
            f"over all images or over the COVID-19 images (with maps that pass the "
            f"randomisation check); accuracy or Normal's recall falls "
            f"by {100 * t.material_gap:.0f} points or more (interval above 0) with adult "
            f"Normal images, or a class's recall falls that much on real images from "
            f"elsewhere (another hospital, adult patients)")


def biomarker_verdict(evidence: dict, t: Thresholds = THRESHOLDS) -> tuple[str, str]:
    tests = shortcut_tests(evidence, t)
    text = "; ".join(f"{name}: {'FIRES' if fired else 'no' if fired is False else 'no result'}"
                     f" ({figures})" for name, fired, figures in tests)
    if any(fired for _, fired, _ in tests):
        return NOT_SUPPORTED, text
    if all(fired is False for _, fired, _ in tests):
        return SUPPORTED, text
    return CANNOT_TELL, text


