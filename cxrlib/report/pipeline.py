"""The one command: run the whole paper for a profile with papermill, then build the book.

``python -m cxrlib book [--profile default] [--run NAME] [--data DIR] [--skip-run] [--only-book]``

1. Executes the text notebooks in ``notebooks/`` in order, each with the parameters ``profile``,
   ``run`` and ``data`` (those its parameters cell declares; curation, which depends on the
   profile only, gets no ``run``): curation (``01_data_curation``); the strategy notebook
   (``02_strategy``) once per configuration of the profile, in the paper's order (off the
   shelf, fine-tuning 1 to 11 blocks, from scratch), with ``config`` and ``folds``; results
   (``03_results``); then, when it trains from scratch, the audit (``04_audit``,
   :func:`cxrlib.audit.run_audit`). Every executed notebook is kept as a run record,
   ``runs/<run>/<notebook>.ipynb``, a strategy's as ``02_strategy-<config>.ipynb`` (outside
   git). A notebook whose record is up to date (same notebook text, parameters, library code
   and inputs, and for a strategy every fold finished) is not executed again, so a rerun with
   nothing changed trains nothing and starts no kernel; a killed run resumes at the first
   unfinished fold (the CV loop skips finished folds).
2. Builds the book (:mod:`cxrlib.report.book`: ``jupyter-book build``, warnings are errors, after
   vendoring the JavaScript; the chapters' execution cache is cleared when what they read
   changed since the last build).

The chapters show the run named by the environment variable ``CXRLIB_BOOK_RUN``, which this
command sets (see :func:`choose_book_run`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat
import papermill

from cxrlib.core import paths
from cxrlib.core.fingerprint import hash_files, library_fingerprint, visible_files
from cxrlib.core.profiles import Profile, audit_settings, get_profile, parse_config
from cxrlib.data.curate import curated_dir_for
from cxrlib.experiment import results, runs
from cxrlib.report.book import build_book

CURATION_NOTEBOOK = "01_data_curation"
#: One parameterised notebook per strategy: papermill passes the configuration (``config``).
STRATEGY_NOTEBOOK = "02_strategy"
RESULTS_NOTEBOOK = "03_results"
#: The audit chapter's notebook (cxrlib.audit), after the results. It retrains and explains the
#: audit's configuration, so it runs when this invocation trains it.
AUDIT_NOTEBOOKS = ("04_audit",)
#: The order the strategies run and are recorded in: the paper's.
STRATEGY_ORDER = ("off_the_shelf", "fine_tune", "from_scratch")
#: The environment variable the book's chapters read to know which run to show.
#: Where the last successful build's input fingerprint is kept, inside ``_build/``.
RECORD_KEY = "cxrlib"  # notebook metadata key of a run record's provenance


@dataclass(frozen=True)
class NotebookStep:
    """One papermill execution: which notebook, with which parameters, recorded where."""

    notebook: str                 # stem in notebooks/, e.g. "02_strategy"
    record: str                   # run record file name, e.g. "02_strategy-fine_tune_7.ipynb"
    parameters: dict = field(default_factory=dict)
    config: str | None = None     # the configuration a strategy notebook trains, else None


def plan_notebooks(profile: Profile, run: str, data: str = "", folds: str = "",
                   training: bool = True, configs=None) -> list[NotebookStep]:
    """The notebooks to execute for ``profile``, in order.

    No training notebooks if not ``training``; only those of ``configs`` (a subset of the
    profile's configurations) when given.
    """
    if configs is not None:
        unknown = [c for c in configs if c not in profile.configs]
        if unknown:
            raise ValueError(f"configuration(s) {unknown} are not in profile {profile.name!r}: "
                             f"its configurations are {', '.join(profile.configs)}")
    chosen = profile.configs if configs is None else [c for c in profile.configs if c in configs]
    common = {"profile": profile.name, "run": run, "data": data}
    # The curated dataset belongs to the profile, not to a results run (cxrlib.data.curate.
    # curated_dir_for), so curation gets no run name (its notebook's own `run` parameter is
    # an output folder for the curated set).
    curation = {"profile": profile.name, "data": data}
    steps = [NotebookStep(CURATION_NOTEBOOK, f"{CURATION_NOTEBOOK}.ipynb", curation)]
    if training:
        ordered = sorted(chosen, key=lambda c: STRATEGY_ORDER.index(parse_config(c)[0]))
        steps += [NotebookStep(STRATEGY_NOTEBOOK, f"{STRATEGY_NOTEBOOK}-{config}.ipynb",
                               dict(common, config=config, folds=folds), config)
                  for config in ordered]
    steps.append(NotebookStep(RESULTS_NOTEBOOK, f"{RESULTS_NOTEBOOK}.ipynb", dict(common)))
    return steps


def plan_audit(profile: Profile, run: str, data: str = "", training: bool = True,
               configs=None) -> list[NotebookStep]:
    """The audit notebooks, when this invocation trains the audit's configuration (the
    audit compares with it and retrains it); none otherwise."""
    config = audit_settings(profile).config
    chosen = profile.configs if configs is None else [c for c in profile.configs if c in configs]
    if not training or config not in chosen:
        return []
    common = {"profile": profile.name, "run": run, "data": data}
    return [NotebookStep(name, f"{name}.ipynb", dict(common)) for name in AUDIT_NOTEBOOKS]


# --- run records ----------------------------------------------------------------------------

def run_results(run_path: Path) -> list[Path]:
    """A run's stored results without the audit's summaries (``audit/``, written later)."""
    return [p for p in visible_files(run_path) if p.relative_to(run_path).parts[0] != "audit"]


def notebook_key(step: NotebookStep, notebook_text: str, results_root: Path, run: str) -> str:
    """What a notebook's record depends on; an equal key means its record is up to date."""
    h = hashlib.sha256()
    h.update(notebook_text.encode())
    h.update(json.dumps(step.parameters, sort_keys=True).encode())
    h.update(library_fingerprint().encode())
    run_path = results.run_dir(run, results_root)
    # A strategy notebook reads its configuration's folds; the results notebook reads them all.
    if step.config is not None:
        hash_files(h, visible_files(run_path / step.config), run_path)
    elif step.notebook == RESULTS_NOTEBOOK:
        hash_files(h, run_results(run_path), run_path)
    elif step.notebook in AUDIT_NOTEBOOKS:
        # The main run and the audit's retrainings (<run>-<variant>); not the audit's own
        # summaries, which its notebooks write one after another.
        for folder in [run_path] + sorted(run_path.parent.glob(f"{run}-*")):
            hash_files(h, run_results(folder), run_path.parent)
    elif step.notebook == CURATION_NOTEBOOK:
        # The curated set it reports on: a deleted or re-made one makes the record stale.
        summary = curated_summary_file(get_profile(step.parameters["profile"]))
        h.update(b"no curated set" if summary is None else hashlib.sha256(
            summary.read_bytes()).digest())
    return h.hexdigest()


