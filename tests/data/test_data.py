"""Open-I reader, label mapping and splits: on small folders the tests make, and on the
real report XMLs when ../shared/iu-xray (or $IU_XRAY_DIR) is present."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.data.labels import FINDINGS, labels_from_mesh
from core.data.reports import DataLayoutError, load_reports, parse_report, split_reports
from tests.synthetic import make_openi


def test_label_mapping_documented_synonyms():
    assert labels_from_mesh(["normal"]) == [0, 0, 0, 0, 0]
    assert labels_from_mesh(["Pulmonary Atelectasis/base/left"]) == [0, 0, 0, 1, 0]
    assert labels_from_mesh(["Cardiac Shadow/enlarged/mild"]) == [0, 0, 1, 0, 0]
    assert labels_from_mesh(["Pulmonary Congestion/mild", "Pneumonia"]) == [1, 1, 0, 0, 0]
    assert labels_from_mesh(["Consolidation/lung/base"]) == [0, 0, 0, 0, 1]
    # a qualifier alone is not the finding, nor is a different descriptor that shares words
    assert labels_from_mesh(["Cardiac Shadow/normal", "Pulmonary Edema Fluid Sign X"]) == [0, 0, 0, 0, 0]


def test_reader_on_made_folder(tmp_path):
    root = make_openi(tmp_path, 20)
    reports = load_reports(root)
    assert len(reports) == 20  # the text-only report is left out
    r = next(r for r in reports if r.uid == "3")
    assert r.image_ids == ["CXR3_IM-0003-1001"]
    assert r.text("report").startswith("Cardiomegaly with pulmonary edema")
    assert r.text("indication") == "Cough and fever."
    assert r.text("none") == ""
    assert r.labels == [0, 1, 1, 0, 0]
    with pytest.raises(ValueError):
        r.text("summary")
    assert len(load_reports(root, require_image=False)) == 21


def test_reader_rejects_wrong_layout(tmp_path):
    with pytest.raises(DataLayoutError, match="does not exist"):
        load_reports(tmp_path / "nope")
    (tmp_path / "NLMCXR_png").mkdir()
    with pytest.raises(DataLayoutError, match="Open-I layout"):
        load_reports(tmp_path)


def test_split_is_by_report_seeded_and_stratified(tmp_path):
    reports = load_reports(make_openi(tmp_path, 60, images_per_report=2))
    a, b = split_reports(reports, seed=3), split_reports(reports, seed=3)
    assert a == b
    assert split_reports(reports, seed=4) != a
    sets = [set(a[s]) for s in ("train", "val", "test")]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert set().union(*sets) == {r.uid for r in reports}
    labels = {r.uid: r.labels for r in reports}
    for s in ("train", "val", "test"):  # every split sees every finding here
        for k in range(len(FINDINGS)):
            assert any(labels[u][k] for u in a[s]), (s, FINDINGS[k])


def test_real_collection(iu_xray_dir):
    reports = load_reports(iu_xray_dir)
    assert len(reports) == 3119  # reports with at least one frontal PNG in the copy
    by_uid = {r.uid: r for r in reports}
    assert by_uid["1"].image_ids == ["CXR1_1_IM-0001-4001"]  # 3001 is lateral: not in the copy
    assert len(by_uid["1015"].image_ids) == 1  # two byte-identical images deduplicated
    png = Path(iu_xray_dir) / "NLMCXR_png"
    assert all((png / f"{i}.png").is_file() for r in reports for i in r.image_ids)
    prevalence = [sum(r.labels[k] for r in reports) for k in range(len(FINDINGS))]
    assert all(p >= 20 for p in prevalence), prevalence
    split = split_reports(reports, seed=0)
    seen = [u for s in split.values() for u in s]
    assert len(seen) == len(set(seen)) == len(reports)  # no report in two splits


def test_parse_real_xml(iu_xray_dir):
    r = parse_report(Path(iu_xray_dir) / "NLMCXR_reports" / "ecgen-radiology" / "1.xml")
    assert r.uid == "1" and r.mesh_major == ["normal"]
    assert r.sections["INDICATION"] == "Positive TB test"
    assert "CXR1_1_IM-0001-4001" in r.image_ids
