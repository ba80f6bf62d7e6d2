"""The whole book on the tiny profile: real papermill runs, a real jupyter-book build, and a
headless Chromium reading the pages from a loopback server.

The build runs once per session (about two minutes on two cores): ``python -m cxrlib book`` on
the tiny profile, training one configuration (fine-tuning 3 blocks: real ImageNet-style weight
loading and a per-n notebook run; the other configurations then show as missing, which the
chapters must handle), with results, run records and curated data in a temporary folder and the
ImageNet weights replaced by a stand-in file. Screenshots
of every page go to the session's temporary screenshots folder (printed at the end) for review.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_fold

from cxrlib.core import paths
from cxrlib.core.profiles import get_profile
from cxrlib.experiment import results
from cxrlib.report.book import FINGERPRINT_FILE, book_inputs_fingerprint, prepare_execution_cache

ROOT = paths.root()
SCREENSHOTS = Path(os.environ["CXRLIB_SCREENSHOTS"])  # a temporary folder (tests/conftest.py)
CONFIGS = "fine_tune_3"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
BOOK_COMMAND = [sys.executable, "-m", "cxrlib", "book", "--profile", "tiny",
                "--configs", CONFIGS]


def chapters() -> list[str]:
    """The chapter pages, from _toc.yml (root first)."""
    toc = (ROOT / "_toc.yml").read_text()
    return re.findall(r"^root:\s*(\S+)", toc, re.M) + re.findall(r"-\s*file:\s*(\S+)", toc)


def run_book(env: dict, log: Path, *extra: str) -> str:
    done = subprocess.run(BOOK_COMMAND + list(extra), cwd=ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1500)
    log.write_text(done.stdout)
    if done.returncode != 0:
        pytest.fail(f"`{' '.join(BOOK_COMMAND + list(extra))}` failed "
                    f"(exit {done.returncode}); last lines:\n{done.stdout[-6000:]}")
    return done.stdout


@pytest.fixture(scope="module")
def book(tmp_path_factory, standin_keras_home):
    """A tiny-profile book built from nothing, then rebuilt with nothing changed."""
    work = tmp_path_factory.mktemp("book")
    env = dict(os.environ, CXRLIB_RESULTS=str(work / "results"), CXRLIB_RUNS=str(work / "runs"),
               CXRLIB_CURATED=str(work / "curated"), KERAS_HOME=str(standin_keras_home))
    env.pop("CXRLIB_BOOK_RUN", None)
    cold = run_book(env, work / "cold.log", "--output", str(work))
    warm = run_book(env, work / "warm.log", "--output", str(work))
    return {"work": work, "env": env, "html": work / "_build" / "html", "cold": cold,
            "warm": warm}


def test_every_chapter_is_built_from_the_run_records(book):
    html = book["html"]
    for chapter in chapters():
        assert (html / f"{chapter}.html").is_file(), f"{chapter} missing from the book"
    records = sorted(p.name for p in (book["work"] / "runs" / "tiny").glob("*.ipynb"))
    assert records == ["01_data_curation.ipynb", "02_strategy-fine_tune_3.ipynb",
                       "03_results.ipynb"]
    run_path = results.run_dir("tiny", book["work"] / "results")
    for config in CONFIGS.split(","):
        assert results.done_folds(run_path, config) == [0, 1]
    index = (html / "book" / "index.html").read_text()
    assert "Demonstration" in index and "synthetic" in index, "a synthetic run is labelled"


def test_a_rerun_with_nothing_changed_trains_and_executes_nothing(book):
    warm = book["warm"]
    assert warm.count("up to date, not executed") == 3
    assert "Executing notebook" not in warm, "chapters came from the execution cache"


def test_changed_results_refresh_the_chapters(book):
    """jupyter-cache keys on code only: new results must still reach the pages."""
    run_path = results.run_dir("tiny", book["work"] / "results")
    predictions = results.fold_dir(run_path, "fine_tune_3", 0) / "predictions.csv"
    original = predictions.read_text()
    try:
        predictions.write_text(original + original.splitlines()[-1] + "\n")
        log = run_book(book["env"], book["work"] / "refresh.log", "--output",
                       str(book["work"]), "--only-book")
        assert "Executing notebook" in log
    finally:
        predictions.write_text(original)


# --- in a browser ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(book):
    """The built HTML on a loopback HTTP server."""
    handler = functools.partial(QuietHandler, directory=str(book["html"]))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Visit:
    """Every request a page makes, and what failed."""

    def __init__(self, browser, url: str, screenshot: str):
        self.requests: list[str] = []
        self.failures: list[str] = []
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("requestfailed", lambda r: self.failures.append(f"failed {r.url}"))
        self.page.on("response", lambda r: r.status >= 400 and self.failures.append(
            f"{r.status} {r.url}"))
        self.page.goto(url, wait_until="networkidle")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / screenshot), full_page=True)

    def outside(self, base: str) -> list[str]:
        local = (base, "http://localhost", "http://127.0.0.1", "data:", "blob:", "about:")
        return [u for u in self.requests if not u.startswith(local)]


def test_pages_load_everything_from_the_book_itself(book, server, browser):
    for chapter in chapters():
        visit = Visit(browser, f"{server}/{chapter}.html", f"{chapter.replace('/', '_')}.png")
        assert visit.outside(server) == [], f"{chapter} requested the network"
        assert visit.failures == [], f"{chapter}: {visit.failures}"
        visit.page.close()


def test_maths_is_typeset_by_the_vendored_mathjax(book, server, browser):
    visit = Visit(browser, f"{server}/book/methods.html", "methods-maths.png")
    visit.page.wait_for_selector("mjx-container", timeout=20_000)
    assert visit.page.locator("mjx-container").count() >= 3
    assert any("/_static/mathjax/" in u for u in visit.requests)
    visit.page.close()


def test_the_comparison_shows_tables_1_to_7_and_figures(book, server, browser):
    visit = Visit(browser, f"{server}/book/comparison.html", "comparison.png")
    text = visit.page.inner_text("main")
    for n in range(1, 8):
        assert re.search(rf"Table\s+{n}\b", text), f"Table {n} is not on the comparison page"
    assert visit.page.locator("main table").count() >= 3
    widths = visit.page.evaluate(
        "Array.from(document.querySelectorAll('main img')).map(i => i.complete ? "
        "i.naturalWidth : -1)")
    assert widths and all(w > 0 for w in widths), f"figures not loaded: {widths}"
    visit.page.close()


def test_figures_on_the_results_page_load(book, server, browser):
    visit = Visit(browser, f"{server}/book/results.html", "results.png")
    widths = visit.page.evaluate(
        "Array.from(document.querySelectorAll('main img')).map(i => i.complete ? "
        "i.naturalWidth : -1)")
    assert widths and all(w > 0 for w in widths), f"figures not loaded: {widths}"
    visit.page.close()


def test_widgets_render_with_the_vendored_manager(book, server, browser):
    """A page embedding a widget's state, loading only the vendored require.js and manager,
    renders the widget (as a chapter with a widget would, through nb_ipywidgets_js)."""
    import ipywidgets
    from ipywidgets.embed import embed_data

    slider = ipywidgets.IntSlider(value=7, description="folds")
    data = embed_data(views=[slider])
    page = book["html"] / "widget-check.html"
    page.write_text(
        "<!DOCTYPE html><html><head>"
        '<script src="_static/requirejs/require.js"></script>'
        '<script src="_static/html-manager/embed-amd.js" '
        'data-jupyter-widgets-cdn="_static/html-manager/"></script>'
        '<script type="application/vnd.jupyter.widget-state+json">'
        f"{json.dumps(data['manager_state'])}</script></head><body>"
        '<script type="application/vnd.jupyter.widget-view+json">'
        f"{json.dumps(data['view_specs'][0])}</script></body></html>")
    try:
        visit = Visit(browser, f"{server}/widget-check.html", "widget-check.png")
        visit.page.wait_for_selector(".widget-slider", timeout=20_000)
        assert "folds" in visit.page.inner_text("body")
        assert visit.outside(server) == []
        visit.page.close()
    finally:
        page.unlink()


# --- the chapters' helpers (fast: no build) -------------------------------------------------

def test_docstrings_become_markdown():
    from cxrlib.report.chapters import as_markdown

    text = as_markdown("See :mod:`cxrlib.experiment.cv` and ``x``.\n\n"
                       "=====  ==========\nA      first sign\nB      second\n=====  ==========\n"
                       "after")
    assert text.splitlines() == ["See `cxrlib.experiment.cv` and `x`.", "", "- **A**: first sign",
                                 "- **B**: second", "after"]


def test_settings_say_what_the_paper_chose_and_what_we_chose():
    from cxrlib.report.chapters import settings_table

    table = settings_table(get_profile("paper"))
    assert table.loc["image size (px, square)", "value"] == "200"
    assert table.loc["image size (px, square)", "source"] == "the paper"
    assert table.loc["optimiser", "source"] == "our choice"
    assert table.loc["learning rate per strategy", "value"].startswith("from_scratch: 0.001")


# --- the build's execution cache ------------------------------------------------------

def test_fingerprint_follows_the_stored_results(tmp_path):
    root = tmp_path / "results"
    run_path = results.run_dir("tiny", root)
    write_fold(run_path, "from_scratch", 0)
    first = book_inputs_fingerprint("tiny", root)
    assert book_inputs_fingerprint("tiny", root) == first, "deterministic"
    assert book_inputs_fingerprint("other", root) != first, "the run shown counts"

    # A half-written fold (hidden temporary folder) is not an input yet.
    (run_path / "from_scratch" / ".fold-01.tmp-x").mkdir()
    (run_path / "from_scratch" / ".fold-01.tmp-x" / "predictions.csv").write_text("partial")
    assert book_inputs_fingerprint("tiny", root) == first

    write_fold(run_path, "from_scratch", 1)
    second = book_inputs_fingerprint("tiny", root)
    assert second != first, "a new fold changes it"

    predictions = results.fold_dir(run_path, "from_scratch", 1) / "predictions.csv"
    predictions.write_text(predictions.read_text().replace("0.9", "0.8"))
    assert book_inputs_fingerprint("tiny", root) != second, "changed contents too"


def test_stale_execution_cache_is_cleared_only_when_inputs_changed(tmp_path):
    build = tmp_path / "_build"
    (build / ".jupyter_cache").mkdir(parents=True)
    (build / ".doctrees").mkdir()
    (build / "html").mkdir()
    assert prepare_execution_cache(build, "abc", log=lambda m: None)
    assert not (build / ".jupyter_cache").exists() and not (build / ".doctrees").exists()
    assert (build / "html").exists(), "the built pages stay until the new build replaces them"

    (build / ".jupyter_cache").mkdir()
    (build / FINGERPRINT_FILE).write_text(json.dumps({"fingerprint": "abc"}))
    assert not prepare_execution_cache(build, "abc", log=lambda m: None)
    assert (build / ".jupyter_cache").exists()
    assert prepare_execution_cache(build, "def", log=lambda m: None)


def test_counts_and_exclusions_against_the_paper(tmp_path):
    from cxrlib.core import paper
    from cxrlib.data.dataset import MANIFEST_COLUMNS
    from cxrlib.report import curation_figures

    manifest = pd.DataFrame({
        "label": ["COVID-19"] * 3 + ["Normal"] * 2 + ["No Finding"],
        "source": ["cohen", "cohen", "cohen", "kermany", "kermany", "nih"],
        "excluded": ["", "low_contrast", "duplicate_of:c1", "", "", ""]})
    manifest["image_id"] = [f"i{k}" for k in range(len(manifest))]
    for column in MANIFEST_COLUMNS:
        manifest[column] = manifest.get(column, "")
    manifest[list(MANIFEST_COLUMNS)].to_csv(tmp_path / "manifest.csv", index=False)
    summary = {"synthetic": False,
               "duplicates": {"pairs": 3, "groups": 2, "cross_source_groups": 1},
               "patients": {"source_patient_ids": 10, "reconciled_patient_ids": 9}}
    (tmp_path / "curation.json").write_text(json.dumps(summary))
    counts = curation_figures.counts_against_paper(tmp_path)
    assert list(counts.index) == ["COVID-19", "Normal", "No Finding"]
    covid = counts.loc["COVID-19"]
    assert (covid["paper"], covid["ours (used)"], covid["excluded"]) == (
        paper.class_counts()["COVID-19"], 1, 2)
    assert covid["short of the paper"] == paper.class_counts()["COVID-19"] - 1
    assert counts.loc["No Finding", "paper"] == "", "not a paper class"
    reasons = curation_figures.exclusions_table(tmp_path)
    assert reasons.loc["COVID-19", "duplicate_of"] == 1 and reasons.loc["all", "all"] == 2
    sources = curation_figures.per_source_table(tmp_path)
    assert sources.loc["all", "all"] == 4 and sources.loc["Normal", "kermany"] == 2
    duplicates = curation_figures.duplicates_summary(tmp_path)
    assert duplicates.loc["groups spanning two sources", "count"] == 1
    assert duplicates.loc["patients after reconciling duplicates", "count"] == 9
    (tmp_path / "curation.json").write_text(json.dumps({"synthetic": True}))
    assert "short of the paper" not in curation_figures.counts_against_paper(tmp_path)
    assert curation_figures.duplicates_summary(tmp_path) is None


def test_run_times_and_rerun_commands_come_from_the_store(tmp_path, monkeypatch):
    from cxrlib.report import provenance

    monkeypatch.setenv("CXRLIB_RUNS", str(tmp_path / "runs"))
    root = tmp_path / "results"
    run_path = results.run_dir("tiny", root)
    profile = get_profile("tiny")
    results.ensure_profile(run_path, profile)
    frame = pd.DataFrame({"image_id": ["a"], "fold": 0, "label": ["COVID-19"],
                          "patient_id": ["p"], "source": "s"})
    for c in profile.classes:
        frame[f"p_{c}"] = 1 / len(profile.classes)
    for fold in (0, 1):
        results.write_fold(run_path, "from_scratch", fold, frame, pd.DataFrame({"epoch": [1]}),
                           {"train_seconds": 90, "predict_seconds": 30,
                            "environment": {"device": "CPU: test", "keras_backend": "jax",
                                            "git_commit": "0123456789abcdef"}})
    records = tmp_path / "runs" / "tiny"
    records.mkdir(parents=True)
    for name, seconds in (("01_data_curation", 30), ("04_from_scratch", 90)):
        (records / f"{name}.ipynb").write_text(json.dumps(
            {"cells": [], "metadata": {"cxrlib": {"seconds": seconds}}}))
    times = provenance.run_times(root)
    assert times.loc["notebooks, as last executed (min)", "tiny"] == 2.0
    assert times.loc["folds finished", "tiny"] == 2
    assert times.loc["training (min)", "tiny"] == 3.0
    assert times.loc["backend", "tiny"] == "jax" and times.loc["device", "tiny"] == "CPU: test"
    assert times.loc["code commit", "tiny"] == "0123456789ab"
    commands = provenance.rerun_commands(run_path)
    assert "python -m cxrlib book --profile tiny" in commands
    assert "--data" not in commands, "a synthetic run needs no data folder"


def test_the_explorers_work_in_the_book_without_a_kernel(book, server, browser):
    """The explore chapter's frozen explorers: the selectors and the threshold slider switch
    between views computed at build time, in the browser alone, offline."""
    visit = Visit(browser, f"{server}/book/explore.html", "explore.png")
    page = visit.page
    page.wait_for_selector(".cxr-threshold", timeout=20_000)

    def shown(selector: str) -> list[str]:
        return [e.inner_text() for e in page.locator(selector).all() if e.is_visible()]

    def choose(label: str, option: str) -> None:
        page.locator(".widget-dropdown", has_text=label).locator("select").select_option(option)
        page.wait_for_timeout(300)

    assert shown(".cxr-threshold")[0].startswith("threshold 0.50:")
    page.locator("main .noUi-handle").first.focus()
    for _ in range(2):
        page.keyboard.press("ArrowLeft")
    page.wait_for_timeout(300)
    assert [t[:15] for t in shown(".cxr-threshold")] == ["threshold 0.40:"]

    choose("class", "COVID-19")
    cards = shown(".cxr-card")
    assert cards and all("class: COVID-19" in c for c in cards)
    background = page.locator(".cxr-card .cxr-thumb").first.evaluate(
        "e => getComputedStyle(e).backgroundImage")
    assert background.startswith('url("data:image/webp'), "synthetic thumbnails are shown"

    assert shown(".cxr-cm"), "the prediction explorer shows a confusion matrix"
    page.locator(".widget-html details summary").first.click()
    assert shown(".cxr-prediction"), "a cell opens onto its images"
    # Every font face the widget styles declare, loaded now rather than when a glyph happens to
    # need it: each must come from the vendored files (cxrlib/report/vendor.py, REQUIRE_PATHS).
    page.evaluate("Promise.all(Array.from(document.fonts).map(f => f.load().catch(String)))")
    page.wait_for_load_state("networkidle")
    assert any("/_static/html-manager/" in u and ".woff" in u for u in visit.requests)
    assert visit.outside(server) == [] and visit.failures == []
    page.close()
