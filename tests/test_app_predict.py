"""Predict page: a real upload through the file uploader, logging, decode errors, verbatim
text, attributions, and the predict -> history -> verdict flow."""
import hashlib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.store import PredictionStore

APP = str(Path(__file__).resolve().parents[1] / "app.py")
HOSTILE = 'Heart is enlarged. <script>alert("x")</script> <b>bold</b> & more'


@pytest.fixture
def xray(iu_xray_dir) -> tuple[str, bytes]:
    path = sorted((iu_xray_dir / "NLMCXR_png").glob("*.png"))[0]
    return path.name, path.read_bytes()


@pytest.fixture
def at(app_env, tiny_weights, monkeypatch):
    monkeypatch.setenv("CXR_WEIGHTS", str(tiny_weights))
    return AppTest.from_file(APP, default_timeout=120).run()


def _predict(at, name: str, data: bytes, text: str = "", kind: str = "report"):
    at.file_uploader(key="upload").upload(name, data, "image/png")
    at.radio(key="text_kind").set_value(kind)
    at.text_area(key="text").input(text)
    next(b for b in at.button if b.label == "Predict").click()
    return at.run(timeout=120)


def test_upload_predict_logs_everything(at, app_env, xray):
    name, data = xray
    _predict(at, name, data, HOSTILE)
    assert not at.exception and not at.error
    result = at.session_state["predict_result"]
    pid = result["pid"]
    row = PredictionStore(app_env["CXR_DB_PATH"]).get(pid)
    assert row["source"] == "predict" and row["image_name"] == name and row["text_mode"] == "report"
    assert row["image_sha256"] == hashlib.sha256(data).hexdigest()
    assert row["text"] == HOSTILE and row["text_sha256"] == hashlib.sha256(HOSTILE.encode()).hexdigest()
    assert set(row["fusion"]) == set(row["image"]) == set(row["text_probs"]) == set(row["thresholds"]["fusion"])
    assert set(row["thresholds"]) == {"fusion", "image", "text"}  # every head's thresholds are logged
    assert row["discordant"] == result["pred"].discordant
    assert row["image_png"].startswith(b"\x89PNG")
    assert len(at.get("plotly_chart")) >= 2  # fused bars + head comparison


def test_text_with_markup_is_shown_verbatim(at, xray):
    _predict(at, *xray, HOSTILE)
    assert HOSTILE in [c.value for c in at.code]
    assert not any("<script" in m.value for m in at.markdown)


def test_decode_error_is_one_line_and_logs_nothing(at, app_env):
    _predict(at, "broken.png", b"this is not an image at all", "Cough.", kind="indication")
    assert not at.exception
    assert len(at.error) == 1 and "\n" not in at.error[0].value
    assert "predict_result" not in at.session_state
    assert PredictionStore(app_env["CXR_DB_PATH"]).count() == 0


def test_attribution_is_cached_and_tokens_escaped(at, xray):
    _predict(at, *xray, HOSTILE)
    pid = at.session_state["predict_result"]["pid"]
    at.selectbox(key=f"predict_attr_finding_{pid}").set_value("Cardiomegaly")
    at.radio(key=f"predict_attr_head_{pid}").set_value("fusion")
    next(b for b in at.button if b.label == "Explain").click()
    at.run(timeout=120)
    assert not at.exception
    cache = at.session_state["attributions"]
    assert ("predict", pid, "Cardiomegaly", "fusion", "gradcam") in cache
    tokens = [m.value for m in at.markdown if "<span" in m.value]
    assert tokens and "&lt;" in tokens[0] and "<script" not in tokens[0]
    at.run(timeout=60)  # a rerun draws the cached result and offers no recompute
    assert not any(b.label == "Explain" for b in at.button)
    assert any("<span" in m.value for m in at.markdown)


def test_predict_then_review_verdict_in_history(at, app_env, xray):
    _predict(at, *xray, "Heart size normal.", kind="report")
    pid = at.session_state["predict_result"]["pid"]
    at.switch_page("pages/batch_review.py").run()
    assert not at.exception
    assert at.selectbox(key="hist_open").value == pid
    at.selectbox(key=f"verdict_{pid}_Cardiomegaly").set_value("present")
    at.selectbox(key=f"verdict_{pid}_Edema").set_value("absent")
    at.text_input(key=f"reviewer_{pid}").input("jd")
    at.text_area(key=f"note_{pid}").input("heart looks large")
    next(b for b in at.button if b.label == "Save review").click()
    at.run(timeout=60)
    assert not at.exception and not at.error
    store = PredictionStore(app_env["CXR_DB_PATH"])
    verdicts = store.verdicts(pid)
    assert verdicts["Cardiomegaly"]["verdict"] == "present" and verdicts["Edema"]["verdict"] == "absent"
    assert verdicts["Cardiomegaly"]["reviewer"] == "jd"
    assert [r["id"] for r in store.list_predictions(search="large")] == [pid]
    # the history filters see it as reviewed
    at.radio(key="hist_reviewed").set_value("Unreviewed").run()
    assert not any(s.key == "hist_open" for s in at.selectbox)
    at.radio(key="hist_reviewed").set_value("Reviewed").run()
    assert at.selectbox(key="hist_open").value == pid


def test_out_of_distribution_is_a_warning_not_a_confident_result(at, app_env, xray, monkeypatch):
    from core.predictor import Predictor

    original = Predictor.predict_batch

    def flagged(self, *args, **kwargs):
        preds = original(self, *args, **kwargs)
        for p in preds:
            p.out_of_distribution, p.ood_score, p.ood_reason = True, 3.2, "not a chest X-ray"
        return preds

    monkeypatch.setattr(Predictor, "predict_batch", flagged)
    _predict(at, *xray, "Cough.", kind="indication")
    assert not at.exception
    assert any("does not look like" in e.value and "not a chest X-ray" in e.value for e in at.error)
    assert not any(m.value.startswith("**Above threshold") for m in at.markdown)
    assert any("unreliable" in e.label for e in at.expander)
    row = PredictionStore(app_env["CXR_DB_PATH"]).list_predictions()[0]
    assert row["out_of_distribution"] is True and row["ood_score"] == 3.2
