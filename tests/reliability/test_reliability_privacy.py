"""Access and privacy, end to end: the shared tunnel needs a password, the upload size is capped
in the config and in code, weights load without unpickling and a damaged or tampered file is a
clear error, DICOM identifiers never reach the log file or the logs, and deleting an entry in the
app removes its image and text from the database file.

tests/serving/test_share.py already covers the tunnel's credentials at unit and CLI level; here only what
it leaves out: a refused share starts neither the app nor a tunnel, and the sidebar warns when the
app is shared without a password.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.serving import sharing as share
from core.store import PredictionStore, hashed_name
from tests.reliability.test_reliability_inputs import (
    SECRETS,
    app_errors,
    app_predict,
    assert_one_line_error,
    chest_like,
    db_file_bytes,
    db_healthy,
    make_dicom,
    new_app,
    pil_bytes,
    run_cli,
)

REPO = Path(__file__).resolve().parents[2]


# ====================================================================== the shared tunnel

def test_refused_share_starts_neither_the_app_nor_a_tunnel(tmp_path, monkeypatch, capsys):
    from scripts import share as share_script
    from scripts._cli import run_main

    monkeypatch.setenv(share.TOKEN_ENV, "tok")
    monkeypatch.delenv(share.AUTH_ENV, raising=False)
    monkeypatch.setenv("CXR_SHARE_STATUS", str(tmp_path / "share.json"))
    started = []
    monkeypatch.setattr(share_script, "start_app", lambda port: started.append("app"))
    monkeypatch.setattr(share, "open_tunnel", lambda config: started.append("tunnel"))
    with pytest.raises(SystemExit) as info:
        run_main(lambda: share_script.main([]))  # the default form: would start the app, then the tunnel
    err = capsys.readouterr().err
    assert info.value.code == 2 and started == [] and not (tmp_path / "share.json").exists()
    assert_one_line_error(err)
    assert "refusing to share without a password" in err


@pytest.mark.parametrize("auth, words", [(True, "Password-protected"), (False, "No password: anyone with the URL")])
def test_sidebar_says_whether_the_shared_app_has_a_password(app_env, auth, words):
    from streamlit.testing.v1 import AppTest

    share.write_status(url="https://abc.ngrok.app", port=8501, auth=auth, path=Path(app_env["CXR_SHARE_STATUS"]),
                       pid=os.getpid())
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert any("https://abc.ngrok.app" in s.value for s in at.sidebar.success)
    assert any(words in c.value for c in at.sidebar.caption)
    assert "long-password" not in Path(app_env["CXR_SHARE_STATUS"]).read_text()


# ====================================================================== upload size cap

def test_upload_cap_is_configured_and_matches_the_code():
    from ui.config import MAX_UPLOAD_MB

    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == MAX_UPLOAD_MB == 50


def test_upload_cap_is_checked_in_the_page(app_env, tiny_weights, monkeypatch):
    """The server refuses larger uploads (config above); the page checks again in code, for
    uploads that reach it another way. 50 MiB + 1 byte is refused with one line, nothing logged."""
    from ui.config import MAX_UPLOAD_MB

    at = new_app(app_env, tiny_weights, monkeypatch)
    assert at.file_uploader(key="upload").proto.max_upload_size_mb == MAX_UPLOAD_MB
    app_predict(at, "big.png", b"\0" * (MAX_UPLOAD_MB * 2**20 + 1), "Cough.")
    assert not at.exception
    errors = app_errors(at)
    assert len(errors) == 1 and "\n" not in errors[0] and f"{MAX_UPLOAD_MB} MB" in errors[0]
    assert "predict_result" not in at.session_state
    assert PredictionStore(app_env["CXR_DB_PATH"]).count() == 0


def test_upload_cap_in_the_cli(tiny_weights, tmp_path, capsys, fast_load):
    big = tmp_path / "big.png"
    with open(big, "wb") as fh:  # sparse: 50 MiB + 1 byte without writing them
        fh.truncate(50 * 2**20 + 1)
    code, out, err = run_cli(["--weights", str(tiny_weights), "--image", str(big)], capsys)
    assert code == 2 and out == ""
    assert_one_line_error(err)
    assert "50 MB limit" in err


# ====================================================================== weights

class _Payload:
    """A pickle that creates a file when it is unpickled: proof of code execution."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_loading_weights_never_unpickles(tiny_weights, monkeypatch):
    import torch

    from core.model.checkpoint import load_weights

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling during a weights load")

    for target, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(target, name, refuse)
    model, tokenizer, meta, _ = load_weights(Path(tiny_weights))
    assert meta["labels"] and sum(p.numel() for p in model.parameters()) > 1e6


