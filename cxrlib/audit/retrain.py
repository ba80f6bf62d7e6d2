"""The audit's retrainings: the main run's audit configuration with one thing changed.

Each retraining is a run of its own, made by :func:`cxrlib.experiment.cv.run_profile` and so resumable
and atomic: ``<run>-patient``, ``<run>-source-probe``, ``<run>-border-only``,
``<run>-lung-only``, ``<run>-adult-normal``, ``<run>-harmonised``,
``<run>-harmonised-source-probe`` (:data:`VARIANTS`), and the harmonised pair again at each
further common resolution of the profile's audit settings (``<run>-harmonised-48``,
``<run>-harmonised-48-source-probe``: :func:`harmonised_levels`). They cross-validate the test
folds of :func:`cxrlib.core.profiles.audit_settings` only.
"""
from __future__ import annotations

import re
from pathlib import Path

from cxrlib.analysis import explain
from cxrlib.core.profiles import AuditSettings, Profile, audit_settings, get_profile
from cxrlib.experiment import cv, results, runs

#: The long side every image is reduced to in the harmonised retrainings: NIH's smallest images
#: (its Fibrosis images, 248 px; PROVENANCE.md). Kermany's squashed 224 px copies are smaller
#: and stay as they are (harmonising never enlarges).
HARMONISE_PX = 248
#: The retrainings: the profile changes each makes (the configuration is the audit's). The
#: adult-normal swap is grouped by patient (NIH patients have several images) and is compared
#: with the patient-grouped retraining, so that only the Normal images change.
VARIANTS: dict[str, dict] = {
    "patient": {"grouping": "patient"},
    "source-probe": {"target": "source"},
    "border-only": {"input_mask": "border_only"},
    "lung-only": {"input_mask": "lung_only"},
    "adult-normal": {"normal_label": "No Finding", "grouping": "patient"},
    "harmonised": {"harmonise_px": HARMONISE_PX},
    "harmonised-source-probe": {"harmonise_px": HARMONISE_PX, "target": "source"},
}
_HARMONISED = re.compile(r"harmonised-(\d+)(-source-probe)?")
#: The variant whose kept weights are explained when the main run kept none.
EXPLAINED_VARIANT = "patient"


def variant_changes(variant: str) -> dict:
    """The profile changes of a retraining: one of :data:`VARIANTS`, or ``harmonised-<px>``
    (``-source-probe``) at another common long side."""
    if variant in VARIANTS:
        return VARIANTS[variant]
    found = _HARMONISED.fullmatch(variant)
    if found is None:
        raise ValueError(f"unknown audit variant {variant!r}; variants are {list(VARIANTS)} "
                         f"and harmonised-<px>[-source-probe]")
    return {"harmonise_px": int(found[1]), **({"target": "source"} if found[2] else {})}


def harmonised_levels(settings: AuditSettings) -> dict[int, tuple[str, str]]:
    """Each common long side the audit harmonises to, with its retraining and source probe."""
    levels = {HARMONISE_PX: ("harmonised", "harmonised-source-probe")}
    for px in settings.harmonise_also_px:
        levels[px] = (f"harmonised-{px}", f"harmonised-{px}-source-probe")
    return levels


def variant_run(run: str, variant: str) -> str:
    variant_changes(variant)  # an unknown variant is refused
    return f"{run}-{variant}"


def variant_path(run_path: str | Path, variant: str) -> Path:
    """The retraining's run folder: ``<run>-<variant>``, or, when only that exists, the run the
    command line names after its overrides (``python -m cxrlib run --set grouping=patient``
    makes ``<run>_grouping-patient``), which holds the same retraining."""
    run_path = Path(run_path)
    ours = run_path.parent / variant_run(run_path.name, variant)
    theirs = run_path.parent / runs.override_run_name(run_path.name, variant_changes(variant))
    return theirs if not ours.exists() and (theirs / "profile.json").is_file() else ours


def variant_profile(profile: Profile, variant: str) -> Profile:
    """The main run's profile with the variant's changes, training the audit configuration."""
    config = audit_settings(profile).config
    return profile.replace(configs=(config,), **variant_changes(variant))


def main_profile(profile: Profile | str, run: str, data_dir=None,
                 results_root=None) -> Profile:
    """The profile the main run was made with (its profile.json), else the named one."""
    stored = results.run_dir(run, results_root) / "profile.json"
    if stored.is_file():
        return results.read_profile(stored.parent)
    chosen = get_profile(profile) if isinstance(profile, str) else profile
    return chosen.replace(dataset="real") if data_dir else chosen


def ensure_baseline(profile: Profile, run: str, data_dir=None, results_root=None,
                    log=cv.log_line) -> Path:
    """The main run's audit configuration on the audit's folds (finished folds are skipped)."""
    settings = audit_settings(profile)
    return cv.run_profile(profile, configs=[settings.config], folds=settings.test_folds, run=run,
                          data_dir=data_dir, results_root=results_root, log=log)


def run_variant(profile: Profile, variant: str, run: str, data_dir=None, results_root=None,
                log=cv.log_line, save_weights_folds=()) -> Path:
    """Cross-validate one retraining of :data:`VARIANTS` into ``<run>-<variant>`` (or into the
    command line's run of the same retraining, if that is the one that exists)."""
    settings = audit_settings(profile)
    path = variant_path(results.run_dir(run, results_root), variant)
    chosen = results.read_profile(path) if path.name != variant_run(run, variant) else \
        variant_profile(profile, variant)
    return cv.run_profile(chosen, configs=[settings.config], folds=settings.test_folds,
                          run=path.name, data_dir=data_dir, results_root=results_root, log=log,
                          save_weights_folds=save_weights_folds)


def explained_fold(run_path: str | Path, config: str) -> tuple[Path, int] | None:
    """The trained fold whose network the saliency and external experiments use.

    The main run's own kept weights (``--save-weights-folds``) if it has any; otherwise those of
    the patient-grouped retraining, which the audit keeps for fold 0. None if neither exists.
    """
    for candidate in (Path(run_path), variant_path(run_path, EXPLAINED_VARIANT)):
        folds = explain.saved_folds(candidate, config)
        if folds:
            return candidate, folds[0]
    return None
