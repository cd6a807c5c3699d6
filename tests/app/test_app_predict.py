"""Predict page: a real upload through the file uploader, logging, decode errors, verbatim
text, attributions, and the predict -> history -> verdict flow."""
import hashlib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.serving.predictor import InputError
from core.store import PredictionStore, hashed_name

APP = str(Path(__file__).resolve().parents[2] / "app.py")
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
    assert row["source"] == "predict" and row["text_mode"] == "report"
    assert row["image_name"] == hashed_name(name, data) and row["original_name"] is False  # the default
    assert row["image_sha256"] == hashlib.sha256(data).hexdigest()
    assert row["text"] == HOSTILE and row["text_sha256"] == hashlib.sha256(HOSTILE.encode()).hexdigest()
    assert set(row["fusion"]) == set(row["image"]) == set(row["text_probs"]) == set(row["thresholds"]["fusion"])
    assert set(row["thresholds"]) == {"fusion", "image", "text"}  # every head's thresholds are logged
    assert row["discordant"] == result["pred"].discordant
    assert row["image_png"].startswith(b"\x89PNG")
    # the decision shown is the one logged, at the operating point it names
    assert row["decision"] == result["pred"].decision and set(row["decision"]) == set(row["fusion"])
    assert row["operating_point_name"] == result["pred"].operating_point_name == "specificity 0.98"


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
    at.session_state["batch_tab"] = "History and review"  # tabs are lazy: open the history tab
    at.switch_page("pages/batch_review.py").run()
    assert not at.exception
    assert at.selectbox(key="hist_open").value == pid
    at.selectbox(key=f"verdict_{pid}_Cardiomegaly").set_value("present")
    at.selectbox(key=f"verdict_{pid}_Edema").set_value("absent")
    at.text_area(key=f"note_{pid}").input("heart looks large")
    next(b for b in at.button if b.label == "Save review").click()
    at.run(timeout=60)
    assert not at.exception and not at.error
    store = PredictionStore(app_env["CXR_DB_PATH"])
    verdicts = store.verdicts(pid)
    assert verdicts["Cardiomegaly"]["verdict"] == "present" and verdicts["Edema"]["verdict"] == "absent"
    assert verdicts["Cardiomegaly"]["reviewer"] == "local"  # on loopback without sign-in: the local user
    assert [r["id"] for r in store.list_predictions(search="large")] == [pid]
    # the history filters see it as reviewed
    at.radio(key="hist_reviewed").set_value("Unreviewed").run()
    assert not any(s.key == "hist_open" for s in at.selectbox)
    at.radio(key="hist_reviewed").set_value("Reviewed").run()
    assert at.selectbox(key="hist_open").value == pid


def test_out_of_distribution_shows_greyed_probabilities_under_the_warning(at, app_env, xray, monkeypatch):
    from core.serving.predictor import Predictor

    original = Predictor.predict_batch

    def flagged(self, *args, **kwargs):
        preds = original(self, *args, **kwargs)
        for p in preds:
            p.out_of_distribution, p.ood_score, p.ood_reason = True, 3.2, "lateral view: upload the frontal view"
        return preds

    monkeypatch.setattr(Predictor, "predict_batch", flagged)
    _predict(at, *xray, "Cough.", kind="indication")
    assert not at.exception
    assert any("does not look like" in e.value and "lateral view" in e.value for e in at.error)
    assert any(m.value.startswith("**Nothing assessed**") for m in at.markdown)
    assert not at.get("plotly_chart")  # no number is drawn for a finding not assessed...
    decisions = at.dataframe[0].value
    assert set(decisions["decision"]) == {"not assessed"} and set(decisions["probability"]) == {"—"}  # ...nor listed
    row = PredictionStore(app_env["CXR_DB_PATH"]).list_predictions()[0]
    assert row["out_of_distribution"] is True and row["ood_score"] == 3.2


# -- issue 10 --------------------------------------------------------------------------------

def test_every_head_and_method_offered_explains_without_a_traceback(at, xray):
    """Defect 1: the text head with Grad-CAM or IG crashed with Captum's 'differentiated Tensor
    ... not used in the graph'. Now every head x method offered works; text gets word scores."""
    _predict(at, *xray, "Heart size is enlarged. No effusion.")
    pid = at.session_state["predict_result"]["pid"]
    at.selectbox(key=f"predict_attr_finding_{pid}").set_value("Cardiomegaly").run(timeout=60)
    for head in ("text", "fusion", "image"):
        at.radio(key=f"predict_attr_head_{pid}").set_value(head).run(timeout=60)
        method_key = f"predict_attr_method_{pid}_{'text' if head == 'text' else 'image'}"
        offered = at.radio(key=method_key).options
        assert (offered == ["Integrated Gradients (per-word scores)"]) == (head == "text")
        for label in offered:
            at.radio(key=method_key).set_value({"Grad-CAM (coarse regions)": "gradcam"}.get(label, "ig")).run()
            explain = [b for b in at.button if b.label == "Explain"]
            if explain:
                explain[0].click()
                at.run(timeout=120)
            assert not at.exception and not at.error, (head, label)
    cache = at.session_state["attributions"]
    text_result = cache[("predict", pid, "Cardiomegaly", "text", "ig")]
    assert text_result.tokens and not text_result.heatmap.any()
    assert len(cache) == 5


