"""Every installed Keras backend builds, trains and predicts with the same code and weights.

The backend is fixed when Keras is imported, so each one runs in its own subprocess.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cxrlib.experiment import results

REPO = Path(__file__).resolve().parent.parent
MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
INSTALLED = [b for b, module in MODULES.items() if importlib.util.find_spec(module)]

# Builds a fine_tune_3 model, loads weights the first backend saved (or saves them), and
# stores its inference predictions on fixed inputs.
PREDICT = """
import sys, numpy as np, keras
from cxrlib.experiment.model import build_model
weights, out, save = sys.argv[1], sys.argv[2], sys.argv[3] == "save"
keras.utils.set_random_seed(0)
model = build_model("fine_tune", 32, 7, trainable_blocks=3, weights=None)
if save:
    model.save_weights(weights)
else:
    model.load_weights(weights)
x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 1)).astype("uint8")
np.save(out, keras.ops.convert_to_numpy(model.predict(x, verbose=0)))
"""


def run_python(args, backend, **env):
    environment = dict(os.environ, KERAS_BACKEND=backend, **env)
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=environment,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_tensorflow_and_one_more_backend_are_installed():
    assert "tensorflow" in INSTALLED and len(INSTALLED) >= 2, INSTALLED


@pytest.mark.parametrize("backend", INSTALLED)
def test_backend_trains_one_fold_through_the_command_line(backend, tiny_curated, tmp_path,
                                                         standin_keras_home):
    output = run_python(["-m", "cxrlib", "run", "--profile", "tiny", "--configs",
                         "fine_tune_1", "--folds", "0", "--curated", str(tiny_curated),
                         "--results", str(tmp_path)], backend,
                        KERAS_HOME=str(standin_keras_home), CXRLIB_RUNS=str(tmp_path / "runs"))
    assert "fine_tune_1 fold 1/2: done" in output
    run_path = tmp_path / "tiny"
    info = json.loads((results.fold_dir(run_path, "fine_tune_1", 0) / "fold.json").read_text())
    assert info["environment"]["keras_backend"] == backend
    pred = results.read_predictions(run_path, "fine_tune_1")
    np.testing.assert_allclose(pred.filter(like="p_").sum(axis=1), 1.0, atol=1e-4)
    assert np.isfinite(results.read_history(run_path, "fine_tune_1")["loss"]).all()


def test_same_weights_give_the_same_predictions_on_every_backend(tmp_path):
    weights = tmp_path / "model.weights.h5"
    outputs = {}
    for k, backend in enumerate(INSTALLED):
        outputs[backend] = tmp_path / f"{backend}.npy"
        run_python(["-c", PREDICT, str(weights), str(outputs[backend]),
                    "save" if k == 0 else "load"], backend, CXRLIB_RUNS=str(tmp_path / "runs"))
    reference = np.load(outputs[INSTALLED[0]])
    assert np.allclose(reference.sum(1), 1.0, atol=1e-5)
    for backend in INSTALLED[1:]:
        np.testing.assert_allclose(np.load(outputs[backend]), reference, atol=2e-4,
                                   err_msg=backend)
