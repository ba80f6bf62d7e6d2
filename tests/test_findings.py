"""The book's findings (cxrlib.report.findings) on the committed real-data runs: the same
figures and verdict words as the verdict and the comparison compute, every glue name the first
page, the introduction and the discussion quote, and partial coverage flagged as partial."""
from __future__ import annotations

import re

import pytest
from conftest import write_fold

from cxrlib.audit.store import read_table
from cxrlib.audit.verdict import collect_evidence, verdict_table
from cxrlib.core import paper, paths
from cxrlib.experiment import results, runs
from cxrlib.report import findings, glue

RESULTS = paths.root() / "results"
BOOK_RUN, AUDIT_RUN = RESULTS / "paper-bundle", RESULTS / "paper-bundle5-cpu"
CHAPTERS = ("index", "introduction", "discussion")


@pytest.fixture(scope="module")
def real():
    if not (BOOK_RUN / "audit" / "verdict.csv").is_file():
        pytest.fail(f"{BOOK_RUN} is committed with its audit; is this a full checkout?")
    return findings.findings_numbers(BOOK_RUN, AUDIT_RUN)


def test_the_verdict_words_are_the_verdicts(real):
    for run, prefix in ((BOOK_RUN, "find_"), (AUDIT_RUN, "find_audit_")):
        table = verdict_table(collect_evidence(run))
        assert len(findings.claim_keys()) == len(table) == real[f"{prefix}claims_total"]
        for key, verdict in zip(findings.claim_keys(), table["verdict"]):
            assert real[f"{prefix}claim_{key}_verdict"] == verdict, key
        assert sum(real[f"{prefix}claims_{w}"] for w in
                   ("supported", "not_supported", "cannot_tell")) == len(table)


def test_the_figures_are_the_verdicts_and_the_comparisons(real):
    evidence = collect_evidence(BOOK_RUN)
    assert real["find_scratch_acc2_text"] == evidence["acc_2class"].text()
    assert real["find_scratch_accuracy_text"] == evidence["accuracy"].text()
    assert real["find_stats_text"] == evidence["statistics_accuracy"].text()
    assert real["find_patient_gap_text"] == evidence["patient_gap"].text(" points")
    prose = glue.prose_numbers(BOOK_RUN)
    assert real["find_scratch_sensitivity_text"].startswith(
        f"{prose['ours_from_scratch_sensitivity']:.1f}% [")
    assert real["find_never_covid_text"] == f"{prose['ours_not_covid_baseline']:.1f}%"
    restricted = paper.restricted_figures("from_scratch", runs.run_classes(BOOK_RUN))
    assert real["find_paper_restricted_acc_text"] == f"{restricted['acc_nclass']:.1f}%"
    # the rank, checked against the audit's own table of every configuration's accuracy
    stored = read_table(BOOK_RUN, "uncertainty")
    accuracy = stored[(stored["kind"] == "network") & (stored["metric"] == "accuracy")]
    ordered = list(accuracy.sort_values("value", ascending=False)["model"])
    rank = ordered.index("from_scratch") + 1
    expected = f"last of {len(ordered)}" if rank == len(ordered) else f"of {len(ordered)}"
    assert real["find_scratch_rank_text"].endswith(expected)
    gaps = [-d.value * 100 for d in evidence["strategy_differences"].values()]
    assert real["find_scratch_gap_range_text"] == f"{min(gaps):.1f} to {max(gaps):.1f}"


def test_coverage_counts_the_folds(real):
    profile = runs.run_profile(BOOK_RUN)
    done = {c: len(results.done_folds(BOOK_RUN, c)) for c in profile.configs}
    assert real["find_configs_done"] == sum(n > 0 for n in done.values())
    complete = all(n == profile.n_folds for n in done.values())
    assert real["find_coverage_word"] == ("complete" if complete else "partial")


def test_every_glue_name_the_chapters_quote_is_produced(real):
    produced = set(real) | set(glue.prose_numbers(BOOK_RUN)) | set(
        glue.difference_numbers(BOOK_RUN))
    for chapter in CHAPTERS:
        text = (paths.root() / "book" / f"{chapter}.md").read_text()
        used = set(re.findall(r"\{glue(?::text)?\}`([A-Za-z0-9_]+)", text))
        literal = set(re.findall(r'"([A-Za-z0-9_]+)":', text))  # glued by the chapter itself
        assert used, chapter
        assert not used - produced - literal, f"{chapter}: {sorted(used - produced - literal)}"
        if chapter in ("index", "discussion"):
            assert any(name.startswith("find_") for name in used), chapter


def test_a_run_with_missing_configurations_is_partial_and_names_every_finding(tmp_path, real):
    run = tmp_path / "results" / "tiny"
    write_fold(run, "fine_tune_3", 0)
    coverage = findings.coverage_numbers(run)
    assert coverage["coverage_word"] == "partial"
    assert coverage["coverage_text"].startswith("1 of 8 configurations (fine-tuning 3 blocks "
                                                "on 1 of 2 folds)")
    assert "training from scratch" in coverage["missing_text"]
    partial = findings.findings_numbers(run, run)
    assert set(partial) == set(real), "a run without an audit still gives every name"
    assert partial["find_scratch_rank_text"] == findings.NOT_RUN
    for config in runs.run_profile(run).configs:
        for fold in (0, 1):
            write_fold(run, config, fold)
    assert findings.coverage_numbers(run)["coverage_word"] == "complete"