def test_text_head_with_grad_cam_is_refused_in_one_line(tiny_weights, xray):
    from core.data.images import decode_image
    from core.serving.predictor import Predictor

    gray = decode_image(xray[1], filename=xray[0]).gray
    model = Predictor.load(tiny_weights)
    with pytest.raises(InputError, match="Integrated Gradients"):
        model.attribute(gray, "Heart enlarged.", "report", finding="Edema", head="text", method="gradcam")
    with pytest.raises(InputError, match="no|none"):
        model.attribute(gray, "", "report", finding="Edema", head="text", method="ig")


def test_a_new_upload_clears_the_previous_studys_text(at, iu_xray_dir):
    """Defect 2: the box kept the last study's report and the next upload was scored with it."""
    first, second = sorted((iu_xray_dir / "NLMCXR_png").glob("*.png"))[:2]
    _predict(at, first.name, first.read_bytes(), "Heart is enlarged.", kind="report")
    at.file_uploader(key="upload").upload(second.name, second.read_bytes(), "image/png")
    at.run()
    assert at.text_area(key="text").value == ""
    assert any("text box was cleared" in i.value for i in at.info)
    next(b for b in at.button if b.label == "Predict").click()
    at.run(timeout=120)
    result = at.session_state["predict_result"]
    assert result["pred"].text_mode == "none" and result["text"] == ""
    assert any("no text read" in c.value for c in at.caption)  # the header says which text was read


def test_text_typed_after_the_last_prediction_is_kept_for_the_new_upload(at, iu_xray_dir):
    first, second = sorted((iu_xray_dir / "NLMCXR_png").glob("*.png"))[:2]
    _predict(at, first.name, first.read_bytes(), "Heart is enlarged.", kind="report")
    at.text_area(key="text").input("Cough and fever.").run()
    at.file_uploader(key="upload").upload(second.name, second.read_bytes(), "image/png")
    at.run()
    assert at.text_area(key="text").value == "Cough and fever."


def test_long_report_is_read_with_its_impression_and_the_cut_is_said(at, app_env, xray):
    """Defect 3: 20,000+ characters were dropped (image-only result) and the encoder's first 160
    word pieces left the IMPRESSION unread."""
    text = "FINDINGS: " + "The lungs are clear without focal consolidation. " * 500 + \
        "IMPRESSION: Cardiomegaly with mild pulmonary edema."
    assert len(text) > 20_000
    _predict(at, *xray, text, kind="report")
    assert not at.exception and not at.error
    result = at.session_state["predict_result"]
    assert result["pred"].text_mode == "report"
    assert result["text"].endswith("IMPRESSION: Cardiomegaly with mild pulmonary edema.")
    assert result["text"] in [c.value for c in at.code]  # the part that was read is shown
    assert any("Not read" in w.value and "IMPRESSION was read whole" in w.value for w in at.warning)
    row = PredictionStore(app_env["CXR_DB_PATH"]).get(result["pid"])
    assert row["text"] == result["text"]  # the log keeps what the model read


def test_patient_file_name_is_not_shown_or_stored_unless_asked(at, app_env, xray):
    """Defect 4: 'DOE_JANE_chest.png' reached the header, the history, the DB and the export."""
    data = xray[1]
    _predict(at, "DOE_JANE_chest.png", data, "Cough.", kind="indication")
    pid = at.session_state["predict_result"]["pid"]
    assert not any("DOE" in h.value for h in at.subheader)
    store = PredictionStore(app_env["CXR_DB_PATH"])
    assert "DOE" not in store.get(pid)["image_name"]
    assert "DOE" not in store.export_csv(store.list_predictions(limit=None, with_verdicts=True))
    assert any("not** the uploaded file's name" in m.value for m in at.markdown)  # 'What is stored' says so
    at.checkbox(key="keep_names").check().run()
    assert any("file's **own name**" in m.value for m in at.markdown)
    _predict(at, "DOE_JANE_chest.png", data, "Cough.", kind="indication")
    kept = store.get(at.session_state["predict_result"]["pid"])
    assert kept["image_name"] == "DOE_JANE_chest.png" and kept["original_name"] is True


def test_one_mode_one_evidence_and_a_report_per_prediction(at, xray):
    """Issue 20 on the page: indication mode has no (empty) discordant column; every evidence
    column says whose it is; image only shows one image number; the caption counts the
    characters read; a single-study report is offered."""
    _predict(at, *xray, "Shortness of breath.", kind="indication")
    assert not at.exception and not at.error
    table, held = at.dataframe[0].value, at.dataframe[1].value
    assert "discordant" not in table.columns
    assert list(held.columns)[0] == "AUC [95% CI] (image + indication)"
    assert "image only: AUC [95% CI]" in held.columns and "from the image" in held.columns
    assert any("read 20 characters of indication text" in c.value for c in at.caption)
    assert any("Single-study report" in b.proto.label for b in at.get("download_button"))
    _predict(at, *xray, "", kind="none")
    table, held = at.dataframe[0].value, at.dataframe[1].value
    assert "image head" not in table.columns and "text head" not in table.columns
    assert "image only: AUC [95% CI]" not in held.columns  # one number, one evidence
    assert any("(image only)" in m.value and m.value.startswith("**") for m in at.markdown)
