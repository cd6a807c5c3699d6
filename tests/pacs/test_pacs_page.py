"""The PACS page: without a connection it says how to configure one in one line; with a real Orthanc
it lists the studies by date, modality, views and a short hash — no patient name, ID or accession
number reaches the browser — and scores the chosen ones, storing their SRs.

The browser test runs the real server in Debian's Chromium and reads every WebSocket frame the
server sends; a screenshot goes to $CXR_E2E_SHOTS (default: the test's tmp folder).
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts._server import stop
from tests import pacs_fixtures as pf

ROOT = Path(__file__).resolve().parents[2]
IDENTIFIERS = ("Doe^Jane", "Doe", "MRN-", "ACC", "19600101")


@pytest.fixture(scope="module")
def small_pacs(tmp_path_factory, iu_xray_dir):
    if pf.missing_tools():
        pytest.skip(f"missing Debian tools: {pf.missing_tools()}")
    folder = tmp_path_factory.mktemp("pacs-page")
    with pf.Orthanc(folder / "orthanc") as pacs:
        uids = []
        for i, (frontal, lateral) in enumerate(pf.iu_pairs(iu_xray_dir, 3, skip=40)):
            uid = pf.study_uid_for(f"page-{i}")
            pacs.upload(pf.make_instance(frontal, folder / f"{i}.dcm", study_uid=uid, size=800, study_date="20261202",
                                         syntax="rle", indication="Fever." if i == 0 else "").path)
            if lateral is not None:
                pacs.upload(pf.make_instance(lateral, folder / f"{i}l.dcm", study_uid=uid, view="LL", size=700,
                                             series_number=2, study_date="20261202").path)
            uids.append(uid)
        yield pacs, uids


def _pacs_env(pacs: pf.Orthanc, monkeypatch) -> None:
    monkeypatch.setenv("CXR_PACS_URL", pacs.url)
    for key, value in pacs.env().items():
        monkeypatch.setenv(key, value)


def test_page_without_a_connection_says_how_in_one_line(app_env, monkeypatch):
    from streamlit.testing.v1 import AppTest
    monkeypatch.delenv("CXR_PACS_URL", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/pacs.py").run()
    assert not at.exception
    assert any("CXR_PACS_URL" in i.value and "CXR_PACS_USER" in i.value for i in at.info)


def test_page_lists_and_scores_without_identifiers(app_env, monkeypatch, small_pacs):
    from streamlit.testing.v1 import AppTest

    from core.pacs.connection import short_hash
    pacs, uids = small_pacs
    _pacs_env(pacs, monkeypatch)
    monkeypatch.setenv("CXR_WEIGHTS", str(ROOT / "weights"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240).run()
    at.switch_page("pages/pacs.py").run()
    at.checkbox(key="pacs_all").check().run()
    assert not at.exception and not at.error
    listed = at.dataframe[0].value
    assert sorted(listed["study"]) == sorted(short_hash(u) for u in uids)
    assert all(v.startswith("PA") for v in listed["views"]) and set(listed["modality"]) == {"DX"}
    at.session_state["pacs_table"] = {"selection": {"rows": [0, 1], "columns": [], "cells": []}}
    at.run()
    at.button(key="pacs_go").click().run()
    assert not at.exception and not at.error
    assert "2 scored" in at.success[0].value
    results = at.dataframe[1].value
    assert list(results["status"]) == ["scored", "scored"] and "Pneumonia" in results
    # issue 26: one decision per finding, from the one policy; what the image cannot support is not assessed
    # (no number), an assessed finding shows its decision and its calibrated number, the point is named
    assert set(results["Pneumonia"]) == {"not assessed"} and set(results["Consolidation"]) == {"not assessed"}
    assert all(c.split(" · ")[0] in ("flagged", "not flagged") for c in results["Cardiomegaly"])
    assert "flagged at specificity 0.90" in results                 # the point is named where the flags are
    captions = " ".join(c.value for c in at.caption)
    assert "flags at **specificity 0.90**" in captions and "Not assessed" in captions
    assert "of studies with Cardiomegaly" in captions
    shown = " ".join(str(e.value) for kind in (at.markdown, at.caption, at.success, at.info) for e in kind)
    shown += listed.to_csv() + results.to_csv()
    assert not any(i in shown for i in IDENTIFIERS)
    assert sum(len(pacs.instances_of(u, "SR")) for u in uids) == 2
    # another operating point, picked on the page: the third study is decided there, and its SR says so
    at.selectbox(key="pacs_point").set_value("specificity 0.95").run()
    listed = at.dataframe[0].value
    third = next(i for i, h in enumerate(listed["study"]) if listed["SR of this model"][i] == "no")
    at.session_state["pacs_table"] = {"selection": {"rows": [third], "columns": [], "cells": []}}
    at.run()
    at.button(key="pacs_go").click().run()
    assert not at.exception and not at.error
    assert "flagged at specificity 0.95" in at.dataframe[1].value
    assert "flags at **specificity 0.95**" in " ".join(c.value for c in at.caption)


def test_page_in_chromium_sends_no_patient_identifier(small_pacs, tmp_path):
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    from scripts._server import free_port, healthy
    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    from playwright.sync_api import expect, sync_playwright

    from core.pacs.connection import short_hash
    pacs, uids = small_pacs
    port = free_port()
    env = {**os.environ, "CXR_PACS_URL": pacs.url, **pacs.env(), "CXR_WEIGHTS": str(tmp_path / "no-weights"),
           "CXR_DB_PATH": str(tmp_path / "p.db"), "CXR_RUNLOG": str(tmp_path / "runs.db"),
           "CXR_SHARE_STATUS": str(tmp_path / "share.json")}
    theme = os.environ.get("CXR_E2E_THEME", "light")
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
           str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none",
           "--browser.gatherUsageStats", "false", "--theme.base", theme]
    log = (tmp_path / "streamlit.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    shots = Path(os.environ.get("CXR_E2E_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    try:
        deadline = time.monotonic() + 120
        while not healthy(url):
            assert proc.poll() is None and time.monotonic() < deadline, "streamlit did not start"
            time.sleep(0.5)
        frames: list[bytes] = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
                page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(
                    payload if isinstance(payload, bytes) else payload.encode())))
                page.goto(f"{url}/pacs", timeout=120_000)
                expect(page.get_by_role("heading", name="PACS", exact=True).first).to_be_visible(timeout=120_000)
                page.get_by_text("All studies (not only recent ones)").click()
                expect(page.get_by_test_id("stDataFrame").first).to_be_visible(timeout=60_000)
                page.wait_for_timeout(2000)
                expect(page.get_by_test_id("stException")).to_have_count(0)
                page.screenshot(path=str(shots / f"pacs_page_{theme}.png"), full_page=True)
                html = page.content()
            finally:
                browser.close()
        sent = b"".join(frames)
        assert all(short_hash(u).encode() in sent for u in uids)          # the table's data did arrive
        for ident in IDENTIFIERS:
            assert ident.encode() not in sent and ident not in html
        assert not any(u.encode() in sent for u in uids)                   # not even the study UID
    finally:
        stop(proc)
        log.close()


def test_predict_page_offers_the_sr_of_a_dicom_upload(app_env, monkeypatch, iu_xray_dir, tmp_path):
    """A JPEG Lossless DICOM upload (refused before the decoders were pinned) predicts, and the page offers
    its SR, which goes into the upload's study; a PNG upload has no study, so no SR is offered."""
    if pf.missing_tools():
        pytest.skip(f"missing Debian tools: {pf.missing_tools()}")
    import pydicom
    from streamlit.testing.v1 import AppTest

    from core.pacs.sr import algorithm_versions
    monkeypatch.setenv("CXR_WEIGHTS", str(ROOT / "weights"))
    frontal, _ = pf.iu_pairs(iu_xray_dir, 1, skip=50)[0]
    made = pf.make_instance(frontal, tmp_path / "x.dcm", study_uid=pf.study_uid_for("predict-page"), size=2000,
                            syntax="jpeg-lossless", monochrome1=True)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240).run()
    at.file_uploader(key="upload").upload("x.dcm", made.path.read_bytes(), "application/dicom")
    at.radio(key="text_kind").set_value("none")
    next(b for b in at.button if b.label == "Predict").click()
    at.run(timeout=240)
    assert not at.exception and not at.error
    labels = [x.proto.label for x in at.get("download_button")]
    assert "SR of this prediction (DICOM)" in labels
    result = at.session_state["predict_result"]
    sr = pydicom.dcmread(io.BytesIO(result["sr"]))
    # the SR names the model as served ("+int8" when the int8 image encoder ran: issue 26, item 7)
    assert sr.StudyInstanceUID == made.study_uid and algorithm_versions(sr) == {result["pred"].model}
    at.file_uploader(key="upload").upload(frontal.name, frontal.read_bytes(), "image/png")
    next(b for b in at.button if b.label == "Predict").click()
    at.run(timeout=240)
    assert "SR of this prediction (DICOM)" not in [x.proto.label for x in at.get("download_button")]


