"""The explorers, driven as a reader would: set a control's value or click a button, then read
what the widget shows. Data: a small curated folder and a results run written through the real
stores, with predictions chosen so that every expected figure can be counted by hand.
"""
from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrlib.core import paper
from cxrlib.core.profiles import get_profile
from cxrlib.data import curate
from cxrlib.data.dataset import MANIFEST_COLUMNS
from cxrlib.experiment import results
from cxrlib.explore import (
    DatasetExplorer,
    PredictionExplorer,
    ThresholdExplorer,
    base,
    dataset_book_view,
    threshold_book_view,
)
from cxrlib.explore.base import ALL, SHOW_REAL_IMAGES_ENV, config_description
from cxrlib.explore.gradcam import overlay
from cxrlib.explore.roc import roc_layers, roc_svg, roc_xy
from cxrlib.explore.threshold import paper_operating_point

CLASSES = ("COVID-19", "Pneumonia", "Normal")
CONFIGS = ("off_the_shelf", "fine_tune_3", "from_scratch")


# --- data on disk ------------------------------------------------------------------------------

def write_images(folder: Path, ids, size: int = 32) -> None:
    from PIL import Image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for image_id in ids:
        pixels = rng.integers(0, 255, (size, size), dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / "images" / f"{image_id}.jpg")


def manifest_row(image_id, label, source, patient, excluded="", view="PA", group="",
                 source_patient=None, contrast=150.0):
    row = {c: "" for c in MANIFEST_COLUMNS}
    row.update(image_id=image_id, label=label, source=source, finding=label, patient_id=patient,
               view=view, age="40", sex="F", orig_width="64", orig_height="64",
               orig_path=f"{source}/{image_id}.png", excluded=excluded)
    row.update(source_patient_id=source_patient or patient, duplicate_group=group,
               contrast_range=str(contrast), content_aspect="1.0", layout_corr="0.5")
    return row


def write_dataset(folder: Path, synthetic: bool) -> Path:
    """Seven images of three classes: one low-contrast exclusion, one duplicate pair whose
    patients were joined, a lateral view."""
    source = "synthetic-web" if synthetic else "cohen"
    rows = [
        manifest_row("c1", "COVID-19", source, f"{source}:1", group="dup0000"),
        manifest_row("c2", "COVID-19", source, f"{source}:1", excluded="duplicate_of:c1",
                     group="dup0000", source_patient=f"{source}:9"),
        manifest_row("c3", "COVID-19", source, f"{source}:3", excluded="low_contrast",
                     contrast=41.5),
        manifest_row("c4", "COVID-19", source, f"{source}:4", view="L"),
        manifest_row("p1", "Pneumonia", "kermany", "kermany:7"),
        manifest_row("p2", "Pneumonia", "kermany", "kermany:7"),
        manifest_row("n1", "Normal", "kermany", "kermany:8"),
    ]
    manifest = pd.DataFrame(rows)
    folder.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(folder / "manifest.csv", index=False)
    write_images(folder, manifest["image_id"])
    summary = {
        "synthetic": synthetic,
        "duplicates": {"list": [{"group": "dup0000", "image_ids": ["c1", "c2"], "kind": "near",
                                 "min_corr": 0.97, "labels": ["COVID-19"]}]},
        "patients": {"merged": {f"{source}:1": [f"{source}:1", f"{source}:9"]}},
    }
    (folder / "curation.json").write_text(json.dumps(summary))
    return folder


# Out-of-fold predictions: (image, actual class, fold, COVID-19 / Pneumonia / Normal).
PREDICTIONS = [
    ("c1", "COVID-19", 0, (0.90, 0.05, 0.05)),
    ("c4", "COVID-19", 0, (0.30, 0.60, 0.10)),   # missed COVID-19, confidently
    ("p1", "Pneumonia", 0, (0.05, 0.90, 0.05)),
    ("n1", "Normal", 0, (0.10, 0.10, 0.80)),
    ("x1", "COVID-19", 1, (0.60, 0.20, 0.20)),
    ("x2", "COVID-19", 1, (0.45, 0.10, 0.45)),   # tie on the arg-max: the first class wins
    ("p2", "Pneumonia", 1, (0.40, 0.35, 0.25)),  # false COVID-19 call
    ("x3", "Normal", 1, (0.20, 0.30, 0.50)),
    ("x4", "Normal", 1, (0.05, 0.55, 0.40)),     # Normal called Pneumonia
]


