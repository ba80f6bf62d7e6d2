"""What the book found, by glue name: the first page's findings and the discussion's answer to
each of the paper's claims.

The sentences are written in ``book/index.md``, ``book/introduction.md`` and
``book/discussion.md``; this module only computes what they quote, from stored results: each
figure as a short text (``"75.8% [71.4, 79.7]"``), a few words chosen by a stated rule (a rank,
"partial" or "complete"), and the verdict words of :func:`cxrlib.audit.verdict.verdict_table`,
so that the prose follows whatever the verdict says.

Two runs are read. The book's run (:func:`cxrlib.experiment.runs.book_run`, names
``find_...``) carries the strategies and the paper's figures; the audit chapter's run
(:func:`cxrlib.experiment.runs.audit_run`, names ``find_audit_...``) may have more classes and
images from other hospitals. Both give every name, with :data:`NOT_RUN` where a result is
missing, so that the chapters build on any run, a synthetic demonstration included.
"""
from __future__ import annotations

import math
from pathlib import Path

from cxrlib.analysis.comparison import paper_figure
from cxrlib.analysis.tables import config_label
from cxrlib.audit import numbers as audit_numbers
from cxrlib.audit.verdict import (
    CANNOT_TELL,
    CLAIMS,
    NOT_SUPPORTED,
    SUPPORTED,
    Figure,
    collect_evidence,
    counted_tests,
    verdict_table,
)
from cxrlib.core import paper
from cxrlib.core.profiles import PAPER_CONFIGS, PROFILES
from cxrlib.experiment import results, runs
from cxrlib.report import glue

NOT_RUN = "not run yet"
#: The strategy whose features the paper reads as possible biomarkers.
SCRATCH = "from_scratch"


def claim_keys() -> list[str]:
    """A short key for each claim of the verdict, in its order (``reproduced_2class``,
    ``scratch_beats_imagenet``, ...): the names of the verdict's claim functions."""
    return [claim.__name__.strip("_") for claim in CLAIMS]


def percent(value: float | None, low: float = math.nan, high: float = math.nan) -> str:
    """Percent figures (not fractions) as ``"75.8% [71.4, 79.7]"``; :data:`NOT_RUN` if none."""
    if value is None or math.isnan(value):
        return NOT_RUN
    return Figure(value / 100, low / 100, high / 100).text()


def _figure(figure: Figure | None, unit: str = "%") -> str:
    return NOT_RUN if figure is None or math.isnan(figure.value) else figure.text(unit)


def _auc(figure: Figure | None) -> str:
    return NOT_RUN if figure is None or math.isnan(figure.value) else figure.auc_text()


def label(config: str) -> str:
    """A configuration in running text: ``"fine-tuning 3 blocks"``, ``"training from scratch"``."""
    text = config_label(config).lower()
    if config.startswith("fine_tune_"):
        text += " block" if text.endswith(" 1") else " blocks"
    return text


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


# --- what a run is and how much of it has results ------------------------------------------

def run_numbers(run_path: Path) -> dict:
    """The run's name and a short description (classes, image size, folds)."""
    profile = runs.run_profile(run_path)
    if profile is None:
        return {"run": run_path.name, "n_classes": 0, "image_size": 0,
                "run_text": f"{run_path.name} (no results yet)"}
    data = "real data" if profile.dataset == "real" else "synthetic demonstration data"
    return {"run": run_path.name, "n_classes": len(profile.classes),
            "image_size": profile.image_size,
            "run_text": f"{run_path.name} ({data}, {len(profile.classes)} classes, "
                        f"{profile.image_size} px, {profile.n_folds}-fold cross-validation)"}


def coverage_numbers(run_path: Path) -> dict:
    """How much of the run's grid has results: configurations with every fold, with some folds
    (partial) and with none; ``coverage_word`` is "complete" only when every configuration has
    every fold."""
    profile = runs.run_profile(run_path)
    configs = runs.run_configs(run_path) if profile is not None else ()
    n_folds = profile.n_folds if profile is not None else 0
    done = {c: len(results.done_folds(run_path, c)) for c in configs}
    started = [c for c in configs if done[c]]
    partial = [c for c in started if done[c] < n_folds]
    missing = [c for c in configs if not done[c]]
    complete = bool(configs) and not partial and not missing
    partial_text = ", ".join(f"{label(c)} on {done[c]} of {n_folds} folds"
                             for c in partial)
    return {
        "configs_total": len(configs), "configs_done": len(started),
        "coverage_word": "complete" if complete else "partial",
        "coverage_text": f"all {len(configs)} configurations, every fold" if complete else
        f"{len(started)} of {len(configs)} configurations"
        + (f" ({partial_text})" if partial else ""),
        "missing_text": ", ".join(label(c) for c in missing) or "none",
        "partial_text": partial_text or "none",
    }


