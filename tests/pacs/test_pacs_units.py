"""core.pacs without a server: credentials, URLs, the SR's identity and content, sharing with a PACS."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from core.pacs import connection as conn
from core.pacs import sr as srmod

ROOT = Path(__file__).resolve().parents[2]
FINDINGS = ["Pneumonia", "Edema", "Cardiomegaly", "Atelectasis", "Consolidation"]


def description():
    from core.model.description import read_description
    return read_description(ROOT / "weights")


def fake_prediction(model="v1+int8", mode="none", *, ood=False, fusion=None, calibrated=None, target=None):
    """A Prediction-shaped object decided by the one policy on the shipped weights' operating points."""
    from core.serving.decision import decide
    fusion = fusion or {f: 0.1 * (i + 1) for i, f in enumerate(FINDINGS)}
    pred = SimpleNamespace(fusion=fusion, image=dict(fusion), text={f: 0.3 for f in FINDINGS},
                           has_text=mode != "none", text_mode=mode, out_of_distribution=ood, model=model,
                           ood_reason="not a whole frontal chest X-ray" if ood else "",
                           image_reliable={f: f not in ("Pneumonia", "Consolidation") for f in FINDINGS},
                           evidence={f: {"auc": 0.8123, "ci": [0.7511, 0.8688], "positives": 65,
                                         "source": "cross-validation, 3 folds, out-of-fold", "reliable": True,
                                         "test": {"auc": 0.9, "ci": [0.8, 0.95], "positives": 5}} for f in FINDINGS},
                           calibrated=calibrated or {f: True for f in FINDINGS}, decision={},
                           operating_point_name="")
    d = decide(pred, description(), target)
    pred.decision, pred.operating_point_name = d.status(), d.operating_point
    return pred


def source_dicom(tmp_path) -> bytes:
    from tests import pacs_fixtures as pf
    pixels = (np.indices((300, 256)).sum(0) * 8).astype(np.uint16)
    made = pf.make_instance(Path("x.png"), tmp_path / "src.dcm", study_uid=pf.study_uid_for("unit"), pixels=pixels)
    return made.path.read_bytes()


def test_credentials_from_environment_or_netrc(tmp_path):
    url = "http://pacs.example:8042/dicom-web"
    assert conn.credentials(url, {"CXR_PACS_USER": "u", "CXR_PACS_PASSWORD": "p"}) == ("u", "p")
    with pytest.raises(conn.PacsConfigError, match="both"):
        conn.credentials(url, {"CXR_PACS_USER": "u"})
    netrc = tmp_path / "netrc"
    netrc.write_text("machine pacs.example login alice password s3cret\n")
    netrc.chmod(0o600)
    assert conn.credentials(url, {"NETRC": str(netrc)}) == ("alice", "s3cret")
    assert conn.credentials("http://other:1/dicom-web", {"NETRC": str(netrc)}) is None
    pacs = conn.connect(url, environ={"CXR_PACS_USER": "u", "CXR_PACS_PASSWORD": "hunter22"})
    assert "hunter22" not in repr(pacs)


@pytest.mark.parametrize("url", ["ftp://x/dicom-web", "pacs:8042", "http://alice:pw@pacs/dicom-web", ""])
def test_bad_urls_refused(url):
    with pytest.raises(conn.PacsConfigError):
        conn.check_url(url)


def test_unreachable_server_is_one_line_of_pacs_unavailable():
    from tests.pacs_fixtures import free_port
    pacs = conn.connect(f"http://127.0.0.1:{free_port()}/dicom-web", environ={}, timeout=5)
    with pytest.raises(conn.PacsUnavailable, match="cannot reach the PACS") as err:
        pacs.check()
    assert "\n" not in str(err.value)


def test_version_identity():
    assert srmod.base_version("2026-x+refit1+int8") == "2026-x+refit1"
    assert srmod.base_version("2026-x+refit1") == "2026-x+refit1"


