"""Dataset readers (core.data.sources) on tiny copies of each official layout: MIMIC-CXR-JPG,
CheXpert and a CSV manifest, built from IU X-ray studies (or synthetic ones for the unit
checks), plus MIMIC report sectioning and the uncertain-label policy."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from core.data.reports import DataLayoutError
from core.data.sources import DATASETS, check_layout, load_collection
from core.data.sources.policy import LabelValueError, apply_policy, parse_cell
from core.data.sources.sections import section_report
from tests.layouts import iu_studies, make_chexpert, make_manifest, make_mimic, synthetic_studies


def test_registry_names():
    assert DATASETS == ("openi", "mimic-cxr", "chexpert", "csv")
    with pytest.raises(DataLayoutError, match="unknown dataset"):
        load_collection("padchest", Path("."))


def test_uncertain_policy():
    assert [parse_cell(c) for c in ("1.0", "0.0", "-1.0", "", "1", "0", "-1", None)] == [1, 0, -1, 0, 1, 0, -1, 0]
    with pytest.raises(LabelValueError):
        parse_cell("2.0")
    raw = [1, -1, 0, -1, 0]
    assert apply_policy(raw, "ignore") == ([1, 0, 0, 0, 0], [1, 0, 1, 0, 1])
    assert apply_policy(raw, "positive") == ([1, 1, 0, 1, 0], [1, 1, 1, 1, 1])
    assert apply_policy(raw, "negative") == ([1, 0, 0, 0, 0], [1, 1, 1, 1, 1])


@pytest.mark.parametrize("heading,canonical", [
    ("INDICATION", "INDICATION"), ("HISTORY", "INDICATION"), ("REASON FOR EXAM", "INDICATION"),
    ("CLINICAL INFORMATION", "INDICATION"), ("CLINICAL HISTORY", "INDICATION"), ("FINDINGS", "FINDINGS"),
    ("FINDINGS AND IMPRESSION", "FINDINGS"), ("IMPRESSION", "IMPRESSION"), ("CONCLUSION", "IMPRESSION")])
def test_sectioning_heading_variants(heading, canonical):
    text = (f"                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n\n"
            f" {heading}:  body text\n  continues here.\n\n TECHNIQUE:  PA and lateral.\n")
    assert section_report(text)[canonical] == "body text continues here."
    assert "TECHNIQUE" not in section_report(text) and "EXAMINATION" not in section_report(text)


def test_sectioning_real_shape():
    text = (" WET READ: ___ ___ no pneumonia\n\n                                 FINAL REPORT\n"
            " REASON FOR EXAMINATION:  Evaluation of the patient with dyspnea.\n\n"
            " Comparison is made with prior study.\n\n FINDINGS:\n\n Heart size is enlarged.  Mild pulmonary edema.\n\n"
            " IMPRESSION:\n\n Cardiomegaly and mild edema.\n\n RECOMMENDATION(S):  Follow-up.\n")
    s = section_report(text)
    assert s["INDICATION"].startswith("Evaluation of the patient with dyspnea.")
    assert s["FINDINGS"] == "Heart size is enlarged. Mild pulmonary edema."
    assert s["IMPRESSION"] == "Cardiomegaly and mild edema."
    # a report without FINDINGS/IMPRESSION headings keeps its prose as findings
    assert section_report("The lungs are clear. No effusion.\n") == {"FINDINGS": "The lungs are clear. No effusion."}


def test_mimic_layout(tmp_path):
    studies = synthetic_studies(20)
    root = make_mimic(tmp_path / "mimic", studies)
    coll = load_collection("mimic-cxr", root, uncertain_policy="ignore")
    assert coll.name == "mimic-cxr" and coll.has_text and len(coll.reports) == 20
    by_uid = {r.uid: r for r in coll.reports}
    for s in studies:
        r = by_uid[s.uid]
        assert len(r.image_ids) == len(s.frontals)  # laterals are left out
        assert all(coll.image_paths[i].suffix == ".jpg" and coll.image_paths[i].is_file() for i in r.image_ids)
        assert r.label_mask == [0 if v == -1 else 1 for v in s.raw]
        assert r.labels == [int(v == 1) for v in s.raw]
        assert r.patient == s.patient and r.text("report").startswith(s.findings[:10])
        assert r.text("indication").endswith("Cough.")
    # the official split is by patient and complete
    split = coll.split
    assert sorted(u for v in split.values() for u in v) == sorted(by_uid)
    side = {by_uid[u].patient: k for k, v in split.items() for u in v}
    assert all(side[by_uid[u].patient] == k for k, v in split.items() for u in v)
    positive = load_collection("mimic-cxr", root, uncertain_policy="positive")
    r = next(r for r in positive.reports if -1 in next(s for s in studies if s.uid == r.uid).raw)
    assert r.labels[2] == 1 and all(r.label_mask)


def test_chexpert_layout(tmp_path):
    studies = synthetic_studies(24)
    root = make_chexpert(tmp_path / "CheXpert-v1.0-small", studies, n_valid=4)
    coll = load_collection("chexpert", root, uncertain_policy="negative")
    assert not coll.has_text and len(coll.reports) == 24
    assert len(coll.split["test"]) == 4 and all(u.startswith("valid/") for u in coll.split["test"])
    train_patients = {r.patient for r in coll.reports if r.uid in set(coll.split["train"])}
    val_patients = {r.patient for r in coll.reports if r.uid in set(coll.split["val"])}
    assert coll.split["val"] and not train_patients & val_patients
    assert all(len(r.image_ids) == 1 for r in coll.reports)  # laterals left out
    assert all(all(r.label_mask) for r in coll.reports)
    assert all(r.text("report") == "" for r in coll.reports)


def test_csv_manifest(tmp_path):
    studies = synthetic_studies(20)
    path = make_manifest(tmp_path / "export", studies)
    coll = load_collection("csv", path)
    assert len(coll.reports) == 20 and coll.has_text
    assert load_collection("csv", path.parent).reports[0].uid == coll.reports[0].uid  # a folder with manifest.csv
    side = {r.patient: k for k, v in coll.split.items() for r in coll.reports if r.uid in set(v)}
    assert all(side[r.patient] == k for k, v in coll.split.items() for r in coll.reports if r.uid in set(v))
    given = load_collection("csv", make_manifest(tmp_path / "export2", studies, with_split=True))
    assert {u for u in given.split["test"]} == {s.uid for s in studies if int(s.patient) % 4 == 3}


def test_iu_based_copies(tmp_path, iu_xray_dir):
    studies = iu_studies(iu_xray_dir, 24)
    coll = load_collection("mimic-cxr", make_mimic(tmp_path / "mimic", studies))
    assert len(coll.reports) == 24 and sum(any(r.labels) or 0 in r.label_mask for r in coll.reports) == 12
    assert sum(1 for r in coll.reports if r.sections.get("IMPRESSION")) >= 12  # variants map to IMPRESSION
    assert sum(0 in r.label_mask for r in coll.reports) >= 1
    assert len(load_collection("chexpert", make_chexpert(tmp_path / "CheXpert-v1.0-small", studies)).reports) == 24


# ------------------------------------------------------------- bad layouts
def _rewrite_gz(path: Path, edit) -> None:
    path.write_bytes(gzip.compress(edit(gzip.decompress(path.read_bytes()).decode()).encode()))


def test_bad_layouts_one_sentence(tmp_path):
    studies = synthetic_studies(10)
    with pytest.raises(DataLayoutError, match="MIMIC-CXR-JPG layout"):
        check_layout("mimic-cxr", tmp_path)
    root = make_mimic(tmp_path / "m1", studies)
    _rewrite_gz(root / "mimic-cxr-2.0.0-chexpert.csv.gz", lambda t: t.replace("Cardiomegaly", "Cardio", 1))
    with pytest.raises(DataLayoutError, match="lacks the column"):
        load_collection("mimic-cxr", root)
    root = make_mimic(tmp_path / "m2", studies)
    _rewrite_gz(root / "mimic-cxr-2.0.0-chexpert.csv.gz", lambda t: t.replace("-1.0", "maybe", 1))
    with pytest.raises(DataLayoutError, match="'maybe' is not one of"):
        load_collection("mimic-cxr", root)
    root = make_mimic(tmp_path / "m3", studies)
    for jpg in next((root / "files").rglob("*.jpg")).parent.glob("*.jpg"):  # a study's frontal (and lateral)
        jpg.unlink()
    with pytest.raises(DataLayoutError, match="does not exist"):
        load_collection("mimic-cxr", root)
    root = make_mimic(tmp_path / "m4", studies)  # a labelled study with no image at all
    _rewrite_gz(root / "mimic-cxr-2.0.0-chexpert.csv.gz", lambda t: t + "10000099,59999999" + ",".ljust(14, ",") + "\n")
    with pytest.raises(DataLayoutError, match="has no image"):
        load_collection("mimic-cxr", root)
    with pytest.raises(DataLayoutError, match="CheXpert layout"):
        check_layout("chexpert", tmp_path)
    path = make_manifest(tmp_path / "c1", studies)
    path.write_text(path.read_text().replace("Edema", "Oedema", 1))
    with pytest.raises(DataLayoutError, match="lacks the column"):
        load_collection("csv", path)
