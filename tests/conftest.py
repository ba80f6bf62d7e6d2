"""Shared fixtures. Keep small; add fixtures at the end (several people edit this file)."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

# Tests never write into the checkout (a user's results, runs and curated data): every store and
# cache goes to one temporary folder for the session, overriding whatever the shell has set. This
# happens before cxrlib is imported, because cxrlib.experiment.cv reads the JAX cache folder at import.
SESSION_TMP = Path(tempfile.mkdtemp(prefix="cxrlib-tests-"))
for _name, _folder in (("CXRLIB_RESULTS", "results"), ("CXRLIB_RUNS", "runs"),
                       ("CXRLIB_CURATED", "curated"), ("JAX_COMPILATION_CACHE_DIR", "jax-cache"),
                       ("CXRLIB_SCREENSHOTS", "screenshots"), ("MPLCONFIGDIR", "matplotlib")):
    os.environ[_name] = str(SESSION_TMP / _folder)
os.environ.pop("CXRLIB_BOOK_RUN", None)
os.environ.pop("CXRLIB_AUDIT_RUN", None)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from cxrlib.core.paper import CLASSES  # noqa: E402
from cxrlib.core.profiles import get_profile  # noqa: E402
from cxrlib.data.dataset import MANIFEST_COLUMNS  # noqa: E402
from cxrlib.experiment import results  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    """Remove the session's stores; keep the browser tests' screenshots for review."""
    for child in SESSION_TMP.iterdir():
        if child.name != "screenshots":
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()


def pytest_terminal_summary(terminalreporter):
    shots = SESSION_TMP / "screenshots"
    if shots.is_dir():
        terminalreporter.write_line(f"screenshots of the browser tests: {shots}")


def write_curated(out: Path, size: int = 32, per_class: int = 6, classes=CLASSES,
                  patients_per_class: int | None = None, seed: int = 0) -> Path:
    """A small curated dataset on disk, as :mod:`cxrlib.data.dataset` describes it.

    Each class has a bright square at its own place on a noisy background, so a model can
    tell the classes apart. ``patients_per_class`` gives several images per patient.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for k, label in enumerate(classes):
        for i in range(per_class):
            pixels = rng.normal(90, 25, (size, size))
            side = size // 4
            top = (k * side // 2) % (size - side)
            left = (k * side) % (size - side)
            pixels[top:top + side, left:left + side] += 110
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")
            image_id = f"fixture-{k}-{i:03d}"
            image.save(out / "images" / f"{image_id}.jpg", quality=95)
            patient = i % patients_per_class if patients_per_class else i
            rows.append({"image_id": image_id, "label": label, "source": "fixture",
                         "finding": label, "patient_id": f"fixture:{k}-{patient}", "view": "PA",
                         "age": "", "sex": "", "orig_width": size, "orig_height": size,
                         "orig_path": f"fixture/{image_id}.jpg", "sha256": "", "excluded": ""})
    pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)).to_csv(out / "manifest.csv", index=False)
    (out / "curation.json").write_text(json.dumps({"fixture": True, "image_size": size}))
    return out


@pytest.fixture(scope="session")
def tiny_curated(tmp_path_factory) -> Path:
    """A curated set the size of the ``tiny`` profile (32 px, 6 images per class)."""
    return write_curated(tmp_path_factory.mktemp("tiny_curated"), size=32, per_class=6)


@pytest.fixture(scope="session")
def standin_keras_home(tmp_path_factory) -> Path:
    """A KERAS_HOME holding a stand-in for the ImageNet file (random weights, Keras' h5 layout).

    Tests never depend on the real ImageNet weights; this file has the same name and layout.
    """
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    from cxrlib.experiment.model import IMAGENET_FILE

    home = tmp_path_factory.mktemp("keras_home")
    (home / "models").mkdir()
    keras.utils.set_random_seed(1)
    backbone = keras.applications.MobileNetV2(include_top=False, weights=None,
                                              input_shape=(32, 32, 3))
    with h5py.File(home / "models" / IMAGENET_FILE, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, backbone)
    return home


def write_fold(run_path: Path, config: str, fold: int, p_covid: float = 0.9) -> Path:
    """A finished fold of the tiny profile as cv stores one: two test images, one epoch."""
    profile = get_profile("tiny")
    results.ensure_profile(run_path, profile)
    frame = pd.DataFrame({"image_id": ["a", "b"], "fold": fold, "label": ["COVID-19", "Normal"],
                          "patient_id": ["p1", "p2"], "source": "synthetic-web"})
    for c in profile.classes:
        frame[f"p_{c}"] = (1 - p_covid) / (len(profile.classes) - 1)
    frame["p_COVID-19"] = p_covid
    history = pd.DataFrame({"epoch": [1], "loss": [1.0]})
    return results.write_fold(run_path, config, fold, frame, history,
                              {"config": config, "fold": fold, "n_test": len(frame)})
