"""Report functions on a small results store written with the store's own writer."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace as Script

import matplotlib
import numpy as np
import pandas as pd
import pytest

from cxrlib.analysis import comparison, tables
from cxrlib.core import metrics, paper, paths
from cxrlib.core.errors import UserError
from cxrlib.core.profiles import BUNDLE_CLASSES, get_profile
from cxrlib.experiment import results, runs
from cxrlib.report import figures, glue, vendor

matplotlib.use("Agg")

WRITTEN_CONFIGS = ("off_the_shelf", "fine_tune_3", "from_scratch")
N_FOLDS = 3


def fake_predictions(folds: pd.DataFrame, fold: int, classes, skill: float, seed: int):
    """Well-formed predictions: softmax of noise plus ``skill`` on the true class."""
    rng = np.random.default_rng(seed)
    test = folds[folds["fold"] == fold].reset_index(drop=True)
    logits = rng.normal(size=(len(test), len(classes)))
    truth = test["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    logits[np.arange(len(test)), truth] += skill
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pred = test[["image_id", "fold", "label", "patient_id", "source"]].copy()
    for c, column in zip(classes, probs.T):
        pred[f"p_{c}"] = column
    return pred


def write_store(root, name: str, dataset: str, classes, configs=WRITTEN_CONFIGS,
                environment=True):
    """A run with ``N_FOLDS`` folds of each of ``configs``; returns its folder."""
    profile = get_profile("tiny").replace(name=name, dataset=dataset, classes=tuple(classes),
                                          n_folds=N_FOLDS)
    if dataset == "real":  # the paper's image size: a real run comparable with the paper
        profile = profile.replace(image_size=200)
    run_path = results.run_dir(name, root)
    results.ensure_profile(run_path, profile)
    rng = np.random.default_rng(1)
    per_class = {c: (24 if c == "COVID-19" else 30) for c in classes}
    labels = [c for c, k in per_class.items() for _ in range(k)]
    folds = pd.DataFrame({"image_id": [f"img-{i:04d}" for i in range(len(labels))],
                          "label": labels,
                          "patient_id": [f"pt:{i // 2}" for i in range(len(labels))],
                          "source": "test"})
    folds["fold"] = rng.permutation(len(folds)) % N_FOLDS
    results.write_folds(run_path, folds)
    for k, config in enumerate(configs):
        for fold in range(N_FOLDS):
            pred = fake_predictions(folds, fold, classes, skill=1.0 + k, seed=10 * k + fold)
            epochs = 3 + fold
            history = pd.DataFrame({"epoch": range(1, epochs + 1),
                                    "loss": np.linspace(1.5, 0.5, epochs),
                                    "accuracy": np.linspace(0.3, 0.8, epochs),
                                    "val_loss": np.linspace(1.6, 0.7, epochs),
                                    "val_accuracy": np.linspace(0.3, 0.7, epochs)})
            info = {"config": config, "fold": fold, "epochs_run": epochs,
                    "train_seconds": 10.0 + fold, "train_images_per_second": 100.0 + fold,
                    "finished_at": f"2026-01-0{fold + 1}T12:00:00+00:00"}
            if environment:
                info["environment"] = {"device": "1 x NVIDIA H200", "keras_backend": "jax",
                                       "git_commit": "abc123"}
            results.write_fold(run_path, config, fold, pred, history, info)
    return run_path


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    return {
        "root": root,
        "bundle": write_store(root, "paper-bundle", "real", BUNDLE_CLASSES),
        "synthetic": write_store(root, "default", "synthetic", paper.CLASSES),
        "seven": write_store(root, "seven", "real", paper.CLASSES, configs=("from_scratch",),
                             environment=False),
    }


def test_paper_tables_hold_reported_figures():
    tables = paper.reported()["tables"]
    t1 = comparison.paper_table(1)
    assert t1.loc["off_the_shelf", "acc_7class"] == tables["table1_off_the_shelf"]["acc_7class"]
    assert math.isnan(t1.loc["off_the_shelf", "specificity"])
    t4 = comparison.paper_table(4)
    assert list(t4.index) == list(comparison.FINE_TUNE_CONFIGS)
    assert t4.loc["fine_tune_11", "sensitivity"] == tables["table4_fine_tuning"]["11"]["sensitivity"]
    t6 = comparison.paper_table(6)
    assert t6.loc["COVID-19", "COVID-19"] == 443 and t6.loc["Edema", "Effusion"] == 36
    assert t6.index.name == "predicted" and t6.to_numpy().sum() == 3905
    t7 = comparison.paper_table(7)
    assert t7.loc["COVID-19", metrics.NOT_POSITIVE] == tables["table7_from_scratch_confusion_2class"]["fp"]
    with pytest.raises(ValueError, match="Tables 1 to 7"):
        comparison.paper_table(8)


def seven_restricted(run) -> float:
    """The paper's from-scratch accuracy restricted to the run's classes."""
    return paper.restricted_figures("from_scratch", runs.run_classes(run))["acc_nclass"]


def test_comparison_of_figures_tables(stores):
    run = stores["bundle"]
    table5 = comparison.comparison_table(run, 5, n_boot=200).set_index("metric")
    reported = paper.reported()["tables"]["table5_from_scratch"]
    assert table5.loc["accuracy (ours 4 classes, paper 7)", "paper"] == reported["acc_7class"]
    assert table5.loc["2-class accuracy", "paper"] == reported["acc_2class"]
    pred = results.read_predictions(run, "from_scratch")
    ours = metrics.summary(pred, BUNDLE_CLASSES, n_boot=50).set_index("metric")
    row = table5.loc["2-class accuracy"]
    assert row["ours"] == pytest.approx(100 * ours.loc["acc_2class", "value"])
    assert row["difference"] == pytest.approx(row["ours"] - row["paper"])
    assert row["ci_low"] <= 100 * ours.loc["acc_2class", "pooled"] <= row["ci_high"]
    assert row["baseline_paper"] == pytest.approx(100 * 3450 / 3905)
    assert row["baseline_ours"] == pytest.approx(100 * 90 / 114)  # 24 COVID of 114 images
    assert row["comparable"] and "roughly" in row["note"]
    seven = table5.loc["accuracy (ours 4 classes, paper 7)"]
    assert not seven["comparable"] and "4 classes" in seven["note"]
    assert seven["ours"] == pytest.approx(100 * ours.loc["accuracy", "value"])
    assert table5.loc["sensitivity", "baseline_ours"] == 0.0
    shown = comparison.display_comparison(comparison.comparison_table(run, 5, n_boot=200))
    # One row per configuration and one for the never-COVID rule; value and interval in one cell.
    assert list(shown.index) == ["Training from scratch", comparison.NEVER_COVID]
    assert shown.loc["Training from scratch", ("2-class accuracy", "ours")] == \
        f"{row['ours']:.1f} [{row['ci_low']:.1f}, {row['ci_high']:.1f}]"
    assert shown.loc["Training from scratch", ("", "folds")] == f"{N_FOLDS} of {N_FOLDS}"
    accuracy = "accuracy (ours 4 classes, paper 7)"
    assert shown.loc["Training from scratch", (accuracy, "paper")] == \
        f"{reported['acc_7class']:.1f}"
    assert shown.loc["Training from scratch", (accuracy, "paper, our classes")] == \
        f"{seven_restricted(run):.1f}"
    assert shown.loc[comparison.NEVER_COVID, ("sensitivity", "ours")] == "0.0"
    assert shown.loc[comparison.NEVER_COVID, ("2-class accuracy", "paper")] == \
        f"{100 * 3450 / 3905:.1f}"
    assert table5.attrs["table"] == 5 and "scratch" in table5.attrs["title"]
    assert table5.attrs["comparable"] is False and "4 classes" in table5.attrs["notes"]


def test_missing_configurations_are_reported_not_fatal(stores):
    table4 = comparison.comparison_table(stores["bundle"], 4, n_boot=100)
    assert set(table4["configuration"]) == set(comparison.FINE_TUNE_CONFIGS)
    done = table4[table4["configuration"] == "fine_tune_3"]
    missing = table4[table4["configuration"] == "fine_tune_11"]
    assert done["ours"].notna().all() and (done["n_folds"] == N_FOLDS).all()
    assert missing["ours"].isna().all() and missing["note"].str.contains("no finished").all()
    assert missing["paper"].notna().all()
    note = tables.missing_note(stores["bundle"], "fine_tune_11")
    assert "--configs fine_tune_11" in note and "--profile paper-bundle" in note
    shown4 = comparison.display_comparison(table4)
    assert list(shown4.index)[:-1] == [tables.config_label(c) for c in comparison.FINE_TUNE_CONFIGS]
    assert shown4.loc["Fine-tuning 11", ("", "folds")] == "none"
    assert shown4.loc["Fine-tuning 11", ("sensitivity", "ours")] == "–", "absent, not zero"
    nothing = comparison.comparison_table(stores["root"] / "tiny", 1)
    assert comparison.comparison_notes(nothing) == \
        "- No finished folds yet (Off-the-shelf features).\n"
    assert "--profile tiny --configs off_the_shelf`" in \
        tables.missing_note(stores["root"] / "tiny", "off_the_shelf")
    notes = comparison.comparison_notes(table4).splitlines()
    # missing results, paper blanks, 4-class, non-COVID side, no restricted figure for Table 4
    assert len(notes) == 5
    assert any("no confusion matrix for fine-tuning" in line for line in notes)
    missing_line = next(line for line in notes if line.startswith("- No finished folds"))
    assert "Fine-tuning 11" in missing_line and "Fine-tuning 3" not in missing_line
    blank_line = next(line for line in notes if "prints no figure" in line)
    assert "Fine-tuning 3, specificity" in blank_line


def test_comparison_of_confusion_matrices(stores):
    run = stores["bundle"]
    table6 = comparison.comparison_table(run, 6)
    assert len(table6) == 49
    cell = table6.set_index(["predicted", "actual"])
    assert cell.loc[("COVID-19", "COVID-19"), "paper"] == 443
    assert cell.loc[("Edema", "Edema"), "ours"] != cell.loc[("Edema", "Edema"), "ours"]  # NaN
    assert cell["ours"].sum() == 114
    assert not table6["comparable"].any()
    both = comparison.display_comparison(table6)
    assert both.loc["Edema", "Edema"] == f"232 ({cell.loc[('Edema', 'Edema'), 'paper_pct']:.0f}%) / –"
    theirs_shown = comparison.display_matrix(table6, "paper")
    assert list(theirs_shown.index) == list(paper.CLASSES)
    assert list(theirs_shown.columns) == list(paper.CLASSES)
    assert theirs_shown.loc["COVID-19", "COVID-19"] == \
        f"443 ({cell.loc[('COVID-19', 'COVID-19'), 'paper_pct']:.0f}%)"
    ours_shown = comparison.display_matrix(table6, "ours")
    assert list(ours_shown.columns) == list(BUNDLE_CLASSES), "only the run's classes"
    count, share = cell.loc[("Normal", "Normal"), ["ours", "ours_pct"]]
    assert ours_shown.loc["Normal", "Normal"] == f"{count:.0f} ({share:.0f}%)"
    covid_column = cell.xs("COVID-19", level="actual")
    assert covid_column["ours_pct"].sum() == pytest.approx(100)
    table7 = comparison.comparison_table(run, 7).set_index(["predicted", "actual"])
    two = metrics.covid_vs_rest(results.read_predictions(run, "from_scratch"), BUNDLE_CLASSES)
    assert table7.loc[("COVID-19", "COVID-19"), "ours"] == two["tp"]
    assert table7.loc[(metrics.NOT_POSITIVE, "COVID-19"), "paper"] == 12
    assert table7["comparable"].all()
    theirs, ours = comparison.comparison_matrices(run, 3)
    assert ours.to_numpy().sum() == 114 and theirs.to_numpy().sum() == 3905


def test_synthetic_runs_are_never_comparable(stores):
    for n in (1, 2, 7):
        table = comparison.comparison_table(stores["synthetic"], n, n_boot=50)
        assert not table["comparable"].any()
        assert table["note"].str.contains("synthetic").all()
    seven = comparison.comparison_table(stores["seven"], 5, n_boot=50)
    assert seven["comparable"].all()


def test_fold_table_and_summary(stores):
    run = stores["bundle"]
    table = tables.fold_table(run, "fine_tune_3")
    assert list(table["fold"]) == [0, 1, 2]
    pred = results.read_predictions(run, "fine_tune_3")
    expected = metrics.fold_accuracies(pred, BUNDLE_CLASSES)["accuracy"] * 100
    assert table["accuracy"].tolist() == pytest.approx(expected.tolist())
    assert table["epochs_run"].tolist() == [3, 4, 5]
    assert table["images_per_s"].tolist() == [100.0, 101.0, 102.0]
    assert table["n_test"].sum() == 114
    assert tables.fold_table(run, "fine_tune_11").empty
    summary = tables.summary_table(run, "fine_tune_3", n_boot=100)
    assert "4-class accuracy (%)" in summary.index
    assert summary.loc["4-class accuracy (%)", "value"] == pytest.approx(expected.mean())
    overview = tables.strategy_overview(run, ["fine_tune_3", "fine_tune_11"], n_boot=100)
    assert overview["accuracy"].iloc[0] == pytest.approx(expected.mean())
    shown = tables.display_overview(overview)
    first = overview.iloc[0]
    assert shown.loc["Fine-tuning 3", "4-class accuracy (%)"] == \
        f"{expected.mean():.1f} [{first['accuracy_ci_low']:.1f}, {first['accuracy_ci_high']:.1f}]"
    assert shown.loc["Fine-tuning 3", "fold sd"] == f"{expected.std(ddof=1):.1f}"
    assert shown.loc["Fine-tuning 3", "folds"] == f"{N_FOLDS} of {N_FOLDS}"
    assert shown.loc["Fine-tuning 11", "4-class accuracy (%)"] == "–"
    assert shown.loc["Fine-tuning 11", "folds"] == "none"
    compact = tables.display_summary(summary)
    assert compact.loc["4-class accuracy (%)", "folds"] == N_FOLDS
    assert compact.loc["4-class accuracy (%)", "figure [95% CI]"].startswith(
        f"{expected.mean():.1f} [")
    per_class = tables.per_class_table(run, "fine_tune_3")
    assert list(per_class.index) == list(BUNDLE_CLASSES) and per_class["support"].sum() == 114


def test_figures(stores):
    run = stores["bundle"]
    cm = tables.confusion_matrix(run, "from_scratch")
    fig = figures.confusion_heatmap(cm, "from scratch")
    ax = fig.axes[0]
    assert len(ax.texts) == 16 and ax.get_ylabel() == "Predicted class"
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(cm.to_numpy().ravel().tolist())
    curves = figures.training_curves(run, "from_scratch")
    assert len(curves.axes) == 2 and len(curves.axes[0].lines) == 2 * N_FOLDS
    spread = figures.fold_spread(run)
    assert len(spread.axes) == 2
    assert len(spread.axes[0].get_xticklabels()) == len(WRITTEN_CONFIGS)
    side = figures.comparison_figure(run, 6)
    assert len(side.axes) == 2 and len(side.axes[0].texts) == 49 and len(side.axes[1].texts) == 16
    empty = figures.training_curves(run, "fine_tune_11")
    assert "no training history" in empty.axes[0].texts[0].get_text()
    for figure in (fig, curves, spread, side, empty):
        figure.canvas.draw()  # renders without error


def test_fold_spread_marks_the_paper_only_where_comparable(stores):
    def crosses(fig):
        return sum(1 for ax in fig.axes for line in ax.lines if line.get_marker() == "x")
    assert crosses(figures.fold_spread(stores["synthetic"])) == 0
    # 4-class run: the 2-class panel gets the paper's figure, the n-class panel does not.
    bundle = figures.fold_spread(stores["bundle"])
    assert sum(ln.get_marker() == "x" for ln in bundle.axes[0].lines) == 0
    assert sum(ln.get_marker() == "x" for ln in bundle.axes[1].lines) == len(WRITTEN_CONFIGS)


def test_run_labels(stores):
    assert runs.run_label(stores["synthetic"]) == \
        "Demonstration on synthetic data (profile default, not findings)"
    label = runs.run_label(stores["bundle"])
    assert label.startswith("Real data: COVID-19, Effusion, Pneumonia, Normal")
    assert "paper-bundle" in label and "NVIDIA H200" in label and "jax" in label
    assert "2026-01-01 to 2026-01-03" in label
    bare = runs.run_label(stores["seven"])  # no environment recorded: still a label
    assert "device unknown" in bare and "backend unknown" in bare
    assert "No results" in runs.run_label(stores["root"] / "nothing-here")


def test_book_run_preference(stores, tmp_path, monkeypatch):
    monkeypatch.delenv(runs.BOOK_RUN_VARIABLE, raising=False)
    root = stores["root"]
    assert runs.book_run(root) == root / "paper-bundle"
    assert runs.demo_run(root) == root / "default"
    synthetic_only = tmp_path / "synthetic-only"
    write_store(synthetic_only, "default", "synthetic", paper.CLASSES, configs=("from_scratch",))
    assert runs.book_run(synthetic_only) == synthetic_only / "default"
    write_store(synthetic_only, "other-real", "real", BUNDLE_CLASSES, configs=("from_scratch",))
    assert runs.book_run(synthetic_only) == synthetic_only / "other-real"
    empty = tmp_path / "empty"
    assert runs.book_run(empty) == empty / "default" and runs.demo_run(empty) is None
    monkeypatch.setenv(runs.BOOK_RUN_VARIABLE, "seven")
    assert runs.book_run(root) == root / "seven"


def test_the_audit_chapter_shows_the_audited_real_run_with_most_classes(tmp_path, monkeypatch):
    monkeypatch.delenv(runs.BOOK_RUN_VARIABLE, raising=False)
    monkeypatch.delenv(runs.AUDIT_RUN_VARIABLE, raising=False)
    root = tmp_path / "results"
    write_store(root, "paper-bundle", "real", BUNDLE_CLASSES, configs=("from_scratch",))
    five = write_store(root, "five", "real", BUNDLE_CLASSES + ("Fibrosis",),
                       configs=("from_scratch",))
    assert runs.audit_run(root) == root / "paper-bundle", "no audit stored for the other yet"
    (five / "audit").mkdir()
    (five / "audit" / "verdict.csv").write_text("claim,verdict\n")
    assert runs.book_run(root) == root / "paper-bundle"
    assert runs.audit_run(root) == five, "more classes, with an audit"
    monkeypatch.setenv(runs.BOOK_RUN_VARIABLE, "paper-bundle")  # as the book command sets it
    assert runs.audit_run(root) == five
    monkeypatch.setenv(runs.AUDIT_RUN_VARIABLE, "paper-bundle")
    assert runs.audit_run(root) == root / "paper-bundle", "its own variable decides"


def test_a_run_is_named_and_found_in_one_place(stores, monkeypatch):
    monkeypatch.delenv(runs.BOOK_RUN_VARIABLE, raising=False)
    root = stores["root"]
    assert runs.run_name("", get_profile("tiny")) == "tiny" and runs.run_name(None, "paper") == \
        "paper"
    assert runs.run_name("mine", "tiny") == "mine"
    with pytest.raises(UserError, match="is not a name"):
        runs.run_name("../elsewhere", "tiny")
    assert runs.resolve("seven", root) == root / "seven"
    assert runs.resolve(stores["bundle"]) == stores["bundle"], "a folder is itself"
    assert runs.resolve(None, root) == runs.book_run(root) == root / "paper-bundle"
    with pytest.raises(UserError):
        runs.resolve("..", root)
    # The run just made is shown when it is real; a synthetic one gives way to a real one.
    assert runs.book_run(root, made="seven") == root / "seven"
    assert runs.book_run(root, made="default") == root / "paper-bundle"
    assert runs.run_classes(stores["bundle"]) == tuple(BUNDLE_CLASSES)
    assert runs.fold_classes(stores["bundle"], "from_scratch", 0) == tuple(BUNDLE_CLASSES)
    assert runs.run_configs(stores["seven"]) == get_profile("tiny").configs, "the profile's"
    assert runs.has_results(stores["seven"], "from_scratch")
    assert not runs.has_results(stores["seven"], "off_the_shelf")
    assert runs.curated_manifest(stores["bundle"]) is None, "no curated set stored with it"


def test_prose_numbers_are_plain_and_complete(stores):
    from myst_nb.core.variables import format_plain_text

    numbers = glue.prose_numbers(stores["bundle"], n_boot=100)
    tables = paper.reported()["tables"]
    assert numbers["paper_from_scratch_acc_7class"] == tables["table5_from_scratch"]["acc_7class"]
    assert numbers["paper_fine_tune_9_specificity"] == tables["table4_fine_tuning"]["9"]["specificity"]
    assert "paper_off_the_shelf_specificity" not in numbers  # the paper prints none
    assert round(numbers["paper_not_covid_baseline"], 2) == 88.35
    assert numbers["ours_n_images"] == 114 and numbers["ours_n_covid"] == 24
    assert numbers["ours_n_classes"] == 4 and numbers["ours_n_folds"] == N_FOLDS
    assert numbers["ours_fine_tune_11_acc_2class_text"].startswith("not available")
    assert "95% CI" in numbers["ours_from_scratch_acc_2class_text"]
    assert numbers["diff_from_scratch_acc_2class"] == pytest.approx(
        numbers["ours_from_scratch_acc_2class"] - numbers["paper_from_scratch_acc_2class"])
    assert "Fine-tuning 11" in numbers["configs_missing"]
    for name, value in numbers.items():
        assert type(value) in (int, float, str), name
        # What the book's {glue:text}`name:.2f` role does with the glued value's repr:
        if isinstance(value, float) and not math.isnan(value):
            assert format_plain_text(repr(value), ".2f") == f"{value:.2f}"
    json.dumps(numbers)  # nothing exotic


def execute(nb, cwd, env_vars, monkeypatch):
    """Run a notebook in a real kernel that inherits ``env_vars``; return the executed copy."""
    import nbclient

    for name, value in env_vars.items():
        monkeypatch.setenv(name, value)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                   resources={"metadata": {"path": str(cwd)}}).execute()


def outputs_of(nb) -> tuple[str, int]:
    """All text the notebook showed (errors would have raised) and how many images, glued
    ones (stored as ``application/papermill.record/<mime>``) included."""
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = {key.rsplit("papermill.record/", 1)[-1]: value
                    for key, value in out.get("data", {}).items()}
            images += "image/png" in data
            text.append(data.get("text/markdown", "") + data.get("text/html", "")
                        + "".join(out.get("text", "")))
    return "\n".join(text), images


def test_results_notebook_runs_with_papermill(stores, tmp_path, monkeypatch):
    import jupytext
    import papermill

    root = paths.root()
    nb = jupytext.read(root / "notebooks" / "03_results.py")
    for name, value in {"CXRLIB_RESULTS": str(stores["root"])}.items():
        monkeypatch.setenv(name, value)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    executed = papermill.execute_notebook(nb, str(tmp_path / "03.ipynb"),
                                          parameters={"profile": "paper-bundle"},
                                          kernel_name="python3", cwd=str(root),
                                          progress_bar=False)
    text, images = outputs_of(executed)
    assert "Real data: COVID-19, Effusion, Pneumonia, Normal" in text
    for n in range(1, 8):
        assert f"Table {n}." in text
    assert "--configs fine_tune_11" in text           # the missing configuration is named
    assert "88.35" in text                            # the trivial baseline on the paper's counts
    assert images == 4 + 2                            # 4 matrix pairs, the grid, the fold spread


@pytest.mark.parametrize("run", ["paper-bundle", "not-run-yet"])
def test_book_chapters_execute(stores, run, monkeypatch):
    import jupytext

    root = paths.root()
    for chapter in ("results", "comparison"):
        nb = jupytext.read(root / "book" / f"{chapter}.md")
        executed = execute(nb, root / "book", {"CXRLIB_RESULTS": str(stores["root"]),
                                               runs.BOOK_RUN_VARIABLE: run}, monkeypatch)
        text, images = outputs_of(executed)
        glued = [out for cell in executed.cells for out in cell.get("outputs", [])
                 if "scrapbook" in out.get("metadata", {})]
        assert len(glued) > 100, chapter
        if run == "paper-bundle":
            assert images >= 5 and "<table" in text, chapter
            assert ("--configs fine_tune_11" if chapter == "results" else "443 (97%)") in text
        else:
            assert ("no finished folds" if chapter == "results"
                    else "No finished folds yet (Off-the-shelf features") in text, chapter


def test_fine_tuning_against_the_number_of_blocks(stores, tmp_path):
    bundle = stores["bundle"]
    table = comparison.blocks_table(bundle, n_boot=50)
    assert sorted(table["blocks"].unique()) == [1, 3, 5, 7, 9, 11]
    ours = table[table["folds"] > 0]
    assert set(ours["blocks"]) == {3} and (ours["folds"] == N_FOLDS).all()
    accuracy = ours.set_index("metric").loc["acc_7class"]
    expected = tables.config_summary(bundle, "fine_tune_3", 50).set_index("metric")
    assert accuracy["ours"] == pytest.approx(100 * expected.loc["accuracy", "value"])
    assert accuracy["ci_low"] <= accuracy["ours"] <= accuracy["ci_high"]
    paper_seven = table[table["metric"] == "acc_7class"].set_index("blocks")["paper"]
    assert paper_seven[7] == pytest.approx(43.43) and paper_seven[11] == pytest.approx(75.67)
    assert math.isnan(table.set_index(["blocks", "metric"]).loc[(1, "specificity"), "paper"])

    numbers = glue.blocks_numbers(bundle, n_boot=50)
    assert numbers["blocks_missing_text"] == "1, 5, 7, 9, 11"
    assert numbers["blocks_ours_text"].startswith("3: ") and "folds" not in \
        numbers["blocks_ours_text"]
    assert numbers["blocks_ours_trend"] == "too few configurations to tell"
    assert numbers["blocks_paper_trend"] == "does not move steadily with the number of blocks"
    assert numbers["blocks_paper_best"] == "11 blocks"
    assert numbers["blocks_paper_span"] == "32.2 percentage points"

    # Another real run with fine-tuning results joins the figure; a synthetic one does not.
    runs = comparison.runs_with_fine_tuning(bundle)
    assert runs[0] == bundle and stores["synthetic"] not in runs
    fig = figures.blocks_figure(runs, n_boot=50)
    assert len(fig.axes) == 3 and all(ax.get_xlabel() == "trainable blocks" for ax in fig.axes)
    plotted = [len(line.get_xdata()) for line in fig.axes[0].lines]
    assert 6 in plotted  # the paper's six crosses


def test_a_reduced_protocol_is_never_comparable(stores, tmp_path):
    reduced = write_store(tmp_path, "paper-bundle-cpu", "real", BUNDLE_CLASSES,
                          configs=("from_scratch",))
    profile = results.read_profile(reduced).replace(image_size=64)
    (reduced / "profile.json").write_text(profile.to_json())
    for metric in ("acc_2class", "acc_7class", "matrix2"):
        comparable, why = comparison.comparability(reduced, metric)
        assert not comparable and "64 px images, not the paper's 200" in why
    assert comparison.comparability(stores["bundle"], "acc_2class")[0]
    table = comparison.comparison_table(reduced, 5, n_boot=50)
    assert not table["comparable"].any()


def test_differences_from_the_paper_in_words(stores, tmp_path, monkeypatch):
    monkeypatch.setenv("CXRLIB_CURATED", str(tmp_path / "no-curated-data"))
    numbers = glue.difference_numbers(stores["bundle"], n_boot=50)
    ours = tables.config_summary(stores["bundle"], "from_scratch", 50).set_index("metric")
    gap = 100 * ours.loc["acc_2class", "value"] - 99.18
    assert numbers["gap_from_scratch_acc_2class_text"].startswith(f"{gap:+.1f} percentage")
    assert f", {N_FOLDS} of {N_FOLDS} folds, against" in numbers["gap_from_scratch_acc_2class_text"]
    assert numbers["gap_off_the_shelf_specificity_text"] == "not printed by the paper"
    assert numbers["gap_missing_classes_text"] == "Edema, Emphysema, Fibrosis"
    assert numbers["gap_covid_count_text"].startswith("unknown")  # no manifest stored
    # The synthetic run is not compared, but every phrase the chapter glues exists.
    synthetic = glue.difference_numbers(stores["synthetic"])
    assert synthetic.keys() == numbers.keys()
    assert set(synthetic.values()) == {"not compared (no real-data run)"}


def test_the_overview_figure_shows_missing_configurations_as_absent(stores):
    fig = figures.comparison_overview(stores["bundle"], n_boot=50)
    assert len(fig.axes) == 4
    configs = comparison.TABLE_CONFIGS[1] + comparison.FINE_TUNE_CONFIGS + \
        comparison.TABLE_CONFIGS[5]
    run_here = [c for c in configs if c in WRITTEN_CONFIGS]
    for ax in fig.axes:
        points = [line for line in ax.lines if line.get_marker() == "o"]
        assert len(points) == 1 and len(points[0].get_xdata()) == len(run_here)
        assert 0 not in list(points[0].get_ydata()), "no result is drawn as zero"
        missing = [t for t in ax.texts if t.get_text() == "not run"]
        assert len(missing) == len(configs) - len(run_here)
        assert any(line.get_marker() == "x" for line in ax.lines), "the paper's figures"
    accuracy = fig.axes[0]
    assert "ours 4 classes" in accuracy.get_title()
    assert any(line.get_marker() == "D" for line in accuracy.lines), "paper on our classes"
    labels = [t.get_text() for t in fig.axes[2].get_xticklabels()]
    assert labels[0] == "off the shelf" and labels[-1] == "from scratch"
    seven = figures.comparison_overview(stores["seven"], n_boot=50)
    assert not any(line.get_marker() == "D" for ax in seven.axes for line in ax.lines)
    matrices = figures.comparison_figure(stores["bundle"], 6)
    assert "(7 classes)" in matrices.axes[0].get_title()
    assert "(4 classes)" in matrices.axes[1].get_title()
    fig.canvas.draw()


def test_glued_figures_say_how_many_folds_they_pool(stores):
    numbers = glue.prose_numbers(stores["bundle"], n_boot=50)
    text = numbers["ours_from_scratch_acc_2class_text"]
    value = numbers["ours_from_scratch_acc_2class"]
    assert text.startswith(f"{value:.1f}% (95% CI ")
    assert text.endswith(f"; {N_FOLDS} of {N_FOLDS} folds)")
    assert numbers["ours_fine_tune_3_folds_text"] == f"{N_FOLDS} of {N_FOLDS} folds"
    assert numbers["run_coverage_text"].startswith(f"{N_FOLDS} of {N_FOLDS} folds: ")
    assert "no folds: Fine-tuning 1" in numbers["run_coverage_text"]
    outputs = figures.comparison_outputs(stores["bundle"], n_boot=50)
    assert {"cmp_overview", "cmp_table1", "cmp_table6_ours", "cmp_figure7", "cmp_blocks"} <= \
        set(outputs)


def test_each_page_declares_each_script_once():
    thebe = {"body": 'const THEBE_JS_URL = "x"'}
    context = {"script_files": [Script(filename=None, attributes=dict(thebe)),
                                Script(filename="a.js", attributes={}),
                                Script(filename="", attributes=dict(thebe)),
                                Script(filename="a.js", attributes={"async": "async"})]}
    vendor._unique_scripts(None, "page", "page.html", context, None)
    assert [(s.filename, s.attributes) for s in context["script_files"]] == [
        (None, thebe), ("a.js", {}), ("a.js", {"async": "async"})]


def test_fold_tables_name_their_columns_for_a_reader(stores):
    shown = tables.display_folds(tables.fold_table(stores["bundle"], "fine_tune_3"), 4)
    assert shown.index.name == "fold" and list(shown.index) == [0, 1, 2]
    assert list(shown.columns) == ["test images", "4-class accuracy (%)", "2-class accuracy (%)",
                                   "sensitivity (%)", "specificity (%)", "epochs", "training (s)",
                                   "training images/s"]