@pytest.fixture(scope="module")
def digest_weights(tmp_path_factory, tiny_weights):
    """The tiny model saved again by this code, so its file carries the content digest."""
    from core.model.checkpoint import DIGEST_KEY, load_weights, save_weights

    model, _, meta, ood = load_weights(Path(tiny_weights))
    out = tmp_path_factory.mktemp("digest") / "w"
    keep = {k: v for k, v in meta.items() if k not in ("model_config", "text_embedding_fingerprint", DIGEST_KEY)}
    save_weights(model, keep, out, ood=ood)
    return out


def _header_len(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


def _tamper(kind: str, src: Path, dst: Path) -> Path:
    """A copy of the weights folder with model.safetensors damaged in one way."""
    dst.mkdir(parents=True)
    data = (src / "model.safetensors").read_bytes()
    n = _header_len(data)
    if kind == "truncated":
        data = data[: len(data) // 2]
    elif kind == "flipped-byte":  # one byte in the middle of the tensor payload
        i = n + (len(data) - n) // 2
        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
    elif kind == "edited-threshold":  # same length, so the file still parses: only the digest can tell
        header = data[8:n].decode()
        key = '\\"thresholds\\": {\\"indication\\": {\\"fusion\\": {\\"Atelectasis\\": 0.'
        i = header.index(key) + len(key)
        header = header[:i] + ("1" if header[i] != "1" else "2") + header[i + 1:]
        data = data[:8] + header.encode() + data[n:]
    elif kind == "pickle":  # a pickled checkpoint renamed to model.safetensors
        data = pickle.dumps({"state_dict": _Payload(dst / "PWNED")})
    elif kind == "empty":
        data = b""
    else:
        raise ValueError(kind)
    (dst / "model.safetensors").write_bytes(data)
    return dst


TAMPERED = ["truncated", "flipped-byte", "edited-threshold", "pickle", "empty"]


@pytest.mark.parametrize("kind", TAMPERED)
def test_damaged_weights_cli_exit_2_and_page_says_so(kind, digest_weights, tmp_path, app_env, monkeypatch, capsys):
    from core.model.checkpoint import WeightsError, load_weights

    bad = _tamper(kind, digest_weights, tmp_path / "bad")
    with pytest.raises(WeightsError) as info:
        load_weights(bad)
    assert "\n" not in str(info.value) and ("damaged" in str(info.value) or "altered" in str(info.value))

    image = tmp_path / "cxr.png"
    image.write_bytes(pil_bytes(Image.fromarray(chest_like(320, 288))))
    code, out, err = run_cli(["--weights", str(bad), "--image", str(image), "--text", "Cough."], capsys)
    assert code == 2 and out == ""
    assert_one_line_error(err)
    assert "damaged" in err or "altered" in err

    at = new_app(app_env, bad, monkeypatch)
    if not at.exception and len(at.file_uploader):  # metadata still readable: the load fails at Predict
        app_predict(at, "cxr.png", image.read_bytes(), "Cough.")
    assert not at.exception, [e.value for e in at.exception]
    shown = [e.value for e in at.error] + [c.value for c in at.caption]
    assert any(("damaged" in s or "altered" in s) and "\n" not in s for s in shown), shown
    assert "predict_result" not in at.session_state
    assert not (bad / "PWNED").exists()  # nothing was unpickled, by the CLI or the app
    assert not Path(app_env["CXR_DB_PATH"]).exists() or PredictionStore(app_env["CXR_DB_PATH"]).count() == 0


def test_untouched_digest_weights_load_and_predict(digest_weights, tmp_path, capsys):
    from core.model.checkpoint import DIGEST_KEY, read_metadata

    assert len(read_metadata(digest_weights)[DIGEST_KEY]) == 64
    image = tmp_path / "cxr.png"
    image.write_bytes(pil_bytes(Image.fromarray(chest_like(320, 288))))
    code, out, err = run_cli(["--weights", str(digest_weights), "--image", str(image), "--json"], capsys)
    assert code == 0 and err == "" and json.loads(out)["fusion"]


# ====================================================================== DICOM identifiers

def page_text(at) -> str:
    """Every text the page and its sidebar show."""
    kinds = ("markdown", "caption", "error", "warning", "info", "success", "code", "title", "subheader",
             "header", "text", "json", "expander")
    parts = []
    for root in (at, at.sidebar):
        for kind in kinds:
            for element in getattr(root, kind, []):
                parts.append(str(getattr(element, "value", "") or getattr(element, "label", "")))
    return "\n".join(parts)


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_dicom_identifiers_never_reach_the_log_file_or_the_logs(app_env, tiny_weights, monkeypatch, capfd,
                                                                 tmp_path, fast_load):
    gray = chest_like(320, 288, seed=11)
    dicom = make_dicom(gray.astype(np.uint16) * 16, window=(2000, 4000))
    for secret in SECRETS:  # the file really carries them
        assert secret.encode() in dicom
    capture = _Capture()
    loggers = [logging.getLogger(), logging.getLogger("streamlit"), logging.getLogger("core"),
               logging.getLogger("pydicom")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(capture)
        lg.setLevel(logging.DEBUG)
    try:
        at = new_app(app_env, tiny_weights, monkeypatch)
        app_predict(at, "study.dcm", dicom, "Cough and fever.", mime="application/dicom")
        assert not at.exception and not app_errors(at)
        pid = at.session_state["predict_result"]["pid"]
        at.session_state["batch_tab"] = "History and review"  # tabs are lazy
        at.switch_page("pages/batch_review.py").run()  # the entry as a reviewer sees it
        assert not at.exception and at.selectbox(key="hist_open").value == pid
        fd_out, fd_err = capfd.readouterr()  # what the app printed
        path = tmp_path / "study.dcm"
        path.write_bytes(dicom)
        code, out, err = run_cli(["--weights", str(tiny_weights), "--image", str(path), "--json"], capfd)
        assert code == 0
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(capture)
            lg.setLevel(level)
    db = Path(app_env["CXR_DB_PATH"])
    raw = db_file_bytes(db)
    row = PredictionStore(db).get(pid)
    assert row["image_name"] == hashed_name("study.dcm", dicom) and row["image_png"]
    shown = page_text(at)
    for secret in SECRETS:
        for encoding in ("utf-8", "utf-16-le"):
            assert secret.encode(encoding) not in raw, f"{secret} in the database file"
        assert secret not in "\n".join(capture.lines), f"{secret} in the logs"
        assert secret not in fd_out + fd_err + out + err, f"{secret} on stdout/stderr"
        assert secret not in json.dumps(row, default=str), f"{secret} in the stored row"
        assert secret not in shown


# ====================================================================== delete through the app

def test_delete_in_the_app_removes_image_and_text_from_the_file(app_env, tiny_weights, monkeypatch):
    marker = "zqxdeletemarker"
    keep_text = "Heart size is normal; kept entry."
    db = Path(app_env["CXR_DB_PATH"])
    at = new_app(app_env, tiny_weights, monkeypatch)
    app_predict(at, "keep.png", pil_bytes(Image.fromarray(chest_like(320, 288, seed=1))), keep_text)
    keep = at.session_state["predict_result"]["pid"]
    app_predict(at, f"{marker}.png", pil_bytes(Image.fromarray(chest_like(320, 288, seed=2))),
                f"Private history {marker}. " * 400)
    pid = at.session_state["predict_result"]["pid"]
    assert not at.exception and not app_errors(at)
    png = PredictionStore(db).get(pid)["image_png"]
    # pieces of the stored review copy's compressed pixels (the blob spans overflow pages, so one
    # long probe could straddle a page boundary; short ones at many offsets cannot all do so)
    probes = [png[k: k + 20] for k in range(64, len(png) - 20, max(1, (len(png) - 84) // 12))]
    raw = db_file_bytes(db)
    assert marker.encode() in raw and sum(p in raw for p in probes) >= len(probes) // 2  # visible before

    at.session_state["batch_tab"] = "History and review"  # tabs are lazy

    at.switch_page("pages/batch_review.py").run()
    assert at.selectbox(key="hist_open").value == pid  # newest first
    at.checkbox(key=f"delete_sure_{pid}").check().run()
    at.button(key=f"delete_{pid}").click().run()
    assert not at.exception and not app_errors(at)
    assert any(f"Deleted entry #{pid}" in s.value for s in at.success)

    store = PredictionStore(db)
    raw = db_file_bytes(db)
    assert marker.encode() not in raw and not any(p in raw for p in probes)
    assert store.get(pid) is None and store.list_predictions(search=marker) == []
    assert store.get(keep)["text"] == keep_text and store.count() == 1 and db_healthy(db)
