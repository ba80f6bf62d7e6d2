"""The reproducibility chapter's tables: the packages and JavaScript the book was built with,
where it was built, where, when and how long each stored run ran, the measured cluster timings,
and the commands that rebuild the run shown.
"""
from __future__ import annotations

import json
import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path

import pandas as pd

from cxrlib.core import paths
from cxrlib.core.env import cpu_description, git_commit
from cxrlib.experiment import results, runs
from cxrlib.report.vendor import versions


def requirement_names(root: Path | None = None) -> list[str]:
    """Package names pinned in requirements.txt, in file order."""
    names = []
    for line in ((root or paths.root()) / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.append(re.split(r"[\[=<>~! ;]", line, maxsplit=1)[0])
    return names


def package_table(root: Path | None = None) -> pd.DataFrame:
    """Pinned versus installed version of every requirement (mismatches stand out)."""
    pins = {}
    for line in ((root or paths.root()) / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[re.sub(r"\[.*\]", "", name).strip()] = version.strip()
    rows = []
    for name in requirement_names(root):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        rows.append({"package": name, "pinned": pins.get(name, ""), "installed": installed})
    return pd.DataFrame(rows).set_index("package")


def javascript_table(root: Path | None = None) -> pd.DataFrame:
    found = versions(root)
    return pd.DataFrame({"version": found}).rename_axis("npm package (vendored)")


def live_environment() -> pd.DataFrame:
    """Where this book was built (the chapters were executed here, not the training)."""
    rows = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "CPU": cpu_description(),
        "Keras backend (set for training)": os.environ.get("KERAS_BACKEND", "tensorflow"),
        "git commit": git_commit(),
    }
    return pd.DataFrame({"value": rows}).rename_axis("built with")


def notebook_seconds(run: str) -> float | None:
    """Seconds the run's notebooks took when last executed (from the run records' metadata,
    which :mod:`cxrlib.report.pipeline` writes); None when no record is on this machine."""
    seconds = []
    for record in sorted((paths.runs_dir() / run).glob("*.ipynb")):
        try:
            meta = json.loads(record.read_text()).get("metadata", {}).get("cxrlib", {})
        except (OSError, json.JSONDecodeError):
            continue
        if "seconds" in meta:
            seconds.append(float(meta["seconds"]))
    return sum(seconds) if seconds else None


def run_times(results_root: Path | None = None) -> pd.DataFrame:
    """Per stored run: where it ran, how many folds, and how long the training took."""
    root = Path(results_root) if results_root else paths.results_dir()
    rows = []
    for run in results.list_runs(root):
        profile = results.read_profile(root / run)
        infos = runs.fold_infos(root / run)
        env = runs.run_environment(root / run)
        train = float(infos["train_seconds"].sum()) if "train_seconds" in infos else 0.0
        predict = float(infos["predict_seconds"].sum()) if "predict_seconds" in infos else 0.0
        notebooks = notebook_seconds(run)
        rows.append({
            "run": run, "profile": profile.name, "data": profile.dataset,
            "folds finished": len(infos),
            "folds planned": profile.n_folds * len(profile.configs),
            "training (min)": round(train / 60, 1),
            "prediction (min)": round(predict / 60, 1),
            "notebooks, as last executed (min)": "" if notebooks is None
                                                 else round(notebooks / 60, 1),
            "device": " + ".join(env["devices"]) or "unknown",
            "backend": " + ".join(env["backends"]) or "unknown",
            "code commit": " + ".join(c[:12] for c in env["commits"]) or "unknown",
            "dates": "" if env["first"] is None else
                     (env["first"] if env["first"] == env["last"]
                      else f"{env['first']} to {env['last']}"),
        })
    # One column per run: the table stays narrow however many fields it has.
    return pd.DataFrame(rows).set_index("run").T.rename_axis(None) if rows else pd.DataFrame()


def cluster_benchmarks(root: Path | None = None) -> pd.DataFrame:
    """The measured grid times of ``benchmarks/bench_cluster.py`` (its committed records), one
    row per setting: 1, 2, ... Dask workers, or the in-process loop."""
    folder = (Path(root) if root else paths.root()) / "benchmarks" / "results"
    rows = []
    for record in sorted(folder.glob("cluster-*.json")):
        summary = json.loads(record.read_text())
        for row in summary["rows"]:
            workers = row["workers"]
            rows.append({
                "profile": summary["profile"],
                "configurations x folds": f"{', '.join(summary['configs'])} x "
                                          f"{len(summary['folds'])}",
                "units": summary["units"],
                "where": "in-process loop" if workers is None else
                         f"local Dask cluster, {workers} worker{'s' if workers != 1 else ''}",
                "wall time (min)": round(row["wall_seconds"] / 60, 1),
                "units' training, summed (min)": round(row["summed_train_seconds"] / 60, 1),
                "load before": row["load_before"][0],
                "device": summary.get("device", ""), "measured": summary["finished"][:10],
            })
    return pd.DataFrame(rows)


def rerun_commands(run_path: Path) -> str:
    """Markdown: the commands that rebuild each part of the shown run."""
    profile = runs.run_profile(run_path)
    name = profile.name if profile else "default"
    run = Path(run_path).name
    run_opt = "" if run == name else f" --run {run}"
    data_opt = " --data ../shared/data" if profile and profile.dataset == "real" else ""
    configs = ",".join(profile.configs) if profile else "from_scratch"
    return "\n".join([
        "```bash",
        "# everything: curation, every strategy, the results notebook, this book",
        f"python -m cxrlib book --profile {name}{run_opt}{data_opt}",
        "# the curated dataset only (into data/curated/, where the training looks for it)",
        f"python -m cxrlib curate --profile {name}{data_opt}",
        "# the cross-validation only (resumable; --folds runs a chunk, e.g. on a GPU machine)",
        f"python -m cxrlib run --profile {name}{run_opt} --configs {configs.split(',')[-1]} "
        f"--folds 0,1",
        "# one notebook, e.g. fine-tuning 7 blocks, as a run record",
        f"jupytext --to ipynb -o runs/{run}/02_strategy.ipynb notebooks/02_strategy.py",
        f"papermill --cwd . runs/{run}/02_strategy.ipynb "
        f"runs/{run}/02_strategy-fine_tune_7.ipynb -p profile {name} -p run {run} "
        f"-p config fine_tune_7",
        "# the book only, from stored results",
        f"python -m cxrlib book --profile {name}{run_opt} --only-book",
        "```",
    ])
