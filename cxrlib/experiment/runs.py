"""Runs: what a stored run is, and which run the book shows.

A run is a folder ``results/<run>/`` of the results store (:mod:`cxrlib.experiment.results`): its
``profile.json``, ``folds.csv`` and one folder per finished (configuration, fold). Everything
above the store (the chapters, the explorers, the audit, the command line) asks this module,
and only this module, about a run:

- its name (:func:`run_name`: the profile's name unless another is given) and folder
  (:func:`resolve`: a name, a folder, or nothing for the run the book shows);
- its profile, the classes its networks predict, its configurations (:func:`run_profile`,
  :func:`run_classes`, :func:`run_configs`);
- where and when it ran and what it is, in one line (:func:`run_environment`, :func:`run_label`);
- the curated dataset it was trained on (:func:`curated_manifest`, :func:`curation_summary`);
- the run the book shows (:func:`book_run`): a real-data run when one is stored, else the
  synthetic demonstration.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from cxrlib.core import paper, paths
from cxrlib.core.metrics import classes_of
from cxrlib.core.profiles import PAPER_CONFIGS, Profile, parse_config
from cxrlib.data.curate import curated_dir_for
from cxrlib.data.dataset import read_manifest, read_summary
from cxrlib.experiment import results

#: The run the book shows can be forced with this variable (a run name or a folder).
BOOK_RUN_VARIABLE = "CXRLIB_BOOK_RUN"
#: The environment variable that names the run the audit chapter shows (see :func:`audit_run`).
AUDIT_RUN_VARIABLE = "CXRLIB_AUDIT_RUN"
#: Real-data runs the book prefers, best first.
PREFERRED_REAL_RUNS = ("paper-bundle", "paper")
#: The synthetic demonstration run (the default profile's).
DEMO_RUN = "default"


# --- names and folders ---------------------------------------------------------------------

def run_name(run: str | None, profile: Profile | str) -> str:
    """The run's name: ``run``, or the profile's name when ``run`` is empty (checked either way)."""
    default = profile if isinstance(profile, str) else profile.name
    return paths.check_run_name(run or default)


def override_run_name(name: str, overrides: dict) -> str:
    """A run name of its own for a profile with overrides (``--set``, the audit's variants):
    results of different settings must never mix in one run."""
    parts = [f"{k}-{v if not isinstance(v, (tuple, dict)) else len(v)}"
             for k, v in sorted(overrides.items())]
    return paths.check_run_name("_".join([name] + parts).replace("/", "-").replace(" ", ""))


def resolve(run: str | Path | None = None, results_root: str | Path | None = None) -> Path:
    """A run's folder from its name (under the results store), from a folder, or from nothing
    (the run the book shows, :func:`book_run`)."""
    if run is None or str(run) == "":
        return book_run(results_root)
    path = Path(run)
    if path.is_absolute() or len(path.parts) > 1:
        return path
    return results.run_dir(paths.check_run_name(str(run)), results_root)


# --- what a run is -------------------------------------------------------------------------

def run_profile(run: str | Path) -> Profile | None:
    """The profile the run was made with; None when the folder holds no run."""
    path = resolve(run)
    return results.read_profile(path) if (path / "profile.json").is_file() else None


def target_classes(profile: Profile, folds: pd.DataFrame) -> tuple[str, ...]:
    """What the network predicts: the profile's classes, or for ``target="source"`` (the audit's
    probe) the collections of the images, sorted."""
    if profile.target == "source":
        return tuple(sorted(folds["source"].unique()))
    return tuple(profile.classes)


def run_classes(run: str | Path) -> tuple[str, ...]:
    """The classes a stored run's networks predict, in their output order (the paper's seven
    when the folder holds no run)."""
    path = resolve(run)
    profile = run_profile(path)
    if profile is None:
        return paper.CLASSES
    if profile.target == "source" and (path / "folds.csv").is_file():
        return target_classes(profile, results.read_folds(path))
    return tuple(profile.classes)


def fold_classes(run: str | Path, config: str, fold: int) -> tuple[str, ...]:
    """The classes one fold's network answers with, in its output order, read from the fold's
    stored predictions (so they hold for a run whose profile has changed since)."""
    pred = results.read_predictions(resolve(run), config, folds=[fold])
    if pred.empty:
        raise FileNotFoundError(f"{run}: {config} fold {fold} has no stored predictions: "
                                f"run `python -m cxrlib run ... --configs {config} --folds {fold}`")
    return classes_of(pred)


def is_config(name: str) -> bool:
    """Whether ``name`` spells a configuration (e.g. ``fine_tune_7``)."""
    try:
        parse_config(name)
        return True
    except ValueError:
        return False


def run_configs(run: str | Path) -> tuple[str, ...]:
    """The run's configurations: the profile's, then any others that have results, paper order."""
    path = resolve(run)
    profile = run_profile(path)
    listed = list(profile.configs) if profile else []
    found = sorted(p.name for p in path.glob("*") if p.is_dir() and results.done_folds(
        path, p.name)) if path.is_dir() else []
    extra = [c for c in found if c not in listed and is_config(c)]
    order = {c: i for i, c in enumerate(PAPER_CONFIGS)}
    return tuple(listed + sorted(extra, key=lambda c: (order.get(c, len(order)), c)))


def has_results(run: str | Path, config: str) -> bool:
    return bool(results.done_folds(resolve(run), config))


# --- where and when it ran -----------------------------------------------------------------

def fold_infos(run: str | Path) -> pd.DataFrame:
    """Every finished fold's ``fold.json`` of the run (all configurations), flattened."""
    path = resolve(run)
    rows = []
    for config in run_configs(path):
        for fold in results.done_folds(path, config):
            file = results.fold_dir(path, config, fold) / "fold.json"
            info = json.loads(file.read_text())
            info.setdefault("config", config)
            info.setdefault("fold", fold)
            info["_written"] = pd.Timestamp(file.stat().st_mtime, unit="s", tz="UTC")
            rows.append(info)
    return pd.json_normalize(rows) if rows else pd.DataFrame()


