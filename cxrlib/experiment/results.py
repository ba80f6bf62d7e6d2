"""The results store: tidy tables, written atomically, one folder per finished fold.

Layout of one run (``results/<run>/``)::

    profile.json                       the profile the run was made with
    folds.csv                          image_id, label, patient_id, source, fold (fold = test fold)
    <config>/fold-<k>/predictions.csv  one row per test image: image_id, fold, label, patient_id,
                                       source, p_<class> for every class of the profile
    <config>/fold-<k>/history.csv      one row per epoch: epoch, loss, accuracy, val_loss, ...
    <config>/fold-<k>/fold.json        config, strategy, trainable_blocks, counts, timings,
                                       images/s, best epoch, environment (packages, backend,
                                       device, git commit)

A fold's folder is first written under a temporary name and then renamed in one step, so a
fold folder exists if and only if the fold finished: a killed run leaves no half-written fold,
a rerun skips the finished ones, and folds finished on different machines combine by copying
their folders into one run.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from cxrlib.core import paths
from cxrlib.core.errors import CorruptResult, UserError
from cxrlib.core.profiles import PAPER_CONFIGS, Profile

FOLD_FILES = ("predictions.csv", "history.csv", "fold.json")
#: Where a run keeps a copy of its curated dataset's manifest and summary (no images), so the
#: book can describe the data of committed results on a machine without the data.
CURATION_DIR = "curation"
CURATION_FILES = ("manifest.csv", "curation.json")


def run_dir(run: str, root: str | Path | None = None) -> Path:
    """``<results root>/<run>``, after checking that ``run`` is a name (never a path)."""
    base = Path(root) if root is not None else paths.results_dir()
    return paths.inside(base, base / paths.check_run_name(run))


def fold_dir(run_path: Path, config: str, fold: int) -> Path:
    paths.check_run_name(config, "configuration")
    return Path(run_path) / config / f"fold-{fold:02d}"


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def profile_differences(stored: dict, profile: Profile) -> list[str]:
    """Settings in which ``stored`` (a run's profile.json) and ``profile`` differ.

    A setting added to :class:`Profile` after the run was made is absent from the stored file;
    it only counts as a difference if ``profile`` gives it another value than its default (the
    value the run was, in effect, made with).
    """
    current = profile.to_dict()
    defaults = Profile(name="", description="").to_dict()
    changed = [k for k in stored if stored[k] != current.get(k)]
    changed += [k for k in current if k not in stored and current[k] != defaults.get(k)]
    return sorted(set(changed) - {"description"})


def merged_configs(stored: list[str], wanted) -> list[str]:
    """The run's configurations once ``wanted`` joins them, in the paper's order."""
    joined = list(stored) + [c for c in wanted if c not in stored]
    order = {c: i for i, c in enumerate(PAPER_CONFIGS)}
    return sorted(joined, key=lambda c: order.get(c, len(order)))


def ensure_profile(run_path: Path, profile: Profile) -> None:
    """Record the profile of a new run; refuse to add folds made with different settings.

    The configurations are not such a setting: each trains on its own, so a run can gain some
    (a profile that now lists more) and its ``profile.json`` then lists them all.
    """
    path = Path(run_path) / "profile.json"
    if path.exists():
        stored = read_profile(run_path).to_dict()
        changed = [k for k in profile_differences(stored, profile) if k != "configs"]
        if changed:
            raise UserError(
                f"{path} was made with other settings (differences: {changed}); finished folds "
                f"of different settings must not be mixed",
                f"choose another run name (--run NAME) or move {run_path} away")
        configs = merged_configs(stored.get("configs", []), profile.configs)
        if configs != stored.get("configs"):
            write_text_atomic(path, json.dumps({**stored, "configs": configs}, indent=2) + "\n")
        return
    write_text_atomic(path, profile.to_json() + "\n")


def read_profile(run_path: Path) -> Profile:
    """The run's profile (settings added to :class:`Profile` since then take their defaults)."""
    path = Path(run_path) / "profile.json"
    try:
        return Profile.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as e:
        raise CorruptResult(path, f"not a profile ({e})",
                            "restore it from git (`git checkout -- FILE`) or move the run "
                            "away") from None


def write_folds(run_path: Path, folds: pd.DataFrame) -> pd.DataFrame:
    """Store the fold assignment once; later calls must agree with it (same seed, same data)."""
    path = Path(run_path) / "folds.csv"
    folds = folds[["image_id", "label", "patient_id", "source", "fold"]].reset_index(drop=True)
    if path.exists():
        stored = read_folds(run_path)
        if not stored.equals(folds.astype({"fold": int})):
            raise UserError(
                f"{path} holds another fold assignment than this data and seed give (was the "
                f"dataset re-curated with other inputs?)",
                f"use another run name (--run NAME) or move {run_path} away")
        return stored
    write_text_atomic(path, folds.to_csv(index=False))
    return folds


def store_curation(run_path: Path, curated: Path) -> None:
    """Copy the curated dataset's manifest and summary into the run (text only, no images)."""
    for name in CURATION_FILES:
        source = Path(curated) / name
        if source.is_file():
            write_text_atomic(Path(run_path) / CURATION_DIR / name, source.read_text())


def read_folds(run_path: Path) -> pd.DataFrame:
    return pd.read_csv(Path(run_path) / "folds.csv", dtype={"image_id": str, "patient_id": str},
                       keep_default_na=False).astype({"fold": int})


def is_done(run_path: Path, config: str, fold: int) -> bool:
    return (fold_dir(run_path, config, fold) / "fold.json").is_file()


def done_folds(run_path: Path, config: str) -> list[int]:
    base = Path(run_path) / config
    if not base.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in base.glob("fold-[0-9][0-9]")
                  if (p / "fold.json").is_file())