def curated_summary_file(profile: Profile) -> Path | None:
    summary = Path(curated_dir_for(profile)) / "curation.json"
    return summary if summary.is_file() else None


# --- executing notebooks -------------------------------------------------------------------

def declared_parameters(nb) -> list[str]:
    """Names assigned in the notebook's cell tagged "parameters" (papermill's convention)."""
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return re.findall(r"^([A-Za-z_]\w*)\s*(?::[^=\n]+)?=", cell.source, re.MULTILINE)
    return []


def read_text_notebook(path: Path):
    """A py:percent notebook as an nbformat notebook, run by the current interpreter's kernel."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: the book needs every notebook in notebooks/ ("
            + ", ".join((CURATION_NOTEBOOK, STRATEGY_NOTEBOOK, RESULTS_NOTEBOOK) + AUDIT_NOTEBOOKS)
            + ")")
    nb = jupytext.read(path)
    # The native "python3" kernel is started with sys.executable, i.e. this environment.
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (cxrlib)",
                                 "language": "python"}
    return nb


def record_is_current(record: Path, key: str) -> bool:
    if not record.is_file():
        return False
    try:
        meta = json.loads(record.read_text()).get("metadata", {}).get(RECORD_KEY, {})
    except (OSError, json.JSONDecodeError):
        return False
    return meta.get("key") == key and meta.get("status") == "completed"


def folds_complete(profile: Profile, run: str, config: str, results_root: Path) -> bool:
    done = results.done_folds(results.run_dir(run, results_root), config)
    return done == list(range(profile.n_folds))


def execute_step(step: NotebookStep, root: Path, records: Path, key_after, log=print) -> float:
    """Execute one notebook with papermill into its run record; returns the seconds it took.

    ``key_after()`` gives the record's key once the notebook has run (a strategy notebook
    changes the folds its key covers). On failure the record keeps the executed cells and the
    error, and the exception names it.
    """
    nb = read_text_notebook(root / "notebooks" / f"{step.notebook}.py")
    declared = declared_parameters(nb)
    if not declared:
        raise ValueError(f"notebooks/{step.notebook}.py has no cell tagged 'parameters': "
                         f"add `# %% tags=[\"parameters\"]` above its parameter assignments")
    parameters = {k: v for k, v in step.parameters.items() if k in declared}
    record = records / step.record
    records.mkdir(parents=True, exist_ok=True)
    shown = ", ".join(f"{k}={v!r}" for k, v in parameters.items())
    log(f"[book] {step.notebook} ({shown}) -> {record}")
    started = time.perf_counter()
    try:
        papermill.execute_notebook(nb, str(record), parameters=parameters, kernel_name="python3",
                                   cwd=str(root), progress_bar=False, log_output=False)
    except papermill.PapermillExecutionError as error:
        raise RuntimeError(
            f"notebooks/{step.notebook}.py failed in cell {error.exec_count} with "
            f"{error.ename}: {error.evalue}\nThe executed notebook, with the traceback, is "
            f"{record}. Finished folds are kept; rerun the same command to resume.") from None
    seconds = time.perf_counter() - started
    executed = nbformat.read(record, as_version=4)
    executed.metadata[RECORD_KEY] = {"key": key_after(), "status": "completed",
                                     "parameters": parameters, "seconds": round(seconds, 1),
                                     "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = record.with_name(f".{record.name}.tmp")
    nbformat.write(executed, tmp)
    os.replace(tmp, record)
    log(f"[book] {step.notebook} done in {seconds:.0f} s")
    return seconds


def run_notebooks(profile: Profile, run: str, data: str, folds: str, training: bool,
                  force: bool, root: Path, results_root: Path, configs=None,
                  log=print) -> dict[str, float]:
    """Execute the planned notebooks, skipping those whose record is up to date."""
    records = paths.runs_dir() / run
    timings = {}
    for step in (plan_notebooks(profile, run, data, folds, training, configs)
                 + plan_audit(profile, run, data, training, configs)):
        source = root / "notebooks" / f"{step.notebook}.py"
        if not source.is_file():
            read_text_notebook(source)  # raises the clear error
        text = source.read_text()

        def key(step=step, text=text):
            return notebook_key(step, text, results_root, run)

        complete = step.config is None or folds_complete(profile, run, step.config, results_root)
        if not force and complete and record_is_current(records / step.record, key()):
            log(f"[book] {step.record}: up to date, not executed")
            timings[step.record] = 0.0
            continue
        timings[step.record] = execute_step(step, root, records, key, log=log)
    return timings


# --- building the book ---------------------------------------------------------------------

def choose_book_run(run: str, profile: Profile, results_root: Path) -> str:
    """The run the chapters show after making ``run`` (:func:`cxrlib.experiment.runs.book_run`)."""
    return runs.book_run(results_root, made=run, made_profile=profile).name


IMAGENET_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def provide_imagenet_weights(root: Path, log=print) -> Path | None:
    """Put MobileNetV2's ImageNet file into Keras' cache from ``../shared/weights`` if needed.

    Keras looks for it in ``$KERAS_HOME/models`` (default ``~/.keras/models``) and downloads it
    when missing; machines without internet that have the project's shared folder beside the
    checkout get it from there, so the main command works offline. Returns the cached file.
    """
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()
    cached = home / "models" / IMAGENET_FILE
    if cached.is_file():
        return cached
    shared = root.parent / "shared" / "weights" / IMAGENET_FILE
    if not shared.is_file():
        return None  # Keras downloads it, or cxrlib.experiment.model explains what to do
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.tmp")
    shutil.copyfile(shared, tmp)
    os.replace(tmp, cached)
    log(f"[book] ImageNet weights copied from {shared} to {cached}")
    return cached


def kernel_environment(root: Path, book_run: str | None = None) -> None:
    """Settings the notebook kernels and the book build inherit from this process.

    The kernels import cxrlib as installed (``pip install --no-deps -e .``), wherever they run.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if book_run is not None:
        os.environ[runs.BOOK_RUN_VARIABLE] = book_run


