"""One path from upload to log (core.serving.predict_and_log): the Predict page, batch scoring and the soak
log the same row for the same study, with every head's thresholds, and the no-text rule is
decided in one place (core.data.labels.effective_mode)."""
from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from core.data.images import decode_image
from core.data.labels import HEADS, TEXT_MODES, effective_mode
from core.serving.predict_and_log import Study, predict_and_log, predict_and_log_many
from core.store import MAX_REVIEW_PX, PredictionStore, StoreError

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
# the rule spelled out again: `mode if text else "none"`, `text and mode != "none"`, ...strip() else "none"
NO_TEXT_RULE = re.compile(r'if [\w.()"\' ]*text[\w.()"\' ]* else "none"|text and \w*mode\w* != "none"')
TEXT = "Cough and fever for three days."  # scripts/soak.py's first text, in indication mode
# what a row says about the study, apart from when, where from and under which name it was logged
SAME = ("model_version", "image_sha256", "text", "text_sha256", "text_mode", "thresholds", "discordant",
        "out_of_distribution", "evidence", "image_reliable", "discordance_score", "image_png")


@pytest.fixture(scope="module")
def predictor(tiny_weights):
    from core.serving.predictor import Predictor
    return Predictor.load(tiny_weights)


@pytest.fixture
def xray(iu_xray_dir) -> tuple[str, bytes]:
    path = sorted((iu_xray_dir / "NLMCXR_png").glob("*.png"))[0]
    return path.name, path.read_bytes()


def _study(xray, text: str = "", mode: str = "none") -> Study:
    name, data = xray
    img = decode_image(data, filename=name)
    return Study(img.gray, data, name, text, mode, colorfulness=img.colorfulness)


def test_no_text_means_mode_none():
    for mode in TEXT_MODES:
        assert effective_mode("", mode) == effective_mode("  \n\t", mode) == effective_mode(None, mode) == "none"
        assert effective_mode("Heart is enlarged.", mode) == mode


def test_the_rule_has_one_owner():
    """No caller re-decides the no-text rule or logs on its own: they go through core.serving.predict_and_log."""
    callers = ["pages/predict.py", "ui/batch_score.py", "scripts/soak.py", "core/serving/predictor.py"]
    for path in callers:
        source = (ROOT / path).read_text()
        assert not NO_TEXT_RULE.search(source) and "def effective_mode" not in source, path
    for path in ["pages/predict.py", "ui/batch_score.py", "scripts/soak.py"]:
        source = (ROOT / path).read_text()
        assert "from core.serving.predict_and_log import" in source, path
        for own_logging in (".log_prediction(", ".log_many(", "predict_batch(", "thumbnail("):
            assert own_logging not in source, (path, own_logging)


def test_row_on_a_real_log_has_every_heads_thresholds(predictor, xray, tmp_path):
    store = PredictionStore(tmp_path / "p.db")
    done = predict_and_log(predictor, store, _study(xray, TEXT, "indication"), source="predict")
    pred, row = done.prediction, store.get(done.row_id)
    assert done.log_error is None and pred.text_mode == row["text_mode"] == "indication"
    assert set(row["thresholds"]) == set(HEADS)
    assert row["thresholds"] == pred.head_thresholds == predictor.metadata["thresholds"]["indication"]
    assert row["text"] == done.window.read == TEXT
    assert row["text_sha256"] == hashlib.sha256(TEXT.encode()).hexdigest()
    assert row["image_sha256"] == hashlib.sha256(xray[1]).hexdigest()
    assert row["image_name"].startswith("upload-")  # keep_name is off unless asked
    assert max(Image.open(io.BytesIO(row["image_png"])).size) <= MAX_REVIEW_PX
    assert row["fusion"] == pytest.approx(pred.fusion) and row["text_probs"] == pytest.approx(pred.text)


@pytest.mark.parametrize("text,mode", [("", "report"), ("   \n", "indication"), ("Heart is enlarged.", "none")])
def test_no_text_is_logged_as_mode_none(predictor, xray, tmp_path, text, mode):
    store = PredictionStore(tmp_path / "p.db")
    done = predict_and_log(predictor, store, _study(xray, text, mode), source="batch")
    row = store.get(done.row_id)
    assert done.window is None and not done.prediction.has_text
    assert (row["text_mode"], row["text"], row["text_sha256"], row["text_probs"]) == ("none", "", None, {})
    assert set(row["thresholds"]) == set(HEADS)
    want = dict(predictor.metadata["thresholds"]["none"])
    want["fusion"] = want["image"]  # image only: one number, the image head's, with its threshold
    assert row["thresholds"] == want


def test_a_refused_row_keeps_its_prediction(predictor, xray, tmp_path):
    class Refusing:
        def log_many(self, entries):
            raise StoreError("disk full")

    done = predict_and_log_many(predictor, Refusing(), [_study(xray, TEXT, "report")] * 2, source="batch")
    assert [d.row_id for d in done] == [None, None] and all(str(d.log_error) == "disk full" for d in done)
    assert all(d.prediction.text_mode == "report" for d in done)
    alone = predict_and_log(predictor, None, _study(xray, TEXT, "report"), source="cli")
    assert alone.row_id is None and alone.entry is None and alone.prediction.fusion == pytest.approx(
        done[0].prediction.fusion, abs=1e-6)


def test_page_batch_and_soak_log_the_same_row(app_env, tiny_weights, monkeypatch, xray, tmp_path):
    from streamlit.testing.v1 import AppTest

    from scripts import soak

    name, data = xray
    monkeypatch.setenv("CXR_WEIGHTS", str(tiny_weights))
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.file_uploader(key="upload").upload(name, data, "image/png")
    at.radio(key="text_kind").set_value("indication")
    at.text_area(key="text").input(TEXT)
    next(b for b in at.button if b.label == "Predict").click()
    at.run(timeout=120)
    assert not at.exception and not at.error
    at.switch_page("pages/batch_review.py").run()
    at.file_uploader(key="batch_files").set_value([(name, data, "image/png")])
    at.file_uploader(key="batch_csv").set_value(("map.csv", f"file,text,mode\n{name},{TEXT},indication\n".encode(),
                                                 "text/csv"))
    at.run()
    next(x for x in at.button if x.label == "Score").click()
    at.run(timeout=180)
    assert not at.exception and not at.error
    app_rows = {r["source"]: PredictionStore(app_env["CXR_DB_PATH"]).get(r["id"])
                for r in PredictionStore(app_env["CXR_DB_PATH"]).list_predictions()}

    folder = tmp_path / "images"
    folder.mkdir()
    (folder / name).write_bytes(data)
    soak_db = tmp_path / "soak.db"
    assert soak.main(["--weights", str(tiny_weights), "--data", str(folder), "--n", "2", "--images", "1",
                      "--warmup", "0", "--sample-every", "1", "--json", str(tmp_path / "soak.json"),
                      "--db", str(soak_db)]) == 0
    soak_row = next(PredictionStore(soak_db).get(r["id"]) for r in PredictionStore(soak_db).list_predictions()
                    if r["text_mode"] == "indication")

    rows = {"predict": app_rows["predict"], "batch": app_rows["batch"], "cli": soak_row}
    for source, row in rows.items():
        assert row["source"] == source
        assert set(row["thresholds"]) == set(HEADS), source
        for key in SAME:
            assert row[key] == rows["predict"][key], (source, key)
        for head in ("fusion", "image", "text_probs"):
            assert row[head] == pytest.approx(rows["predict"][head], abs=1e-6), (source, head)