def write_fold(run_path: Path, config: str, fold: int, predictions: pd.DataFrame,
               history: pd.DataFrame, info: dict) -> Path:
    """Write one finished fold atomically; if another worker finished it first, keep theirs."""
    final = fold_dir(run_path, config, fold)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        predictions.to_csv(tmp / "predictions.csv", index=False, float_format="%.6g")
        history.to_csv(tmp / "history.csv", index=False, float_format="%.6g")
        (tmp / "fold.json").write_text(json.dumps(info, indent=2, sort_keys=True, default=str))
        try:
            os.rename(tmp, final)
        except OSError:
            if not is_done(run_path, config, fold):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def fold_problem(run_path: Path, config: str, fold: int) -> str | None:
    """Why a finished fold's files cannot be used (half-written, truncated, not JSON), or None.

    A fold written by :func:`write_fold` is whole; this catches what happens to files later:
    a copy interrupted between machines, an edit, a disk that filled up.
    """
    folder = fold_dir(run_path, config, fold)
    try:
        info = json.loads((folder / "fold.json").read_text())
        predictions = pd.read_csv(folder / "predictions.csv")
        history = pd.read_csv(folder / "history.csv")
    except FileNotFoundError as e:
        return f"{Path(e.filename).name} is missing"
    except (json.JSONDecodeError, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as e:
        return f"cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
    if not isinstance(info, dict) or "n_test" not in info:
        return "fold.json is not a fold record"
    p_columns = [c for c in predictions.columns if c.startswith("p_")]
    if not p_columns or not {"image_id", "label"} <= set(predictions.columns):
        return "predictions.csv lacks its columns (image_id, label, p_<class>)"
    if len(predictions) != info["n_test"] or predictions[p_columns].isna().any().any():
        return (f"predictions.csv is truncated ({len(predictions)} complete rows of "
                f"{info['n_test']})")
    if history.empty:
        return "history.csv is empty"
    return None


def settle_corrupt(run_path: Path, units, retrain: bool = False, log=print) -> list:
    """Check the finished folds among ``units`` ((config, fold) pairs). A fold that cannot be
    used stops the run with its path named, or, with ``retrain``, is set aside (renamed
    ``fold-NN.corrupt-K``, nothing deleted) so that it trains again. Returns those set aside."""
    aside = []
    for config, fold in units:
        if not is_done(run_path, config, fold):
            continue
        problem = fold_problem(run_path, config, fold)
        if problem is None:
            continue
        folder = fold_dir(run_path, config, fold)
        if not retrain:
            raise CorruptResult(folder, problem,
                                "add --retrain-corrupt to set it aside and train that fold "
                                "again, or restore the folder")
        k = 1
        while folder.with_name(f"{folder.name}.corrupt-{k}").exists():
            k += 1
        os.rename(folder, folder.with_name(f"{folder.name}.corrupt-{k}"))
        log(f"{config} fold {fold + 1}: {problem}; set aside as {folder.name}.corrupt-{k}, "
            "training it again")
        aside.append((config, fold))
    return aside


def _read_fold_csv(path: Path, **options) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise CorruptResult(path.parent, f"{path.name} cannot be read ({type(e).__name__})",
                            "retrain that fold with `python -m cxrlib run ... --retrain-corrupt` "
                            "or restore the folder") from None


def read_predictions(run_path: Path, config: str, folds=None) -> pd.DataFrame:
    """Out-of-fold predictions of the finished folds of ``config`` (all, or those in ``folds``)."""
    done = done_folds(run_path, config)
    chosen = [f for f in done if folds is None or f in folds]
    if not chosen:
        return pd.DataFrame()
    frames = [_read_fold_csv(fold_dir(run_path, config, f) / "predictions.csv",
                             dtype={"image_id": str, "patient_id": str}, keep_default_na=False)
              for f in chosen]
    return pd.concat(frames, ignore_index=True)


def read_history(run_path: Path, config: str) -> pd.DataFrame:
    frames = []
    for f in done_folds(run_path, config):
        h = _read_fold_csv(fold_dir(run_path, config, f) / "history.csv")
        h.insert(0, "fold", f)
        frames.append(h)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_fold_info(run_path: Path, config: str) -> pd.DataFrame:
    """One row per finished fold: the scalar fields of ``fold.json`` (nested ones flattened)."""
    rows = [_read_fold_json(fold_dir(run_path, config, f)) for f in done_folds(run_path, config)]
    return pd.json_normalize(rows) if rows else pd.DataFrame()


def _read_fold_json(folder: Path) -> dict:
    try:
        info = json.loads((folder / "fold.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptResult(folder, f"fold.json is not JSON ({e.msg})",
                            "retrain that fold with `python -m cxrlib run ... --retrain-corrupt` "
                            "or restore the folder") from None
    if not isinstance(info, dict):
        raise CorruptResult(folder, "fold.json is not a fold record")
    return info


def list_runs(root: str | Path | None = None) -> list[str]:
    base = Path(root) if root is not None else paths.results_dir()
    return sorted(p.parent.name for p in base.glob("*/profile.json"))
