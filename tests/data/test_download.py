"""scripts/download_iu_xray.py against a loopback HTTP server serving small generated archives.

Python's SimpleHTTPRequestHandler ignores Range, so the server here is a tiny handler that
honours ``Range: bytes=N-`` and can cut a response short, as a dropped connection would.
"""
from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.data import download
from scripts import download_iu_xray as dl

REPO = Path(__file__).resolve().parents[2]
PNGS = {"CXR1_1_IM-0001-3001.png": os.urandom(150_000), "CXR2_1_IM-0652-1001.png": os.urandom(90_000)}
XMLS = {"1.xml": b"<eCitation><IUXRId id='1'/></eCitation>", "2.xml": b"<eCitation><IUXRId id='2'/></eCitation>"}


def make_tgz(files: dict[str, bytes], *, prefix: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


PNG_TGZ = make_tgz({**PNGS, "../../escape.png": b"x", "._CXR1_1_IM-0001-3001.png": b"apple"})
REPORTS_TGZ = make_tgz(XMLS, prefix="ecgen-radiology/")


class Server:
    """Serves ``files`` (name -> bytes); ``cut[name] = n`` ends the next full response after n bytes."""

    def __init__(self, files: dict[str, bytes], *, honour_range: bool = True):
        self.files, self.honour_range, self.cut, self.requests = dict(files), honour_range, {}, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append((name, self.headers.get("Range")))
                data = server.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                ranged = self.headers.get("Range", "")
                if server.honour_range and ranged.startswith("bytes="):
                    start = int(ranged[6:].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    status = 206
                body = data[start:]
                self.send_response(status)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = server.cut.pop(name, None)
                self.wfile.write(body if cut is None else body[:cut])
                if cut is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/imgs/collections"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server({"NLMCXR_png.tgz": PNG_TGZ, "NLMCXR_reports.tgz": REPORTS_TGZ})
    yield srv
    srv.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/imgs/collections"


def run(out: Path, url: str, *extra: str) -> int:
    return dl.main(["--out", str(out), "--base-url", url, "--timeout", "10", *extra])


def assert_layout(out: Path) -> None:
    png_dir, xml_dir = out / "NLMCXR_png", out / "NLMCXR_reports" / "ecgen-radiology"
    assert {p.name: p.read_bytes() for p in png_dir.glob("*.png")} == PNGS  # no ._ files, nothing escaped
    assert {p.name: p.read_bytes() for p in xml_dir.glob("*.xml")} == XMLS
    assert not list(out.parent.rglob("escape.png"))  # a "../" member is skipped, not written anywhere


def test_offline_exits_2_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "scripts/download_iu_xray.py", "--out", str(tmp_path / "d"),
                           "--base-url", closed_port_url(), "--timeout", "5"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert "cannot reach 127.0.0.1" in proc.stderr and "copy the archives into" in proc.stderr
    assert "CC BY-NC-ND 4.0" in proc.stdout and "10.1093/jamia/ocv080" in proc.stdout


def test_download_extract_and_skip_when_complete(tmp_path, server, capsys):
    out = tmp_path / "iu"
    assert run(out, server.url) == 0
    assert_layout(out)
    assert [n for n, _ in server.requests] == ["NLMCXR_reports.tgz", "NLMCXR_png.tgz"]
    assert (out / "NLMCXR_png.tgz").read_bytes() == PNG_TGZ and not list(out.glob("*.part"))
    assert run(out, server.url) == 0  # idempotent: nothing fetched again
    assert len(server.requests) == 2 and "already complete" in capsys.readouterr().out


def test_interrupted_download_resumes_with_range(tmp_path, server, capsys):
    out = tmp_path / "iu"
    server.cut["NLMCXR_png.tgz"] = 100_000
    assert run(out, server.url) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run again to resume" in err
    part = out / "NLMCXR_png.tgz.part"
    assert part.stat().st_size == 100_000 and not (out / "NLMCXR_png").exists()
    assert run(out, server.url) == 0
    assert ("NLMCXR_png.tgz", "bytes=100000-") in server.requests
    assert (out / "NLMCXR_png.tgz").read_bytes() == PNG_TGZ and not part.exists()
    assert_layout(out)


def test_server_that_ignores_range_restarts_cleanly(tmp_path):
    srv = Server({"NLMCXR_png.tgz": PNG_TGZ, "NLMCXR_reports.tgz": REPORTS_TGZ}, honour_range=False)
    try:
        out = tmp_path / "iu"
        out.mkdir()
        (out / "NLMCXR_png.tgz.part").write_bytes(b"stale bytes from another file")
        assert run(out, srv.url) == 0
        assert (out / "NLMCXR_png.tgz").read_bytes() == PNG_TGZ
        assert_layout(out)
    finally:
        srv.close()


def test_whole_part_file_is_finished_after_416(tmp_path, server):
    out = tmp_path / "iu"
    out.mkdir()
    (out / "NLMCXR_png.tgz.part").write_bytes(PNG_TGZ)  # killed between the last byte and the rename
    assert run(out, server.url) == 0
    assert ("NLMCXR_png.tgz", f"bytes={len(PNG_TGZ)}-") in server.requests
    assert_layout(out)


def test_corrupt_archive_is_detected(tmp_path, server, capsys):
    broken = bytearray(PNG_TGZ)
    broken[len(broken) // 2: len(broken) // 2 + 64] = bytes(64)
    server.files["NLMCXR_png.tgz"] = bytes(broken)  # right size, wrong bytes
    out = tmp_path / "iu"
    assert run(out, server.url) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a valid .tgz" in err
    assert (out / "NLMCXR_png.tgz.corrupt").exists() and not (out / "NLMCXR_png.tgz").exists()
    assert not (out / "NLMCXR_png").exists()
    server.files["NLMCXR_png.tgz"] = PNG_TGZ
    assert run(out, server.url) == 0  # the next run downloads it again
    assert_layout(out)


def test_archives_copied_by_hand_are_used_offline(tmp_path, capsys):
    out = tmp_path / "iu"
    out.mkdir()
    (out / "NLMCXR_png.tgz").write_bytes(PNG_TGZ)
    (out / "NLMCXR_reports.tgz").write_bytes(REPORTS_TGZ)
    assert run(out, closed_port_url()) == 0
    assert_layout(out)
    (out / "NLMCXR_png").joinpath(".complete.json").unlink()
    (out / "NLMCXR_png.tgz").write_bytes(PNG_TGZ[: len(PNG_TGZ) // 2])  # a truncated copy
    assert run(out, closed_port_url()) == 1
    assert "not a valid .tgz" in capsys.readouterr().err


def test_known_sha256_is_checked(tmp_path, server, monkeypatch, capsys):
    monkeypatch.setitem(download.SHA256, "NLMCXR_reports.tgz", hashlib.sha256(REPORTS_TGZ).hexdigest())
    monkeypatch.setitem(download.SHA256, "NLMCXR_png.tgz", "0" * 64)
    out = tmp_path / "iu"
    assert run(out, server.url) == 1
    assert "SHA-256" in capsys.readouterr().err
    assert (out / "NLMCXR_reports.tgz").exists() and not list(out.glob("NLMCXR_png.tgz*"))


def test_remove_archives_and_bad_usage(tmp_path, server):
    out = tmp_path / "iu"
    assert run(out, server.url, "--remove-archives") == 0
    assert_layout(out)
    assert not list(out.glob("*.tgz"))
    proc = subprocess.run([sys.executable, "scripts/download_iu_xray.py", "--base-url", "ftp://x", "--out",
                           str(out)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
