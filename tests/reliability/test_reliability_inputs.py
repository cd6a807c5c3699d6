"""Bad input, end to end: one table of generated inputs, each run through scripts/predict.py
and through the Predict page (AppTest), with the expected outcome "refused" or "predicted".

Refused: the page shows exactly one one-line error and no result, predict.py exits 2 with one
line on stderr and no traceback, and no row is added to the prediction log, which still passes
its integrity check. Predicted (valid-but-odd input: 16-bit, RGBA, palette, CMYK, GIF, TIFF,
huge, DICOM variants, odd text): converted, predicted, and exactly one row logged by the page.

Every input is generated here; nothing is patient data. predict.py runs in-process (through
``scripts._cli.run_main``, the same wrapper as ``__main__``) with the model loaded once per
session; three representative cases also run as real subprocesses to prove the exit status,
the single stderr line and the absence of a traceback with a cold interpreter.

This module also holds the helpers the other test_reliability_* files import.
"""
from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.labels import FINDINGS
from core.data.text_clean import clean_text
from core.store import LogEntry, PredictionStore
from tests.data.test_imaging import _png_header_only, chest_like, make_dicom, pil_bytes

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")
SECRETS = ("SECRET^NAME", "SECRET", "PID-424242", "19450101", "ACC-777")  # what make_dicom writes
SEED_TEXT = "Seed row written before the case ran."


# ============================================================== shared helpers

_PREDICTORS: dict[str, object] = {}


def cached_predictor(weights) -> object:
    """One Predictor per weights folder per test session (a load costs seconds here)."""
    from core.model.checkpoint import load_weights
    from core.serving.predictor import Predictor

    key = str(Path(weights).resolve())
    if key not in _PREDICTORS:
        _PREDICTORS[key] = Predictor(*load_weights(Path(key)))  # what Predictor.load does
    return _PREDICTORS[key]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """scripts/predict.py in-process, through the same run_main wrapper as ``__main__``
    (``capsys`` may also be ``capfd``)."""
    from scripts import predict
    from scripts._cli import run_main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: predict.main(argv))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def assert_one_line_error(err: str) -> None:
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, repr(err[:500])
    assert "Traceback" not in err


def seed_db(path: Path) -> PredictionStore:
    """A log that already holds one earlier prediction, so 'nothing lost' can be checked too."""
    store = PredictionStore(path)
    store.log_prediction(LogEntry(model_version="seed", image_png=None, image_name="seed.png", image_sha256=None,
                                  text=SEED_TEXT, text_mode="report", fusion={f: 0.1 for f in FINDINGS},
                                  image={f: 0.1 for f in FINDINGS}, text_probs={f: 0.1 for f in FINDINGS},
                                  thresholds={f: 0.5 for f in FINDINGS}, source="cli"))
    return store


def db_healthy(path: Path) -> bool:
    """PRAGMA integrity_check straight through sqlite3, plus the store's own (FK + FTS) check."""
    conn = sqlite3.connect(path)
    try:
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    return ok and PredictionStore(path).integrity_ok()


def app_errors(at) -> list[str]:
    """Error boxes other than the out-of-distribution warning (which is a result, not a refusal)."""
    return [e.value for e in at.error if "does not look like" not in e.value]