def first_column(frame: pd.DataFrame, candidates: tuple[str, ...]) -> pd.Series | None:
    """The first column among ``candidates``; failing that, one whose last name part matches
    (``fold.json`` fields moved between versions, e.g. ``device`` -> ``environment.device``)."""
    for name in candidates:
        if name in frame.columns:
            return frame[name]
    for name in candidates:
        for column in frame.columns:
            if str(column).split(".")[-1] == name:
                return frame[column]
    return None


def _distinct(series: pd.Series | None) -> list[str]:
    if series is None:
        return []
    return sorted({str(v) for v in series.dropna() if str(v) not in ("", "nan")})


def run_environment(run: str | Path) -> dict:
    """Devices, backends, commits and dates of a run's finished folds (missing fields: [])."""
    infos = fold_infos(run)
    if infos.empty:
        return {"folds": 0, "devices": [], "backends": [], "commits": [], "first": None,
                "last": None}
    dates = first_column(infos, ("finished_at", "finished", "end_time", "date", "timestamp"))
    when = pd.to_datetime(dates, errors="coerce", utc=True) if dates is not None else \
        pd.Series(pd.NaT, index=infos.index, dtype="datetime64[ns, UTC]")
    # A fold.json without a date: its file's time, in the dates' own unit.
    when = when.fillna(pd.to_datetime(infos["_written"], utc=True).astype(when.dtype))
    return {
        "folds": len(infos),
        "devices": _distinct(first_column(infos, ("environment.device", "device"))),
        "backends": _distinct(first_column(infos, ("environment.keras_backend",
                                                   "keras_backend", "backend"))),
        "commits": _distinct(first_column(infos, ("environment.git_commit", "git_commit"))),
        "first": when.min().date().isoformat(),
        "last": when.max().date().isoformat(),
    }


def run_label(run: str | Path) -> str:
    """A one-line banner saying what a run is (synthetic demonstration or real data)."""
    path = resolve(run)
    profile = run_profile(path)
    if profile is None:
        return f"No results yet: {path} holds no run (no profile.json)."
    if profile.dataset != "real":
        return f"Demonstration on synthetic data (profile {profile.name}, not findings)"
    env = run_environment(path)
    dates = env["first"] if env["first"] == env["last"] else f"{env['first']} to {env['last']}"
    return (f"Real data: {', '.join(profile.classes)}; profile {profile.name}; "
            f"device {' + '.join(env['devices']) or 'unknown'}; "
            f"backend {' + '.join(env['backends']) or 'unknown'}; "
            f"date {dates or 'unknown'}")


