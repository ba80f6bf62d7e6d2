"""Readers of the public source layouts, on small layouts made by tests/fixtures_sources."""
from __future__ import annotations

import fixtures_sources as fx
import pandas as pd
import pytest

from cxrlib.data import sources
from cxrlib.data.sources import SOURCE_COLUMNS, SourceError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    planted = fx.make_all(root)
    return root, planted


def test_every_reader_returns_the_same_tidy_columns(data):
    root, _ = data
    for name, reader in sources.READERS.items():
        df = reader(root / name)
        assert list(df.columns) == list(SOURCE_COLUMNS), name
        assert df["path"].map(lambda p: (root / name).parent.joinpath(p).exists()).all()
        assert (df["source"] == name).all()
        assert df["source_patient_id"].str.len().gt(0).all()


def test_cohen_keeps_frontal_covid_xrays_and_reports_missing_files(data):
    root, _ = data
    problems = []
    df = sources.read_cohen(root / "cohen", problems=problems)
    assert set(df["label"]) == {"COVID-19"}
    assert set(df["view"]) <= {"PA", "AP", "AP Supine"}
    assert not df["orig_path"].str.contains("ct-slice|sars|lateral").any()
    assert "cohen/images/republished.png" in set(df["orig_path"])  # "Pneumonia/Viral/COVID-19"
    assert df.loc[df["orig_path"] == "cohen/images/covid-0-0.jpg", "source_patient_id"].item() \
        == "cohen:1"
    assert any("missing.jpg" in p and "metadata.csv" in p for p in problems)
    with_lateral = sources.read_cohen(root / "cohen", lateral=True)
    assert "L" in set(with_lateral["view"]) and len(with_lateral) == len(df) + 1


def test_kermany_patient_keys_subtypes_and_preference(data):
    root, _ = data
    assert sources.kermany_patient("person12_bacteria_57") == ("person12", "bacterial")
    assert sources.kermany_patient("person3_virus_1") == ("person3", "viral")
    assert sources.kermany_patient("IM-0115-0001") == ("IM-0115", "")
    assert sources.kermany_patient("NORMAL2-IM-0012-0001") == ("NORMAL2-IM-0012", "")
    df = sources.read_kermany(root / "kermany")
    assert set(df["label"]) == {"Normal", "Pneumonia"}
    pneu = df[df["label"] == "Pneumonia"]
    assert set(pneu["subtype"]) == {"bacterial", "viral"}
    assert (df["population"] == "paediatric").all()
    # the key ignores the split: a personN in test and train is treated as one child
    assert not df["source_patient_id"].str.contains("train|test").any()
    assert set(df["preference"]) == {0, 1}  # original_aspect.csv: 1 -> preferred


def test_nih_labels_multilabel_policy_and_extension_matching(data):
    root, _ = data
    problems = []
    df = sources.read_nih(root / "nih", problems=problems).set_index("orig_path")
    # the table names .png, the folder may hold .jpg copies: matched by stem
    assert df.loc["nih/images/00000002_001.png", "label"] == "Effusion"  # + Cardiomegaly: kept
    assert df.loc["nih/images/00000005_000.png", "multilabel"]  # Edema|Effusion
    assert df.loc["nih/images/00000005_000.png", "label"] == "Edema"  # first in paper order
    assert df.loc["nih/images/00000006_000.png", "label"] == "No Finding"
    assert "nih/images/00000008_000.png" not in df.index  # Nodule: not a candidate
    assert df.loc["nih/images/00000001_000.png", "source_patient_id"] == "nih:1"
    assert df.loc["nih/images/00000007_000.png", "population"] == "paediatric"
    assert any("not in" in p for p in problems)  # 00000099_000 listed, not downloaded
    first = sources.read_nih(root / "nih", multilabel="first")
    assert len(first) == len(df)


def test_nih_reads_the_old_table_names_and_jpg_copies(tmp_path):
    fx.make_nih(tmp_path, table="sample_labels.csv", suffix=".jpg",
                header=fx.NIH_HEADER.replace("Patient Gender", "Patient Sex"))
    df = sources.read_nih(tmp_path / "nih")
    assert len(df) == 8 and df["path"].str.endswith(".jpg").all()
    assert set(df["sex"]) == {"M", "F"}


