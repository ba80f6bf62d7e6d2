"""The shortcut tests' controls: a test counts in the verdict only when it fires on synthetic data
with the planted shortcut and stays quiet on the same generator's images without it."""
from __future__ import annotations

import pytest

from cxrlib.audit import controls, statistics, verdict
from cxrlib.core.profiles import get_profile
from cxrlib.experiment import cv


def figure(value, low=None, high=None):
    return verdict.Figure(value, value if low is None else low, value if high is None else high)


#: Evidence on which every shortcut test has a result and none fires.
QUIET = {
    "synthetic": False, "accuracy": figure(0.88, 0.85, 0.91), "chance": figure(0.34),
    "border_retained": 0.1, "statistics_accuracy": figure(0.40), "source_probe": figure(0.6),
    "within_collection": [], "lung_enrichment": 1.6, "randomised_spearman": 0.1,
    "age_swap_fall": figure(0.0, -0.03, 0.03),
    "pairs_within": [("Effusion vs Fibrosis (nih)", figure(0.92, 0.89, 0.95),
                      figure(0.61, 0.55, 0.67))],
    "elsewhere_falls": [("COVID-19, hannover", figure(0.01, -0.03, 0.04))],
}
PASSED = {name: "passed" for name in controls.all_test_names()}


def test_a_test_counts_only_when_it_passed_its_controls():
    assert all(fired is False for _, fired, _ in verdict.shortcut_tests(QUIET))
    assert verdict.biomarker_verdict(dict(QUIET, controls=PASSED))[0] == verdict.SUPPORTED
    # Without stored controls nothing counts: the verdict cannot tell, and says why.
    word, text = verdict.biomarker_verdict(QUIET)
    assert word == verdict.CANNOT_TELL and "its controls were not run" in text
    # The lungs blacked out keep the accuracy: the test fires.
    fired = dict(QUIET, border_retained=0.9)
    assert verdict.biomarker_verdict(dict(fired, controls=PASSED))[0] == verdict.NOT_SUPPORTED
    # ... but a test that failed its controls is uninformative: it neither refutes nor supports.
    failed = dict(PASSED, **{"lungs blacked out": "failed"})
    word, text = verdict.biomarker_verdict(dict(fired, controls=failed))
    assert word == verdict.CANNOT_TELL
    assert "lungs blacked out: FIRES" in text and "uninformative (failed its controls)" in text
    # A test without a control (real data only) is not counted either.
    none = dict(PASSED, **{"a class's recall falls on images from elsewhere":
                           "no control available"})
    assert verdict.biomarker_verdict(dict(QUIET, controls=none))[0] == verdict.CANNOT_TELL
    counted = {name: counts for name, *_, counts in verdict.counted_tests(
        dict(QUIET, controls=none))}
    assert counted["lungs blacked out"] and not counted[
        "a class's recall falls on images from elsewhere"]


def test_the_source_probe_test_is_quiet_where_every_collection_tells_its_classes_apart():
    name = "collections recognisable, classes not within them"
    told = [("synthetic-external (main)", figure(0.6, 0.5, 0.7), 0.2)]
    tests = dict((n, f) for n, f, _ in verdict.shortcut_tests(
        dict(QUIET, source_probe=None, within_collection=told)))
    assert tests[name] is False, "one collection needs no probe to be quiet"
    blind = [("kermany (main)", figure(0.55, 0.48, 0.62), 0.6)]
    tests = dict((n, f) for n, f, _ in verdict.shortcut_tests(
        dict(QUIET, source_probe=None, within_collection=blind)))
    assert tests[name] is None
    tests = dict((n, f) for n, f, _ in verdict.shortcut_tests(
        dict(QUIET, source_probe=figure(0.97), within_collection=blind)))
    assert tests[name] is True


def test_no_control_runs_means_not_run(tmp_path):
    table = controls.control_table(*controls.control_runs(tmp_path))
    assert list(table["test"]) == controls.all_test_names()
    status = table.set_index("test")["status"]
    assert status["a class's recall falls on images from elsewhere"] == "no control available"
    assert set(status.drop("a class's recall falls on images from elsewhere")) == {"not run"}


@pytest.mark.parametrize("style, low, high", [("paper", 0.7, 1.0), ("external", 0.0, 0.6)])
def test_the_statistics_rival_finds_the_planted_shortcut_and_not_without_it(style, low, high):
    """Real synthetic images, curated as a run's (three classes, each from its own collection in
    the paper's style; one neutral collection in the external style): the trivial statistics of
    the curated images name the class far better with the shortcut than without it."""
    classes = ("COVID-19", "Effusion", "Normal")
    profile = get_profile("tiny", classes=classes, synthetic_per_class=20, n_folds=3,
                          collection_style=style)
    manifest, images = cv.load_dataset(profile)
    assert set(manifest["source"]) == ({"synthetic-external"} if style == "external" else
                                       {"synthetic-web", "synthetic-hospital",
                                        "synthetic-paediatric"})
    table, _ = statistics.image_statistics(manifest, images, cv.make_folds(manifest, profile),
                                           classes, n_boot=20)
    best = table[(table["metric"] == "accuracy") & (table["features"] == "all")]["value"].max()
    assert low <= best <= high, (style, best)
