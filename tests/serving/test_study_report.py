"""The single-study report (core.serving.study_report): self-contained, escaped, the mode and
evidence of the numbers it shows, and one printed A4 page in real Chromium."""
from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.serving.prediction import Prediction
from core.serving.study_report import study_report_html

FINDINGS = ("Pneumonia", "Edema", "Cardiomegaly", "Atelectasis", "Consolidation")
CHROMIUM = Path(os.environ.get("CXR_E2E_CHROMIUM", "/usr/bin/chromium"))


def _png(seed: int = 0) -> bytes:
    gray = (np.random.default_rng(seed).random((256, 256)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, format="PNG")
    return buf.getvalue()


def _pred(mode: str = "indication") -> Prediction:
    ev = {"auc": 0.88, "ci": [0.83, 0.92], "positives": 60, "reliable": True, "source": "test split"}
    weak = {"auc": 0.6, "ci": [0.35, 0.85], "positives": 6, "reliable": False, "source": "test split"}
    evidence = {f: (weak if f in ("Pneumonia", "Consolidation") else ev) for f in FINDINGS}
    p = dict(zip(FINDINGS, (0.01, 0.3, 0.62, 0.12, 0.02), strict=True))
    thr = dict.fromkeys(FINDINGS, 0.25)
    op = {"name": "specificity 0.90", "threshold": 0.25, "sensitivity": 0.57, "specificity": 0.9,
          "sensitivity_ci": [0.51, 0.63], "specificity_ci": [0.89, 0.91], "ppv": 0.38, "prevalence": 0.093,
          "positives": 234, "negatives": 2260, "source": "cross-validation"}
    assessed = [f for f in FINDINGS if evidence[f]["reliable"]]
    return Prediction(fusion=p, image=dict(p, Cardiomegaly=0.55), text=p, thresholds=thr,
                      head_thresholds={"fusion": thr, "image": thr, "text": thr}, discordant=[],
                      out_of_distribution=False, ood_score=0.2, ood_reason="", text_mode=mode,
                      has_text=mode != "none", model="20261128-test", evidence=evidence,
                      head_evidence={"image": evidence}, image_reliable={f: evidence[f]["reliable"] for f in FINDINGS},
                      decision={f: ("not assessed" if f not in assessed else
                                    "flagged" if (dict(p, Cardiomegaly=0.55) if mode == "none" else p)[f] >= 0.25
                                    else "not flagged") for f in FINDINGS},
                      operating_point={f: op for f in assessed}, operating_point_name="specificity 0.90",
                      not_assessed={f: "not supported from the image in this mode" for f in FINDINGS
                                    if f not in assessed},
                      calibrated=dict.fromkeys(FINDINGS, True))  # as the predictor fills them


def test_the_report_is_self_contained_escaped_and_names_mode_and_evidence():
    page = study_report_html(_pred(), image_png=_png(), image_name="<script>alert(1)</script>.png",
                             text_read="Shortness of breath <b>")
    assert "<script>alert" not in page and "&lt;script&gt;" in page and "&lt;b&gt;" in page
    assert not re.search(r"(src|href)=['\"]?https?:", page)  # nothing asked of another host
    assert "indication (before the read)" in page and "20261128-test" in page
    assert "0.620" in page and "AUC 0.88 [0.83, 0.92], 60 positives" in page
    assert page.count("not supported from the image") == 2 and "Not a medical device" in page
    assert "0.010" not in page and "0.020" not in page          # not assessed: no number
    assert "Cardiomegaly, Edema flagged at specificity 0.90" not in page   # in the weights' order
    assert "Edema, Cardiomegaly flagged at specificity 0.90" in page
    assert "57% [51%, 63%] of studies with Cardiomegaly" in page and "38% of its flags are true" in page


def test_a_finding_that_cannot_be_calibrated_shows_no_bare_number():
    pred = _pred()
    pred.calibrated = {f: f != "Edema" for f in FINDINGS}
    page = study_report_html(pred, image_png=_png(), image_name="a.png")
    assert "not calibrated" in page and "0.300" not in page and "0.620" in page


def test_image_only_shows_the_image_heads_number():
    page = study_report_html(_pred("none"), image_png=_png(), image_name="a.png")
    assert "Probability (image head)" in page and "0.550" in page and "0.620" not in page
    assert "Text read" not in page


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
def test_it_prints_on_one_a4_page_in_chromium(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    page_html = study_report_html(_pred(), image_png=_png(), image_name="study.png", overlay_png=_png(1),
                                  overlay_caption="Grad-CAM, Cardiomegaly, fusion head",
                                  text_read="Shortness of breath. " * 12)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox",
                                    "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        page.set_content(page_html)
        pdf = page.pdf(format="A4", prefer_css_page_size=True)
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 1


def test_the_pages_report_carries_the_latest_image_attribution():
    from core.serving.prediction import Attribution
    from ui.study_report_view import report_bytes
    gray = (np.random.default_rng(3).random((300, 280)) * 255).astype(np.uint8)
    result = {"pred": _pred(), "gray": gray, "name": "upload-ab12.png", "text": "Cough.", "key": 7}
    heat = np.zeros((64, 64))
    heat[20:40, 20:40] = 1.0
    cache = {("predict", 7, "Edema", "fusion", "gradcam"): Attribution("Edema", "fusion", "gradcam", heat),
             ("predict", 8, "Edema", "image", "ig"): Attribution("Edema", "image", "ig", heat)}  # another study's
    page = report_bytes(result, cache).decode()
    assert page.count("<img") == 2 and "gradcam: Edema, fusion head" in page and "upload-ab12.png" in page
    assert report_bytes(result, {}).decode().count("<img") == 1
