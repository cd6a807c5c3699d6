"""Cached, process-wide resources: the model (loaded once per weights file), its metadata
and the prediction log. Loading never touches the network (core.model.checkpoint guarantees it)."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.model.description import ModelDescription, WeightsError, read_description
from core.serving.loader import ModelLoads
from core.store import PredictionStore, default_path
from ui.config import weights_dir, weights_stamp


@st.cache_resource(show_spinner=False)  # a frozen dataclass: shared, never copied per rerun
def _metadata(path: str, stamp: float | None) -> ModelDescription:
    return read_description(Path(path))


def metadata() -> tuple[ModelDescription | None, str | None]:
    """(the weights' description, None) when weights are present, else (None, why not)."""
    folder = weights_dir()
    try:
        return _metadata(str(folder), weights_stamp(folder)), None
    except WeightsError as exc:
        return None, str(exc)


# the Predictor of each weights file, loaded once per server process in the background and warmed up
# there (core.serving.loader); ``app.py`` starts the load with the server and on the first page view
_LOADS = ModelLoads()


def _key() -> tuple:
    folder = weights_dir()
    return str(folder), weights_stamp(folder)


def start_loading_model() -> None:
    """Begin loading the model in the background when weights are present (cheap when done)."""
    key = _key()
    if key[1] is not None:
        _LOADS.start(key)


def predictor():
    """The shared Predictor; raises WeightsError (or the backbone's error) when it cannot load."""
    key = _key()
    if _LOADS.ready(key):
        return _LOADS.get(key)
    with st.spinner("Loading the model (once per server process)…"):
        return _LOADS.get(key)


def loaded_predictor():
    """The shared Predictor if it has loaded already, else None (for pages that only report on it)."""
    return _LOADS.loaded(_key())


@st.cache_resource(show_spinner=False)
def _store(path: str) -> PredictionStore:
    return PredictionStore(path)


def store() -> PredictionStore:
    """The prediction log at $CXR_DB_PATH (or the store's default)."""
    return _store(str(default_path()))