def _sr(tmp_path, pred):
    import pydicom
    return pydicom.dcmread(io.BytesIO(srmod.sr_file(source_dicom(tmp_path), pred, description())))


def _dciodvfy_errors(tmp_path, ds) -> list[str]:
    import shutil
    if not shutil.which("dciodvfy"):
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    path = tmp_path / "sr.dcm"
    ds.save_as(path, enforce_file_format=True)
    check = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (check.stdout + check.stderr).splitlines() if line.startswith("Error")]


def _numbers(ds) -> list[str]:
    """Every numeric value (NUM items) anywhere in the SR's content tree, as written."""
    out = []
    for item in ds.get("ContentSequence", []) or []:
        if item.ValueType == "NUM":
            out.append(str(item.MeasuredValueSequence[0].NumericValue))
        out.extend(_numbers(item))
    return out


def test_sr_states_the_decisions_of_the_one_policy(tmp_path):
    """Per assessed finding: Present / Absent as decided, the operating point in words and numbers, the
    calibrated number to 3 decimals and the cross-validated evidence; per finding not assessed one item,
    no number (issue 26, Deliver 5)."""
    from core.serving.decision import decide
    pred = fake_prediction(model="v1", calibrated={f: f != "Atelectasis" for f in FINDINGS})
    ds = _sr(tmp_path, pred)
    decisions = decide(pred, description())
    said = srmod.read_sr(ds)
    assert said["version"] == "v1" and said["text_mode"] == "none" and said["out_of_distribution"] is False
    assert said["operating_point"] == decisions.operating_point == "specificity 0.90" and said["assessment"] is None
    assert {f: x["status"] for f, x in said["findings"].items()} == decisions.status()
    assert decisions.not_assessed() == {f: x["reason"] for f, x in said["findings"].items()
                                        if x["status"] == "not assessed"} != {}
    for d in decisions:
        got = said["findings"][d.finding]
        if not d.assessed:
            assert set(got) == {"status", "reason"}                        # one item, no number
            continue
        op = d.operating_point
        assert got["present"] == d.flagged and got["operating_point"] == "specificity 0.90"
        assert got["sensitivity"] == round(op["sensitivity"], 3) and got["specificity_lo"] == round(
            op["specificity_ci"][0], 3)
        assert got["ppv"] == round(op["ppv"], 3) and "Measured on" in got["meaning"] and "%" in got["meaning"]
        assert got["auc"] == 0.812 and (got["auc_lo"], got["auc_hi"], got["positives"]) == (0.751, 0.869, 65)
        assert "cross-validation" in got["evidence"] and "on 65 positives" in got["evidence"]
        assert got["calibrated"] == (d.finding != "Atelectasis")
        assert got.get("probability") == d.probability                   # None where not calibrated
    assert "probability" not in said["findings"]["Atelectasis"]
    numbers = _numbers(ds)
    assert numbers and all(len(n.split(".")[1]) <= 3 for n in numbers if "." in n), numbers  # no 14 digits
    text = str(ds)
    for hidden in ("0.8123", "0.9", "P-FUSED", "P-IMAGE", "THRESHOLD"):   # no raw head number, no test AUC
        assert f'"{hidden}"' not in text and f"'{hidden}'" not in text
    assert not _dciodvfy_errors(tmp_path, ds)


def test_sr_of_an_out_of_distribution_image_reports_no_finding(tmp_path):
    pred = fake_prediction(model="v1", ood=True)
    ds = _sr(tmp_path, pred)
    said = srmod.read_sr(ds)
    assert said["findings"] == {} and said["out_of_distribution"] is True and said["operating_point"] is None
    assert said["assessment"].startswith("Not assessed: out-of-distribution image: not a whole frontal")
    assert _numbers(ds) == []
    assert "Measurement Group" not in str(ds) and srmod.algorithm_versions(ds) == {"v1"}
    assert not _dciodvfy_errors(tmp_path, ds)


