"""The command line: ``python -m cxrlib <command>`` (or ``cxrlib <command>``); ``--help`` on each.

One surface for every command: each command adds its arguments (the run arguments they share
come from :mod:`cxrlib.arguments`, checked there once, before anything trains) and its handler
turns them into one call of the library.

Errors: a wrong argument or input raises :class:`cxrlib.core.errors.UserError`; :func:`main` prints it
as one line, ``error: <what is wrong> — <what to do>``, on stderr and returns 2. ``--debug`` (or
``CXRLIB_DEBUG=1``) shows the traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

from cxrlib.arguments import (
    RunChoice,
    add_run_arguments,
    checked_configs,
    checked_folds,
    checked_results_root,
    run_choice,
)
from cxrlib.core import paths
from cxrlib.core.errors import EXIT_USAGE, UserError

DEBUG_ENV = "CXRLIB_DEBUG"


def library(name: str) -> ModuleType:
    """The library module a command calls, imported when the command runs: most of them import
    TensorFlow (about 10 s), which ``--help`` and argument errors should not wait for."""
    return importlib.import_module(f"cxrlib.{name}")


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one ``error:`` line like every other error."""

    def error(self, message: str):
        raise UserError(f"{self.prog}: {message}", f"see `{self.prog} --help`")


# ---------------------------------------------------------------------------------------------
# Commands: each adds its arguments and turns them into one call of the library
# ---------------------------------------------------------------------------------------------

def curate_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, selection=False)
    parser.add_argument("--out", default=None,
                        help="output folder (default: the profile's folder under data/curated)")
    parser.add_argument("--classes", nargs="+", default=None, metavar="CLASS",
                        help="classes to curate (default: all seven)")
    parser.add_argument("--extras", nargs="*", default=None,
                        help="extra labels kept for the audit (default: 'No Finding'; give "
                             "--extras with no value for none)")
    parser.add_argument("--extras-max", type=int, default=None,
                        help="at most this many images per extra label (real data)")
    parser.add_argument("--lateral", action="store_true", help="also keep Cohen's lateral views")
    parser.add_argument("--style", choices=("paper", "external"), default="paper",
                        help="synthetic collections: 'paper' (with the built-in shortcut) or "
                             "'external' (same signs, no collection cues)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    parser.add_argument("--workers", type=int, default=None)


def curate_command(args: argparse.Namespace) -> int:
    choice = run_choice(args)
    curate = library("data.curate")
    data = choice.data
    if choice.profile.dataset == "real" and data is None:
        data = paths.default_data_dir()
        if data is None:
            raise UserError(f"profile {choice.profile.name!r} needs the real sources and none "
                            "were found ($CXRLIB_DATA, ../shared/data)",
                            "pass --data DIR; `python -m cxrlib download --list` says what to "
                            "fetch")
    out = Path(args.out) if args.out else curate.curated_dir_for(choice.profile, args.style)
    options = {k: v for k, v in dict(classes=args.classes, extras_max=args.extras_max,
                                     extras=None if args.extras is None else tuple(args.extras)
                                     ).items() if v is not None}
    curate.curate(out, data_dir=data, image_size=choice.profile.image_size,
                  seed=choice.profile.seed, multilabel=choice.profile.multilabel,
                  harmonise_px=choice.profile.harmonise_px, lateral=args.lateral,
                  synthetic_per_class=choice.profile.synthetic_per_class,
                  collection_style=args.style, jpeg_quality=args.quality, workers=args.workers,
                  **options)
    return 0


def run_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--curated", default=None,
                        help="an already curated dataset folder (skips curation)")
    parser.add_argument("--results", default=None, help="results root (default: results/)")
    parser.add_argument("--weights", default="imagenet",
                        help="'imagenet' (Keras cache, $KERAS_HOME/models) or a weights file")
    parser.add_argument("--save-weights-folds", default="",
                        help="keep the trained weights of only these folds (e.g. 0) under "
                             "runs/<run>/weights/ (default: every fold's, for export and "
                             "Grad-CAM)")
    parser.add_argument("--no-keep-weights", action="store_true",
                        help="keep no fold's trained weights (nothing to export afterwards)")
    parser.add_argument("--retrain-corrupt", action="store_true",
                        help="a stored fold that cannot be read is set aside (renamed "
                             "*.corrupt-N) and trained again, instead of stopping the run")
    parser.add_argument("--executor", default="local",
                        help="where the folds train: local (here, one after another; default), "
                             "dask or dask:N (a local Dask cluster of N workers), a Dask "
                             "scheduler address, or slurm:<config.yaml> (cxrlib.experiment.cluster)")


