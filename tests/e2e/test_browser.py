"""Real browser, real server: upload an IU X-ray with its report in Chromium, predict, explain,
then find the entry in Batch review and in the SQLite log. Screenshots of every page go to
$CXR_E2E_SHOTS (default: the test's tmp folder) for a human to look at.

    CXR_E2E_SHOTS=/tmp/e2e_shots python -m pytest tests/e2e -q

Needs Debian's Chromium at /usr/bin/chromium (or $CXR_E2E_CHROMIUM) and the playwright package;
skips with the reason otherwise. Fixtures: tests/e2e/conftest.py and tests/conftest.py.
"""
from __future__ import annotations

import csv
import io
import os
import re
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from core.data.labels import FINDINGS
from core.store import PredictionStore, hashed_name

CHROMIUM = Path(os.environ.get("CXR_E2E_CHROMIUM", "/usr/bin/chromium"))  # same as conftest.py
pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install playwright)")
if not CHROMIUM.is_file():
    pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set CXR_E2E_CHROMIUM)",
                allow_module_level=True)

from playwright.sync_api import Page, expect  # noqa: E402

LOAD_MS = 120_000     # first page load: the server imports pandas/plotly on a busy 2-core machine
PREDICT_MS = 180_000  # first prediction loads torch and the model
STEP_MS = 60_000      # ordinary reruns


def _study(iu_xray_dir: Path) -> tuple[Path, str]:
    """A frontal PNG and its report text (FINDINGS + IMPRESSION), preferring a study coded
    with cardiomegaly so the screenshots show something above threshold."""
    from core.data.reports import parse_report

    png_dir = iu_xray_dir / "NLMCXR_png"
    xmls = sorted((iu_xray_dir / "NLMCXR_reports" / "ecgen-radiology").glob("*.xml"),
                  key=lambda p: (len(p.stem), p.stem))
    fallback = None
    for path in xmls[:400]:
        try:
            report = parse_report(path)
        except ET.ParseError:
            continue
        text = report.text("report")
        images = [png_dir / f"{i}.png" for i in report.image_ids if (png_dir / f"{i}.png").is_file()]
        if not (images and report.sections.get("FINDINGS") and report.sections.get("IMPRESSION")):
            continue
        if any("cardiomegaly" in m.lower() for m in report.mesh_major):
            return images[0], text
        fallback = fallback or (images[0], text)
    if fallback is None:
        pytest.skip(f"no report with FINDINGS, IMPRESSION and a PNG among the first XMLs of {iu_xray_dir}")
    return fallback


def _shot(page: Page, folder: Path, name: str) -> None:
    """Whole-page screenshot. Streamlit scrolls inside its main container, not the document, so
    grow the viewport to the content's height for the shot, then restore it."""
    size = page.viewport_size
    page.mouse.move(0, 0)  # no hover toolbars in the picture
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll("
                           "'[data-testid=stMain], [data-testid=stSidebarContent]')].map(e => e.scrollHeight), 0)")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height) + 40, 8000))})
    page.wait_for_timeout(1500)  # let plotly and the data grid re-layout
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
    page.set_viewport_size(size)


def _wait_idle(page: Page, timeout: int = STEP_MS) -> None:
    """Wait until no script run is in progress (the 'Running…' status widget has gone)."""
    page.wait_for_timeout(300)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=timeout)


