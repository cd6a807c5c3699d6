"""Batch scoring: zip validation, the text-mapping CSV, and scoring + logging through the page."""
import io
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.serving.batch_uploads import CsvError, TextRow, expand_uploads, read_text_map
from core.store import PredictionStore, hashed_name

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return buf.getvalue()


@pytest.fixture
def pngs(iu_xray_dir) -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in sorted((iu_xray_dir / "NLMCXR_png").glob("*.png"))[:3]]


def test_zip_keeps_images_and_lists_every_skip(pngs):
    (a, da), (b, db), _ = pngs
    archive = _zip({f"study/{a}": da, "notes.txt": b"hello", f"../{b}": db, "/abs/x.png": db,
                    "inner.zip": _zip({"y.png": db}), "__MACOSX/._x.png": b"junk", "folder/": b""})
    items, skipped = expand_uploads([("batch.zip", archive), ("loose.png", db), ("readme.md", b"#")])
    assert [i.name for i in items] == [a, "loose.png"]
    reasons = {s.name: s.reason for s in skipped}
    assert "not an image" in reasons["batch.zip:notes.txt"]
    assert "traversal" in reasons[f"batch.zip:../{b}"]
    assert "absolute" in reasons["batch.zip:/abs/x.png"]
    assert "nested" in reasons["batch.zip:inner.zip"]
    assert "not an image" in reasons["readme.md"]
    assert not any("__MACOSX" in name for name in reasons)


def test_broken_zip_is_one_skip():
    items, skipped = expand_uploads([("bad.zip", b"PK\x03\x04 nope")])
    assert items == [] and skipped[0].reason == "not a readable .zip archive"


def test_text_map_reads_modes_and_rejects_bad_csv():
    data = b"file,text,mode\nsub/a.png,Cough.,report\nb.png,Heart enlarged.,\nc.png,,\n"
    assert read_text_map(data) == {"a.png": TextRow("Cough.", "report"),
                                   "b.png": TextRow("Heart enlarged.", "indication"),  # the one default
                                   "c.png": TextRow("", "none")}
    assert read_text_map(b"file,text\nc.png,Heart\x00 big.\x1b[2J\n") == {
        "c.png": TextRow("Heart big.[2J", "indication")}  # control characters dropped, as the CLIs do
    with pytest.raises(CsvError, match="image column"):
        read_text_map(b"name,report\nx,y\n")
    with pytest.raises(CsvError, match="mode"):
        read_text_map(b"file,text,mode\nx.png,y,finding\n")
    with pytest.raises(CsvError, match="line 2: .*would not be read"):
        read_text_map(b"image,text,text_mode\nx.png,cough,none\n")


def test_the_cli_batch_csv_works_here_too_with_the_users_ids():
    data = b"image,text,text_mode,id\nscans/a.png,Cough.,indication,ward-7\nb.png,,none,ward-8\n"
    assert read_text_map(data) == {"a.png": TextRow("Cough.", "indication", "ward-7"),
                                   "b.png": TextRow("", "none", "ward-8")}


def test_batch_page_scores_and_logs_each_study(app_env, tiny_weights, monkeypatch, pngs):
    monkeypatch.setenv("CXR_WEIGHTS", str(tiny_weights))
    (a, da), (b, db), (c, dc) = pngs
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("pages/batch_review.py").run()
    at.file_uploader(key="batch_files").set_value([("studies.zip", _zip({a: da, b: db, "x.txt": b"no"}),
                                                   "application/zip"), (c, dc, "image/png")])
    csv = f"image,text,text_mode,id\n{a},Heart is enlarged.,report,ward-1\n{b},Cough for two weeks.,,ward-2\n".encode()
    at.file_uploader(key="batch_csv").set_value(("map.csv", csv, "text/csv"))
    at.run()
    next(x for x in at.button if x.label == "Score").click()
    at.run(timeout=180)
    assert not at.exception and not at.error
    rows = {r["image_name"]: r for r in PredictionStore(app_env["CXR_DB_PATH"]).list_predictions()}
    names = {hashed_name(a, da): a, hashed_name(b, db): b, hashed_name(c, dc): c}  # patients' names stay out
    assert set(rows) == set(names)
    rows = {names[k]: v for k, v in rows.items()}
    assert {r["source"] for r in rows.values()} == {"batch"}
    assert (rows[a]["text_mode"], rows[a]["text"]) == ("report", "Heart is enlarged.")
    assert (rows[b]["text_mode"], rows[c]["text_mode"]) == ("indication", "none")
    assert any("Skipped 1" in w.value for w in at.warning)
    # what needs attention comes before the probabilities, and names the operating point it was decided at
    table = at.session_state["batch_result"]["rows"][0]
    assert list(table)[:6] == ["id", "file", "flagged", "discordant", "OOD", "mode"]
    points = {r["text_mode"]: r["operating_point_name"] for r in rows.values()}
    assert points == {"report": "specificity 0.98", "indication": "specificity 0.90", "none": "specificity 0.90"}
    # the user's own names and IDs reach the table and the download, not the log
    by_file = {r["your file"]: r for r in at.session_state["batch_result"]["rows"]}
    assert (by_file[a]["your ID"], by_file[b]["your ID"], by_file[c]["your ID"]) == ("ward-1", "ward-2", "")
    assert by_file[b]["discordant"] is None and by_file[a]["discordant"] is not None  # report mode only
    shown = at.dataframe[0].value  # on screen: '—' outside report mode, never a grey "None" (issue 26, item 11)
    assert not shown["discordant"].isna().any() and "—" in set(shown["discordant"])
    download = next(x for x in at.get("download_button") if "your file names" in x.proto.label)
    assert download is not None
    from ui.batch_score import results_csv
    header = results_csv(at.session_state["batch_result"]["rows"]).decode().splitlines()[0]
    assert header.startswith("your file,your ID,id,file")
    log = PredictionStore(app_env["CXR_DB_PATH"])
    assert not any("ward-" in str(v) for r in log.list_predictions() for v in r.values())