def prediction_table(fold: int, shift: float = 0.0) -> pd.DataFrame:
    rows = [r for r in PREDICTIONS if r[2] == fold]
    frame = pd.DataFrame({"image_id": [r[0] for r in rows], "fold": fold,
                          "label": [r[1] for r in rows],
                          "patient_id": [f"pt-{r[0]}" for r in rows], "source": "fixture"})
    for k, cls in enumerate(CLASSES):
        frame[f"p_{cls}"] = [r[3][k] for r in rows]
    if shift:  # another configuration: COVID-19 probabilities moved, still summing to one
        frame["p_COVID-19"] = (frame["p_COVID-19"] + shift).clip(0, 1)
        frame["p_Normal"] = 1 - frame["p_COVID-19"] - frame["p_Pneumonia"]
    return frame


def write_run(root: Path, name: str, classes=CLASSES, configs=CONFIGS) -> Path:
    profile = get_profile("tiny").replace(name=name, classes=tuple(classes),
                                          configs=tuple(configs))
    run_path = results.run_dir(name, root)
    results.ensure_profile(run_path, profile)
    for k, config in enumerate(configs):
        for fold in (0, 1):
            pred = prediction_table(fold, shift=0.05 * k)
            if tuple(classes) != CLASSES:
                pred = pred[pred["label"].isin(classes)]
                pred = pred.drop(columns=[f"p_{c}" for c in CLASSES if c not in classes])
            results.write_fold(run_path, config, fold, pred, pd.DataFrame({"epoch": [1]}),
                               {"config": config})
    return run_path


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A results store with run "tiny" (and its curated images where the book looks for them)."""
    monkeypatch.setenv("CXRLIB_CURATED", str(tmp_path / "curated"))
    monkeypatch.setenv("CXRLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("CXRLIB_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("CXRLIB_BOOK_RUN", raising=False)
    monkeypatch.delenv(SHOW_REAL_IMAGES_ENV, raising=False)
    run_path = write_run(tmp_path / "results", "tiny")
    curated = curate.curated_dir_for(results.read_profile(run_path))
    write_dataset(curated, synthetic=True)
    write_images(curated, ["x1", "x2", "x3", "x4"])
    return {"root": tmp_path / "results", "run": run_path, "curated": curated}


def visible_text(html: str) -> str:
    """What a reader sees of an HTML value (tags and the style sheet removed)."""
    html = re.sub(r"<style>.*?</style>", "", html, flags=re.S)
    html = re.sub(r"<(br|/p|/div|/td|/th|/tr|/summary)\b[^>]*>", " ", html)
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html)).strip())


# --- the dataset explorer ----------------------------------------------------------------------

def test_dataset_filters_by_class_source_view_and_patient(store):
    explorer = DatasetExplorer(store["curated"])
    widget = explorer.widget
    assert widget is not None
    explorer.controls["label"].value = "COVID-19"
    text = visible_text(explorer.output.value)
    assert text.startswith("4 image(s) match: 2 used, 2 excluded (1 duplicate_of, 1 low_contrast)")
    assert {"c1", "c2", "c3", "c4"} == set(re.findall(r"\b[cpn]\d\b", text))
    explorer.controls["view"].value = "L"
    assert "1 image(s) match" in visible_text(explorer.output.value)
    explorer.controls["view"].value = ALL
    explorer.controls["label"].value = ALL
    explorer.controls["patient"].value = "KERMANY:7"
    assert set(explorer.matching()["image_id"]) == {"p1", "p2"}
    assert "kermany:7 (2 images in the manifest)" in visible_text(explorer.output.value)
    explorer.controls["source"].value = "synthetic-web"
    assert "0 image(s) match" in visible_text(explorer.output.value)


def test_dataset_shows_why_an_image_was_excluded_and_which_patients_were_joined(store):
    explorer = DatasetExplorer(store["curated"])
    assert explorer.widget.children  # the live widget, built on first use
    explorer.controls["decision"].value = "excluded: low_contrast"
    text = visible_text(explorer.output.value)
    assert "c3" in text and "excluded: low contrast: a 2-98% grey-level spread of 41.5" in text
    explorer.controls["decision"].value = "in a duplicate group"
    text = visible_text(explorer.output.value)
    assert "excluded: duplicate of c1" in text
    assert "dup0000: near-duplicates of c2 (lowest correlation 0.97)" in text
    assert "joined by a duplicate from the source ids synthetic-web:1, synthetic-web:9" in text
    with pytest.raises(ValueError, match="decision 'kept' is not in this dataset"):
        explorer.set_filters(decision="kept")
    with pytest.raises(ValueError, match="unknown filter"):
        explorer.set_filters(colour="red")


def test_dataset_pages(store):
    explorer = DatasetExplorer(store["curated"], page_size=3)
    assert explorer.widget.children  # the live widget, built on first use
    assert explorer.page_label.value == "page 1 of 3"
    first = set(explorer.page_rows()["image_id"])
    explorer.next_button.click()
    assert explorer.page_label.value == "page 2 of 3"
    assert not first & set(explorer.page_rows()["image_id"])
    explorer.next_button.click()
    explorer.next_button.click()  # past the end: stays on the last page
    assert explorer.page == 2 and len(explorer.page_rows()) == 1
    explorer.controls["label"].value = "Normal"  # a new filter starts at its first page
    assert explorer.page == 0


def test_real_radiographs_are_shown_only_when_asked_for(tmp_path, monkeypatch):
    monkeypatch.delenv(SHOW_REAL_IMAGES_ENV, raising=False)
    folder = write_dataset(tmp_path / "real", synthetic=False)
    explorer = DatasetExplorer(folder)
    html = explorer.render_html()
    assert "<img" not in html and "data:image" not in html
    assert "Images are not shown: these are real radiographs" in visible_text(html)
    style, _, stack = explorer.book_view().children
    assert all("data:image" not in v.value for v in (style, *stack.children))
    monkeypatch.setenv(SHOW_REAL_IMAGES_ENV, "1")
    assert explorer.render_html().count("data:image/webp;base64,") == 7
    synthetic = DatasetExplorer(write_dataset(tmp_path / "synthetic", synthetic=True))
    monkeypatch.delenv(SHOW_REAL_IMAGES_ENV)
    assert synthetic.render_html().count("data:image/webp;base64,") == 7


def test_dataset_of_a_run_that_was_not_curated_here_says_how_to_curate_it(store, tmp_path):
    import shutil

    shutil.rmtree(store["curated"])
    with pytest.raises(FileNotFoundError, match="python -m cxrlib curate --profile tiny"):
        DatasetExplorer.for_run(store["run"])
    assert "python -m cxrlib curate" in dataset_book_view(store["run"]).data


# --- the prediction explorer -------------------------------------------------------------------

def test_confusion_matrix_and_a_cell_clicked_lists_its_images_mistakes_first(store):
    explorer = PredictionExplorer("tiny")
    assert explorer.widget.children  # the live widget, built on first use
    cm = explorer.confusion()
    assert cm.loc["COVID-19", "COVID-19"] == 3      # c1, x1 and the tie x2
    assert cm.loc["Pneumonia", "COVID-19"] == 1     # c4
    assert cm.loc["COVID-19", "Pneumonia"] == 1     # p2
    assert cm.loc["Pneumonia", "Normal"] == 1       # x4
    assert int(cm.to_numpy().sum()) == 9
    assert explorer.cell_buttons[("COVID-19", "COVID-19")].description == "3"
    assert explorer.cell_buttons[("Pneumonia", "COVID-19")].button_style == "danger"

    listing = explorer.listing()
    assert list(listing["correct"][:3]) == [False] * 3, "misclassifications first"
    assert list(listing["image_id"][:3]) == ["c4", "x4", "p2"], "most confident mistake first"

    import ipywidgets

    widgets_before = len(ipywidgets.Widget.get_manager_state()["state"])
    explorer.cell_buttons[("Pneumonia", "COVID-19")].click()
    assert len(ipywidgets.Widget.get_manager_state()["state"]) == widgets_before, \
        "a click updates the widgets it has; it makes no new ones"
    text = visible_text(explorer.output.value)
    assert text.startswith("Actual COVID-19, predicted Pneumonia: 1 image(s), all misclassified")
    assert "c4 misclassified: actual COVID-19, predicted Pneumonia (p = 0.60; " \
           "p of the actual class 0.30)" in text
    assert explorer.cell_buttons[("Pneumonia", "COVID-19")].icon == "check"
    explorer.cell_buttons[("COVID-19", "COVID-19")].click()
    assert list(explorer.listing()["image_id"]) == ["c1", "x1", "x2"]
    explorer.all_button.click()
    assert explorer.cell is None and len(explorer.listing()) == 9


def test_a_fold_and_a_configuration_are_chosen_from_the_controls(store):
    explorer = PredictionExplorer(store["run"])
    assert explorer.widget.children  # the live widget, built on first use
    labels = [label for label, _ in explorer.config_control.options]
    assert labels == ["Off-the-shelf features (strategy off_the_shelf)",
                      "Fine-tuning 3 (strategy fine_tune, 3 trainable blocks)",
                      "Training from scratch (strategy from_scratch)"]
    explorer.fold_control.value = 0
    assert int(explorer.confusion().to_numpy().sum()) == 4
    assert explorer.cell_buttons[("Pneumonia", "COVID-19")].description == "1"
    assert "test fold 0: 4 images, accuracy 75.0%" in explorer.header.value
    explorer.config_control.value = "from_scratch"
    assert explorer.config == "from_scratch" and explorer.fold == ALL
    assert "Training from scratch" in explorer.header.value
    # from_scratch's COVID-19 probabilities are 0.10 higher: p2's wrong call is surer
    assert explorer.table.set_index("image_id").at["p2", "confidence"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="folds \\[0, 1\\]"):
        explorer.set_fold(5)


def test_runs_are_listed_and_switched(store):
    write_run(store["root"], "other", classes=("COVID-19", "Normal"), configs=("from_scratch",))
    explorer = PredictionExplorer("tiny")
    assert explorer.widget.children  # the live widget, built on first use
    assert explorer.run_control.options == ("other", "tiny")
    explorer.run_control.value = "other"
    assert explorer.classes == ("COVID-19", "Normal")
    assert set(explorer.cell_buttons) == {(p, a) for p in explorer.classes
                                          for a in explorer.classes}
    assert [c for _, c in explorer.config_control.options] == ["from_scratch"]


def test_probabilities_and_thumbnails_are_shown_for_synthetic_runs(store):
    explorer = PredictionExplorer("tiny")
    explorer.select_cell("COVID-19", "COVID-19")
    html = explorer.listing_html()
    assert html.count("data:image/webp;base64,") == 3
    assert "highest probabilities: COVID-19 0.90, Pneumonia 0.05, Normal 0.05" in html


def test_gradcam_is_offered_only_with_explain_and_saved_weights(store, monkeypatch):
    explorer = PredictionExplorer("tiny")
    assert explorer.widget.children  # the live widget, built on first use
    available, why = explorer.gradcam_status()
    try:
        import cxrlib.analysis.explain  # noqa: F401
        assert not available and "kept weights" in why
        assert "python -m cxrlib run --profile tiny --run tiny --configs off_the_shelf" in why
    except ImportError:
        assert not available and "cxrlib.analysis.explain" in why
    assert explorer.gradcam_control.disabled
    explorer.show_gradcam = True
    assert why in visible_text(explorer.listing_html())


def test_gradcam_overlays_are_drawn_for_the_fold_whose_weights_were_kept(store):
    # Keras takes seconds to import: only this test of the explorers builds a network.
    from cxrlib.experiment.cv import weights_path
    from cxrlib.experiment.model import build_model, model_arguments, save_weights_compact

    profile = results.read_profile(store["run"])
    model = build_model(n_classes=len(CLASSES),
                        **model_arguments(profile, "off_the_shelf", 0, weights=None))
    kept = weights_path("tiny", "off_the_shelf", 0)
    kept.parent.mkdir(parents=True)
    save_weights_compact(model, kept)

    explorer = PredictionExplorer("tiny")
    available, why = explorer.gradcam_status()
    assert available and "fold(s) 0" in why
    explorer.show_gradcam = True
    html = explorer.listing_html()  # all folds: fold 1 kept no weights
    fold0 = [image for image, _, fold, _ in PREDICTIONS if fold == 0]
    overlays = re.findall(r'<img src="data:image/webp;base64,[^"]+" alt="Grad-CAM"', html)
    assert len(overlays) == len(fold0)
    assert sorted(image for _, image in explorer.overlays.cache) == sorted(fold0)
    assert explorer.listing_html() == html, "drawn once, then taken from the cache"


# --- the threshold explorer --------------------------------------------------------------------

def hand_counts(threshold: float, shift: float = 0.0):
    tp = fp = fn = tn = 0
    for _, label, _, probs in PREDICTIONS:
        said = min(1.0, probs[0] + shift) >= threshold
        positive = label == "COVID-19"
        tp += said and positive
        fp += said and not positive
        fn += (not said) and positive
        tn += (not said) and not positive
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def test_the_slider_moves_sensitivity_specificity_and_the_matrix(store):
    explorer = ThresholdExplorer("tiny", config="off_the_shelf")
    assert explorer.widget.children  # the live widget, built on first use
    for threshold in (0.0, 0.35, 0.5, 0.62, 1.0):
        explorer.slider.value = threshold
        expected = hand_counts(threshold)
        assert explorer.counts() == expected
        text = visible_text(explorer.output.value)
        sens = expected["tp"] / (expected["tp"] + expected["fn"])
        spec = expected["tn"] / (expected["tn"] + expected["fp"])
        assert f"threshold {threshold:.2f}: sensitivity {100 * sens:.1f}%" in text
        assert f"specificity {100 * spec:.1f}%" in text
        tp, fp, fn, tn = (expected[k] for k in ("tp", "fp", "fn", "tn"))
        assert f"COVID-19 {tp} {fp} non-COVID-19 {fn} {tn}" in text
        x, y = roc_xy(spec, sens)
        assert re.search(rf'class="threshold-point" cx="{x:.1f}" cy="{y:.1f}"',
                         explorer.output.value)
    explorer.slider.value = 0.0
    assert "sensitivity 100.0%" in explorer.output.value and "specificity 0.0%" in \
        explorer.output.value
    explorer.config_control.value = "from_scratch"
    assert explorer.counts() == hand_counts(0.0, shift=0.10)


def test_the_arg_max_point_is_the_papers_rule(store):
    explorer = ThresholdExplorer("tiny", config="off_the_shelf")
    # arg-max COVID-19 calls: c1, x1, x2 (tie) and p2 -> sensitivity 3/4, specificity 4/5
    assert explorer.argmax == pytest.approx((4 / 5, 3 / 4))
    x, y = roc_xy(4 / 5, 3 / 4)
    assert f'class="argmax-point" cx="{x:.1f}" cy="{y:.1f}"' in explorer.render_html()


def test_the_papers_operating_point_and_its_blank_specificities():
    table3 = paper.reported()["tables"]["table3_off_the_shelf_confusion_2class"]
    off = paper_operating_point("off_the_shelf")
    assert off.sensitivity == pytest.approx(0.0462)
    assert off.specificity == pytest.approx(table3["tn"] / (table3["tn"] + table3["fp"]))
    assert "Table 3" in off.note
    scratch = paper_operating_point("from_scratch")
    assert (scratch.sensitivity, scratch.specificity) == pytest.approx((0.9736, 0.9942))
    three = paper_operating_point("fine_tune_3")
    assert three.sensitivity == pytest.approx(0.5726) and three.specificity is None
    assert "dashed line" in three.note
    assert paper_operating_point("fine_tune_2").sensitivity is None

    svg = roc_svg(roc_layers(None, None, None, three), None)
    _, y = roc_xy(0, 0.5726)
    assert f'class="paper-line" x1="34" y1="{y:.1f}"' in svg and "paper-point" not in svg
    svg = roc_svg(roc_layers(None, None, None, off), None)
    assert "paper-point" in svg and "paper-line" not in svg


def test_a_run_without_covid_has_no_threshold_to_explore(store):
    write_run(store["root"], "no-covid", classes=("Pneumonia", "Normal"),
              configs=("from_scratch",))
    with pytest.raises(ValueError, match="no COVID-19 class"):
        ThresholdExplorer("no-covid")
    assert "no COVID-19 class" in threshold_book_view(store["root"] / "no-covid").data
    with pytest.raises(FileNotFoundError, match="holds no run"):
        ThresholdExplorer("missing")


# --- the frozen views for the static book --------------------------------------------------------

def links(widget) -> list[dict]:
    """The browser-side links (jslink) of ``widget``, as the page's widget state records them."""
    import ipywidgets

    ref = f"IPY_MODEL_{widget.model_id}"
    state = ipywidgets.Widget.get_manager_state()["state"].values()
    return [m["state"] for m in state if m["model_name"] == "LinkModel"
            and ref in (m["state"]["source"][0], m["state"]["target"][0])]


