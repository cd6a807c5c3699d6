"""History and review: prefix search, out-of-distribution marks, discordance order, export with verdicts."""
import csv
import io
import struct
import zlib
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.data.labels import FINDINGS
from core.store import LogEntry, PredictionStore
from ui.history_view import export_matching

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def _png() -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\0" + b"\x80" * 4 for _ in range(4))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _seed(path) -> dict[str, int]:
    store = PredictionStore(path)
    p = {f: 0.2 for f in FINDINGS}

    def log(name, text, **kw):
        return store.log_prediction(LogEntry(model_version="m", image_png=_png(), image_name=name, image_sha256=None,
                                             text=text, text_mode="report" if text else "none", fusion=p, image=p,
                                             text_probs=p if text else None, thresholds=p, **kw))
    ids = {"pneumonia": log("a.png", "Right lower lobe pneumonia.", discordant=["Pneumonia"], discordance_score=0.4),
           "ood": log("b.png", "", out_of_distribution=True, ood_score=3.0),
           "strong": log("c.png", "Heart size normal.", discordant=["Cardiomegaly"], discordance_score=2.5)}
    store.set_verdict(ids["strong"], "Cardiomegaly", "present", reviewer="jd")
    return ids


def _history(app_env):
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.session_state["batch_tab"] = "History and review"
    return at.switch_page("pages/batch_review.py").run()


def _table_ids(at):
    return list(at.dataframe[0].value["id"])


def test_out_of_distribution_uploads_are_marked_and_can_be_hidden(app_env):
    ids = _seed(app_env["CXR_DB_PATH"])
    at = _history(app_env)
    assert not at.exception
    frame = at.dataframe[0].value
    flags = dict(zip(frame["id"], frame["flags"], strict=True))
    assert "out of distribution" in flags[ids["ood"]] and "out of distribution" not in flags[ids["strong"]]
    assert list(frame.columns)[:4] == ["id", "created (UTC)", "flagged", "flags"]
    assert "out of distribution" in at.selectbox(key="hist_open").format_func(ids["ood"])
    at.checkbox(key="hist_hide_ood").check().run()
    assert ids["ood"] not in _table_ids(at)


def test_prefix_search_is_offered_and_works(app_env):
    ids = _seed(app_env["CXR_DB_PATH"])
    at = _history(app_env)
    assert "pneumon*" in at.text_input(key="hist_search").placeholder
    at.text_input(key="hist_search").input("pneumon*").run()
    assert _table_ids(at) == [ids["pneumonia"]]


def test_sort_by_discordance_score(app_env):
    ids = _seed(app_env["CXR_DB_PATH"])
    at = _history(app_env)
    at.radio(key="hist_order").set_value("discordance").run()
    assert _table_ids(at)[:2] == [ids["strong"], ids["pneumonia"]]


def test_export_of_the_page_has_the_verdicts(app_env):
    ids = _seed(app_env["CXR_DB_PATH"])
    rows = list(csv.DictReader(io.StringIO(export_matching(PredictionStore(app_env["CXR_DB_PATH"]), {}))))
    strong = next(r for r in rows if int(r["id"]) == ids["strong"])
    assert strong["verdict_cardiomegaly"] == "present" and strong["reviewer"] == "jd" and strong["reviewed_at"]


def test_choosing_a_finding_filters_at_once_without_touching_the_slider(app_env):
    """The Finding filter alone keeps the studies above that finding's threshold (it used to
    keep everything until the probability slider moved)."""
    store = PredictionStore(app_env["CXR_DB_PATH"])
    low = {f: 0.2 for f in FINDINGS}
    high = dict(low, Edema=0.8)
    thresholds = {f: 0.5 for f in FINDINGS}

    def log(name, fusion):
        return store.log_prediction(LogEntry(model_version="m", image_png=_png(), image_name=name, image_sha256=None,
                                             text="", text_mode="none", fusion=fusion, image=fusion, text_probs=None,
                                             thresholds=thresholds))
    above, below = log("above.png", high), log("below.png", low)
    at = _history(app_env)
    assert set(_table_ids(at)) == {above, below}
    at.selectbox(key="hist_finding").set_value("Edema").run()
    assert _table_ids(at) == [above]


def test_rows_show_a_number_only_for_an_assessed_calibrated_finding(app_env, monkeypatch):
    """A row of the loaded weights, logged before decisions were recorded, is decided with their operating
    points: Pneumonia and Consolidation are not assessed in indication mode (no number, and no column when
    no row has one); Edema, calibrated since issue 26, shows its number. A row of other weights whose
    calibration is unknown shows no bare number."""
    from core.model.description import read_description
    weights = Path(APP).parent / "weights"
    monkeypatch.setenv("CXR_WEIGHTS", str(weights))
    version = read_description(weights).version
    store = PredictionStore(app_env["CXR_DB_PATH"])
    p = {f: 0.2 for f in FINDINGS}
    for model, name in ((version + "+int8", "a.png"), ("older-model", "b.png")):
        store.log_prediction(LogEntry(model_version=model, image_png=_png(), image_name=name, image_sha256=None,
                                      text="Cough.", text_mode="indication", fusion=p, image=p, text_probs=p,
                                      thresholds=p))
    at = _history(app_env)
    frame = at.dataframe[0].value.set_index("file")
    assert "Pneumonia" not in frame.columns and "Consolidation" not in frame.columns
    assert frame.loc["a.png", "Edema"] == "0.200" and frame.loc["a.png", "Cardiomegaly"] == "0.200"
    assert frame.loc["b.png", "Edema"] == "—"  # calibration unknown: no number (and never a grey "None")
    assert set(frame["operating point"]) == {"specificity 0.90 (decided now)"}
