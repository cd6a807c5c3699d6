"""Shared pytest fixtures."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _prediction_log_outside_the_repo(tmp_path_factory):
    """The CLIs log every prediction (core.store): in tests, to a session file, never var/."""
    import os
    if "CXR_DB_PATH" not in os.environ:
        os.environ["CXR_DB_PATH"] = str(tmp_path_factory.mktemp("log") / "predictions.db")
    yield


@pytest.fixture
def fresh_db(tmp_path):
    """A new, migrated prediction log in a temporary folder."""
    from core.store import PredictionStore

    return PredictionStore(tmp_path / "predictions.db")


@pytest.fixture(scope="session")
def iu_xray_dir():
    """The IU X-ray copy (Open-I layout): $IU_XRAY_DIR or ../shared/iu-xray next to the repo."""
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    data = Path(os.environ.get("IU_XRAY_DIR") or root.parent / "shared" / "iu-xray")
    if not (data / "NLMCXR_png").is_dir():
        pytest.skip(f"IU X-ray data not found at {data} (set IU_XRAY_DIR to the Open-I folder)")
    return data


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory, iu_xray_dir):
    """A tiny trained model (64 px) for tests that need real weights: $CXR_TEST_WEIGHTS, else
    trained once per session with the current code (about a minute)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    candidate = os.environ.get("CXR_TEST_WEIGHTS")
    if candidate and (Path(candidate) / "model.safetensors").is_file():
        return Path(candidate)
    root = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("tiny_weights")
    cmd = [sys.executable, "scripts/train.py", "--data", str(iu_xray_dir), "--out", str(out / "w"),
           "--run-dir", str(out / "run"), "--max-reports", "120", "--image-epochs", "1", "--frozen-epochs", "2",
           "--unfrozen-epochs", "1", "--image-size", "64", "--no-fit-ood"]
    env = {**os.environ, "CXR_RUNLOG": str(out / "runs.db")}  # never write into the real run log
    subprocess.run(cmd, cwd=root, env=env, check=True, timeout=1800, capture_output=True)
    return out / "w"


def serve_on(monkeypatch, address: str | None) -> None:
    """In-process app runs (AppTest) see ``server.address`` as ``address`` (core.access decides from it)."""
    from streamlit import config
    real = config.get_option
    monkeypatch.setattr(config, "get_option", lambda key: address if key == "server.address" else real(key))


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    """Point the Streamlit app at temporary files: no weights, a fresh prediction log, an
    empty run log and no sharing status. Tests that need a model set CXR_WEIGHTS themselves.
    The app runs as `streamlit run app.py` serves it by default, whatever the machine has: on
    loopback (.streamlit/config.toml), with no secrets (a developer's own secrets.toml, which may
    configure sign-in, is not read) and no allow-list in the environment; ``AppTest.secrets`` and
    ``serve_on`` change that per test."""
    import streamlit as st
    from streamlit.runtime.secrets import Secrets

    env = {"CXR_WEIGHTS": tmp_path / "no-weights", "CXR_DB_PATH": tmp_path / "predictions.db",
           "CXR_RUNLOG": tmp_path / "runs.db", "CXR_SHARE_STATUS": tmp_path / "share.json"}
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    for key in ("CXR_USERS", "CXR_REVIEWERS"):
        monkeypatch.delenv(key, raising=False)
    empty = Secrets()
    empty._secrets = {}
    monkeypatch.setattr(st, "secrets", empty)
    serve_on(monkeypatch, "127.0.0.1")
    return env


# -- markers for what a test needs: `pytest -m "not orthanc"`, `-m "not chromium"`, `-m "not iu_data"` ----------
def _needs_orthanc(item) -> bool:
    """A module that starts Orthanc (tests/pacs_fixtures.Orthanc) needs Debian's orthanc."""
    path = getattr(item, "path", None)
    try:
        return path is not None and "Orthanc(" in path.read_text()
    except OSError:
        return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        parts = item.path.parts if getattr(item, "path", None) else ()
        if "e2e" in parts:
            item.add_marker(pytest.mark.chromium)
        if _needs_orthanc(item):
            item.add_marker(pytest.mark.orthanc)
        if {"iu_xray_dir", "tiny_weights"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.iu_data)
