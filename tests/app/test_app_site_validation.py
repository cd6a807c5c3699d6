"""The Site validation page draws a result (the same rows and words as the HTML report), and the sidebar names a
site-adapted model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.data.labels import FINDINGS

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
PAGE = "pages/site_validation.py"


def synthetic_result(desc) -> dict:
    """A validation result of 400 simulated studies (core.evaluation.site_measure), no model needed."""
    from core.evaluation.site_measure import measure_site, ood_summary
    rng = np.random.default_rng(0)
    Y = (rng.random((400, len(FINDINGS))) < 0.12).astype(float)
    P = np.clip(0.05 + 0.3 * Y + rng.normal(0, 0.08, Y.shape), 0.001, 0.999)
    ind = P.copy()
    ind[:20] = np.nan  # 20 studies without an indication
    return measure_site(desc, Y, {"none/image": P, "indication/fusion": ind}, site="Simulated",
                        ood=ood_summary([False] * 399 + [True], [[False]] * 399 + [[True]]), labels="report",
                        label_agreement=None, label_source={f: "report" for f in FINDINGS}, n_boot=50)


@pytest.fixture
def shipped(app_env, monkeypatch):
    if not (ROOT / "weights" / "model.safetensors").is_file():
        pytest.skip("no shipped weights")
    monkeypatch.setenv("CXR_WEIGHTS", str(ROOT / "weights"))
    from core.model.description import read_description
    return read_description(ROOT / "weights")


def test_the_page_draws_a_result_with_its_verdicts_and_downloads(shipped):
    result = synthetic_result(shipped)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(PAGE)
    at.session_state["site_result"] = result
    at.run()
    assert not at.exception and not at.error
    assert any("Simulated: 400 studies" in s.value for s in at.subheader)
    headers = " ".join(m.value for m in at.markdown)
    assert "Image only (`none/image`): 400 studies" in headers
    assert "Image + indication (`indication/fusion`): 380 studies" in headers
    frames = [df.value for df in at.dataframe]
    table = frames[0]
    assert list(table["finding"])[2] == "Cardiomegaly" and "verdict" in table.columns
    assert set(table["verdict"]) <= {"consistent with the shipped evidence", "worse than the shipped evidence",
                                     "better than the shipped evidence", "too few positives to say"}
    assert [m.label for m in at.metric][:3] == ["Studies", "Images", "Out of distribution"]


def test_the_sidebar_names_a_site_adapted_model(app_env, tmp_path, monkeypatch, shipped):
    from core.evaluation import site_adapt as A
    plan = {"none/image": {"Cardiomegaly": {
        "status": A.ADAPTED, "map": {"a": 0.9, "b": -0.5}, "site_map": {"a": 1.0, "b": -0.3},
        "points": shipped.operating_points.for_mode("none")["Cardiomegaly"], "positives": 30, "negatives": 300,
        "n": 330}}}
    new = A.adapted_description(shipped, plan, site="St Elsewhere", n_studies=330, labels="report")
    out = A.write_adapted(ROOT / "weights", tmp_path / "weights-site", new)
    monkeypatch.setenv("CXR_WEIGHTS", str(out))
    at = AppTest.from_file(APP, default_timeout=60).run()
    text = " ".join(m.value for m in at.sidebar.markdown)
    assert "**Adapted to site** St Elsewhere: 330 studies" in text and "+site-st-elsewhere-" in text
