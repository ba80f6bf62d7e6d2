"""Where the book's data and results come from: checksums of the committed runs, the glossary's
run names, and the commit table that marks results made by older code."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_fold

from cxrlib.core import paths
from cxrlib.core.profiles import PROFILES
from cxrlib.experiment import results
from cxrlib.report import chapters, curation_figures, provenance

COMMITTED = paths.root() / "results"
BOOK = paths.root() / "book"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _copy_run(run: str, into: Path) -> Path:
    """A committed run's description (profile, folds, stored curation), without its folds."""
    target = into / run
    target.mkdir(parents=True)
    for name in ("profile.json", "folds.csv"):
        shutil.copy(COMMITTED / run / name, target / name)
    if (COMMITTED / run / "curation").is_dir():
        shutil.copytree(COMMITTED / run / "curation", target / "curation")
    return target


def test_checksums_shown_are_those_of_the_committed_files(tmp_path):
    run = "paper-bundle"
    table = curation_figures.checksums_table(COMMITTED)
    assert table.loc[run, "folds.csv SHA-256"] == _sha256(COMMITTED / run / "folds.csv")
    assert table.loc[run, "curation manifest SHA-256"] == _sha256(
        COMMITTED / run / "curation" / "manifest.csv")
    assert table.loc[run, "its included images are the run's"] == "yes"
    # A copy whose folds.csv loses one image: another checksum, and no longer the manifest's.
    copy = _copy_run(run, tmp_path)
    lines = (copy / "folds.csv").read_text().splitlines(keepends=True)
    (copy / "folds.csv").write_text("".join(lines[:-1]))
    changed = curation_figures.checksums_table(tmp_path)
    assert changed.loc[run, "folds.csv SHA-256"] != table.loc[run, "folds.csv SHA-256"]
    assert changed.loc[run, "folds.csv SHA-256"] == _sha256(copy / "folds.csv")
    assert changed.loc[run, "its included images are the run's"] == "no"


def test_images_per_source_add_up_to_the_folds(tmp_path):
    copy = _copy_run("paper-bundle", tmp_path)
    table = curation_figures.run_images_table([copy])
    folds = results.read_folds(copy)
    assert table.loc[("paper-bundle", "all"), "all"] == len(folds)
    effusion = folds[folds["label"] == "Effusion"]["source"].value_counts()
    for source, n in effusion.items():
        assert table.loc[("paper-bundle", "Effusion"), source] == n
    share = curation_figures.source_share("Effusion", tmp_path)
    assert share["total"] == len(folds[folds["label"] == "Effusion"])
    assert share["nih_rxtorax"] + share["nih"] == share["total"]


def test_bundle_origins_match_the_bundles_own_record():
    record = Path("/work/shared/data/provenance.json")
    if not record.is_file():
        pytest.skip("the shared bundle's provenance.json is not on this machine")
    sources = {s["id"]: s for s in json.loads(record.read_text())["sources"]}
    for folder, origin in curation_figures.BUNDLE_ORIGINS.items():
        theirs = sources[folder]
        assert theirs.get("repo", theirs.get("labels_repo")) in origin["repository"], folder
        assert theirs.get("commit", theirs.get("labels_commit")) in origin["commit"], folder


def test_glossary_decodes_every_committed_run_name():
    stored = [COMMITTED / r for r in results.list_runs(COMMITTED)]
    assert stored, "no committed run to decode"
    table = chapters.run_names_table(stored)
    assert sorted(table.index) == sorted(p.name for p in stored)
    for path in stored:
        decoded = chapters.decode_run_name(path.name)
        profile = results.read_profile(path)
        assert table.loc[path.name, "profile"] == profile.name in PROFILES
        # What the name says it changes is what its profile.json changes.
        changes = chapters.profile_changes(profile)
        for key, value in decoded["overrides"].items():
            assert str(changes[key]) == str(value), (path.name, key)


@pytest.mark.parametrize("name, kind, overrides", [
    ("paper-bundle", "profile", {}),
    ("paper-bundle_input_mask-border_only_epochs-3", "profile with overrides",
     {"input_mask": "border_only", "epochs": "3"}),
    ("paper-bundle5-cpu-source-probe", "audit retraining", {"target": "source"}),
    ("paper-bundle_grouping-patient-lung-only", "audit retraining",
     {"grouping": "patient", "input_mask": "lung_only"}),
    ("my-run", "a name given with --run", {}),
    ("paper-bundle_nonsense-1", "a name given with --run", {}),
])
def test_run_names_decode(name, kind, overrides):
    decoded = chapters.decode_run_name(name)
    assert decoded["kind"] == kind
    assert decoded["overrides"] == overrides


def test_every_term_used_in_the_book_is_in_the_glossary():
    glossary = (BOOK / "glossary.md").read_text()
    block = glossary.split("```{glossary}", 1)[1].split("```", 1)[0]
    defined = {line.strip().lower() for line in block.splitlines()
               if line and not line.startswith(" ")}
    used = set()
    for chapter in BOOK.glob("*.md"):
        for text in re.findall(r"\{term\}`([^`]+)`", chapter.read_text()):
            used.add(re.sub(r"^.*<(.+)>$", r"\1", text).strip().lower())
    assert used, "no {term} link in the book"
    assert used <= defined, used - defined


def _head(rev: str) -> str:
    out = subprocess.run(["git", "rev-parse", rev], cwd=paths.root(), capture_output=True,
                         text=True)
    if out.returncode != 0:
        pytest.skip(f"no git history here ({rev})")
    return out.stdout.strip()


def _set_commit(run_path: Path, config: str, fold: int, commit: str) -> None:
    file = results.fold_dir(run_path, config, fold) / "fold.json"
    info = json.loads(file.read_text())
    info["environment"] = {"git_commit": commit, "device": "CPU"}
    file.write_text(json.dumps(info))


def test_commit_table_marks_results_older_than_the_build(tmp_path):
    head, older = _head("HEAD"), _head("HEAD~3")
    run = tmp_path / "tiny"
    for fold, commit in ((0, older), (1, head)):
        write_fold(run, "from_scratch", fold)
        _set_commit(run, "from_scratch", fold, commit)
    table = provenance.commits_table(tmp_path, build=head)
    assert table.loc[("tiny", older[:12]), "older than the build"] == "yes, 3 commits"
    assert table.loc[("tiny", head[:12]), "older than the build"] == "no (the build's commit)"
    assert table.loc[("tiny", head[:12]), "cxrlib/ changed since"] == "no"
    assert (table["build commit"] == head[:12]).all()
    note = provenance.result_commit_note(run, build=head)
    assert "older code than this build" in note and older[:12] in note
    _set_commit(run, "from_scratch", 0, head)
    assert "this build's commit" in provenance.result_commit_note(run, build=head)


def test_reproduction_commands_need_no_shared_bundle():
    text = provenance.reproduction_markdown(COMMITTED)
    assert "shared/data" not in text
    assert "python -m cxrlib download --data data/sources" in text
    for run in ("paper-bundle", "paper-bundle5-cpu"):
        assert f"--profile {run} --data data/sources" in text
    assert "--set grouping=patient" in text


def test_markdown_table_keeps_every_cell_and_escapes_pipes():
    frame = pd.DataFrame({"a": ["x|y", ""], "b": [1, 2]}, index=pd.Index(["r1", "r2"], name="run"))
    lines = chapters.markdown_table(frame, code=("run", "a")).splitlines()
    assert lines[0] == "| run | a | b |" and len(lines) == 4
    assert lines[2] == "| `r1` | `x\\|y` | 1 |"
    assert lines[3] == "| `r2` |  | 2 |"