def test_one_uid_one_content(tmp_path):
    """The instance UID follows the content: the same prediction gives the same instance; the int8 image
    encoder (another served version), another operating point or other numbers give another one."""
    import pydicom
    a, again = _sr(tmp_path, fake_prediction("v1")), _sr(tmp_path, fake_prediction("v1"))
    assert a.SOPInstanceUID == again.SOPInstanceUID and a.SeriesInstanceUID == again.SeriesInstanceUID
    int8 = _sr(tmp_path, fake_prediction("v1+int8"))
    assert int8.SOPInstanceUID != a.SOPInstanceUID and int8.SeriesInstanceUID != a.SeriesInstanceUID
    assert srmod.algorithm_versions(int8) == {"v1+int8"} and srmod.algorithm_versions(a) == {"v1"}
    other_point = _sr(tmp_path, fake_prediction("v1", target="sensitivity 0.80"))
    assert other_point.SOPInstanceUID != a.SOPInstanceUID
    assert srmod.read_sr(other_point)["operating_point"] == "sensitivity 0.80"
    nudged = fake_prediction("v1", fusion={f: 0.1 * (i + 1) + (0.002 if f == "Edema" else 0)
                                           for i, f in enumerate(FINDINGS)})
    assert _sr(tmp_path, nudged).SOPInstanceUID != a.SOPInstanceUID
    tiny = fake_prediction("v1", fusion={f: 0.1 * (i + 1) + 1e-9 for i, f in enumerate(FINDINGS)})
    assert _sr(tmp_path, tiny).SOPInstanceUID == a.SOPInstanceUID     # what it says is the same
    # the exists check: ours for these weights whatever the precision, at the operating point asked for
    assert srmod.is_ours_for(int8, "v1", ["specificity 0.90"]) and srmod.is_ours_for(a, "v1+int8")
    assert not srmod.is_ours_for(a, "v2") and not srmod.is_ours_for(a, "v1", ["sensitivity 0.80"])
    ood = _sr(tmp_path, fake_prediction("v1", ood=True))
    assert srmod.is_ours_for(ood, "v1", ["sensitivity 0.80"])        # names no point: holds for any
    src = pydicom.dcmread(io.BytesIO(source_dicom(tmp_path)), stop_before_pixels=True)
    assert a.StudyInstanceUID == src.StudyInstanceUID and a.PatientID == src.PatientID
    assert all(u.startswith("2.25.") and len(u) <= 64 for u in (a.SOPInstanceUID, a.SeriesInstanceUID))


def test_sr_refuses_decisions_other_than_those_shown(tmp_path):
    pred = fake_prediction("v1")
    pred.decision = {f: "flagged" for f in FINDINGS}
    with pytest.raises(srmod.SrError, match="do not match"):
        srmod.sr_file(source_dicom(tmp_path), pred, description())


def test_sr_of_a_dicom_without_uids_is_one_line(tmp_path):
    import pydicom
    ds = pydicom.dcmread(io.BytesIO(source_dicom(tmp_path)))
    del ds.StudyInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with pytest.raises(srmod.SrError, match="UID"):
        srmod.sr_file(buf.getvalue(), fake_prediction(), description())


