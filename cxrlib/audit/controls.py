"""Every shortcut test on controls: does it fire where a shortcut is planted, and only there?

A shortcut test (:func:`cxrlib.audit.verdict.shortcut_tests`) is evidence only if it can tell a
network that reads the collection from one that does not. The synthetic data answer that by
construction (:mod:`cxrlib.data.synthetic`):

- the **positive control** is the synthetic run with the planted shortcut (profile
  ``default``: each class from its own collection, recognisable by frame and markers);
- the **negative control** is a run on the same generator's images without it (profile
  ``default-no-shortcut``: every class from one neutral collection, the same disease signs).

A test *passes* its controls when it fires on the positive control and stays quiet on the
negative; the verdict counts only tests that passed (:func:`cxrlib.audit.verdict.
biomarker_verdict`). A test that fired on both, or on neither, is uninformative; a test without
a result on either control is "not run"; a test that needs real data has no control.
:func:`control_table` makes the table, which the audit stores beside every run it audits
(``controls.csv``), so a run's verdict says which controls it used.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrlib.audit.verdict import collect_evidence, shortcut_tests

#: The positive control's profile and its twin without the planted shortcut.
NEGATIVE_OF: dict[str, str] = {"default": "default-no-shortcut"}
POSITIVE, NEGATIVE = "default", "default-no-shortcut"
#: Tests that only real data can run, and why no control exists for them.
NO_CONTROL: dict[str, str] = {
    "a class's recall falls on images from elsewhere": (
        "it reads real images from another hospital and adult NIH patients; the synthetic "
        "data have no such sources"),
}
COLUMNS = ("test", "positive", "negative", "status", "reason", "positive_figures",
           "negative_figures", "positive_run", "negative_run", "positive_network",
           "negative_network")


def all_test_names() -> list[str]:
    """Every shortcut test, in the verdict's order (including those only real data run)."""
    return [name for name, _, _ in shortcut_tests({})]


def control_runs(results_root: str | Path) -> tuple[Path, Path]:
    """The positive and negative control runs' folders in a results store."""
    return Path(results_root) / POSITIVE, Path(results_root) / NEGATIVE


def results_of(run_path: str | Path) -> tuple[dict[str, tuple[bool | None, str]], str]:
    """Each shortcut test's (fired?, figures) on a run's stored audit (empty if no run), and
    its network's accuracy against chance, in words."""
    if not (Path(run_path) / "profile.json").is_file():
        return {}, "no run"
    evidence = collect_evidence(run_path)
    network, chance = evidence.get("accuracy"), evidence.get("chance")
    skill = "n/a" if network is None or chance is None else \
        f"{network.text()} (chance {100 * chance.value:.1f}%)"
    return {name: (fired, figures)
            for name, fired, figures in shortcut_tests(evidence)}, skill


def _word(fired: bool | None) -> str:
    return "no result" if fired is None else "fires" if fired else "quiet"


def _status(name: str, positive: bool | None, negative: bool | None) -> tuple[str, str]:
    """A test fails when it is quiet on the positive control or fires on the negative (either
    suffices, whatever the other shows); it passes when it does neither on both."""
    if name in NO_CONTROL:
        return "no control available", NO_CONTROL[name]
    failures = [reason for reason, failed in (
        ("does not fire on the planted shortcut", positive is False),
        ("fires without a shortcut", negative is True)) if failed]
    if failures:
        return "failed", " and ".join(failures)
    if positive is None or negative is None:
        which = " and ".join(w for w, f in (("positive", positive), ("negative", negative))
                             if f is None)
        return "not run", f"no result on the {which} control"
    return "passed", "fires with the planted shortcut, quiet without it"


def control_table(positive_path: str | Path, negative_path: str | Path) -> pd.DataFrame:
    """One row per shortcut test: its result on both controls and its status (passed,
    failed, not run, no control available) with the reason and the figures it read."""
    (positive, positive_skill), (negative, negative_skill) = (results_of(positive_path),
                                                              results_of(negative_path))
    rows = []
    for name in all_test_names():
        (p, p_figures), (n, n_figures) = (positive.get(name, (None, "n/a")),
                                          negative.get(name, (None, "n/a")))
        status, reason = _status(name, p, n)
        rows.append({"test": name, "positive": _word(p), "negative": _word(n),
                     "status": status, "reason": reason, "positive_figures": p_figures,
                     "negative_figures": n_figures, "positive_run": Path(positive_path).name,
                     "negative_run": Path(negative_path).name,
                     "positive_network": positive_skill, "negative_network": negative_skill})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def controls_with_result(run_path: str | Path, evidence: dict,
                         table: pd.DataFrame | None) -> pd.DataFrame | None:
    """The chapter's table: each test on the positive and negative controls, on the run shown,
    and whether the verdict counts it."""
    if table is None or table.empty:
        return None
    own = {name: fired for name, fired, _ in shortcut_tests(evidence)}
    return pd.DataFrame({
        "shortcut test": table["test"],
        "positive control (fires?)": table["positive"],
        "negative control (quiet?)": table["negative"],
        f"this run ({Path(run_path).name})": [_word(own.get(name)) if name in own else
                                              "not applicable" for name in table["test"]],
        "counted in the verdict?": ["yes" if s == "passed" else f"no: {s} ({r})"
                                    for s, r in zip(table["status"], table["reason"])],
    }).set_index("shortcut test")