def test_rxtorax_patients_are_the_image_unless_matched_to_nih(data):
    root, planted = data
    df = sources.read_nih_rxtorax(root / "nih_rxtorax")
    assert set(df["label"]) == {"Effusion", "No Finding"}
    assert planted["verified_patient"] in set(df["source_patient_id"])
    unmatched = df[~df["source_patient_id"].str.startswith("nih:")]
    assert unmatched["source_patient_id"].is_unique


def test_relabel_is_the_one_label_map():
    assert sources.relabel("cohen", "Pneumonia/Viral/COVID-19") == ("COVID-19", False)
    assert sources.relabel("cohen", "SARS") == ("", False)
    assert sources.relabel("kermany", "PNEUMONIA") == ("Pneumonia", False)
    assert sources.relabel("nih", "Emphysema|Fibrosis") == ("Emphysema", True)
    assert sources.relabel("nih", "Atelectasis") == ("", False)
    with pytest.raises(ValueError, match="unknown source"):
        sources.relabel("chexpert", "Edema")


def test_read_sources_combines_what_exists_and_names_what_is_missing(data, tmp_path):
    root, _ = data
    df = sources.read_sources(root)
    assert set(df["source"]) == {"cohen", "kermany", "nih", "nih_rxtorax"}
    assert isinstance(df, pd.DataFrame) and df["orig_path"].is_unique
    fx.make_kermany(tmp_path)
    problems = []
    only = sources.read_sources(tmp_path, problems=problems)
    assert set(only["source"]) == {"kermany"}
    assert any("cohen" in p and "nih" in p and "download" in p for p in problems)


# ----------------------------------------------------------------------------- bad input


def test_csv_with_missing_column_names_the_file_and_the_column(tmp_path):
    fx.make_cohen(tmp_path)
    table = tmp_path / "cohen" / "metadata.csv"
    table.write_text(table.read_text().replace("modality", "imaging"))
    with pytest.raises(SourceError, match=r"metadata\.csv.*modality"):
        sources.read_cohen(tmp_path / "cohen")


def test_csv_with_renamed_columns_is_accepted_when_the_alias_is_known(tmp_path):
    fx.make_nih(tmp_path, header=fx.NIH_HEADER.replace("Image Index", "image_index"))
    assert len(sources.read_nih(tmp_path / "nih")) == 8


def test_unknown_labels_are_reported_not_fatal(tmp_path):
    fx.make_nih(tmp_path)
    table = tmp_path / "nih" / "Data_Entry_2017_v2020.csv"
    table.write_text(table.read_text().replace("Nodule", "Nodlue"))
    problems = []
    sources.read_nih(tmp_path / "nih", problems=problems)
    assert any("Nodlue" in p and table.name in p for p in problems)
    fx.make_kermany(tmp_path)
    (tmp_path / "kermany" / "chest_xray" / "train" / "COVID").mkdir()
    problems = []
    sources.read_kermany(tmp_path / "kermany", problems=problems)
    assert any("COVID" in p and "unknown class folder" in p for p in problems)


def test_empty_folders_and_missing_data_give_instructions(tmp_path):
    (tmp_path / "kermany" / "chest_xray" / "train" / "NORMAL").mkdir(parents=True)
    with pytest.raises(SourceError, match="no images"):
        sources.read_kermany(tmp_path / "kermany")
    (tmp_path / "nih").mkdir()
    with pytest.raises(SourceError, match="Data_Entry_2017"):
        sources.read_nih(tmp_path / "nih")
    with pytest.raises(SourceError, match="download"):
        sources.read_cohen(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="mendeley.*|cxrlib download"):
        sources.read_sources(empty)


def test_unreadable_csv_is_named(tmp_path):
    (tmp_path / "cohen").mkdir()
    (tmp_path / "cohen" / "metadata.csv").write_bytes(b"\xff\xfe\x00garbage\x00\n\x00")
    with pytest.raises(SourceError, match="metadata.csv"):
        sources.read_cohen(tmp_path / "cohen")
