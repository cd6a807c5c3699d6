"""Real-browser fixtures: a live `streamlit run app.py` on a free port, and Chromium via Playwright.

The module skips (with the reason) when Chromium or the playwright package is missing;
Chromium is Debian's (`apt-get install chromium`, done by .ci/run), never a download.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts._server import free_port, healthy, stop

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CXR_E2E_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
START_TIMEOUT_S = 120  # slow, shared CI machines: the first import of streamlit + pandas takes a while


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _serve(app_env, weights: Path, tmp_path: Path, *, address: str | None = "127.0.0.1", secrets: str = "",
           port: int | None = None, host: str = "127.0.0.1", procs: list | None = None):
    """A live app on ``address``:<free port> (None: the project's .streamlit/config.toml decides) with
    ``weights`` and temporary DB / run log / share status
    (app_env), reading its secrets from a temporary file holding ``secrets`` (never a developer's own
    .streamlit/secrets.toml). Yields (base_url, env, log), the URL at ``host``; ``procs`` gets the
    server's process. Always stopped at teardown."""
    port = port or free_port()
    env = {**os.environ, **{k: str(v) for k, v in app_env.items()}, "CXR_WEIGHTS": str(weights)}
    for key in ("CXR_USERS", "CXR_REVIEWERS"):
        env.pop(key, None)
    log = tmp_path / "streamlit.log"
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text(secrets)
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.port", str(port), *(["--server.address", address] if address else []),
           "--secrets.files", str(secrets_file),
           "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if procs is not None:
        procs.append(proc)
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not healthy(url):
            if proc.poll() is not None:
                pytest.fail(f"streamlit exited with code {proc.returncode} before serving:\n{_tail(log)}")
            if time.monotonic() > deadline:
                pytest.fail(f"streamlit did not serve {url} within {START_TIMEOUT_S} s:\n{_tail(log)}")
            time.sleep(0.5)
        yield url, env, log
    finally:
        stop(proc)


@pytest.fixture
def app_server(app_env, tiny_weights, tmp_path):
    """The app on the tiny test weights (see ``_serve``)."""
    yield from _serve(app_env, tiny_weights, tmp_path)


@pytest.fixture
def shipped_app_server(app_env, tmp_path):
    """The app on the shipped weights (weights/): what a user meets, with its operating points, calibrated
    numbers and cross-validated evidence (see ``_serve``)."""
    weights = ROOT / "weights"
    if not (weights / "model.safetensors").is_file():
        pytest.skip("the shipped weights are not in weights/")
    yield from _serve(app_env, weights, tmp_path)


@pytest.fixture
def browser_page():
    """A Chromium page (1400×1000) from Playwright's sync API; closed at teardown."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page = context.new_page()
            yield page
        finally:
            browser.close()


@pytest.fixture
def shots_dir(tmp_path) -> Path:
    """Where screenshots go: $CXR_E2E_SHOTS, else the test's tmp folder."""
    folder = Path(os.environ.get("CXR_E2E_SHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