# --- the strategies ------------------------------------------------------------------------

def strategy_numbers(prose: dict, evidence: dict) -> dict:
    """Where training from scratch ranks by accuracy over the run's classes (the comparison
    chapter's figures, ``prose``: :func:`cxrlib.report.glue.prose_numbers`) and, paired on the
    same images (the verdict's ``evidence``), how far below or above each other configuration
    it lies."""
    accuracy = {c: prose[f"ours_{c}_acc_nclass"] for c in PAPER_CONFIGS
                if not math.isnan(prose.get(f"ours_{c}_acc_nclass", math.nan))}
    out = {"ranked_count": len(accuracy), "scratch_rank_text": NOT_RUN, "best_text": NOT_RUN,
           "scratch_acc_text": NOT_RUN}
    if accuracy:
        best = max(accuracy, key=accuracy.get)
        out["best_text"] = f"{label(best)}, {_config_accuracy(prose, best)}"
    if SCRATCH in accuracy:
        rank = 1 + sum(v > accuracy[SCRATCH] for v in accuracy.values())
        out["scratch_rank_text"] = (f"last of {len(accuracy)}" if rank == len(accuracy) > 1
                                    else f"{_ordinal(rank)} of {len(accuracy)}")
        out["scratch_acc_text"] = _config_accuracy(prose, SCRATCH)
    differences = evidence.get("strategy_differences") or {}
    below = [k for k, d in differences.items() if d.high < 0]
    out["scratch_below_count_text"] = f"{len(below)} of {len(differences)}"
    out["scratch_gaps_text"] = "; ".join(
        f"{label(k)} {_figure(d, ' points')}" for k, d in differences.items()) \
        or NOT_RUN
    gaps = [-d.value * 100 for d in differences.values()]
    out["scratch_gap_range_text"] = NOT_RUN if not gaps else (
        f"{min(gaps):.1f}" if len(gaps) == 1 else f"{min(gaps):.1f} to {max(gaps):.1f}")
    return out


def _config_accuracy(prose: dict, config: str) -> str:
    name = f"ours_{config}_acc_nclass"
    return percent(prose[name], prose[f"{name}_ci_low"], prose[f"{name}_ci_high"])


# --- COVID-19 against the rest, and all classes against the paper --------------------------

def detection_numbers(prose: dict, evidence: dict) -> dict:
    """Trained from scratch: sensitivity (``prose``, as the comparison chapter computes it),
    2-class accuracy and accuracy over the run's classes (the verdict's ``evidence``), beside
    the paper's printed figures and its own figures restricted to the run's classes."""
    classes = evidence.get("classes") or ()
    name = f"ours_{SCRATCH}_sensitivity"
    restricted = paper.restricted_figures(SCRATCH, classes) if classes else None
    baseline = prose.get("ours_not_covid_baseline", math.nan)
    return {
        "scratch_sensitivity_text": percent(prose.get(name), prose.get(f"{name}_ci_low", math.nan),
                                            prose.get(f"{name}_ci_high", math.nan)),
        "scratch_acc2_text": _figure(evidence.get("acc_2class")),
        "scratch_accuracy_text": _figure(evidence.get("accuracy")),
        "never_covid_text": percent(baseline),
        "paper_sensitivity_text": percent(paper_figure(SCRATCH, "sensitivity")),
        "paper_acc2_text": percent(paper_figure(SCRATCH, "acc_2class")),
        "paper_acc7_text": percent(paper_figure(SCRATCH, "acc_7class")),
        "paper_restricted_acc_text": NOT_RUN if restricted is None else
        percent(restricted["acc_nclass"]),
        "paper_restricted_sensitivity_text": NOT_RUN if restricted is None else
        percent(restricted.get("sensitivity")),
    }


# --- shortcuts -----------------------------------------------------------------------------

def shortcut_numbers(run_path: Path, evidence: dict) -> dict:
    """The audit's shortcut tests: which fire, how many passed their synthetic controls (only
    those count for the verdict), image statistics against the network (and a word for how they
    compare: their intervals overlap, or one lies above the other), the pair of classes from
    one collection where image statistics lead the network most, and saliency."""
    tests = counted_tests(evidence)
    statistics = audit_numbers.statistics_numbers(run_path)
    fired = [name for name, result, _, _, _ in tests if result]
    fired_counted = [name for name, result, _, _, counts in tests if result and counts]
    stats, network = evidence.get("statistics_accuracy"), evidence.get("accuracy")
    if stats is None or network is None:
        relation = NOT_RUN
    elif stats.low > network.high:
        relation = "beats"
    elif stats.high < network.low:
        relation = "falls short of"
    else:
        relation = "matches"
    pairs = sorted(evidence.get("pairs_within") or [],
                   key=lambda item: item[2].value - item[1].value)
    name, pair_network, pair_statistics = pairs[-1] if pairs else (NOT_RUN, None, None)
    covid = evidence.get("covid_lung_enrichment")
    return {
        "shortcuts_fired_text": "; ".join(fired) or "none",
        "shortcuts_fired_count_text": f"{len(fired)} of "
                                      f"{sum(t[1] is not None for t in tests)}",
        "shortcuts_total": len(tests),
        "shortcuts_counted_text": f"{sum(t[4] for t in tests)} of {len(tests)}",
        "shortcuts_fired_counted_text": "; ".join(fired_counted) or "none",
        "stats_model": statistics["audit_stats_best_model"],
        "stats_text": _figure(stats), "stats_network_text": _figure(network),
        "stats_relation": relation,
        "stats_2class_text": statistics["audit_stats_2class_text"],
        "pair_name": name, "pair_network_text": _auc(pair_network),
        "pair_statistics_text": _auc(pair_statistics),
        "covid_lung_enrichment_text": NOT_RUN if covid is None or math.isnan(covid) else
        f"{covid:.2f}",
    }


