"""Load: many sessions predicting at once, every row logged, no lock errors, p95 latency reported.

AppTest is not thread-safe (each run swaps process-wide state: Runtime._instance, the pages
manager, a patched config.get_option), so 8 AppTests in threads would test AppTest, not the app.
Instead:

- default run: 8 threads, each a "session" doing exactly what the Predict page does per click
  (decode the upload -> clean the text -> core.serving.predict_and_log.predict_and_log: the shared
  Predictor serialises its own model calls; log into one shared PredictionStore), 25 predictions each;
- slow run (``-m slow``): the real ``streamlit run app.py`` server and 8 websocket clients
  speaking Streamlit's own protocol (upload over HTTP, widget states over the websocket), each
  pressing Predict 25 times on the Predict page.

Both print their numbers and write them as JSON to var/reliability/ (or $CXR_RELIABILITY_DIR),
which docs/reliability.md quotes.
"""
from __future__ import annotations

import json
import os
import statistics
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from core.data.text_clean import clean_text
from core.store import PredictionStore
from scripts._cli import pct
from tests.reliability.test_reliability_inputs import (
    cached_predictor,
    chest_like,
    db_healthy,
    pil_bytes,
)

REPO = Path(__file__).resolve().parents[2]
SESSIONS, PER_SESSION = 8, 25


def out_dir() -> Path:
    path = Path(os.environ.get("CXR_RELIABILITY_DIR") or REPO / "var" / "reliability")
    path.mkdir(parents=True, exist_ok=True)
    return path


def summary(kind: str, latencies_ms: list[float], wall_s: float, rows: int, errors: list[str], **extra) -> dict:
    import torch

    return {"kind": kind, "sessions": SESSIONS, "predictions_per_session": PER_SESSION,
            "predictions": len(latencies_ms), "rows_logged": rows, "errors": len(errors),
            "error_samples": errors[:5], "wall_s": round(wall_s, 1),
            "throughput_per_s": round(len(latencies_ms) / wall_s, 2),
            "latency_ms_p50": round(pct(latencies_ms, 50), 1), "latency_ms_p95": round(pct(latencies_ms, 95), 1),
            "latency_ms_max": round(max(latencies_ms), 1),
            "latency_ms_mean": round(statistics.fmean(latencies_ms), 1), "cpu_count": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2), "torch_threads": torch.get_num_threads(),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra}


