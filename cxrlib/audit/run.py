"""The whole audit of a run: the retrainings (unless told not to train), then every experiment,
each table stored under ``results/<run>/audit/`` (:mod:`.store`).

:func:`run_audit` is what ``python -m cxrlib audit`` and the audit notebook call. Each step is
one function of an :class:`Audit`, returning the tables it stored by name; a step whose inputs
are missing (a retraining not made yet, no kept weights) says so and stores nothing, so the
audit of a run made elsewhere (``--no-train``) analyses whatever is there.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from cxrlib.analysis import explain
from cxrlib.audit.controls import NEGATIVE_OF, control_runs, control_table
from cxrlib.audit.elsewhere import external_validation, predicted_as, recall_falls
from cxrlib.audit.experiments import (
    age_swap,
    harmonised,
    headline_uncertainty,
    masked_inputs,
    patient_folds,
    source_probe,
    source_resolutions,
    strategy_differences,
    within_collection,
)
from cxrlib.audit.external import (
    LATERAL,
    external_comparison,
    external_evaluation,
    external_images,
    external_record,
    restore_views,
)
from cxrlib.audit.pairs import pair_table
from cxrlib.audit.retrain import (
    EXPLAINED_VARIANT,
    HARMONISE_PX,
    ensure_baseline,
    explained_fold,
    harmonised_levels,
    main_profile,
    run_variant,
    variant_path,
    variant_run,
)
from cxrlib.audit.saliency import saliency_audit, saliency_summary
from cxrlib.audit.scoring import predictions
from cxrlib.audit.statistics import dataset_confound, image_statistics
from cxrlib.audit.store import read_record, read_table, write_record, write_table
from cxrlib.audit.verdict import collect_evidence, verdict_table
from cxrlib.core import paths
from cxrlib.core.profiles import AuditSettings, Profile, audit_settings
from cxrlib.data import dataset
from cxrlib.data.curate import ensure_curated
from cxrlib.experiment import cv, results, runs
from cxrlib.experiment.runs import run_configs, run_name


@dataclass(frozen=True)
class Audit:
    """One run's audit: the main run's profile and folder, where the sources are, whether the
    retrainings may train."""

    profile: Profile
    run_path: Path
    data_dir: str | None = None
    train: bool = True
    log: Callable[[str], None] = cv.log_line

    @property
    def settings(self) -> AuditSettings:
        return audit_settings(self.profile)

    @property
    def config(self) -> str:
        return self.settings.config

    def retraining(self, variant: str, **options) -> Path:
        """The variant's run folder: trained (resuming) when ``train``, else as stored."""
        if self.train:
            return run_variant(self.profile, variant, self.run_path.name, self.data_dir,
                               results_root=self.run_path.parent, log=self.log, **options)
        return variant_path(self.run_path, variant)

    def finished(self, *run_paths: Path) -> bool:
        """Whether every run has a finished fold of the configuration (else say which not)."""
        missing = [p.name for p in run_paths if not results.done_folds(p, self.config)]
        if missing:
            self.log(f"[audit] no finished {self.config} fold in {', '.join(missing)}: "
                     f"not analysed")
        return not missing

    def store(self, tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        for name, table in tables.items():
            write_table(self.run_path, name, table)
        return tables


def patient_step(audit: Audit) -> dict:
    """1. Image-level against patient-grouped folds (the grouped run keeps one fold's weights
    for the saliency step)."""
    kept_fold = (audit.settings.test_folds or (0,))[0]
    patient_run = audit.retraining("patient", save_weights_folds=(kept_fold,))
    if not audit.finished(audit.run_path, patient_run):
        return {}
    return audit.store({"patient_folds": patient_folds(audit.run_path, patient_run,
                                                       audit.config)})


def probe_step(audit: Audit) -> dict:
    """2. The source probe, and the disease accuracy inside each collection (the main run and
    the adult-normal retraining, which adds a collection with two classes on real data)."""
    tables = {}
    if audit.profile.collection_style == "external":  # one collection: nothing to name
        audit.log("[audit] one collection (synthetic-external): no source probe")
    elif audit.finished(probe_run := audit.retraining("source-probe")):
        tables["source_probe"] = source_probe(probe_run, audit.config)
    swap_run = audit.retraining("adult-normal")
    within = [within_collection(predictions(path, audit.config)).assign(run=name)
              for name, path in (("main", audit.run_path), ("adult-normal", swap_run))
              if results.done_folds(path, audit.config)]
    if within:
        tables["within_collection"] = pd.concat(within, ignore_index=True)
    return audit.store(tables)


def masked_step(audit: Audit) -> dict:
    """3. The lung fields blacked out, and the lung fields alone."""
    border_run, lung_run = audit.retraining("border-only"), audit.retraining("lung-only")
    if not audit.finished(audit.run_path, border_run, lung_run):
        return {}
    return audit.store({"masked_inputs": masked_inputs(audit.run_path, border_run, lung_run,
                                                       audit.config)})


def harmonise_step(audit: Audit) -> dict:
    """3b. Every image reduced to one common resolution before the letterbox: the disease and
    the source probe retrained, at each common long side of the audit settings."""
    levels = {px: (audit.retraining(run), audit.retraining(probe))
              for px, (run, probe) in harmonised_levels(audit.settings).items()}
    probe_run = variant_path(audit.run_path, "source-probe")  # trained by probe_step
    table = harmonised(audit.run_path, probe_run, levels, audit.config)
    manifest = dataset.read_manifest(ensure_curated(audit.profile, audit.data_dir, log=audit.log))
    sizes = source_resolutions(manifest, audit.profile.classes, HARMONISE_PX)
    return audit.store({"harmonised_sources": sizes,
                        **({"harmonised": table} if not table.empty else {})})


def swap_step(audit: Audit) -> dict:
    """7. The paediatric Normal class against adult NIH "No Finding" images, both runs grouped
    by patient (so that only the Normal images differ)."""
    swap_run = variant_path(audit.run_path, "adult-normal")  # trained by probe_step
    patient_run = variant_path(audit.run_path, "patient")  # trained by patient_step
    if not audit.finished(patient_run, swap_run):
        return {}
    swap, recall = age_swap(patient_run, swap_run, audit.config)
    return audit.store({"age_swap": swap, "age_swap_recall": recall})


def statistics_step(audit: Audit) -> dict:
    """4. Trivial statistics of the curated images, cross-validated with the main run's folds
    (or the same assignment made the same way, when the run has none stored yet); apart, the
    dataset confound of the original files' size."""
    manifest, images = cv.load_dataset(audit.profile, data_dir=audit.data_dir)
    if (audit.run_path / "folds.csv").is_file():
        folds = results.read_folds(audit.run_path)
        # A curated set made later may hold other images (e.g. of a class added since, or
        # one image excluded by a later rule): the run's own images that it holds.
        kept = manifest["image_id"].isin(folds["image_id"]).to_numpy()
        if kept.sum() < len(folds):
            audit.log(f"[audit] image statistics: {len(folds) - kept.sum()} of the "
                      f"{len(folds)} images of {audit.run_path.name} are not in the curated set "
                      f"(curated again since): left out")
        manifest, images = manifest[kept].reset_index(drop=True), images[kept]
    else:
        folds = cv.make_folds(manifest, audit.profile)
    scores, oof = image_statistics(manifest, images, folds, audit.profile.classes)
    tables = {"image_statistics": scores, "image_statistics_predictions": oof}
    confound = dataset_confound(manifest, folds, audit.profile.classes)
    if confound is not None:
        tables.update({"dataset_confound": confound[0],
                       "dataset_confound_predictions": confound[1]})
    return audit.store(tables)


def pairs_step(audit: Audit) -> dict:
    """Disease against disease, within one collection (Effusion vs Fibrosis, both NIH) and
    across, for every configuration of the main run and for the image-statistics rival."""
    tables = []
    for config in run_configs(audit.run_path):
        pred = predictions(audit.run_path, config)
        if not pred.empty:
            tables.append(pair_table(pred).assign(model=config))
    for table, label in (("image_statistics_predictions", "image statistics"),
                         ("dataset_confound_predictions", "dataset confound")):
        rival = read_table(audit.run_path, table)
        for model_name, pred in ([] if rival is None else rival.groupby("model")):
            tables.append(pair_table(pred.drop(columns="model")).assign(
                model=f"{label} ({model_name})"))
    tables = [t for t in tables if not t.empty]
    return audit.store({"pairs": pd.concat(tables, ignore_index=True)}) if tables else {}


def _explained(audit: Audit) -> tuple[Path, int] | None:
    explained = explained_fold(audit.run_path, audit.config)
    if explained is None:
        audit.log(f"[audit] no trained weights are kept for {audit.config} in "
                  f"{audit.run_path.name} or "
                  f"{variant_run(audit.run_path.name, EXPLAINED_VARIANT)}: no saliency or "
                  f"external evaluation")
    return explained


def saliency_step(audit: Audit) -> dict:
    """5. Grad-CAM shares by region, and the randomisation check."""
    explained = _explained(audit)
    if explained is None:
        return {}
    (weights_run, fold), settings = explained, audit.settings
    table, maps, check = saliency_audit(weights_run, audit.config, fold,
                                        settings.saliency_per_class,
                                        settings.randomisation_images, data_dir=audit.data_dir)
    return audit.store({"saliency": table, "saliency_maps": maps,
                        "saliency_summary": saliency_summary(table), "randomisation": check,
                        "randomisation_summary": explain.randomisation_summary(check)})


def external_step(audit: Audit) -> dict:
    """6. The explained fold's network on external images, beside its own test fold (without
    kept weights: the stored evaluation again, lateral views set aside)."""
    explained = _explained(audit)
    if explained is None:
        return _stored_external(audit)
    weights_run, fold = explained
    external, images, kind, same = external_images(
        audit.profile, audit.settings.external_per_class, audit.data_dir)
    comparison, external_predictions = external_evaluation(weights_run, audit.config, fold,
                                                           external, images)
    write_record(audit.run_path, "external", external_record(external, kind, same, weights_run,
                                                             audit.config, fold))
    return audit.store({"external": comparison, "external_predictions": external_predictions})


def _stored_external(audit: Audit) -> dict:
    """The stored external evaluation of a real run, compared again on frontal views (the
    views restored from the bundle when it was stored without them)."""
    stored, record = read_table(audit.run_path, "external_predictions"), \
        read_record(audit.run_path, "external")
    if stored is None or record is None or audit.profile.dataset != "real":
        return {}
    if "view" not in stored:
        data_dir = Path(audit.data_dir) if audit.data_dir else paths.default_data_dir()
        stored = restore_views(stored, data_dir)
        record["lateral"] = int((stored["view"] == LATERAL).sum())
        write_record(audit.run_path, "external", record)
    weights_run = audit.run_path.parent / record["run"]
    comparison = external_comparison(weights_run, record["config"], record["fold"], stored)
    return audit.store({"external": comparison, "external_predictions": stored})


def elsewhere_step(audit: Audit) -> dict:
    """6b. The run's own networks on another hospital's COVID-19 images and on adult NIH
    pneumonia and normals of patients it never saw (real data only)."""
    data_dir = Path(audit.data_dir) if audit.data_dir else paths.default_data_dir()
    if audit.profile.dataset != "real" or data_dir is None:
        return {}
    found = external_validation(audit.run_path, audit.config, data_dir)
    if found is None:
        audit.log(f"[audit] no kept {audit.config} weights in {audit.run_path.name} (or no "
                  f"images from elsewhere): no external validation")
        return {}
    table, predictions, record = found
    write_record(audit.run_path, "external_validation", record)
    return audit.store({"external_validation": table,
                        "external_validation_predictions": predictions,
                        "external_validation_falls": recall_falls(table),
                        "external_validation_predicted_as": predicted_as(
                            predictions, runs.run_classes(audit.run_path))})


def negative_control_step(audit: Audit) -> dict:
    """The shortcut tests' negative control (:mod:`.controls`): when this run is the positive
    control and may train, the same audit on its twin without the planted shortcut (only the
    steps the shortcut tests read). Its tables are its own run's; this run stores none."""
    negative = NEGATIVE_OF.get(audit.profile.name)
    if negative is None or not audit.train or audit.run_path.name != audit.profile.name:
        return {}
    run_audit(negative, data_dir=audit.data_dir, train=True,
              results_root=audit.run_path.parent, log=audit.log, steps=CONTROL_STEPS)
    return {}


def verdict_step(audit: Audit) -> dict:
    """8. Every headline figure with its interval and the trivial rules beside it; from scratch
    against every other configuration; each shortcut test's controls as stored now (the
    positive and negative control runs of this results store); then the verdict on each claim
    from all that is stored."""
    statistics = read_table(audit.run_path, "image_statistics_predictions")
    tables = audit.store({"uncertainty": headline_uncertainty(audit.run_path, statistics),
                          "strategies": strategy_differences(audit.run_path, audit.config)})
    tables.update(audit.store({"controls": control_table(*control_runs(
        audit.run_path.parent))}))
    # The verdict reads the tables just stored, with every other experiment's.
    tables.update(audit.store({"verdict": verdict_table(collect_evidence(audit.run_path))}))
    return tables


#: The audit's steps in order (the retrainings first: the saliency step explains one of them).
STEPS = (("patient-grouped folds", patient_step), ("source probe", probe_step),
         ("masked inputs", masked_step), ("one resolution", harmonise_step),
         ("age and source swap", swap_step),
         ("image statistics", statistics_step), ("disease against disease", pairs_step),
         ("saliency", saliency_step),
         ("external data", external_step), ("images from elsewhere", elsewhere_step),
         ("negative control", negative_control_step), ("intervals and verdict", verdict_step))
#: What the negative control needs: the shortcut tests' inputs (the patient-grouped run too:
#: the saliency step may explain it).
CONTROL_STEPS = tuple((name, step) for name, step in STEPS if step in (
    patient_step, probe_step, masked_step, swap_step, statistics_step, pairs_step,
    saliency_step, verdict_step))


def run_audit(profile: Profile | str, run: str = "", data_dir=None, train: bool = True,
              results_root=None, log=cv.log_line, steps=STEPS) -> dict[str, pd.DataFrame]:
    """Audit the run ``run`` (default: the profile's name) and store every table.

    With ``train``, first cross-validates the main run's audit configuration on the audit's
    folds and each retraining (finished folds are skipped); without, analyses only what is
    stored (e.g. retrainings made on a GPU machine). ``steps``: (name, step) pairs to run
    (default :data:`STEPS`, all). Returns the stored tables by name.
    """
    run = run_name(run, profile)
    base = main_profile(profile, run, data_dir, results_root)
    run_path = ensure_baseline(base, run, data_dir, results_root, log=log) if train else \
        results.run_dir(run, results_root)
    audit = Audit(base, Path(run_path), data_dir or None, train, log)
    log(f"[audit] run {run} (train={train}): configuration {audit.config}, test folds "
        f"{audit.settings.test_folds or 'all'}")
    tables: dict[str, pd.DataFrame] = {}
    for name, step in steps:
        started = time.perf_counter()
        tables.update(step(audit))
        log(f"[audit] {name} done in {time.perf_counter() - started:.0f} s")
    log(f"[audit] tables: {run_path / 'audit'}")
    return tables
