"""Command line: ``python -m cxrlib <command> --help``.

Each command lives in the module that does the work; that module defines
``add_arguments(parser)`` and ``main(args)``. This file only routes.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "curate": ("cxrlib.curate", "curate a dataset (real sources or the built-in synthetic set)"),
    "download": ("cxrlib.download", "download the public sources, or say what to get by hand"),
    "run": ("cxrlib.cv", "cross-validate configurations of a profile (resumable, per fold)"),
    "book": ("cxrlib.pipeline", "run the whole paper for a profile and build the book"),
    "cluster": ("cxrlib.cluster", "cross-validate on a Dask cluster (local, a scheduler, SLURM)"),
    "audit": ("cxrlib.audit", "run the audit's notebooks for a run (retrainings, or --no-train)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cxrlib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    # Import only the chosen command's module: TensorFlow is slow to import.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if name == chosen:
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.set_defaults(_main=mod.main)
    args = parser.parse_args(argv)
    return int(args._main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