def run_sessions(target, timeout_s: float) -> float:
    """Run target(session) for every session in its own thread; the wall time in seconds."""
    threads = [threading.Thread(target=target, args=(s,)) for s in range(SESSIONS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout_s)
    assert not any(t.is_alive() for t in threads), "a session did not finish in time"
    return time.perf_counter() - started


def study(session: int, i: int) -> tuple[str, bytes, str]:
    name = f"s{session}-{i}.png"
    data = pil_bytes(Image.fromarray(chest_like(320, 288, seed=1000 * session + i)))
    text = f"Session {session} study {i}: shortness of breath.\x00 Heart size is normal." if i % 3 else ""
    return name, data, text


def test_eight_sessions_predict_and_log_concurrently(tiny_weights, tmp_path):
    from core.data.images import decode_image
    from core.serving.predict_and_log import Study, predict_and_log

    predictor = cached_predictor(tiny_weights)
    store = PredictionStore(tmp_path / "predictions.db")
    studies = {(s, i): study(s, i) for s in range(SESSIONS) for i in range(PER_SESSION)}
    latencies: list[float] = []
    errors: list[str] = []
    barrier = threading.Barrier(SESSIONS)

    def session(s: int) -> None:
        barrier.wait()  # all sessions start together
        for i in range(PER_SESSION):
            name, data, text = studies[s, i]
            t = time.perf_counter()
            try:  # pages/predict.py, run_prediction(), step by step
                decoded = decode_image(data, filename=name)
                text = clean_text(text)
                study = Study(decoded.gray, data, name, text, "report", colorfulness=decoded.colorfulness)
                done = predict_and_log(predictor, store, study, source="predict", keep_name=True)
                if done.log_error is not None:
                    raise done.log_error
            except Exception as exc:  # noqa: BLE001 - every failure is a finding, counted and shown
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append((time.perf_counter() - t) * 1000)

    wall = run_sessions(session, timeout_s=900)

    rows = store.list_predictions(limit=None)
    result = summary("threads: decode -> predict (the Predictor's lock) -> log, as pages/predict.py", latencies, wall,
                     len(rows), errors)
    (out_dir() / "load-threads.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nload (threads): {json.dumps(result)}")

    assert errors == []
    assert len(rows) == SESSIONS * PER_SESSION
    by_name = {r["image_name"]: r for r in rows}
    for (name, _, text) in studies.values():  # every row present, each with its own text
        assert by_name[name]["text"] == clean_text(text)
        assert by_name[name]["text_mode"] == ("report" if text else "none")
    assert db_healthy(store.path)


# ====================================================================== the real server, websocket clients

class StreamlitServer:
    """``streamlit run app.py`` on a free port, with the test's weights, log and run log."""

    def __init__(self, tmp: Path, weights: Path, *, threads: int = 1):
        """``threads``: OMP_NUM_THREADS for the server (torch's intra-op threads); 0 leaves torch's default."""
        import socket
        import subprocess
        import sys

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.db = tmp / "predictions.db"
        env = {**os.environ, "CXR_WEIGHTS": str(weights), "CXR_DB_PATH": str(self.db),
               "CXR_RUNLOG": str(tmp / "runs.db"), "CXR_SHARE_STATUS": str(tmp / "share.json")}
        env.pop("OMP_NUM_THREADS", None)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        self.threads = threads or "torch default"
        self.log = open(tmp / "server.log", "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
             "--browser.gatherUsageStats", "false"], cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        self.xsrf = self._wait_healthy()

    def _wait_healthy(self, timeout: float = 180) -> str:
        import requests

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                r = requests.get(f"{self.base}/_stcore/health", timeout=5)
                if r.status_code == 200:
                    return r.cookies.get("_streamlit_xsrf") or ""
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"server not healthy after {timeout} s: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except Exception:  # noqa: BLE001
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Session:
    """One browser tab, minus the browser: Streamlit's protobuf protocol over a websocket."""

    def __init__(self, server: StreamlitServer):
        from websockets.sync.client import connect

        self.server = server
        headers = {"Origin": server.base}
        protocols = ["streamlit"]
        if server.xsrf:
            headers["Cookie"] = f"_streamlit_xsrf={server.xsrf}"
            protocols.append(server.xsrf)
        self.ws = connect(f"ws://127.0.0.1:{server.port}/_stcore/stream", subprotocols=protocols,
                          additional_headers=headers, max_size=None, open_timeout=60)
        self.session_id = None
        self.page_hash = ""
        self.elements = []
        self.widgets = {}
        self.rerun()

    def _send(self, msg) -> None:
        self.ws.send(msg.SerializeToString())

    def _recv(self, timeout: float):
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        msg = ForwardMsg()
        msg.ParseFromString(self.ws.recv(timeout=timeout))
        kind = msg.WhichOneof("type")
        if kind == "new_session":
            self.session_id = msg.new_session.initialize.session_id or self.session_id
            self.page_hash = msg.new_session.page_script_hash or self.page_hash
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            element = msg.delta.new_element
            self.elements.append(element)
            which = element.WhichOneof("type")
            if which in ("file_uploader", "radio", "text_area", "button"):
                proto = getattr(element, which)
                self.widgets[(which, proto.label)] = proto
        return kind, msg

    def rerun(self, states=None, timeout: float = 600) -> None:
        """Send a rerun (what a widget change does) and read until the script run finishes."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.page_script_hash = self.page_hash
        if states is not None:
            msg.rerun_script.widget_states.CopyFrom(states)
        self.elements = []
        self._send(msg)
        deadline = time.monotonic() + timeout
        while True:
            kind, fwd = self._recv(max(1.0, deadline - time.monotonic()))
            if kind == "script_finished" and fwd.script_finished in (0, 1):
                return

    def widget(self, kind: str, label_start: str):
        return next(p for (k, label), p in self.widgets.items() if k == kind and label.startswith(label_start))

    def upload(self, name: str, data: bytes, mime: str = "image/png"):
        """The frontend's two steps: ask the server for an upload URL, then PUT the file there."""
        import uuid

        import requests
        from streamlit.proto.BackMsg_pb2 import BackMsg

        rid = uuid.uuid4().hex
        msg = BackMsg()
        msg.file_urls_request.request_id = rid
        msg.file_urls_request.file_names.append(name)
        msg.file_urls_request.session_id = self.session_id
        self._send(msg)
        while True:
            kind, fwd = self._recv(60)
            if kind == "file_urls_response" and fwd.file_urls_response.response_id == rid:
                assert not fwd.file_urls_response.error_msg, fwd.file_urls_response.error_msg
                urls = fwd.file_urls_response.file_urls[0]
                break
        url = urls.upload_url if urls.upload_url.startswith("http") else self.server.base + urls.upload_url
        r = requests.put(url, files={"file": (name, data, mime)}, timeout=300,
                         headers={"X-Xsrftoken": self.server.xsrf} if self.server.xsrf else {},
                         cookies={"_streamlit_xsrf": self.server.xsrf} if self.server.xsrf else {})
        return r.status_code, urls

    def predict(self, name: str, data: bytes, text: str) -> dict:
        from streamlit.proto.WidgetStates_pb2 import WidgetStates

        status, urls = self.upload(name, data)
        assert status in (200, 204), status
        states = WidgetStates()
        w = states.widgets.add()
        w.id = self.widget("file_uploader", "Chest X-ray").id
        info = w.file_uploader_state_value.uploaded_file_info.add()
        info.name, info.size, info.file_id = name, len(data), urls.file_id
        info.file_urls.CopyFrom(urls)
        w = states.widgets.add()
        radio = self.widget("radio", "The text below")
        w.id, w.int_value = radio.id, radio.default  # the page's default kind
        w = states.widgets.add()
        w.id, w.string_value = self.widget("text_area", "Indication or report").id, text
        w = states.widgets.add()
        w.id, w.trigger_value = self.widget("button", "Predict").id, True
        self.rerun(states)
        texts = [e.markdown.body for e in self.elements if e.WhichOneof("type") == "markdown"]
        errors = [e.alert.body for e in self.elements if e.WhichOneof("type") == "alert" and e.alert.format == 1
                  and "does not look like" not in e.alert.body]
        exceptions = [e.exception.message for e in self.elements if e.WhichOneof("type") == "exception"]
        logged = [t for t in texts if "logged as #" in t]
        return {"errors": errors, "exceptions": exceptions, "logged": logged}

    def close(self) -> None:
        self.ws.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_weights):
    threads = int(os.environ.get("CXR_LOAD_SERVER_THREADS", "1"))
    srv = StreamlitServer(tmp_path_factory.mktemp("server"), Path(tiny_weights), threads=threads)
    yield srv
    srv.close()