def test_book_views_switch_in_the_browser_through_links(store):
    view = ThresholdExplorer("tiny").book_view()
    chooser, panels = view.children
    assert list(chooser.options) == [config_description(c) for c in CONFIGS]
    assert len(panels.children) == 3 and links(chooser)
    heading, slider, stack, notes = panels.children[0].children
    assert slider.options[slider.index] == "0.50" and len(stack.children) == 21
    assert stack.selected_index == slider.index and links(slider)
    shown = visible_text(stack.children[slider.index].value)
    counts = hand_counts(0.5)
    assert f"COVID-19 {counts['tp']} {counts['fp']}" in shown
    assert '<use href="#cxr-roc-tiny-off-the-shelf"/>' in stack.children[0].value
    assert 'id="cxr-roc-tiny-off-the-shelf"' in heading.value

    predictions = PredictionExplorer("tiny").book_view()
    style, chooser, stack = predictions.children
    assert "<style>" in style.value and ".cxr-t-" in style.value
    assert len(stack.children) == 3 and links(chooser)
    first = stack.children[0].value
    assert "actual COVID-19, predicted Pneumonia: 1 misclassified" in visible_text(first)
    assert "data:image" not in first, "thumbnails live once in the shared style sheet"

    dataset = DatasetExplorer(store["curated"]).book_view()
    style, chooser, stack = dataset.children
    assert list(chooser.options) == ["all classes", "COVID-19", "Pneumonia", "Normal"]
    assert "Excluded" in visible_text(stack.children[1].value)
    everything = visible_text(stack.children[0].value)
    assert all(f"class: {c}" in everything for c in CLASSES), "every class has its say"