def run_options(args: argparse.Namespace, choice: RunChoice) -> dict:
    """The keyword arguments of a cross-validation run (local or on a cluster)."""
    curated = None
    if args.curated is not None:
        curated = Path(args.curated)
        if not (curated / "manifest.csv").is_file():
            raise UserError(f"--curated {args.curated}: no manifest.csv there",
                            "give a folder made by `python -m cxrlib curate`, or leave "
                            "--curated out to curate")
    weights = args.weights
    if weights != "imagenet" and not Path(weights).is_file():
        raise UserError(f"--weights {weights}: no such file",
                        "give 'imagenet' or the path of a Keras weights file")
    return dict(configs=choice.configs, folds=choice.folds, run=choice.run,
                data_dir=choice.data, results_root=checked_results_root(args.results),
                curated=curated, weights=weights, retrain_corrupt=args.retrain_corrupt,
                save_weights_folds=() if args.no_keep_weights else checked_folds(
                    choice.profile, args.save_weights_folds, "--save-weights-folds")
                or tuple(range(choice.profile.n_folds)))


def run_command(args: argparse.Namespace) -> int:
    choice = run_choice(args)
    options = run_options(args, choice)
    run_path = library("experiment.cluster").run_profile(choice.profile, executor=args.executor, **options)
    print(f"results: {run_path}", flush=True)
    return 0


def cluster_arguments(parser: argparse.ArgumentParser) -> None:
    run_arguments(parser)
    parser.set_defaults(executor="dask")
    parser.add_argument("--address", default=None,
                        help="a running Dask scheduler (tcp://host:8786) or slurm:<config.yaml> "
                             "(see examples/slurm_cluster.yaml); default: a local cluster")
    parser.add_argument("--workers", type=int, default=None,
                        help="workers of the local cluster (default: one per GPU, else a few "
                             "CPU workers); SLURM: 'jobs' in its file")


def cluster_command(args: argparse.Namespace) -> int:
    if args.address:
        args.executor = args.address
    elif args.workers:
        args.executor = f"dask:{args.workers}"
    cluster = library("experiment.cluster")
    try:
        return run_command(args)
    except cluster.UnitsFailed as failed:
        print(f"error: {failed}", file=sys.stderr)
        return 1


def book_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser)
    parser.add_argument("--skip-run", action="store_true",
                        help="do not execute the training notebooks; curate, report and build "
                             "the book from the results already stored")
    parser.add_argument("--only-book", action="store_true",
                        help="execute no notebook; only build the book from stored results")
    parser.add_argument("--force", action="store_true",
                        help="execute every notebook even when its run record is up to date")
    parser.add_argument("--book-run", default=None,
                        help="the run the chapters show (default: $CXRLIB_BOOK_RUN, else this "
                             "run, or a stored real-data run when this one is synthetic)")
    parser.add_argument("--output", default="",
                        help="build the book into OUTPUT/_build/html (default: the checkout)")


def book_command(args: argparse.Namespace) -> int:
    choice = run_choice(args)
    book_run = paths.check_run_name(args.book_run, "--book-run") if args.book_run else None
    library("report.pipeline").run_book(choice.profile, choice.run, data=choice.data,
                                 configs=choice.configs, folds=choice.folds,
                                 training=not args.skip_run, only_book=args.only_book,
                                 force=args.force, book_run=book_run,
                                 output=Path(args.output).resolve() if args.output else None)
    return 0


def audit_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, selection=False)
    parser.add_argument("--no-train", action="store_true",
                        help="analyse only the folds already stored (e.g. real-data "
                             "retrainings made on another machine and stored); train "
                             "nothing")


def audit_command(args: argparse.Namespace) -> int:
    choice = run_choice(args)
    library("audit").run_audit(choice.profile, choice.run, data_dir=choice.data,
                               train=not args.no_train)  # it says where the tables are
    return 0


def download_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None,
                        help="data folder to fill (default: $CXRLIB_DATA or ../shared/data)")
    parser.add_argument("--source", nargs="+", default=["cohen", "kermany", "nih"],
                        choices=("cohen", "kermany", "nih"), help="which sources to fetch")
    parser.add_argument("--nih-archives", default=None,
                        help="NIH image archives to fetch, e.g. 1-3 (default: all 12, ~45 GB)")
    parser.add_argument("--base-url", default=None,
                        help="fetch <base-url>/<file> instead of the public addresses (a mirror)")
    parser.add_argument("--keep-archives", action="store_true",
                        help="keep the downloaded archives after unpacking")
    parser.add_argument("--list", action="store_true",
                        help="print what would be fetched, from where, and exit")


def download_command(args: argparse.Namespace) -> int:
    download = library("data.download")
    data = Path(args.data) if args.data else (paths.default_data_dir() or
                                              paths.root() / "data" / "sources")
    if args.list:
        print(download.listing(data, args.source))
        return 0
    download.download_sources(args.source, data, base_url=args.base_url,
                              keep_archives=args.keep_archives, parts=args.nih_archives)
    return 0