def test_predict_page_reads_the_indication_of_a_dicom_upload(app_env, monkeypatch, iu_xray_dir, tmp_path):
    """A DICOM whose header holds the indication fills the empty text box (indication mode), as the PACS
    command reads it; typed text is never replaced, and report mode is left alone."""
    from streamlit.testing.v1 import AppTest
    monkeypatch.setenv("CXR_WEIGHTS", str(ROOT / "weights"))
    frontal, _ = pf.iu_pairs(iu_xray_dir, 1, skip=51)[0]
    data = pf.make_instance(frontal, tmp_path / "i.dcm", study_uid=pf.study_uid_for("predict-indication"), size=600,
                            syntax="rle", indication="Shortness of breath.").path.read_bytes()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240).run()
    at.file_uploader(key="upload").upload("i.dcm", data, "application/dicom").run()
    assert not at.exception and at.text_area(key="text").value == "Shortness of breath."
    assert any("read from the DICOM header" in i.value for i in at.info)
    at.text_area(key="text").set_value("typed by the reader").run()
    at.file_uploader(key="upload").upload("j.dcm", data, "application/dicom").run()
    assert at.text_area(key="text").value == "typed by the reader"
    at.text_area(key="text").set_value("").run()
    at.radio(key="text_kind").set_value("report").run()
    at.file_uploader(key="upload").upload("k.dcm", data, "application/dicom").run()
    assert at.text_area(key="text").value == ""