def test_book_views_too_large_for_a_page_become_a_static_rendering(store, monkeypatch):
    from IPython.display import HTML

    monkeypatch.setattr(base, "BOOK_VIEW_MAX_BYTES", 1000)
    for view in (ThresholdExplorer("tiny").book_view(),
                 PredictionExplorer("tiny").book_view(),
                 DatasetExplorer(store["curated"]).book_view()):
        assert isinstance(view, HTML) and "shown as it stands" in view.data


def test_an_executed_notebook_keeps_the_views_widget_state(store, tmp_path):
    """What the book embeds: nbclient stores the widget state in the notebook's metadata."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from cxrlib import explore\nexplore.threshold_book_view('tiny')")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(Path(__file__).parent.parent)}}).execute()
    output = nb.cells[0].outputs[0]
    assert "application/vnd.jupyter.widget-view+json" in output["data"]
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    models = [m["model_name"] for m in state.values()]
    assert models.count("LinkModel") == 4 and models.count("StackModel") == 4
    assert any("threshold 0.50" in m["state"].get("value", "") for m in state.values())


def value_sent_back(client, comm_id: str, expected: str) -> str:
    """The first value the kernel sends widget ``comm_id`` that contains ``expected``."""
    while True:
        msg = client.get_iopub_msg(timeout=30)
        content = msg["content"]
        if msg["msg_type"] == "comm_msg" and content.get("comm_id") == comm_id:
            value = content["data"].get("state", {}).get("value", "")
            if expected in value:
                return value


def test_a_front_end_moving_the_slider_updates_the_live_explorer(store):
    """JupyterLab's side of the wire: the front end sends the slider's new value as a comm
    message; the kernel's explorer recomputes and sends the new figures back."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3",
                                       cwd=str(Path(__file__).parent.parent))
    try:
        printed: list[str] = []
        reply = client.execute_interactive(
            "from cxrlib import explore\n"
            "explorer = explore.ThresholdExplorer('tiny', config='off_the_shelf')\n"
            "display(explorer.widget)\n"
            "print(explorer.slider.model_id, explorer.output.model_id)",
            output_hook=lambda msg: printed.extend(msg["content"].get("text", "").split()),
            timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
        slider, output = printed
        client.shell_channel.send(client.session.msg("comm_msg", {
            "comm_id": slider, "data": {"method": "update", "state": {"value": 0.35},
                                        "buffer_paths": []}}))
        shown = value_sent_back(client, output, "threshold 0.35")
        counts = hand_counts(0.35)
        assert f"COVID-19 {counts['tp']} {counts['fp']}" in visible_text(shown)

        # a click on a confusion-matrix cell of the prediction explorer
        printed.clear()
        client.execute_interactive(
            "explorer = explore.PredictionExplorer('tiny')\n"
            "display(explorer.widget)\n"
            "print(explorer.cell_buttons[('Pneumonia', 'COVID-19')].model_id, "
            "explorer.output.model_id)",
            output_hook=lambda msg: printed.extend(msg["content"].get("text", "").split()),
            timeout=60)
        button, output = printed
        client.shell_channel.send(client.session.msg("comm_msg", {
            "comm_id": button, "data": {"method": "custom", "content": {"event": "click"}}}))
        shown = value_sent_back(client, output, "Actual COVID-19, predicted Pneumonia")
        assert "c4 misclassified" in visible_text(shown)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_a_gradcam_overlay_keeps_the_image_and_colours_the_hot_region():
    pixels = np.full((40, 40), 100, dtype=np.uint8)
    heat = np.zeros((5, 5))
    heat[0, 0] = 1.0  # hot in the top-left corner only
    rgb = overlay(pixels, heat, alpha=0.5)
    assert rgb.shape == (40, 40, 3) and rgb.dtype == np.uint8
    hot, cold = rgb[1, 1].astype(int), rgb[-2, -2].astype(int)
    assert hot[0] > hot[2], "the hot corner turns red"
    assert cold[2] > cold[0], "the cold corner turns blue"
    grey = np.repeat(pixels[..., None], 3, axis=2).astype(int)
    assert np.abs(overlay(pixels, heat, alpha=0.0).astype(int) - grey).max() <= 1