def _goto(page: Page, title: str) -> None:
    """Follow the sidebar link (same browser session) and wait for the page to finish drawing."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    expect(page.get_by_role("heading", name=title, exact=True).first).to_be_visible(timeout=STEP_MS)
    _wait_idle(page)
    expect(page.get_by_test_id("stException")).to_have_count(0)


def _server_log(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.is_file() else ""


def test_upload_predict_explain_review(shipped_app_server, browser_page, shots_dir, iu_xray_dir):
    url, env, log = shipped_app_server
    page = browser_page
    image, report_text = _study(iu_xray_dir)
    stored = hashed_name(image.name, image.read_bytes())  # the default: no patient name from the file
    outside = []  # defect 6: in a hospital network nothing may leave the machine
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((url, "data:", "blob:")) else None)

    # -- Predict page: upload, report mode, text, Predict --------------------------------------
    page.goto(url, timeout=LOAD_MS)
    expect(page.get_by_role("heading", name="Predict", exact=True)).to_be_visible(timeout=LOAD_MS)
    uploader = page.get_by_test_id("stFileUploaderDropzoneInput")
    expect(uploader).to_have_count(1, timeout=STEP_MS)
    _wait_idle(page)
    _shot(page, shots_dir, "01_predict_empty")

    uploader.set_input_files(str(image))
    # the chip shows a shortened name; its remove button carries the full one
    expect(page.get_by_role("button", name=f"Remove {image.name}")).to_be_visible(timeout=STEP_MS)
    page.get_by_test_id("stRadio").get_by_text("Report — report QA").click()
    _wait_idle(page)
    box = page.get_by_test_id("stTextArea").locator("textarea")
    expect(box).to_be_enabled(timeout=STEP_MS)
    box.fill(report_text)
    box.press("Tab")  # blur commits the text area's value to the server
    _wait_idle(page)
    page.get_by_role("button", name="Predict", exact=True).click()

    heading = page.get_by_role("heading", name=f"Result — {stored}")
    try:
        expect(heading).to_be_visible(timeout=PREDICT_MS)
    except AssertionError:
        _shot(page, shots_dir, "02_predict_failed")
        raise AssertionError(f"no result after Predict; server log:\n{_server_log(log)}") from None
    _wait_idle(page, PREDICT_MS)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_text(re.compile(r"text mode report"))).to_be_visible()

    # -- the log holds exactly this one prediction ---------------------------------------------
    with sqlite3.connect(env["CXR_DB_PATH"]) as conn:
        rows = conn.execute("SELECT id, image_name, text_mode FROM predictions").fetchall()
    assert len(rows) == 1 and rows[0][1] == stored and rows[0][2] == "report", rows
    pid = rows[0][0]
    expect(page.get_by_text(f"logged as #{pid}")).to_be_visible()

    # -- the decisions at their operating point; the chart labels each shown number -------------
    expect(page.get_by_text(re.compile(r"at specificity 0\.98 \(image \+ report\)")).first).to_be_visible()
    row = PredictionStore(env["CXR_DB_PATH"]).get(pid)
    assert row["operating_point_name"] == "specificity 0.98" and set(row["decision"]) == set(FINDINGS)
    shown = {f: row["fusion"][f] for f, status in row["decision"].items()
             if status != "not assessed" and row["calibrated"].get(f)}  # what a reader may see a number for
    charts = page.get_by_test_id("stPlotlyChart").filter(visible=True)
    expect(charts.first).to_be_visible(timeout=STEP_MS)
    fused = charts.first
    for finding in shown:
        expect(fused).to_contain_text(finding, timeout=STEP_MS)
    bar_labels = fused.locator("g.textpoint text").all_text_contents()  # the value column right of the axis
    assert sorted(bar_labels) == sorted(f"{v:.3f}" for v in shown.values()), (bar_labels, shown)
    for f in row["decision"]:  # a flag says what it means, in words and numbers
        if row["decision"][f] == "flagged":
            expect(page.get_by_text(re.compile(rf"of studies with {f} \(\d+ positives\)")).first).to_be_visible()

    # -- Why? request the attribution and wait for the heatmap overlay ---------------------------
    # Integrated Gradients (|attributions|, smoothed) always gives a map; Grad-CAM's ReLU can leave a
    # tiny model's map all zero ("No heatmap"), which would not show that the overlay renders.
    expect(page.get_by_role("heading", name="Why? (attributions on demand)")).to_be_visible()
    images_before = page.get_by_test_id("stImage").count()
    page.get_by_test_id("stRadio").get_by_text("Integrated Gradients (finer, slower)").click()
    _wait_idle(page)
    page.get_by_role("button", name="Explain", exact=True).click()
    caption = page.get_by_test_id("stCaptionContainer").filter(has_text=re.compile(r"^Integrated Gradients.*head$"))
    try:
        expect(caption).to_have_count(1, timeout=PREDICT_MS)
    except AssertionError:
        _shot(page, shots_dir, "02_predict_attribution_failed")
        raise AssertionError(f"no heatmap after Explain; server log:\n{_server_log(log)}") from None
    expect(caption).to_contain_text("Integrated Gradients")
    expect(page.get_by_text("most influence")).to_be_visible()  # the heatmap's colour bar
    _wait_idle(page, PREDICT_MS)
    expect(page.get_by_test_id("stImage")).to_have_count(images_before + 1)
    heat = page.get_by_test_id("stImage").last.locator("img")
    expect(heat).to_be_visible()
    assert heat.evaluate("img => img.complete && img.naturalWidth > 0"), "the heatmap image did not load"
    expect(page.get_by_text(re.compile(r"Computed in \d+\.\d s"))).to_be_visible()
    expect(page.get_by_role("button", name="Explain")).to_have_count(0)  # cached: no recompute offered
    _shot(page, shots_dir, "02_predict_result")

    # -- Batch review: the entry is in the history, the export and the log ---------------------
    _goto(page, "Batch review")
    _shot(page, shots_dir, "03_batch_review_score")
    page.get_by_role("tab", name="History and review").click()
    expect(page.get_by_text(re.compile(r"^1 entr\w* match.* 1 in the log"))).to_be_visible(timeout=STEP_MS)
    chooser = page.get_by_role("combobox", name="Open an entry")  # the entry picker shows id · time · file
    expect(chooser).to_have_value(re.compile(rf"^#{pid} · .+ · {re.escape(stored)}$"), timeout=STEP_MS)
    expect(page.get_by_role("heading", name=f"Entry #{pid} — {stored}")).to_be_visible(timeout=STEP_MS)
    _wait_idle(page)
    with page.expect_download(timeout=STEP_MS) as download:
        page.get_by_test_id("stDownloadButton").filter(has_text="Export CSV").locator("button").click()
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
    assert [r.get("image_name") for r in exported] == [stored], exported
    assert "verdict_cardiomegaly" in exported[0] and "reviewer" in exported[0]
    _shot(page, shots_dir, "04_batch_review_history")

    with sqlite3.connect(env["CXR_DB_PATH"]) as conn:
        count = conn.execute("SELECT COUNT(*) FROM predictions WHERE image_name = ?", (stored,)).fetchone()[0]
        total = conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    assert count == total == 1

    # -- the other two pages, for the humans ----------------------------------------------------
    _goto(page, "Model card")
    _shot(page, shots_dir, "05_model_card")
    _goto(page, "Training monitor")
    _shot(page, shots_dir, "06_training_monitor")
    for path in ("", "batch_review", "pacs", "model_card", "training_monitor"):  # fresh loads of every page too
        page.goto(f"{url}/{path}", timeout=LOAD_MS)
        _wait_idle(page)
    assert outside == [], f"requests left the machine: {sorted(set(outside))}"