def test_outcome_line_and_json_name_the_point_and_show_no_hidden_number():
    """pacs.py's line per study: what is flagged at the named point, what is not assessed; no number.
    Its JSON: the decisions, the operating point and its name; text null in image-only mode."""
    from core.pacs.run import Outcome
    from core.serving.decision import decide
    pred = fake_prediction("v1", fusion={"Pneumonia": 0.9, "Edema": 0.428, "Cardiomegaly": 0.9, "Atelectasis": 0.01,
                                         "Consolidation": 0.9})
    d = decide(pred, description())
    o = Outcome("1.2.3", "scored", text_mode="none", fusion=pred.fusion, image=pred.image, text=None, model="v1",
                out_of_distribution=False, decisions=d)
    line = o.line()
    assert "flagged at specificity 0.90: Edema, Cardiomegaly · not assessed: Pneumonia, Consolidation: not " in line
    assert not any(ch.isdigit() for ch in line.split("specificity 0.90")[1]), line      # no probability
    assert "0.428" not in line and "highest" not in line
    j = o.to_json()
    assert j["text"] is None and j["operating_point_name"] == "specificity 0.90"
    assert j["decision"] == d.status() and j["operating_point"] == d.operating_points()
    assert set(j["operating_point"]) == set(d.assessed()) and j["probability"]["Pneumonia"] is None
    assert {"sensitivity", "specificity", "sensitivity_ci", "specificity_ci", "source"} <= set(
        j["operating_point"]["Cardiomegaly"])
    ood = Outcome("1.2.3", "scored", text_mode="none", decisions=decide(fake_prediction("v1", ood=True),
                                                                         description()))
    assert "not assessed: out-of-distribution image" in ood.line() and "Flagged" not in ood.line()
    assert ood.to_json()["decision"] == dict.fromkeys(FINDINGS, "not assessed")


def test_pacs_cli_refuses_an_unknown_operating_point_in_one_line():
    r = subprocess.run([sys.executable, "scripts/pacs.py", "--url", "http://127.0.0.1:9/dicom-web", "--all",
                        "--operating-point", "specificity 0.5"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unknown operating point" in r.stderr


def test_overlay_explains_an_assessed_finding_only():
    from core.pacs.overlay import leading_finding
    from core.serving.decision import decide
    pred = fake_prediction("v1", fusion={"Pneumonia": 0.99, "Edema": 0.01, "Cardiomegaly": 0.02,
                                         "Atelectasis": 0.03, "Consolidation": 0.99})
    assert leading_finding(decide(pred, description()), pred.fusion) not in ("Pneumonia", "Consolidation", None)
    assert leading_finding(decide(fake_prediction("v1", ood=True), description()), pred.fusion) is None


def test_share_refuses_an_app_with_a_pacs_connection_without_the_flag():
    from core.serving import sharing as share
    env = {share.TOKEN_ENV: "tok", share.AUTH_ENV: "alice:long-password", share.PACS_URL_ENV: "http://pacs/dicom-web"}
    with pytest.raises(share.ShareConfigError, match="--allow-pacs"):
        share.resolve_config(port=8501, environ=env)
    assert share.resolve_config(port=8501, environ=env, allow_pacs=True).auth == "alice:long-password"
    clean = {k: v for k, v in os.environ.items() if k not in (share.TOKEN_ENV, share.AUTH_ENV)}
    r = subprocess.run([sys.executable, "scripts/share.py", "--auth", "alice:long-password"], cwd=ROOT,
                       env={**clean, **env, "CXR_SHARE_STATUS": "/nonexistent/share.json"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "PACS connection" in r.stderr


def test_indication_in_a_dicom_file_for_the_predict_page(tmp_path):
    """The Predict page fills its text box from an uploaded DICOM's indication, read as the PACS command reads it."""
    from core.pacs.study_work import indication_in
    from tests import pacs_fixtures as pf
    pixels = (np.indices((300, 256)).sum(0) * 8).astype(np.uint16)
    with_it = pf.make_instance(Path("x.png"), tmp_path / "a.dcm", study_uid=pf.study_uid_for("ind"), pixels=pixels,
                               indication="Cough,\x07 fever.  ").path.read_bytes()
    without = pf.make_instance(Path("x.png"), tmp_path / "b.dcm", study_uid=pf.study_uid_for("none"),
                               pixels=pixels).path.read_bytes()
    assert indication_in(with_it) == "Cough, fever."          # cleaned as every text is (no control characters)
    assert indication_in(without) == "" and indication_in(b"\x89PNG not dicom") == ""
    assert indication_in(with_it[:400]) == ""                 # a truncated header: nothing, no exception
