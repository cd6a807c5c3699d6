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

ROOT = Path(__file__).resolve().parents[1]
FINDINGS = ["Pneumonia", "Edema", "Cardiomegaly", "Atelectasis", "Consolidation"]


def fake_prediction(model="v1+int8", mode="indication"):
    return SimpleNamespace(fusion={f: 0.1 * i for i, f in enumerate(FINDINGS)}, image={f: 0.2 for f in FINDINGS},
                           text={f: 0.3 for f in FINDINGS}, thresholds={f: 0.25 for f in FINDINGS},
                           has_text=mode != "none", text_mode=mode, out_of_distribution=False, model=model,
                           image_reliable={f: i % 2 == 0 for i, f in enumerate(FINDINGS)},
                           evidence={f: {"auc": 0.8} for f in FINDINGS},
                           calibrated={f: f in ("Cardiomegaly", "Atelectasis") for f in FINDINGS})


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


def test_version_identity_and_fixed_uids():
    assert srmod.base_version("2026-x+refit1+int8") == "2026-x+refit1"
    assert srmod.base_version("2026-x+refit1") == "2026-x+refit1"
    a = srmod.sr_uids("1.2.3", "v1")
    assert a == srmod.sr_uids("1.2.3", "v1+int8")            # the precision serving it is not its identity
    assert a != srmod.sr_uids("1.2.3", "v2") and a != srmod.sr_uids("1.2.4", "v1")
    assert all(u.startswith("2.25.") and len(u) <= 64 for u in a)


def test_sr_content_and_reading_it_back(tmp_path):
    import pydicom
    data = source_dicom(tmp_path)
    out = srmod.sr_file(data, fake_prediction())
    ds = pydicom.dcmread(io.BytesIO(out))
    src = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.PatientID == src.PatientID
    assert ds.SOPInstanceUID == srmod.sr_uids(src.StudyInstanceUID, "v1")[1]
    assert srmod.algorithm_versions(ds) == {"v1"}
    numbers = srmod.read_probabilities(ds)
    assert set(numbers) == set(FINDINGS)
    assert numbers["Consolidation"]["fused"] == pytest.approx(0.4) and numbers["Consolidation"]["present"]
    assert not numbers["Pneumonia"]["present"] and numbers["Pneumonia"]["threshold"] == pytest.approx(0.25)
    # whether each number is calibrated, and whether the image can support the finding, travel with it
    assert {f for f in FINDINGS if numbers[f]["calibrated"]} == {"Cardiomegaly", "Atelectasis"}
    assert [numbers[f]["supports"] for f in FINDINGS] == [True, False, True, False, True]
    text = str(ds)
    for code in ("233604007", "19242006", "8186001", "46621007", "95436008", "52101004", "2667000"):
        assert code in text
    assert "MODE-INDICATION" in text


def test_sr_of_a_dicom_without_uids_is_one_line(tmp_path):
    import pydicom
    ds = pydicom.dcmread(io.BytesIO(source_dicom(tmp_path)))
    del ds.StudyInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with pytest.raises(srmod.SrError, match="UID"):
        srmod.sr_file(buf.getvalue(), fake_prediction())


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