def export_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_arguments(parser, selection=False)
    parser.add_argument("--config", required=True,
                        help="the configuration to export, e.g. from_scratch or fine_tune_3")
    # Not `folds`: run_choice would check them against --profile, not against the stored run.
    parser.add_argument("--folds", dest="export_folds", default="",
                        help="comma-separated folds (default: every fold whose weights were "
                             "kept); several folds are averaged (an ensemble)")
    parser.add_argument("--results", default=None, help="results root (default: results/)")
    parser.add_argument("--out", default=None,
                        help="the model file to write (default: "
                             "runs/<run>/models/<config>.cxrmodel)")


def export_command(args: argparse.Namespace) -> int:
    choice = run_choice(args)
    checked_configs(choice.profile, args.config)
    root = checked_results_root(args.results)
    # The folds are those of the stored run (whatever --profile names), when it exists.
    stored = library("experiment.runs").run_profile(library("experiment.results").run_dir(choice.run, root))
    path = library("models.modelfile").export_model(
        choice.run, args.config, out=args.out, results_root=root,
        folds=checked_folds(stored or choice.profile, args.export_folds, "--folds"))
    print(f"model: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="radiographs: PNG, JPEG (any format Pillow reads) or DICOM")
    parser.add_argument("--model", required=True, help="a model file made by `export`")
    parser.add_argument("--gradcam", default=None, metavar="DIR",
                        help="write DIR/<file>.png: each image with its Grad-CAM map for the "
                             "predicted class")
    parser.add_argument("--csv", default=None, metavar="OUT",
                        help="also write the probabilities to this CSV file")


def predict_command(args: argparse.Namespace) -> int:
    return library("models.predict").predict_command(args.model, args.files, args.gradcam, args.csv)


def evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a model file made by `export`")
    parser.add_argument("--images", required=True, metavar="LABELS.csv|DIR",
                        help="a CSV of path,label[,patient_id,source], or a source's folder "
                             "(e.g. ../shared/data/hannover) or a data folder holding several")
    parser.add_argument("--as", dest="relabel", action="append", default=[],
                        metavar="LABEL=CLASS",
                        help='score images labelled LABEL as the model\'s CLASS, e.g. --as '
                             '"No Finding=Normal" (repeatable)')
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="write DIR/predictions.csv and DIR/metrics.csv")
    parser.add_argument("--bootstrap", type=int, default=1000,
                        help="bootstrap resamples of patients for the intervals")


def evaluate_command(args: argparse.Namespace) -> int:
    return library("models.evaluate").evaluate_command(args.model, args.images, args.relabel,
                                                args.out, args.bootstrap)


#: name -> (help, add the arguments, run it). `python -m cxrlib --help` lists them in this order.
COMMANDS = {
    "curate": ("curate a dataset (real sources or the built-in synthetic set)",
               curate_arguments, curate_command),
    "download": ("download the public sources, or say what to get by hand",
                 download_arguments, download_command),
    "run": ("cross-validate configurations of a profile (resumable, per fold)",
            run_arguments, run_command),
    "cluster": ("cross-validate on a Dask cluster (local, a scheduler, SLURM)",
                cluster_arguments, cluster_command),
    "book": ("run the whole paper for a profile and build the book",
             book_arguments, book_command),
    "audit": ("run the audit of a run (its retrainings, or --no-train) and store its tables",
              audit_arguments, audit_command),
    "export": ("write one model file of a run's configuration (its folds averaged)",
               export_arguments, export_command),
    "predict": ("class probabilities (and Grad-CAM) of PNG, JPEG or DICOM radiographs",
                predict_arguments, predict_command),
    "evaluate": ("score a model file on labelled images from elsewhere, per source",
                 evaluate_arguments, evaluate_command),
}


def make_parser() -> Parser:
    # Named as the user called it: the console script, or the module.
    prog = "cxrlib" if Path(sys.argv[0]).name == "cxrlib" else "python -m cxrlib"
    parser = Parser(prog=prog,
                    description="cxrlib: rerun the paper, its audit and the book; --help on each "
                                "command says more.")
    parser.add_argument("--debug", action="store_true",
                        help=f"show a traceback on errors (also: {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, command) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help=f"show a traceback on errors (also: {DEBUG_ENV}=1)")
        add_arguments(p)
        p.set_defaults(_command=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        args = make_parser().parse_args(argv)
        return int(args._command(args) or 0)
    except UserError as e:
        if debug:
            raise
        print(f"error: {e.line()}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        # A missing or unreadable input the library named (its message has the path).
        if debug:
            raise
        print(f"error: {e} — check the path, or run with --debug to see where it was needed",
              file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: every finished fold is stored; run the same command again to go on",
              file=sys.stderr)
        return 130
