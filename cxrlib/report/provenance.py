"""The reproducibility chapter's tables: the packages and JavaScript the book was built with,
where it was built, where, when and how long each stored run ran, the measured cluster timings,
and the commands that rebuild the run shown.
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pandas as pd

from cxrlib.audit.retrain import VARIANTS, variant_path
from cxrlib.core import paths
from cxrlib.core.env import cpu_description, git_commit
from cxrlib.core.profiles import PROFILES, audit_settings
from cxrlib.data import download
from cxrlib.data.curate import curated_dir_for
from cxrlib.experiment import results, runs
from cxrlib.report import chapters
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
    data_opt = f" --data {READER_DATA}" if profile and profile.dataset == "real" else ""
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


# --- which code made each stored result ------------------------------------------------------

def _git(*args: str) -> subprocess.CompletedProcess | None:
    """A git command in the checkout; None where git or the checkout's history is missing."""
    try:
        return subprocess.run(["git", *args], cwd=paths.root(), capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None


def commit_age(commit: str, build: str) -> dict:
    """How a result's commit stands to the build's: commits between them, and whether the
    library (``cxrlib/``) differs; None where git cannot tell (no history, unknown commit).
    A "+dirty" commit had edits on top, which no history records."""
    clean, head = commit.removesuffix("+dirty"), build.removesuffix("+dirty")
    count = _git("rev-list", "--count", f"{clean}..{head}")
    ancestor = _git("merge-base", "--is-ancestor", clean, head)
    if count is None or count.returncode != 0 or ancestor is None:
        return {"behind": None, "library changed": None}
    # A dirty build is compared as its working tree; a dirty result's edits are unknown.
    diff = _git("diff", "--quiet", clean, *([] if build.endswith("+dirty") else [head]),
                "--", "cxrlib")
    return {"behind": int(count.stdout.strip()) if ancestor.returncode == 0 else None,
            "library changed": None if diff is None or diff.returncode > 1
            or commit.endswith("+dirty") else diff.returncode == 1}


def short_commit(commit: str) -> str:
    """The first 12 hex digits, keeping a "+dirty" mark."""
    return commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")


def _commits_of(run_path: Path) -> pd.Series:
    """Finished folds per recorded code commit of one run ("unknown" where none is recorded)."""
    infos = runs.fold_infos(run_path)
    if infos.empty:
        return pd.Series(dtype=int)
    column = runs.first_column(infos, ("environment.git_commit", "git_commit"))
    commits = (column if column is not None else pd.Series("", index=infos.index))
    return commits.fillna("").replace({"": "unknown", "unknown": "unknown"}).value_counts()


def _older(age: dict, commit: str) -> str:
    if commit == "unknown" or (age["behind"] is None and age["library changed"] is None):
        return "unknown"
    if age["behind"] == 0:
        return "no (the build's commit)"
    behind = age["behind"]
    return f"yes, {behind} commit{'s' if behind != 1 else ''}" if behind else \
        "yes (not in this history)"


def commits_table(results_root: Path | None = None, build: str | None = None) -> pd.DataFrame:
    """Per stored run and code commit: how many of its finished folds that commit made, the
    build's commit beside it, whether it is older, and whether the library changed since."""
    root = Path(results_root) if results_root else paths.results_dir()
    build = build or git_commit()
    rows = []
    for run in results.list_runs(root):
        for commit, folds in _commits_of(root / run).items():
            age = commit_age(commit, build) if commit != "unknown" else \
                {"behind": None, "library changed": None}
            changed = age["library changed"]
            rows.append({"run": run, "folds": int(folds),
                         "made by commit": short_commit(commit),
                         "build commit": short_commit(build),
                         "older than the build": _older(age, commit),
                         "cxrlib/ changed since": "unknown" if changed is None
                         else "yes" if changed else "no"})
    return pd.DataFrame(rows).set_index(["run", "made by commit"]) if rows else pd.DataFrame()


def result_commit_note(run_path: str | Path, build: str | None = None) -> str:
    """One line for any chapter: which commits made the run's results and how they stand to
    the build's commit."""
    path = runs.resolve(run_path)
    build = build or git_commit()
    made = _commits_of(path)
    if made.empty:
        return f"Run `{path.name}` has no finished fold yet."
    ages = {c: commit_age(c, build) for c in made.index if c != "unknown"}
    older = [c for c, a in ages.items() if a["behind"] != 0]
    parts = ", ".join(f"`{short_commit(c)}` ({n} fold{'s' if n != 1 else ''})" for c, n in made.items())
    if not older and "unknown" not in made.index:
        return f"The results of run `{path.name}` were made by this build's commit: {parts}."
    behind = [a["behind"] for c, a in ages.items() if c in older and a["behind"]]
    changed = any(ages[c]["library changed"] for c in older)
    return (f"The results of run `{path.name}` were made by older code than this build "
            f"(`{short_commit(build)}`): {parts}"
            + (f", up to {max(behind)} commits back" if behind else "")
            + ("; the library has changed since" if changed else "") + ".")


# --- from the public sources to this book, with the stored timings ---------------------------

#: Where the reproduction commands put the downloaded sources (any folder will do).
READER_DATA = "data/sources"


def _work(run_paths) -> str:
    """The stored training and prediction time of some runs' folds, and where they ran."""
    seconds, folds, devices = 0.0, 0, set()
    for path in run_paths:
        infos = runs.fold_infos(path)
        for column in ("train_seconds", "predict_seconds"):
            seconds += float(infos[column].sum()) if column in infos else 0.0
        folds += len(infos)
        devices.update(runs.run_environment(path)["devices"])
    if not folds:
        return "nothing stored yet"
    return (f"{seconds / 60:.0f} min for {folds} folds on "
            f"{' + '.join(sorted(devices)) or 'an unrecorded device'}")


def _main_runs(root: Path) -> list[Path]:
    """Real-data runs named after a profile (with overrides or not), not audit retrainings."""
    return [p for p in (root / r for r in results.list_runs(root))
            if (p / "profile.json").is_file() and results.read_profile(p).dataset == "real"
            and chapters.decode_run_name(p.name)["kind"] in ("profile", "profile with overrides")]


def _curation_time(path: Path) -> str:
    stored = path / results.CURATION_DIR / "curation.json"
    timing = json.loads(stored.read_text()).get("wall_time_seconds", {}) \
        if stored.is_file() else {}
    return f"{timing['total_s']:.0f} s" if "total_s" in timing else "not recorded"


def reproduction_steps(results_root: Path | None = None, data: str = READER_DATA) -> pd.DataFrame:
    """The commands that remake every committed real-data run from the public sources, in
    order, each with the time its stored results took (summed over folds, training and
    prediction; curation as its summary records it)."""
    root = Path(results_root) if results_root else paths.results_dir()
    sizes = "; ".join(f"{s}: " + ", ".join(f"{n} x {note}" for note, n in pd.Series(
        [r.size_note for r in remotes]).value_counts(sort=False).items())
                      for s, remotes in download.REMOTES.items())
    steps = [("download", f"python -m cxrlib download --data {data}", sizes)]
    curated = set()
    for path in _main_runs(root):
        profile = results.read_profile(path)
        decoded = chapters.decode_run_name(path.name)
        sets = "".join(f" --set {k}={v}" for k, v in decoded["overrides"].items())
        if not sets and curated_dir_for(profile) not in curated:
            curated.add(curated_dir_for(profile))
            steps.append((f"curate for {path.name}",
                          f"python -m cxrlib curate --profile {profile.name} --data {data}",
                          f"curation of the committed run: {_curation_time(path)}"))
        steps.append((f"cross-validate {path.name}",
                      f"python -m cxrlib run --profile {profile.name}{sets} --data {data}",
                      _work([path])))
        retrainings = [variant_path(path, v) for v in VARIANTS
                       if (variant_path(path, v) / "profile.json").is_file()]
        if (path / "audit").is_dir() and not sets:
            steps.append((f"audit {path.name}",
                          f"python -m cxrlib audit --profile {profile.name} --data {data}",
                          f"its retrainings: {_work(retrainings)}"))
    steps.append(("build the book", "python -m cxrlib book --only-book",
                  "executes the chapters from the stored results"))
    return pd.DataFrame(steps, columns=["step", "command", "stored timings"]).set_index("step")


def reproduction_markdown(results_root: Path | None = None, data: str = READER_DATA) -> str:
    """:func:`reproduction_steps` as one shell block a reader can paste."""
    steps = reproduction_steps(results_root, data)
    return "\n".join(["```bash"] + [f"# {step}: {row['stored timings']}\n{row['command']}"
                                    for step, row in steps.iterrows()] + ["```"])


def unfinished(results_root: Path | None = None) -> pd.DataFrame:
    """What is not run yet: per stored real-data run, each planned configuration with fewer
    finished folds than planned (an audit retraining, which trains fewer configurations than
    its profile, plans only its audit's test folds); then every
    real-data profile with no run of its own."""
    root = Path(results_root) if results_root else paths.results_dir()
    rows, names = [], results.list_runs(root)
    for run in names:
        profile = results.read_profile(root / run)
        if profile.dataset != "real":
            continue
        planned = profile.n_folds
        named = PROFILES.get(profile.name)
        if named is not None and profile.configs != named.configs:  # an audit retraining
            folds = audit_settings(profile.name).test_folds
            planned = len(folds) if folds is not None else planned
        for config in profile.configs:
            done = len(results.done_folds(root / run, config))
            if done < planned:
                rows.append({"run": run, "configuration": config, "folds stored": done,
                             "folds planned": planned})
    for name, profile in PROFILES.items():
        if profile.dataset == "real" and name not in names:
            rows.append({"run": f"(none: profile {name})", "configuration": "all",
                         "folds stored": 0, "folds planned": profile.n_folds * len(
                             profile.configs)})
    return pd.DataFrame(rows).set_index(["run", "configuration"]) if rows else pd.DataFrame()