# --- the one command ------------------------------------------------------------------

def run_book(profile: Profile, run: str, data: Path | None = None, configs=None, folds=None,
             training: bool = True, only_book: bool = False, force: bool = False,
             book_run: str | None = None, output: Path | None = None) -> Path:
    """``python -m cxrlib book``: execute the notebooks (unless ``only_book``; the training ones
    unless not ``training``), then build the book into ``<output>/_build/html``; returns its
    index page. ``book_run``: the run the chapters show (default: :func:`choose_book_run`)."""
    started = time.perf_counter()
    root = paths.root()
    results_root = paths.results_dir()
    data_text = str(data) if data else ""
    folds_text = ",".join(str(f) for f in folds) if folds else ""
    kernel_environment(root)
    timings: dict[str, float] = {}
    if not only_book:
        if training:
            provide_imagenet_weights(root)
        timings = run_notebooks(profile, run, data_text, folds_text, training=training,
                                force=force, root=root, results_root=results_root,
                                configs=configs)
    book_run = (book_run or os.environ.get(runs.BOOK_RUN_VARIABLE, "")
                or choose_book_run(run, profile, results_root))
    kernel_environment(root, book_run)
    output = output or root
    timings["book"] = build_book(book_run, root, results_root, output)
    total = time.perf_counter() - started
    summary = {"profile": profile.name, "run": run, "book_run": book_run,
               "seconds_total": round(total, 1),
               "seconds": {k: round(v, 1) for k, v in timings.items()},
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    records = paths.runs_dir() / run
    records.mkdir(parents=True, exist_ok=True)
    results.write_text_atomic(records / "pipeline.json", json.dumps(summary, indent=2) + "\n")
    index = output / "_build" / "html" / "index.html"
    print(f"[book] done in {total:.0f} s: {index}")
    return index
