"""Cached, process-wide resources: the model (loaded once per weights file), its metadata
and the prediction log. Loading never touches the network (core.checkpoint guarantees it)."""
from __future__ import annotations

import threading
from pathlib import Path

import streamlit as st

from core.checkpoint import WeightsError, read_metadata
from core.store import PredictionStore, default_path
from ui.config import weights_dir, weights_stamp

# Captum registers hooks on the shared model: one model call at a time across sessions.
MODEL_LOCK = threading.Lock()


@st.cache_data(show_spinner=False)
def _metadata(path: str, stamp: float | None) -> dict:
    return read_metadata(Path(path))


def metadata() -> tuple[dict | None, str | None]:
    """(metadata, None) when weights are present, else (None, why not)."""
    folder = weights_dir()
    try:
        return _metadata(str(folder), weights_stamp(folder)), None
    except WeightsError as exc:
        return None, str(exc)


@st.cache_resource(show_spinner="Loading the model (once per server process)…")
def _predictor(path: str, stamp: float | None):
    from core.predictor import Predictor  # torch import only when a page needs the model
    model = Predictor.load(path)
    # Captum's first import takes seconds: do it now, off the request path, not on the first Explain
    threading.Thread(target=_import_captum, name="captum-import", daemon=True).start()
    return model


def _import_captum() -> None:
    try:
        import captum.attr  # noqa: F401
    except Exception:  # noqa: BLE001 — the Explain button reports a real failure itself
        pass


def predictor():
    """The shared Predictor; raises WeightsError (or the backbone's error) when it cannot load."""
    folder = weights_dir()
    return _predictor(str(folder), weights_stamp(folder))


@st.cache_resource(show_spinner=False)
def _store(path: str) -> PredictionStore:
    return PredictionStore(path)


def store() -> PredictionStore:
    """The prediction log at $CXR_DB_PATH (or the store's default)."""
    return _store(str(default_path()))