def test_server_refuses_an_upload_over_the_cap(server):
    """server.maxUploadSize from .streamlit/config.toml, enforced by the real server (413)."""
    from ui.config import MAX_UPLOAD_MB

    session = Session(server)
    try:
        assert session.widget("file_uploader", "Chest X-ray").max_upload_size_mb == MAX_UPLOAD_MB
        status, _ = session.upload("big.png", b"\0" * (MAX_UPLOAD_MB * 2**20 + 1))
        assert status == 413
        status, _ = session.upload("small.png", pil_bytes(Image.fromarray(chest_like(64, 64))))
        assert status in (200, 204)
    finally:
        session.close()


@pytest.mark.slow
def test_real_server_eight_websocket_sessions(server):
    per_session = int(os.environ.get("CXR_LOAD_PER_SESSION", PER_SESSION))
    studies = {(s, i): study(s, i) for s in range(SESSIONS) for i in range(per_session)}
    before = PredictionStore(server.db).count() if server.db.exists() else 0
    latencies: list[float] = []
    errors: list[str] = []
    barrier = threading.Barrier(SESSIONS)

    def client(s: int) -> None:
        try:
            session = Session(server)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"connect: {type(exc).__name__}: {exc}")
            barrier.abort()
            return
        try:
            barrier.wait()
            for i in range(per_session):
                name, data, text = studies[s, i]
                t = time.perf_counter()
                try:
                    out = session.predict(name, data, text)
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{name}: {type(exc).__name__}: {exc}")
                    continue
                latencies.append((time.perf_counter() - t) * 1000)
                if out["errors"] or out["exceptions"] or len(out["logged"]) != 1:
                    errors.append(f"{name}: {out}")
        finally:
            session.close()

    wall = run_sessions(client, timeout_s=3600)
    store = PredictionStore(server.db)
    rows = store.list_predictions(limit=None)
    result = summary("real server: streamlit run app.py + websocket sessions (upload, Predict)", latencies, wall,
                     len(rows) - before, errors, predictions_per_session=per_session,
                     torch_threads=server.threads, server_log_tracebacks=server.output().count("Traceback"))
    (out_dir() / "load-server.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nload (real server): {json.dumps(result)}")
    assert errors == [] and len(latencies) == SESSIONS * per_session
    names = {r["image_name"] for r in rows}
    assert all(name in names for name, _, _ in studies.values())
    assert len(rows) - before == SESSIONS * per_session
    assert "Traceback" not in server.output() and db_healthy(server.db)


# ====================================================================== soak script

def test_soak_script_quick(tiny_weights, tmp_path):
    """scripts/soak.py end to end with --n 20 (the 1,000-prediction soak is run by hand)."""
    import subprocess
    import sys

    from tests.synthetic import make_openi

    data = make_openi(tmp_path / "openi", 8)
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, "scripts/soak.py", "--weights", str(tiny_weights), "--data", str(data),
                           "--n", "20", "--warmup", "5", "--sample-every", "5", "--json", str(out),
                           "--db", str(tmp_path / "soak.db")], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["n"] == result["succeeded"] == result["db_rows"] == 20 and result["errors"] == {}
    assert result["db_integrity_ok"] is True and result["distinct_images"] == 8
    assert result["rss_mb_start"] <= result["rss_mb_peak"] and result["rss_mb_end"] <= result["rss_mb_peak"]
    assert [n for n, _ in result["rss_samples"]] == [5, 10, 15, 20]
    assert isinstance(result["levels_off"], bool)
    assert ("levels off" in proc.stdout) == result["levels_off"] and proc.stdout.count("\n") == 1


def test_soak_script_bad_input_is_one_line(tmp_path, capsys):
    from scripts import soak
    from scripts._cli import run_main

    for argv, words in ((["--weights", "w", "--data", str(tmp_path / "none"), "--json", "o"], "not found"),
                        (["--weights", "w", "--data", str(tmp_path), "--json", "o"], "no PNG"),
                        (["--weights", "w", "--data", str(tmp_path), "--json", "o", "--n", "1"], "at least 2")):
        with pytest.raises(SystemExit) as info:
            run_main(lambda argv=argv: soak.main(argv))
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.count("\n") == 1 and words in err and "Traceback" not in err
