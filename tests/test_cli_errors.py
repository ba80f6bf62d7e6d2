"""Bad input never gives a traceback: one ``error: <what> — <what to do>`` line, exit status 2.

A table of bad invocations and bad stores, each run through the real command line
(``cxrlib.cli.main``, in this process so TensorFlow is imported once; three of them also as
``python -m cxrlib`` subprocesses). Each case asserts the exit status, that the one line names
the problem (the file or value), and that no traceback was printed.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_curated, write_fold

from cxrlib import arguments, cli
from cxrlib.core.profiles import get_profile
from cxrlib.experiment import dask_clusters, results, runs


def write_finished_fold(results_root: Path) -> Path:
    """A run ``tiny`` with one finished from_scratch fold, as cv stores one."""
    return write_fold(results.run_dir("tiny", results_root), "from_scratch", 0)


def corrupt(kind: str):
    """A store-making function for the table: plants ``kind`` of damage in a finished fold."""
    def make(tmp: Path) -> None:
        folder = write_finished_fold(tmp / "results")
        if kind == "fold.json not JSON":
            (folder / "fold.json").write_text('{"config": "from_scratch", "n_te')
        elif kind == "predictions truncated":
            text = (folder / "predictions.csv").read_text()
            (folder / "predictions.csv").write_text(text[: text.rindex("\n", 0, -1) + 12])
        elif kind == "predictions empty":
            (folder / "predictions.csv").write_text("")
        elif kind == "profile.json not JSON":
            (folder.parent.parent / "profile.json").write_text("{not json")
    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_only_folder(tmp: Path) -> Path:
    """A folder this process cannot write into (root ignores file modes: /sys refuses root)."""
    if os.geteuid() == 0:
        return Path("/sys/cxrlib-results")
    folder = tmp / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


# (id, argv with {tmp} for the case's temporary folder, what the message must name, setup)
CASES = [
    ("unknown profile", ["run", "--profile", "nope"], "unknown profile 'nope'", None),
    ("unknown configuration", ["run", "--profile", "tiny", "--configs", "bogus"],
     "configuration 'bogus'", None),
    ("fold out of range", ["run", "--profile", "tiny", "--folds", "99"], "'99' is not a fold",
     None),
    ("fold not a number", ["run", "--profile", "tiny", "--folds", "one"], "'one' is not a fold",
     None),
    ("--set bad value", ["run", "--profile", "tiny", "--set", "epochs=abc"],
     "epochs takes a whole number", None),
    ("--set unknown field", ["run", "--profile", "tiny", "--set", "epoch=3"],
     "--set 'epoch=3'", None),
    ("--set bad boolean", ["run", "--profile", "tiny", "--set", "mixed_precision=maybe"],
     "mixed_precision takes true or false", None),
    ("--set invalid setting", ["run", "--profile", "tiny", "--set", "grouping=family"],
     "grouping", None),
    ("run name with ..", ["book", "--profile", "tiny", "--run", "../../etc"],
     "run name '../../etc' is not a name", None),
    ("run name with /", ["run", "--profile", "tiny", "--run", "a/b"], "'a/b' is not a name", None),
    ("run name with a space", ["run", "--profile", "tiny", "--run", "my run"],
     "'my run' is not a name", None),
    ("empty run name", ["run", "--profile", "tiny", "--run", ""], "'' is not a name", None),
    ("run name starting with .", ["audit", "--profile", "tiny", "--run", ".hidden"],
     "'.hidden' is not a name", None),
    ("unknown option", ["run", "--profile", "tiny", "--bogus"], "unrecognized arguments: --bogus",
     None),
    ("data folder missing", ["curate", "--profile", "paper-bundle", "--data", "{tmp}/none"],
     "/none: no such folder", None),
    ("data folder empty", ["curate", "--profile", "paper-bundle", "--data", "{tmp}/empty"],
     "holds none of the sources' folders", lambda t: (t / "empty").mkdir()),
    ("data of the wrong layout", ["curate", "--profile", "paper-bundle", "--data", "{tmp}/flat"],
     "holds none of the sources' folders",
     lambda t: ((t / "flat").mkdir(), (t / "flat" / "x.jpg").write_bytes(b"x"))),
    ("data is a file", ["curate", "--profile", "paper-bundle", "--data", "{tmp}/file"],
     "not a folder", lambda t: (t / "file").write_text("x")),
    ("data with a synthetic profile", ["run", "--profile", "tiny", "--data", "{tmp}/d"],
     "--data is for real-data profiles", lambda t: (t / "d" / "cohen").mkdir(parents=True)),
    ("a source table that is not a table",
     ["curate", "--profile", "paper-bundle", "--data", "{tmp}/d", "--out", "{tmp}/out"],
     "metadata.csv",
     lambda t: ((t / "d" / "cohen" / "images").mkdir(parents=True),
                (t / "d" / "cohen" / "metadata.csv").write_bytes(b"\x00\x01 not,a\ncsv"))),
    ("results root is a file", ["run", "--profile", "tiny", "--results", "{tmp}/file"],
     "is a file, not a folder", lambda t: (t / "file").write_text("x")),
    ("results root read-only", ["run", "--profile", "tiny", "--results", "{readonly}"],
     "cannot write there", None),
    ("curated folder without manifest", ["run", "--profile", "tiny", "--curated", "{tmp}"],
     "no manifest.csv there", None),
    ("weights file missing", ["run", "--profile", "tiny", "--weights", "{tmp}/w.h5"],
     "w.h5: no such file", None),
    ("fold.json not JSON", ["run", "--profile", "tiny", "--configs", "from_scratch",
                            "--folds", "0", "--results", "{tmp}/results"],
     "from_scratch/fold-00: cannot be read", corrupt("fold.json not JSON")),
    ("predictions.csv truncated", ["run", "--profile", "tiny", "--configs", "from_scratch",
                                   "--folds", "0", "--results", "{tmp}/results"],
     "predictions.csv is truncated", corrupt("predictions truncated")),
    ("predictions.csv empty", ["run", "--profile", "tiny", "--configs", "from_scratch",
                               "--folds", "0", "--results", "{tmp}/results"],
     "fold-00: cannot be read", corrupt("predictions empty")),
    ("profile.json not JSON", ["run", "--profile", "tiny", "--results", "{tmp}/results"],
     "tiny/profile.json: not a profile", corrupt("profile.json not JSON")),
    ("download: bad archive numbers", ["download", "--data", "{tmp}", "--nih-archives", "1-99"],
     "archives are numbered 1-12", None),
]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    status = cli.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_clean_line(status: int, err: str, names: str) -> None:
    assert status == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert names in lines[0], f"{names!r} not in {lines[0]!r}"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(case, tmp_path, capsys, monkeypatch):
    _, argv, names, setup = case
    monkeypatch.setenv("CXRLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv("CXRLIB_DEBUG", raising=False)
    if setup:
        setup(tmp_path)
    readonly = str(read_only_folder(tmp_path)) if "{readonly}" in argv else ""
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{readonly}", readonly) for a in argv]
    status, _, err = run_cli(argv, capsys)
    assert_one_clean_line(status, err, names)


def test_images_that_do_not_decode_are_named(tmp_path, capsys):
    curated = write_curated(tmp_path / "curated", per_class=3)
    broken = sorted((curated / "images").iterdir())[2]
    broken.write_bytes(b"\xff\xd8 this is not a JPEG")
    status, _, err = run_cli(["run", "--profile", "tiny", "--curated", str(curated),
                              "--results", str(tmp_path / "results"), "--configs",
                              "from_scratch", "--folds", "0"], capsys)
    assert_one_clean_line(status, err, broken.name)


def test_an_executor_address_that_does_not_answer(tmp_path, tiny_curated, capsys, monkeypatch):
    monkeypatch.setattr(dask_clusters, "CONNECT_TIMEOUT", "2s")
    address = f"tcp://127.0.0.1:{free_port()}"
    status, _, err = run_cli(["run", "--profile", "tiny", "--curated", str(tiny_curated),
                              "--results", str(tmp_path / "results"), "--executor", address],
                             capsys)
    assert_one_clean_line(status, err, f"no Dask scheduler answers at {address}")


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(ValueError, match="unknown profile"):
        cli.main(["--debug", "run", "--profile", "nope"])


@pytest.mark.parametrize("argv, names", [
    (["run", "--profile", "tiny", "--folds", "99"], "'99' is not a fold"),
    (["book", "--profile", "tiny", "--run", "../../etc"], "'../../etc' is not a name"),
    (["run", "--profile", "tiny", "--set", "epochs=abc"], "epochs takes a whole number"),
])
def test_the_real_command_line(argv, names, tmp_path):
    """As a user types it: ``python -m cxrlib ...`` in a shell, and the ``cxrlib`` script."""
    env = dict(os.environ, CXRLIB_RESULTS=str(tmp_path / "results"))
    env.pop("CXRLIB_DEBUG", None)
    done = subprocess.run([sys.executable, "-m", "cxrlib", *argv], capture_output=True,
                          text=True, env=env, timeout=300)
    assert_one_clean_line(done.returncode, done.stderr, names)
    assert not (tmp_path / "results").exists(), "nothing written before the check"
    script = Path(sys.executable).with_name("cxrlib")
    if script.exists():
        again = subprocess.run([str(script), *argv], capture_output=True, text=True, env=env,
                               timeout=300)
        assert (again.returncode, again.stderr) == (done.returncode, done.stderr)


def test_retrain_corrupt_sets_the_fold_aside_and_trains_it_again(tmp_path, tiny_curated, capsys):
    corrupt("predictions truncated")(tmp_path)
    run_path = tmp_path / "results" / "tiny"
    folder = run_path / "from_scratch" / "fold-00"
    damaged = (folder / "predictions.csv").read_text()
    argv = ["run", "--profile", "tiny", "--curated", str(tiny_curated), "--results",
            str(tmp_path / "results"), "--configs", "from_scratch", "--folds", "0"]
    status, _, err = run_cli(argv, capsys)
    assert_one_clean_line(status, err, "--retrain-corrupt")
    assert (folder / "predictions.csv").read_text() == damaged, "nothing touched without the flag"

    status, out, err = run_cli(argv + ["--retrain-corrupt"], capsys)
    assert status == 0, err
    aside = run_path / "from_scratch" / "fold-00.corrupt-1"
    assert (aside / "predictions.csv").read_text() == damaged, "the damaged fold is kept"
    assert results.fold_problem(run_path, "from_scratch", 0) is None
    info = json.loads((folder / "fold.json").read_text())
    assert info["n_test"] == len(pd.read_csv(folder / "predictions.csv")) > 3
    assert "set aside as fold-00.corrupt-1" in out


def test_overrides_from_the_command_line_are_typed_and_checked():
    profile = get_profile("default")
    got = arguments.parse_overrides(profile, ["epochs=3", "val_fraction=0.2",
                                              "mixed_precision=true", "grouping=patient",
                                              "configs=from_scratch,fine_tune_3"])
    assert got == {"epochs": 3, "val_fraction": 0.2, "mixed_precision": True,
                   "grouping": "patient", "configs": ("from_scratch", "fine_tune_3")}
    assert runs.override_run_name("default", {"epochs": 3}) == "default_epochs-3"
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        arguments.parse_overrides(profile, ["epoch=3"])
    with pytest.raises(ValueError, match="true or false"):
        arguments.parse_overrides(profile, ["mixed_precision=maybe"])
