"""How long the explorers take to build and how much each frozen book view embeds in its page.

    python benchmarks/bench_explore.py [RUN]      (RUN: a run under results/, default "default")

Prints, per explorer: seconds to open it, seconds to build the book view, and the bytes of
widget state the page embeds (every widget's full state, as the notebook executor stores it).
Needs the run's results; the dataset explorer also needs the run's curated dataset.
"""
from __future__ import annotations

import json
import sys
import time

import ipywidgets

from cxrlib.experiment import runs
from cxrlib.explore import DatasetExplorer, PredictionExplorer, ThresholdExplorer


def new_state_bytes(before: set[str]) -> int:
    """Bytes of the full state of the widgets created since ``before`` (model ids)."""
    state = ipywidgets.Widget.get_manager_state(drop_defaults=False)["state"]
    return len(json.dumps({k: v for k, v in state.items() if k not in before}))


def measure(name: str, open_explorer) -> None:
    before = set(ipywidgets.Widget.get_manager_state()["state"])
    started = time.perf_counter()
    try:
        explorer = open_explorer()
    except (FileNotFoundError, ValueError) as error:
        print(f"{name:22s} not available: {error}")
        return
    opened = time.perf_counter()
    view = explorer.book_view()
    built = time.perf_counter()
    size = new_state_bytes(before) if isinstance(view, ipywidgets.Widget) else \
        len(view.data.encode())
    kind = "widgets" if isinstance(view, ipywidgets.Widget) else "static HTML (too large)"
    print(f"{name:22s} open {opened - started:5.2f} s   book view {built - opened:5.2f} s   "
          f"{size / 1e3:8.1f} kB   {kind}")


def main(run: str = "default") -> None:
    run_path = runs.resolve(run)
    print(f"run {run_path} ({runs.run_label(run_path)})")
    measure("dataset explorer", lambda: DatasetExplorer.for_run(run_path))
    measure("prediction explorer", lambda: PredictionExplorer(run_path))
    measure("threshold explorer", lambda: ThresholdExplorer(run_path))


if __name__ == "__main__":
    main(*sys.argv[1:2])