def new_app(env: dict, weights: Path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CXR_WEIGHTS", str(weights))
    return AppTest.from_file(APP, default_timeout=180).run()


def app_predict(at, name: str, data: bytes, text: str = "", kind: str = "report", mime: str = "image/png"):
    """Upload, fill in the text, press Predict: what a user does on the Predict page. The text is
    sent as a client would send it, even past the box's max_chars (the server then truncates)."""
    at.file_uploader(key="upload").upload(name, data, mime)
    at.radio(key="text_kind").set_value(kind)
    at.text_area(key="text").set_value(text)
    next(b for b in at.button if b.label == "Predict").click()
    return at.run(timeout=180)


def db_file_bytes(path: Path) -> bytes:
    """The database with its WAL and shared-memory files, as they sit on disk."""
    return b"".join(Path(f"{path}{s}").read_bytes() for s in ("", "-wal", "-shm") if Path(f"{path}{s}").exists())


# ============================================================== the table of inputs

def _gray(h: int = 320, w: int = 288) -> np.ndarray:
    return chest_like(h, w, seed=7)


def _png() -> bytes:
    return pil_bytes(Image.fromarray(_gray()))


def _jpeg() -> bytes:
    return pil_bytes(Image.fromarray(_gray()), "JPEG", quality=90)


def _rgba() -> bytes:
    g = _gray()
    alpha = np.full_like(g, 255)
    alpha[:40] = 0  # a transparent band, flattened onto black
    return pil_bytes(Image.fromarray(np.dstack([g, g, g, alpha]), "RGBA"))


def _gif() -> bytes:
    frames = [Image.fromarray(np.roll(_gray(), 12 * k, axis=1)).convert("P") for k in range(4)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    return buf.getvalue()


def _huge() -> bytes:
    """A valid 6144×6000 PNG (37 MP; 1.2 MB on disk): downscaled, then predicted."""
    return pil_bytes(Image.fromarray(np.tile(_gray(300, 256), (20, 24))), compress_level=1)


def _dicom(kind: str) -> bytes:
    from pydicom.uid import JPEG2000Lossless

    g = _gray()
    return {
        "mono1": lambda: make_dicom((g.astype(np.uint16) * 16), photometric="MONOCHROME1"),
        "rgb": lambda: make_dicom(np.dstack([g, 255 - g // 2, g]), photometric="RGB"),
        "multi": lambda: make_dicom(np.stack([g, g[::-1], g]), frames=3),
        "nopixels": lambda: make_dicom(None),
        "compressed": lambda: make_dicom(g.astype(np.uint16), transfer_syntax=JPEG2000Lossless),
    }[kind]()


@dataclass(frozen=True)
class Case:
    id: str
    name: str                      # the uploaded file's name
    data: Callable[[], bytes]
    text: str
    expected: str                  # "refused" | "predicted"
    reason: str = ""               # refused: words the one-line message must contain
    mode: str = "report"           # predicted: the text mode the model used
    app: str = "same"              # "same"; "uploader-refuses": the browser's file filter stops the
                                   # extension; "capped": the text box keeps the first 8,000 characters


ORDINARY = "Shortness of breath. Heart size is normal."
CONTROL = "Heart\x00 is\x07 enlarged.\x1b[2J\r\n\tLungs\x7f clear.\x0b\x0c"
RTL_EMOJI = "القلب متضخم 🫀 הריאות צלולות ‏heart enlarged 👍🏽 (RTL + emoji)"
HTML = '<script>alert("x")</script><img src=x onerror=alert(1)><b>Heart</b> enlarged &amp; <!-- -->'
SQL = "'); DROP TABLE predictions; -- \" OR 1=1; DELETE FROM verdicts WHERE '1'='1' /* Heart enlarged */"
ONE_MB = ("Heart is enlarged. " * 55_189)[: 2**20]

CASES = [
    # -- images that cannot be a chest X-ray
    Case("zero-byte", "empty.png", lambda: b"", ORDINARY, "refused", "empty"),
    Case("truncated-png", "cut.png", lambda: _png()[: len(_png()) // 2], ORDINARY, "refused", "truncated"),
    Case("truncated-jpeg", "cut.jpg", lambda: _jpeg()[: len(_jpeg()) // 2], ORDINARY, "refused", "truncated"),
    Case("random-bytes-png", "noise.png", lambda: np.random.default_rng(3).bytes(8192), ORDINARY, "refused",
         "not a supported image"),
    Case("decompression-bomb", "bomb.png", lambda: _png_header_only(100_000, 100_000), ORDINARY, "refused",
         "decompression bomb"),
    Case("one-pixel", "dot.png", lambda: pil_bytes(Image.new("L", (1, 1), 128)), ORDINARY, "refused", "too small"),
    Case("dicom-no-pixels", "study.dcm", lambda: _dicom("nopixels"), ORDINARY, "refused", "no pixel data"),
    Case("dicom-compressed-no-decoder", "study.dcm", lambda: _dicom("compressed"), ORDINARY, "refused",
         "could not be decoded here"),
    # -- valid but odd images: converted and predicted
    Case("png-16-bit", "wide.png", lambda: pil_bytes(Image.fromarray(_gray().astype(np.uint16) * 257)), ORDINARY,
         "predicted"),
    Case("png-rgba", "alpha.png", _rgba, ORDINARY, "predicted"),
    Case("png-palette", "palette.png", lambda: pil_bytes(Image.fromarray(_gray()).convert("P")), ORDINARY,
         "predicted"),
    Case("jpeg-cmyk", "cmyk.jpg", lambda: pil_bytes(Image.fromarray(_gray()).convert("CMYK"), "JPEG"), ORDINARY,
         "predicted"),
    Case("gif-animated", "cine.gif", _gif, ORDINARY, "predicted", app="uploader-refuses"),
    Case("tiff", "scan.tif", lambda: pil_bytes(Image.fromarray(_gray()), "TIFF"), ORDINARY, "predicted",
         app="uploader-refuses"),
    Case("png-huge-valid", "huge.png", _huge, ORDINARY, "predicted"),
    Case("dicom-monochrome1", "mono1.dcm", lambda: _dicom("mono1"), ORDINARY, "predicted"),
    Case("dicom-rgb", "rgb.dcm", lambda: _dicom("rgb"), ORDINARY, "predicted"),
    Case("dicom-multiframe", "multi.dcm", lambda: _dicom("multi"), ORDINARY, "predicted"),
    # -- text (with a good image)
    Case("text-empty", "cxr.png", _png, "", "predicted", mode="none"),
    Case("text-1mb", "cxr.png", _png, ONE_MB, "refused", "at most 20,000", app="capped"),
    Case("text-control-and-nul", "cxr.png", _png, CONTROL, "predicted"),
    Case("text-rtl-emoji", "cxr.png", _png, RTL_EMOJI, "predicted"),
    Case("text-html-script", "cxr.png", _png, HTML, "predicted"),
    Case("text-sql", "cxr.png", _png, SQL, "predicted"),
]
IDS = [c.id for c in CASES]


def mime(name: str) -> str:
    ext = name.rsplit(".", 1)[-1]
    return {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "tif": "image/tiff",
            "dcm": "application/dicom"}[ext]


def test_table_covers_the_issue():
    """The issue's list, so a case dropped from the table is noticed."""
    assert len(set(IDS)) == len(IDS) == 24
    assert {c.expected for c in CASES} == {"refused", "predicted"}


# ============================================================== through scripts/predict.py

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_predict_cli(case, tiny_weights, tmp_path, monkeypatch, capsys, fast_load):
    db = tmp_path / "predictions.db"
    monkeypatch.setenv("CXR_DB_PATH", str(db))
    seed_db(db)
    image = tmp_path / case.name
    image.write_bytes(case.data())
    code, out, err = run_cli(["--weights", str(tiny_weights), "--image", str(image), "--text", case.text,
                              "--text-mode", "report", "--json"], capsys)  # as the page cases ask
    if case.expected == "refused":
        assert code == 2 and out == ""
        assert_one_line_error(err)
        assert case.reason in err
    else:
        assert code == 0, err
        assert err == ""
        result = json.loads(out)
        assert set(result["fusion"]) == set(FINDINGS) == set(result["decision"])
        assert set(result["thresholds"]) == set(result["operating_point"]) <= set(FINDINGS)  # the assessed ones
        assert all(0.0 <= p <= 1.0 for head in ("fusion", "image", "text") for p in (result[head] or {}).values())
        assert result["text_mode"] == case.mode and (result["text"] is None) == (case.mode == "none")
    assert not any(s in out + err for s in SECRETS)
    # refused input leaves the log as it was; an accepted one adds its row, like the page
    assert PredictionStore(db).count() == (1 if case.expected == "refused" else 2) and db_healthy(db)


SUBPROCESS_CASES = ["random-bytes-png", "dicom-compressed-no-decoder", "text-30k"]


@pytest.mark.parametrize("which", SUBPROCESS_CASES)
def test_predict_cli_subprocess_exit_2_no_traceback(which, tiny_weights, tmp_path):
    """A cold interpreter, as a user runs it. (argv cannot carry 1 MB or a NUL, so the text case
    sends 30,000 characters: over the limit, under the kernel's 128 KiB per-argument cap.)"""
    by_id = {c.id: c for c in CASES}
    case = by_id.get(which, by_id["text-1mb"])
    text = "Heart is enlarged. " * 1600 if which == "text-30k" else case.text
    image = tmp_path / case.name
    image.write_bytes(case.data())
    env = {**os.environ, "CXR_DB_PATH": str(tmp_path / "p.db"), "CXR_RUNLOG": str(tmp_path / "runs.db")}
    proc = subprocess.run([sys.executable, "scripts/predict.py", "--weights", str(tiny_weights), "--image",
                           str(image), "--text", text, "--json"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stdout == ""
    assert_one_line_error(proc.stderr)
    assert (case.reason if which != "text-30k" else "at most 20,000") in proc.stderr
    assert not (tmp_path / "p.db").exists()


# ============================================================== through the Predict page

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_predict_page(case, app_env, tiny_weights, monkeypatch):
    db = Path(app_env["CXR_DB_PATH"])
    seed_db(db)
    at = new_app(app_env, tiny_weights, monkeypatch)
    data = case.data()
    name = case.name
    if case.app == "uploader-refuses":
        # The page's uploader does not list this extension, so the browser refuses the file before
        # it is sent (Streamlit's own one-line message). The same bytes under an accepted name are
        # decoded by content, converted and predicted.
        accepted = list(at.file_uploader(key="upload").proto.type)
        assert "." + name.rsplit(".", 1)[-1] not in accepted and ".png" in accepted
        name = name.rsplit(".", 1)[0] + ".png"
    text, expected, reason = case.text, case.expected, case.reason
    if case.app == "capped":
        # The box has no character limit (a long report is fitted to the encoder's window, see
        # core.data.text_window); the page refuses text over 200,000 characters in one line, the CLIs
        # over 20,000.
        expected, reason = "refused", "at most 200,000"
    app_predict(at, name, data, case.text, mime=mime(name))
    assert not at.exception, [e.value for e in at.exception]
    errors = app_errors(at)
    store = PredictionStore(db)
    if expected == "refused":
        assert len(errors) == 1 and "\n" not in errors[0], errors
        assert reason in errors[0]
        assert "predict_result" not in at.session_state
        assert store.count() == 1
    else:
        assert errors == []
        result = at.session_state["predict_result"]
        assert result["pred"].text_mode == case.mode
        rows = store.list_predictions(limit=None)
        assert len(rows) == 2 and rows[0]["id"] == result["pid"]
        assert rows[0]["text"] == (clean_text(text) if case.mode != "none" else "")
        # stored under a name made from the file's hash, never the upload's own name (issue 10)
        assert rows[0]["text_mode"] == case.mode and rows[0]["image_name"].startswith("upload-")
        assert name.rsplit(".", 1)[0] not in rows[0]["image_name"]
        png = store.get(result["pid"])["image_png"]  # the stored review copy is a small PNG
        assert max(Image.open(io.BytesIO(png)).size) <= 256
        if case.mode != "none":  # shown verbatim in a code block, never rendered as markup
            assert clean_text(text) in [c.value for c in at.code]
            assert not any("<script" in m.value or "<img" in m.value for m in at.markdown)
    assert store.get(1)["text"] == SEED_TEXT
    rendered = " ".join(str(getattr(e, "value", "")) for e in (*at.error, *at.caption, *at.markdown))
    assert not any(s in rendered for s in SECRETS)
    assert db_healthy(db)
