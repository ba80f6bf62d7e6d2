"""The results store: atomic folds, resumability, and the guard against mixing settings."""
import json

import pandas as pd
import pytest

from cxrlib.core.profiles import get_profile
from cxrlib.experiment import results


def _fold_tables(fold):
    pred = pd.DataFrame({"image_id": [f"a{fold}", f"b{fold}"], "fold": fold,
                         "label": ["COVID-19", "Normal"], "patient_id": ["p1", "p2"],
                         "source": ["s", "s"], "p_COVID-19": [0.9, 0.2], "p_Normal": [0.1, 0.8]})
    hist = pd.DataFrame({"epoch": [1], "loss": [1.0], "accuracy": [0.5], "val_loss": [1.1],
                         "val_accuracy": [0.4], "seconds": [2.0]})
    return pred, hist


def test_a_fold_exists_only_when_finished_and_a_second_writer_keeps_the_first(tmp_path):
    run = results.run_dir("r", tmp_path)
    results.ensure_profile(run, get_profile("tiny"))
    assert results.done_folds(run, "from_scratch") == []
    pred, hist = _fold_tables(1)
    results.write_fold(run, "from_scratch", 1, pred, hist, {"who": "first"})
    results.write_fold(run, "from_scratch", 1, pred.assign(fold=9), hist, {"who": "second"})
    assert results.done_folds(run, "from_scratch") == [1]
    info = json.loads((results.fold_dir(run, "from_scratch", 1) / "fold.json").read_text())
    assert info["who"] == "first"
    assert not [p for p in (run / "from_scratch").iterdir() if p.name.startswith(".")]
    # A half-written fold (no fold.json: a killed writer) does not count as done.
    (run / "from_scratch" / "fold-02").mkdir()
    assert results.done_folds(run, "from_scratch") == [1]
    assert list(results.read_predictions(run, "from_scratch")["fold"]) == [1, 1]


def test_settings_must_match_but_new_settings_at_their_default_do_not_count(tmp_path):
    run = results.run_dir("r", tmp_path)
    profile = get_profile("tiny")
    results.ensure_profile(run, profile)
    results.ensure_profile(run, profile)
    with pytest.raises(ValueError, match=r"other settings.*epochs.*--run NAME"):
        results.ensure_profile(run, profile.replace(epochs=profile.epochs + 1))
    # A run recorded before a setting existed: absent means "the default".
    stored = json.loads((run / "profile.json").read_text())
    del stored["batchnorm_momentum"]
    (run / "profile.json").write_text(json.dumps(stored))
    results.ensure_profile(run, profile)
    with pytest.raises(ValueError, match="batchnorm_momentum"):
        results.ensure_profile(run, profile.replace(batchnorm_momentum=0.5))
    assert results.read_profile(run).batchnorm_momentum == profile.batchnorm_momentum


def test_a_run_can_gain_configurations_but_keeps_the_ones_it_has(tmp_path):
    run = results.run_dir("r", tmp_path)
    profile = get_profile("tiny").replace(configs=("off_the_shelf", "from_scratch"))
    results.ensure_profile(run, profile)
    results.ensure_profile(run, profile.replace(configs=("fine_tune_1", "from_scratch")))
    assert results.read_profile(run).configs == ("off_the_shelf", "fine_tune_1", "from_scratch")
    # Only the configurations: any other setting is still refused.
    with pytest.raises(ValueError, match="image_size"):
        results.ensure_profile(run, profile.replace(configs=("fine_tune_3",), image_size=48))
    assert results.read_profile(run).configs == ("off_the_shelf", "fine_tune_1", "from_scratch")


def test_fold_assignment_is_stored_once_and_checked(tmp_path):
    run = results.run_dir("r", tmp_path)
    folds = pd.DataFrame({"image_id": ["a", "b"], "label": ["Normal", "COVID-19"],
                          "patient_id": ["p", "q"], "source": ["s", "s"], "fold": [0, 1]})
    results.write_folds(run, folds)
    assert results.write_folds(run, folds).equals(results.read_folds(run))
    with pytest.raises(ValueError, match="another fold assignment"):
        results.write_folds(run, folds.assign(fold=[1, 0]))
