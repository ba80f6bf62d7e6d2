"""JupyterLab as a user meets it: the README's `jupyter lab` command, a text notebook opened
with a double-click, run top to bottom, and its explorers answering clicks, in headless Chromium.

The server runs on loopback with a random token, its root a temporary copy of ``notebooks/``
(Lab saves there), every Jupyter folder in the test's temporary folder, and the session's
results, runs and curated stores (``tests/conftest.py``), which the kernel inherits. Stored tiny
results come first from ``python -m cxrlib run``, as a user would make them. Needs Debian's
``chromium``; no browser is downloaded.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
NOTEBOOK = "03_results.py"
#: How long one step in the browser may take (a busy two-core machine is slow).
STEP_MS = 90_000

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(),
                                reason="the JupyterLab browser test needs Debian's chromium "
                                       "(apt-get install -y chromium); it is not installed")


def readme_lab_command() -> str:
    """The command of the README's "Explore in JupyterLab" section."""
    section = (REPO / "README.md").read_text().split("## Explore in JupyterLab\n", 1)[1]
    return re.search(r"```bash\n(.*?)\n```", section.split("\n## ", 1)[0], re.DOTALL)[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_results() -> Path:
    """The tiny profile's from-scratch folds, trained into the session's results store."""
    done = subprocess.run([sys.executable, "-m", "cxrlib", "run", "--profile", "tiny",
                           "--configs", "from_scratch"],
                          env=dict(os.environ, KERAS_BACKEND="jax"), cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return Path(os.environ["CXRLIB_RESULTS"]) / "tiny"


@pytest.fixture
def lab(tmp_path, tiny_results):
    """A running JupyterLab (the README's command, plus token, port and loopback); yields
    (base URL, token, notebooks folder, server process); stops it and checks that the server
    and every kernel it started are gone."""
    command = readme_lab_command()
    assert command == "JUPYTER_CONFIG_PATH=$PWD/.jupyter jupyter lab notebooks/", command
    notebooks = shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    jupyter = Path(sys.executable).with_name("jupyter")
    env = dict(os.environ, JUPYTER_CONFIG_PATH=str(REPO / ".jupyter"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    token, port = secrets.token_hex(16), free_port()
    args = [str(jupyter), "lab", str(notebooks), "--no-browser", f"--ServerApp.token={token}",
            f"--port={port}", "--ServerApp.ip=127.0.0.1", "--ServerApp.port_retries=0"]
    if os.geteuid() == 0:  # containers run as root; Jupyter refuses that unless told
        args.append("--allow-root")
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen(args, cwd=REPO, env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    started: list[psutil.Process] = []
    try:
        wait_for_server(base, token, server, tmp_path / "server.log")
        yield base, token, notebooks, server, started
    finally:
        started += psutil.Process(server.pid).children(recursive=True) \
            if server.poll() is None else []
        server.terminate()
        server.wait(60)
        gone, alive = psutil.wait_procs(started, timeout=30)
        for p in alive:
            p.kill()
        assert not alive, f"processes left running after the server stopped: {alive}"


def wait_for_server(base: str, token: str, server, log: Path) -> None:
    deadline = time.time() + 120
    while time.time() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"jupyter lab exited: {log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"jupyter lab did not answer within 120 s: {log.read_text()[-3000:]}")


def run_all_cells(page) -> list[str]:
    """Run > Run All Cells once the kernel is idle; the code cells' prompts once done."""
    panel = page.locator(".jp-NotebookPanel")
    panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(
        timeout=STEP_MS)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.locator("li[data-command='runmenu:run-all']").click()
    prompts = panel.locator(".jp-CodeCell .jp-InputPrompt")
    deadline = time.time() + 180
    while time.time() < deadline:
        texts = [t.strip() for t in prompts.all_text_contents()]
        if texts and all(re.fullmatch(r"\[\d+\]:", t) for t in texts):
            return texts
        time.sleep(1)
    raise AssertionError(f"the notebook did not finish running: prompts {texts}")


def cell_output(page, code: str):
    """The output area of the code cell whose source contains ``code``."""
    cell = page.locator(".jp-NotebookPanel .jp-CodeCell", has_text=code)
    return cell.locator(".jp-Cell-outputArea")


def text_changes(locator, before: str, timeout: float = 60) -> str:
    """The locator's text once it differs from ``before`` (the kernel answered)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        now = locator.text_content()
        if now != before:
            return now
        time.sleep(0.25)
    raise AssertionError(f"no change after the interaction: still {before[:200]!r}")


def text_settles(locator, before: str, quiet: float = 2.0, timeout: float = 60) -> str:
    """The locator's text once it has changed from ``before`` and then stayed the same for
    ``quiet`` seconds: a dragged slider sends the values it passes on the way, and the kernel
    answers each, so the first change is not yet the last."""
    now = text_changes(locator, before, timeout)
    deadline, still_since = time.time() + timeout, time.time()
    while time.time() < deadline and time.time() - still_since < quiet:
        time.sleep(0.25)
        latest = locator.text_content()
        if latest != now:
            now, still_since = latest, time.time()
    return now


def drag_slider_to_start(page, output) -> None:
    """Drag the threshold slider's handle to the left end of its track, as a user would."""
    handle = output.locator(".noUi-handle").first
    track = output.locator(".noUi-base").first
    handle.scroll_into_view_if_needed()
    h, t = handle.bounding_box(), track.bounding_box()
    page.mouse.move(h["x"] + h["width"] / 2, h["y"] + h["height"] / 2)
    page.mouse.down()
    page.mouse.move(t["x"] + 1, h["y"] + h["height"] / 2, steps=8)
    page.mouse.up()


def open_and_parameterise(page, base: str, token: str) -> None:
    """Open the notebook by a double-click in the file browser and set the tiny profile in its
    parameters cell, typing as a user would."""
    page.goto(f"{base}/lab?token={token}")
    page.locator(".jp-DirListing-item", has_text=NOTEBOOK).dblclick(timeout=STEP_MS)
    parameters = page.locator(".jp-NotebookPanel .jp-CodeCell", has_text='profile = "default"')
    parameters.locator(".cm-content").click(timeout=STEP_MS)
    page.keyboard.press("Control+a")
    page.keyboard.insert_text('profile = "tiny"  # set in JupyterLab\nrun = ""')


def test_a_text_notebook_opens_runs_and_its_explorers_answer_in_jupyterlab(lab, tmp_path):
    from playwright.sync_api import sync_playwright

    base, token, notebooks, server, started = lab
    started_at = time.perf_counter()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            open_and_parameterise(page, base, token)
            prompts = run_all_cells(page)
            started += psutil.Process(server.pid).children(recursive=True)
            shots = Path(os.environ["CXRLIB_SCREENSHOTS"])
            shots.mkdir(parents=True, exist_ok=True)
            check_explorers(page, prompts, shots)
            page.keyboard.press("Control+s")
            saved = notebooks / NOTEBOOK
            deadline = time.time() + 30
            while "set in JupyterLab" not in saved.read_text() and time.time() < deadline:
                time.sleep(0.5)
        finally:
            browser.close()
    # Saving writes the text notebook itself: the edit, no outputs, nothing else changed but
    # the header's record of jupytext's version and of the kernel's display name.
    header = r"#\s+(jupytext_version|format_version|display_name): .*"
    before = (REPO / "notebooks" / NOTEBOOK).read_text().splitlines()
    after = saved.read_text().splitlines()
    added = [line for line in after if line not in before and not re.fullmatch(header, line)]
    removed = [line for line in before if line not in after and not re.fullmatch(header, line)]
    assert added == ['profile = "tiny"  # set in JupyterLab', 'run = ""'], added
    assert [line.split("=")[0] for line in removed] == ["profile ", "run "], removed
    assert len(after) - len(before) <= 2, "at most two header lines more"
    print(f"JupyterLab test: {time.perf_counter() - started_at:.0f} s in the browser")


def check_explorers(page, prompts: list[str], shots: Path) -> None:
    """No cell errored, the kernel used the session's stores, and both explorers answer; a
    screenshot of each explorer after its interaction."""
    outputs = page.locator(".jp-NotebookPanel .jp-OutputArea-output").all_text_contents()
    assert len(prompts) >= 10
    assert not [o for o in outputs if "Traceback (most recent call last)" in o], outputs
    assert any(os.environ["CXRLIB_RESULTS"] in o for o in outputs), "the kernel's stores"

    predictions = cell_output(page, "explore.explore_predictions(")
    predictions.locator(".widget-button", has_text="next").wait_for(timeout=STEP_MS)
    listing = predictions.locator(".widget-html").last
    before = listing.text_content()
    predictions.locator(".widget-button", has_text="next").click()
    after = text_changes(listing, before)
    cells = predictions.locator(".widget-gridbox .widget-button")
    counts = [c.strip() for c in cells.all_text_contents()]
    assert len(counts) == 49, counts  # seven classes by seven
    chosen = next(i for i, c in enumerate(counts) if c.isdigit() and int(c) > 0)
    title = cells.nth(chosen).get_attribute("title")
    cells.nth(chosen).click()
    listed = text_changes(listing, after)
    actual = re.match(r"actual (.+), predicted", title)[1]
    assert f"actual {actual}" in listed, (title, listed[:300])
    page.screenshot(path=str(shots / "jupyterlab-03_results-predictions.png"))

    threshold = cell_output(page, "explore.explore_threshold(")
    figures = threshold.locator(".cxr-threshold")
    start = figures.text_content()
    assert start.startswith("threshold 0.50:")
    drag_slider_to_start(page, threshold)
    moved = text_settles(figures, start)
    # At the left end of the track the threshold is near 0: every image the network gives any
    # COVID-19 probability counts as found, so sensitivity can only have risen.
    assert re.match(r"threshold 0\.0\d: sensitivity", moved), moved
    sensitivity = [float(re.search(r"sensitivity ([\d.]+)%", t)[1]) for t in (start, moved)]
    assert sensitivity[1] >= sensitivity[0] and sensitivity[1] > 0, (start, moved)
    figures.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "jupyterlab-03_results-threshold.png"))
