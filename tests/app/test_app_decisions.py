"""Issue 26 on the pages, with the shipped weights (they carry the operating points): one decision per
finding at a named operating point, what a flag means, nothing shown for a finding not assessed, the
sidebar's operating point used and named, Predict dropping a result when a new image comes, batch and
history tables whose flags stay on screen, and the marker scripts/bench_ui.py waits for."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.data.labels import FINDINGS
from core.serving.decision import NOT_SUPPORTED
from core.store import LogEntry, PredictionStore
from ui.prediction_view import RESULT_MARKER

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
WEIGHTS = ROOT / "weights"
NORMAL = "CXR100_IM-0002-1001.png"  # IU report 100: "normal" its only MeSH term
NEGATION = "Stable cardiomegaly without overt pulmonary edema."


@pytest.fixture
def at(app_env, monkeypatch, iu_xray_dir):
    if not (WEIGHTS / "model.safetensors").is_file():
        pytest.skip("the shipped weights are not in weights/")
    monkeypatch.setenv("CXR_WEIGHTS", str(WEIGHTS))
    return AppTest.from_file(APP, default_timeout=180).run()


@pytest.fixture
def normal_film(iu_xray_dir) -> tuple[str, bytes]:
    path = iu_xray_dir / "NLMCXR_png" / NORMAL
    if not path.is_file():
        pytest.skip(f"{NORMAL} is not in {iu_xray_dir}")
    return path.name, path.read_bytes()


def _predict(at, name: str, data: bytes, text: str = "", kind: str = "none"):
    at.file_uploader(key="upload").upload(name, data, "image/png")
    at.radio(key="text_kind").set_value(kind)
    if kind != "none":
        at.text_area(key="text").input(text)
    next(b for b in at.button if b.label == "Predict").click()
    at.run(timeout=180)
    assert not at.exception and not at.error
    return at.session_state["predict_result"]


def _markdown(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def _decision_table(at):
    return next(df.value for df in at.dataframe if "decision" in df.value.columns)


def _block_keys(node):
    """The user keys of the containers on the page (a block's id ends with '-<key>')."""
    proto = getattr(node, "proto", None)
    block_id = proto.id if hasattr(proto, "DESCRIPTOR") and "id" in proto.DESCRIPTOR.fields_by_name else ""
    if block_id:
        yield block_id.rpartition("-")[2]
    for child in getattr(node, "children", {}).values():
        yield from _block_keys(child)


def test_a_normal_film_shows_no_number_and_no_flag_for_what_it_did_not_assess(at, normal_film):
    result = _predict(at, *normal_film)
    pred = result["pred"]
    assert pred.operating_point_name == "specificity 0.90"
    text = _markdown(at)
    assert "at specificity 0.90 (image only)" in text  # the headline names its operating point and mode
    # Pneumonia and Consolidation: not assessed, with the reason in words; no number, no flag, anywhere
    assert f"**Not assessed**: Pneumonia, Consolidation — {NOT_SUPPORTED}." in text
    table = _decision_table(at)
    for f in ("Pneumonia", "Consolidation"):
        assert table.loc[f, "decision"] == "not assessed"
        assert table.loc[f, "probability"] == table.loc[f, "sensitivity [95% CI]"] == "—"
    # Edema: the image supports it and it is calibrated now, so a reader sees its number
    assert table.loc["Edema", "decision"] in ("flagged", "not flagged")
    assert table.loc["Edema", "probability"] == f"{pred.fusion['Edema']:.3f}"
    assert table.loc["Edema", "specificity [95% CI]"].startswith("0.90 [")
    # the fused chart draws the assessed, calibrated findings only
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    drawn = {y for trace in chart["data"] if trace.get("type") == "bar" for y in trace["y"]}
    assert drawn == {"Edema", "Cardiomegaly", "Atelectasis"}
    # "Why?" opens on a finding that was assessed: flagged first, else the first assessed one
    why = at.selectbox(key=f"predict_attr_finding_{result['pid']}").value
    assert why == (pred.flagged() or ["Edema"])[0]


def test_a_report_that_rules_edema_out_is_not_flagged_for_it_and_each_flag_says_what_it_means(at, normal_film,
                                                                                                 app_env):
    result = _predict(at, *normal_film, NEGATION, kind="report")
    pred = result["pred"]
    assert pred.operating_point_name == "specificity 0.98"  # report mode's default
    assert pred.decision["Edema"] == "not flagged"
    text = _markdown(at)
    assert "**What a flag means here**" in text
    for f in pred.flagged():  # each flag in words and numbers, at its named point
        line = next(m.value for m in at.markdown if m.value.startswith("**What a flag means here**"))
        assert f"**{f}**" in line and f"of studies with {f}" in line
        assert "Flagged at specificity 0.98: it flags" in line and "prevalence" in line and "[" in line
    row = PredictionStore(app_env["CXR_DB_PATH"]).get(result["pid"])
    assert row["decision"] == pred.decision and row["operating_point_name"] == "specificity 0.98"


def test_the_sidebar_operating_point_decides_logs_and_is_named(at, normal_film, app_env):
    at.sidebar.selectbox(key="operating_point_select").set_value("sensitivity 0.80").run()
    result = _predict(at, *normal_film)
    pred = result["pred"]
    assert pred.operating_point_name == "sensitivity 0.80"
    row = PredictionStore(app_env["CXR_DB_PATH"]).get(result["pid"])
    assert row["operating_point_name"] == "sensitivity 0.80"
    assert all(op["name"] == "sensitivity 0.80" for op in row["operating_point"].values())
    assert any("operating point **sensitivity 0.80**" in c.value for c in at.caption)
    assert "at sensitivity 0.80 (image only)" in _markdown(at)
    at.session_state["operating_point"] = "default"  # AppTest draws the sidebar on its first run only
    at.run()
    assert any("the sidebar now says specificity 0.90: press Predict" in c.value for c in at.caption)


def test_a_new_upload_takes_the_previous_result_off_the_page(at, normal_film, iu_xray_dir):
    """Item 10: the header showed a hashed name, so nothing told the user the result below was another image's."""
    _predict(at, *normal_film)
    other = sorted((iu_xray_dir / "NLMCXR_png").glob("*.png"))[0]
    at.file_uploader(key="upload").upload(other.name, other.read_bytes(), "image/png")
    at.run()
    assert "predict_result" not in at.session_state
    assert not any(s.value.startswith("Result —") for s in at.subheader)
    assert not at.dataframe and [c.key for c in at.get("plotly_chart")] == ["chart_preload_figure"]


def test_predict_draws_the_marker_scripts_bench_ui_waits_for(at, normal_film):
    """scripts/bench_ui.py waits for a container keyed <RESULT_MARKER>_<result>_<bars> whose chart labels
    that many bars (it waited for five labels the page stopped drawing, and timed out for weeks)."""
    from scripts import bench_ui
    assert bench_ui.RESULT_MARKER is RESULT_MARKER  # the script waits for the page's own marker
    result = _predict(at, *normal_film)
    markers = [k for k in _block_keys(at._tree) if k.startswith(RESULT_MARKER + "_")]
    assert len(markers) == 1
    key, _, bars = markers[0].removeprefix(RESULT_MARKER + "_").rpartition("_")
    assert key == str(result["key"])
    chart = json.loads(at.get("plotly_chart")[0].proto.spec)
    labels = next(t["text"] for t in chart["data"] if t.get("mode") == "text")
    assert int(bars) == len(labels) == 3  # Edema, Cardiomegaly, Atelectasis: their numbers, 3 decimals
    assert all(len(label.split(".")[1]) == 3 for label in labels)


def test_batch_decides_at_the_sidebar_point_and_keeps_the_flags_on_screen(at, iu_xray_dir, app_env):
    """Item 11: no column of empty cells for findings not assessed pushing 'flagged', out of distribution and
    discordant off-screen; every row names the operating point it was decided at."""
    pngs = sorted((iu_xray_dir / "NLMCXR_png").glob("*.png"))[:3]
    at.session_state["operating_point"] = "specificity 0.95"  # what the sidebar's selectbox keeps
    at.switch_page("pages/batch_review.py").run()
    at.file_uploader(key="batch_files").set_value([(p.name, p.read_bytes(), "image/png") for p in pngs])
    at.run()
    next(x for x in at.button if x.label == "Score").click()
    at.run(timeout=180)
    assert not at.exception and not at.error
    assert any("decided at specificity 0.95" in s.value for s in at.success)
    frame = at.dataframe[0].value
    columns = list(frame.columns)
    assert columns[:3] == ["your file", "mode", "flagged"]  # no ID column without a CSV
    assert "Pneumonia" not in columns and "Consolidation" not in columns  # not assessed: no column of blanks
    assert columns.index("flagged") < min(columns.index(f) for f in ("Edema", "Cardiomegaly", "Atelectasis"))
    assert set(frame["operating point"]) == {"specificity 0.95"}
    assert not frame.drop(columns="OOD", errors="ignore").isna().any().any()  # no grey "None" cell anywhere
    assert any("No column for Pneumonia, Consolidation" in c.value for c in at.caption)
    rows = PredictionStore(app_env["CXR_DB_PATH"]).list_predictions()
    assert {r["operating_point_name"] for r in rows} == {"specificity 0.95"} and len(rows) == 3


def test_history_decides_rows_logged_before_decisions_and_says_so(at, app_env):
    """Rows from before decisions were recorded ('{}' / '') are decided with the loaded weights' points and
    marked 'decided now'; rows logged with decisions show theirs; no column of blanks for a finding no row shows."""
    from core.model.description import read_description
    version = read_description(WEIGHTS).version
    store = PredictionStore(app_env["CXR_DB_PATH"])
    p = dict.fromkeys(FINDINGS, 0.01) | {"Cardiomegaly": 0.9}
    old_entry = LogEntry(model_version=version, image_png=None, image_name="old.png", image_sha256=None,
                         text="", text_mode="none", fusion=p, image=p, text_probs=None, thresholds=p)
    old = store.log_prediction(old_entry)
    new = store.log_prediction(dataclasses.replace(
        old_entry, image_name="new.png", calibrated=dict.fromkeys(FINDINGS, True),
        decision={f: "not assessed" if f in ("Pneumonia", "Consolidation") else "not flagged" for f in FINDINGS},
        operating_point_name="specificity 0.95", operating_point={}))
    at.session_state["batch_tab"] = "History and review"
    at.switch_page("pages/batch_review.py").run()
    assert not at.exception
    frame = at.dataframe[0].value.set_index("id")
    assert frame.loc[old, "operating point"] == "specificity 0.90 (decided now)"
    assert frame.loc[old, "flagged"] == "Cardiomegaly"
    assert frame.loc[new, "operating point"] == "specificity 0.95" and frame.loc[new, "flagged"] == "none"
    assert "Pneumonia" not in frame.columns  # image only: never assessed, so no column of blanks
    assert list(frame.reset_index().columns)[:4] == ["id", "created (UTC)", "flagged", "flags"]
    assert not frame.isna().any().any()  # a number or '—', never a grey "None"
    assert any("decided now" in c.value for c in at.caption)
