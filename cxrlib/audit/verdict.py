"""The verdict on each of the paper's claims, from the audit's stored evidence, by fixed rules.

:func:`collect_evidence` (:mod:`.evidence`) reads the tables the audit stored under ``results/<run>/audit/``
(:mod:`cxrlib.audit.store`); :func:`verdict_table` turns them into one row
per claim of the paper (in our words): supported, not supported or cannot tell, with the
figures it rests on and the rule applied. The rules and their thresholds are
:class:`Thresholds`, nothing else; missing evidence gives "cannot tell".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from cxrlib.audit.evidence import Figure, collect_evidence, table_figure
from cxrlib.audit.scoring import retained_share
from cxrlib.core import paper

__all__ = ["CANNOT_TELL", "CLAIMS", "CONTROL_WORDS", "NOT_SUPPORTED", "SUPPORTED",
           "THRESHOLDS", "Figure", "Thresholds", "biomarker_verdict", "collect_evidence",
           "control_status", "counted_tests", "shortcut_rule", "shortcut_tests",
           "table_figure", "verdict_table"]


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
    tests.append(_probe_test(evidence, t))
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


def _probe_test(evidence: dict, t: Thresholds) -> tuple[str, bool | None, str]:
    """Fires when the source probe names the collection and inside some collection the classes
    are told apart no better than its largest class. Quiet when every collection's classes are
    told apart, whatever the probe (a run of one collection needs no probe)."""
    name = "collections recognisable, classes not within them"
    probe, within = evidence.get("source_probe"), evidence.get("within_collection") or []
    blind = [where for where, figure, majority in within if figure.low <= majority]
    figures = f"source probe {'n/a' if probe is None else probe.text()}; within a " \
        f"collection no better than its majority class: {', '.join(blind) or 'none'}"
    if within and not blind:
        return name, False, figures
    if probe is None:
        return name, None, figures if within else "n/a"
    return name, probe.value >= t.source_recognisable and bool(blind), figures


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
    return (f"not supported if a shortcut test that passed its controls fires, supported if "
            f"every test passed its controls and none fires (a test passes when it fires on "
            f"synthetic data with a planted shortcut and stays quiet on the same data without "
            f"it; one that fails is uninformative and not counted). A test fires when: the lungs blacked out keep at least "
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


#: What the verdict says of a test by the status of its controls (:mod:`.controls`).
CONTROL_WORDS = {"passed": "counted (passed its controls)",
                 "failed": "uninformative (failed its controls)",
                 "not run": "not counted (its controls were not run)",
                 "no control available": "not counted (no control available)"}


def control_status(evidence: dict, test: str) -> str:
    """A test's control status in ``evidence["controls"]`` (``not run`` where none stored)."""
    return (evidence.get("controls") or {}).get(test, "not run")


def counted_tests(evidence: dict, t: Thresholds = THRESHOLDS) -> list[tuple]:
    """Each shortcut test as (name, fired?, figures, control status, counted?): a test counts
    only when it passed its controls (fired with the planted shortcut, quiet without)."""
    return [(name, fired, figures, control_status(evidence, name),
             control_status(evidence, name) == "passed")
            for name, fired, figures in shortcut_tests(evidence, t)]


def biomarker_verdict(evidence: dict, t: Thresholds = THRESHOLDS) -> tuple[str, str]:
    """Not supported if a counted test fires; supported if every test is counted and none
    fires; else cannot tell. The text names every test, its result and its controls."""
    tests = counted_tests(evidence, t)
    text = "; ".join(f"{name}: {'FIRES' if fired else 'no' if fired is False else 'no result'}"
                     f" ({figures}) [{CONTROL_WORDS[status]}]"
                     for name, fired, figures, status, _ in tests)
    counted = [fired for _, fired, _, _, counts in tests if counts]
    if any(counted):
        return NOT_SUPPORTED, text
    if counted and len(counted) == len(tests) and all(f is False for f in counted):
        return SUPPORTED, text
    return CANNOT_TELL, text
