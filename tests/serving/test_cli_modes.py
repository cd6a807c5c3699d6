"""scripts/predict.py says which text mode it read, defaults like the app, refuses text it
would drop, prints no text-head numbers when no text was read, and logs like the app."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.reliability.test_reliability_inputs import cached_predictor, run_cli

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "weights"


@pytest.fixture
def _run(monkeypatch, capsys):
    """scripts/predict.py in-process (run_main: exit codes and one-line errors as from a shell)
    on the shipped weights, loaded once; the log goes to the file each call names."""
    from scripts import predict
    monkeypatch.setattr(predict, "load_predictor", lambda weights: cached_predictor(weights))

    def run(args, db: Path):
        monkeypatch.setenv("CXR_DB_PATH", str(db))
        code, out, err = run_cli(["--weights", str(WEIGHTS), *args], capsys)
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)
    return run


def _rows(db: Path) -> list[tuple]:
    if not db.is_file():
        return []
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT source, text_mode, image_name FROM predictions").fetchall()


@pytest.fixture(scope="module")
def image(iu_xray_dir) -> Path:
    return sorted((iu_xray_dir / "NLMCXR_png").glob("*.png"))[0]


def test_text_without_a_mode_is_an_indication_named_in_the_output_and_logged(image, tmp_path, _run):
    db = tmp_path / "log.db"
    res = _run(["--image", str(image), "--text", "Chest pain", "--json"], db)
    assert res.returncode == 0, res.stderr
    j = json.loads(res.stdout)
    assert j["text_mode"] == "indication" and j["text"] is not None
    plain = _run(["--image", str(image), "--text", "Chest pain"], db)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines()[0].startswith("text mode: indication (before the read)")
    # issue 26: Edema has a calibrated number now; a finding the image cannot support is not assessed
    # and shows no number, and every assessed one says what a flag means at the named operating point
    assert j["calibrated"]["Edema"] is True and j["calibrated"]["Cardiomegaly"] is True
    assert j["decision"]["Pneumonia"] == "not assessed" and j["probability"]["Pneumonia"] is None
    lines = plain.stdout.splitlines()
    assert "operating point: specificity 0.90" in lines[0]
    pneumonia = next(line for line in lines if line.startswith("Pneumonia"))
    assert "not assessed" in pneumonia and "0." not in pneumonia
    edema = lines.index(next(line for line in lines if line.startswith("Edema")))
    assert "probability 0." in lines[edema] and "of studies with Edema" in lines[edema + 1]
    assert _rows(db) == [("cli", "indication", image.name)] * 2  # every CLI prediction is logged


def test_text_with_mode_none_is_refused_in_one_line(image, tmp_path, _run):
    db = tmp_path / "log.db"
    res = _run(["--image", str(image), "--text", "cough", "--text-mode", "none"], db)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "would not be read" in res.stderr
    assert _rows(db) == []


def test_image_only_prints_no_text_head_and_no_log_keeps_the_log_untouched(image, tmp_path, _run):
    db = tmp_path / "log.db"
    res = _run(["--image", str(image), "--text-mode", "none", "--json", "--no-log"], db)
    assert res.returncode == 0, res.stderr
    j = json.loads(res.stdout)
    assert j["text_mode"] == "none" and j["text"] is None
    plain = _run(["--image", str(image), "--no-log"], db)
    assert plain.stdout.splitlines()[0].startswith("text mode: none (image only)")
    assert " text " not in plain.stdout and _rows(db) == []


def test_the_batch_csv_takes_the_web_batchs_columns_and_keeps_the_users_id(image, tmp_path, _run):
    batch = tmp_path / "studies.csv"
    batch.write_text(f"file,text,mode,id\n{image},Heart is enlarged.,report,ward-7\n{image},,,ward-8\n"
                     f"{image},Dyspnoea,,ward-9\n")
    out = tmp_path / "out.csv"
    res = _run(["--batch", str(batch), "--out", str(out), "--json"], tmp_path / "log.db")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert [(x["id"], x["text_mode"]) for x in lines] == [("ward-7", "report"), ("ward-8", "none"),
                                                          ("ward-9", "indication")]
    header, *rows = [r.split(",") for r in out.read_text().splitlines()]
    assert header[:3] == ["image", "id", "text_mode"] and [r[1] for r in rows] == ["ward-7", "ward-8", "ward-9"]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"image,text,text_mode\n{image},cough,none\n")
    res = _run(["--batch", str(bad), "--json"], tmp_path / "log2.db")
    assert res.returncode == 2 and "line 2" in res.stderr and res.stderr.count("\n") == 1


def test_the_batch_csv_is_read_as_the_web_batch_reads_it(image, tmp_path, _run):
    """One contract, parsed once (core.serving.batch_csv, issue 27): the CLI takes ``Report`` and a
    capitalised header as the web batch does; it used to refuse the mode the web lower-cased."""
    from core.serving.batch_uploads import TextRow, read_text_map
    rows = "Image,Text,Mode,ID\n{},Heart is enlarged.,Report,ward-7\n{},Cough., INDICATION ,ward-8\n"
    assert read_text_map(rows.format("a.png", "b.png").encode()) == {
        "a.png": TextRow("Heart is enlarged.", "report", "ward-7"), "b.png": TextRow("Cough.", "indication", "ward-8")}
    batch = tmp_path / "studies.csv"
    batch.write_text(rows.format(image, image))
    res = _run(["--batch", str(batch), "--json", "--no-log"], tmp_path / "log.db")
    assert res.returncode == 0, res.stderr
    assert [(x["id"], x["text_mode"]) for x in map(json.loads, res.stdout.splitlines())] == [
        ("ward-7", "report"), ("ward-8", "indication")]
    out = tmp_path / "out.csv"  # the sharded form reads the rows with the same function
    res = _run(["--batch", str(batch), "--out", str(out)], tmp_path / "log.db")
    assert res.returncode == 0, res.stderr
    assert [r.split(",")[1:3] for r in out.read_text().splitlines()[1:]] == [["ward-7", "report"],
                                                                             ["ward-8", "indication"]]