# --- new patients and images from elsewhere ------------------------------------------------

def transfer_numbers(run_path: Path, evidence: dict) -> dict:
    """Image-level against patient-grouped folds, accuracy on unused images of the same
    collections, and recall on images from another hospital and adult patients."""
    audit = audit_numbers.patient_numbers(run_path)
    audit.update(audit_numbers.elsewhere_numbers(run_path))
    audit.update(audit_numbers.folds_numbers(run_path))
    out = {"patient_gap_text": _figure(evidence.get("patient_gap"), " points"),
           "patient_leakage_text": audit["audit_patient_leakage_text"],
           "external_gap_text": _figure(evidence.get("external_gap"), " points"),
           "retrain_folds_text": audit["audit_folds_text"]}
    for key in audit_numbers.ELSEWHERE_SOURCES:
        out[f"elsewhere_{key}_text"] = audit[f"audit_elsewhere_{key}_text"]
        out[f"elsewhere_{key}_internal"] = audit[f"audit_elsewhere_{key}_internal"]
    return out


# --- the verdict ---------------------------------------------------------------------------

def claim_numbers(evidence: dict) -> dict:
    """Each claim's verdict word (``claim_<key>_verdict``) and how many claims get each."""
    table = verdict_table(evidence)
    out = {f"claim_{key}_verdict": verdict for key, verdict in zip(claim_keys(),
                                                                   table["verdict"])}
    out["claims_total"] = len(table)
    for word in (SUPPORTED, NOT_SUPPORTED, CANNOT_TELL):
        out[f"claims_{word.replace(' ', '_')}"] = int((table["verdict"] == word).sum())
    return out


def twin_numbers(run_path: Path) -> dict:
    """Whether the run's classes have been run at the paper's image size (``twin_text``): the
    real-data profile with the same classes at 200 px, and how much of it has results."""
    profile = runs.run_profile(run_path)
    size = PROFILES["paper"].image_size
    twins = [] if profile is None else [
        p for p in PROFILES.values() if p.dataset == "real" and p.image_size == size
        and tuple(p.classes) == tuple(profile.classes) and p.name != profile.name]
    if not twins:
        return {"twin_text": "none"}
    twin = run_path.parent / twins[0].name
    if runs.run_profile(twin) is None:
        return {"twin_text": f"{twins[0].name} (no results yet)"}
    return {"twin_text": f"{twins[0].name} ({coverage_numbers(twin)['coverage_text']})"}


def run_findings(run_path: str | Path, prefix: str) -> dict:
    """Every finding of one run, by glue name ``<prefix><name>``."""
    run_path = runs.resolve(run_path)
    evidence = collect_evidence(run_path)
    has_any = runs.run_profile(run_path) is not None and any(
        runs.has_results(run_path, c) for c in runs.run_configs(run_path))
    prose = glue.prose_numbers(run_path) if has_any else {}
    out: dict = {"protocol_text": evidence.get("protocol") or "the paper's protocol"}
    for part in (run_numbers(run_path), coverage_numbers(run_path),
                 strategy_numbers(prose, evidence), detection_numbers(prose, evidence),
                 shortcut_numbers(run_path, evidence), transfer_numbers(run_path, evidence),
                 claim_numbers(evidence), twin_numbers(run_path)):
        out.update(part)
    return {f"{prefix}{name}": value for name, value in out.items()}


def findings_numbers(book_run: str | Path | None = None,
                     audit_run: str | Path | None = None) -> dict:
    """The findings of the book's run (``find_...``) and of the audit chapter's run
    (``find_audit_...``), by glue name."""
    book_run = runs.book_run() if book_run is None else runs.resolve(book_run)
    audit_run = runs.audit_run() if audit_run is None else runs.resolve(audit_run)
    return {**run_findings(book_run, "find_"), **run_findings(audit_run, "find_audit_")}