# --- the data it was trained on ------------------------------------------------------------

def curated_dir(run: str | Path) -> Path | None:
    """The curated dataset the run was trained on if it is on this machine, else the copy of
    its manifest and summary stored with the results (``<run>/curation/``, no images)."""
    path = resolve(run)
    profile = run_profile(path)
    if profile is None:
        return None
    folder = Path(curated_dir_for(profile))
    if (folder / "curation.json").is_file():
        return folder
    stored = path / results.CURATION_DIR
    return stored if (stored / "curation.json").is_file() else None


def curated_manifest(run: str | Path) -> pd.DataFrame | None:
    """The manifest of the run's curated dataset (every candidate image, with its decision)."""
    folder = curated_dir(run)
    return None if folder is None else read_manifest(folder)


def curation_summary(run: str | Path) -> dict:
    """The run's ``curation.json`` (parameters, duplicates, timing), or {} when absent."""
    folder = curated_dir(run)
    return {} if folder is None else read_summary(folder)


# --- the run the book shows ----------------------------------------------------------------

def runs_with_results(results_root: str | Path | None = None) -> list[str]:
    """Runs with at least one finished fold (a run whose profile.json cannot be read is skipped)."""
    root = Path(results_root) if results_root is not None else paths.results_dir()
    found = []
    for run in results.list_runs(root):
        try:
            if any(results.done_folds(root / run, c) for c in run_configs(root / run)):
                found.append(run)
        except (ValueError, KeyError, TypeError, json.JSONDecodeError):
            continue
    return found


def book_run(results_root: str | Path | None = None, made: str | None = None,
             made_profile: Profile | None = None) -> Path:
    """The run the book shows.

    ``$CXRLIB_BOOK_RUN`` (a run name or a folder) when set; otherwise the run just ``made``
    when it is on real data; otherwise a stored real-data run (``paper-bundle``, then ``paper``,
    then any other real one), because the book presents findings when it has them; otherwise
    the run just made; otherwise the synthetic ``default`` demonstration; otherwise any run
    with results. May not exist yet: the chapters then say what is missing.
    """
    root = Path(results_root) if results_root is not None else paths.results_dir()
    forced = os.environ.get(BOOK_RUN_VARIABLE, "").strip()
    if forced:
        return resolve(forced, root)
    if made is not None:
        profile = made_profile if made_profile is not None else run_profile(root / made)
        if profile is not None and profile.dataset == "real":
            return root / made
    with_results = runs_with_results(root)
    real = [r for r in with_results if results.read_profile(root / r).dataset == "real"]
    for name in PREFERRED_REAL_RUNS:
        if name in real:
            return root / name
    if real:
        return root / real[0]
    if made is not None:
        return root / made
    if DEMO_RUN in with_results or (root / DEMO_RUN / "profile.json").is_file():
        return root / DEMO_RUN
    return root / with_results[0] if with_results else root / DEMO_RUN


def audit_run(results_root: str | Path | None = None) -> Path:
    """The run whose audit the audit chapter shows: ``$CXRLIB_AUDIT_RUN`` when set; else the
    book's run, unless another real-data run has a stored verdict and more classes (the
    five-class runs carry the test of disease against disease inside NIH, which a four-class
    run cannot make)."""
    shown = book_run(results_root)
    root = shown.parent
    forced = os.environ.get(AUDIT_RUN_VARIABLE, "").strip()
    if forced:
        return resolve(forced, root)
    audited = [root / r for r in runs_with_results(root)
               if (root / r / "audit" / "verdict.csv").is_file()
               and results.read_profile(root / r).dataset == "real"]
    shown_classes = len(run_classes(shown)) if (shown / "profile.json").is_file() else 0
    richer = [r for r in audited if len(run_classes(r)) > shown_classes]
    return max(richer, key=lambda r: len(run_classes(r))) if richer else shown


def demo_run(results_root: str | Path | None = None) -> Path | None:
    """The synthetic ``default`` demonstration run, if it exists."""
    root = Path(results_root) if results_root is not None else paths.results_dir()
    profile = run_profile(root / DEMO_RUN)
    return root / DEMO_RUN if profile is not None and profile.dataset == "synthetic" else None
