"""Wall time of a profile's grid on a local Dask cluster of 1, 2, ... workers.

    python benchmarks/bench_cluster.py [--profile default] [--workers 1,2] [--local]
        [--configs off_the_shelf,from_scratch] [--folds 0] [--out DIR]

Each setting trains the grid from nothing into its own results folder under ``--out`` (default:
a temporary folder), through :func:`cxrlib.experiment.cluster.run_on_cluster`; ``--local`` adds the
in-process loop (``cv.run_profile``) for comparison. The curated dataset is made (or found)
before the clock starts. Printed per setting: wall time, the summed training seconds of the
units (fold.json) and the machine's load average before and after, since other jobs on the
same cores change every figure. The JSON summary goes to ``<out>/bench_cluster.json`` and to
``--record`` (default ``benchmarks/results/cluster-<profile>.json``, committed: the
reproducibility appendix of the book shows it; ``--record ''`` skips it).

On a CPU the workers split the cores (cxrlib.experiment.dask_clusters.local_cluster), so two workers on two
cores can only win what one process leaves idle (start-up, data handling, Python overhead).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def summed_train_seconds(run_path: Path) -> float:
    from cxrlib.experiment import results

    total = 0.0
    for config in results.read_profile(run_path).configs:
        info = results.read_fold_info(run_path, config)
        if len(info):
            total += float(info["train_seconds"].sum())
    return total


def time_setting(label: str, profile, out: Path, curated: Path, configs, folds,
                 workers: int | None) -> dict:
    from cxrlib.experiment import cluster, cv

    root = out / label
    load_before = os.getloadavg()
    start = time.perf_counter()
    if workers is None:
        run_path = cv.run_profile(profile, configs=configs, folds=folds, results_root=root,
                                  curated=curated, log=lambda line: None)
    else:
        run_path = cluster.run_on_cluster(profile, configs=configs, folds=folds,
                                          results_root=root, curated=curated,
                                          n_workers=workers, progress_every=60)
    wall = time.perf_counter() - start
    row = {"setting": label, "workers": workers, "wall_seconds": round(wall, 1),
           "summed_train_seconds": round(summed_train_seconds(run_path), 1),
           "load_before": [round(x, 2) for x in load_before],
           "load_after": [round(x, 2) for x in os.getloadavg()]}
    print(f"{label}: {wall:.0f} s wall ({wall / 60:.1f} min), units' training "
          f"{row['summed_train_seconds']:.0f} s summed, load {row['load_before'][0]:.1f} -> "
          f"{row['load_after'][0]:.1f}", flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--local", action="store_true", help="also time the in-process loop")
    parser.add_argument("--configs", default="", help="a subset of the profile's configurations")
    parser.add_argument("--folds", default="", help="a subset of the folds, e.g. 0")
    parser.add_argument("--out", default="", help="results folder (default: a temporary one)")
    parser.add_argument("--record", default=None,
                        help="where the summary is kept for the book (default: "
                             "benchmarks/results/cluster-<profile>.json; '' for nowhere)")
    args = parser.parse_args()

    from cxrlib import arguments
    from cxrlib.core.profiles import get_profile
    from cxrlib.data.curate import ensure_curated

    profile = get_profile(args.profile)
    configs = arguments.split_list(args.configs) or None
    folds = [int(f) for f in arguments.split_list(args.folds)] or None
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_cluster-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    curated = ensure_curated(profile)
    n_units = len(configs or profile.configs) * len(folds or range(profile.n_folds))
    print(f"profile {profile.name}: {n_units} units; {os.cpu_count()} cores; results in {out}",
          flush=True)
    rows = []
    settings = [(f"dask-{n}-workers", int(n)) for n in args.workers.split(",") if n.strip()]
    if args.local:
        settings.append(("in-process", None))
    for label, workers in settings:
        rows.append(time_setting(label, profile, out, curated, configs, folds, workers))
    from cxrlib.core import env

    summary = {"profile": profile.name, "units": n_units, "cores": os.cpu_count(),
               "backend": env.keras_backend(), "device": env.device_description(),
               "git_commit": env.git_commit(),
               "configs": configs or list(profile.configs),
               "folds": folds or list(range(profile.n_folds)), "rows": rows,
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    text = json.dumps(summary, indent=2) + "\n"
    (out / "bench_cluster.json").write_text(text)
    record = REPO / "benchmarks" / "results" / f"cluster-{profile.name}.json" \
        if args.record is None else (Path(args.record) if args.record else None)
    if record is not None:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(text)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
