"""Cached, process-wide resources: the model (loaded once per weights file), its metadata
and the prediction log. Loading never touches the network (core.model.checkpoint guarantees it)."""
from __future__ import annotations

import atexit
import threading
import time
from pathlib import Path

import streamlit as st

from core.model.description import ModelDescription, WeightsError, read_description
from core.serving.gc_pause import collector_paused
from core.store import PredictionStore, default_path
from ui.config import weights_dir, weights_stamp

# Captum registers hooks on the shared model: one model call at a time across sessions.
MODEL_LOCK = threading.Lock()


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


class _ModelLoads:
    """The Predictor of each weights file, loaded once per server process on a background
    thread. ``app.py`` starts the load on the first page view, so the imports (torch,
    torchvision, transformers: seconds) and the file read overlap with the user choosing a
    file, instead of all landing on the first Predict click."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # one load at a time: transformers' lazy imports are not thread-safe, and two loads
        # racing (a second weights folder, a retry) failed with "cannot import name AutoConfig"
        self._load_lock = threading.Lock()
        self._threads: dict[tuple, threading.Thread] = {}
        self._done: dict[tuple, threading.Event] = {}  # set when the Predictor (or its error) is there
        self._results: dict[tuple, object] = {}
        self._errors: dict[tuple, BaseException] = {}
        self._asked = threading.Event()  # a page has asked for a model at least once
        self._exiting = False

    def start(self, key: tuple) -> threading.Thread:
        with self._lock:
            thread = self._threads.get(key)
            if thread is None:
                thread = threading.Thread(target=self._load, args=(key,), name="model-load", daemon=True)
                self._threads[key] = thread
                self._done[key] = threading.Event()
                thread.start()
            return thread

    def _load(self, key: tuple) -> None:
        try:
            # the collector paused across the imports and the load, then everything loaded frozen
            # out of later full collections (core.serving.gc_pause): ~0.75 s less to the first prediction
            with self._load_lock, collector_paused(freeze=True):
                from core.serving.predictor import Predictor  # torch import only when the model is needed
                # the memory release (a full gc pass holding the GIL) waits below, off the first prediction's path
                self._results[key] = Predictor.load(key[0], release_memory=False)
        except BaseException as exc:  # noqa: BLE001 — handed to the caller of get(), who reports it
            self._errors[key] = exc
            return
        finally:
            self._done[key].set()
        # The rest only speeds up later requests and takes ~3 s of CPU, so it waits until the first
        # prediction has run alone (asked for, plus time to draw it) or nobody asked for 15 s.
        self._asked.wait(timeout=15)
        if not self._exiting:
            time.sleep(2)
        if self._exiting:
            return
        from core.serving.predictor import release_freed_memory
        release_freed_memory()
        # Captum's first import takes seconds: do it now, off the request path, not on the first Explain
        _import_captum()
        # The int8 image encoder (core.model.int8_image, ~1.4 s), then the frozen encoders
        # (core.model.frozen), both holding the model lock: no prediction or attribution runs beside
        # them. torch.fx, which builds the int8 encoder, patches nn.Module.__call__ for the whole
        # process while it traces, so a prediction beside the build failed ("module is not installed
        # as a submodule"); beside the freeze, 2 of 5 browser runs hung. A prediction asked for in
        # those ~4 s waits for them, once per server process.
        with MODEL_LOCK:
            self._results[key].build_int8_image()
            self._results[key].freeze_encoders()

    def join_all(self, timeout: float = 120.0) -> None:
        """Let a load finish before the interpreter exits: a thread killed inside torch's C++
        code aborts the process ("terminate called without an active exception"). Work that
        only speeds up later requests is skipped."""
        self._exiting = True
        self._asked.set()
        for thread in list(self._threads.values()):
            thread.join(timeout)

    def ready(self, key: tuple) -> bool:
        return key in self._results

    def loaded(self, key: tuple):
        """The Predictor when it has loaded, else None; never waits, never starts a load."""
        return self._results.get(key)

    def get(self, key: tuple):
        self.start(key)
        with self._lock:
            done = self._done[key]
        done.wait()  # not the thread: it goes on to import Captum and freeze the encoders
        self._asked.set()
        if key in self._results:
            return self._results[key]
        with self._lock:  # a failed load is retried on the next call (the folder may be fixed by then)
            if self._done.get(key) is done:  # two sessions may meet the same failure
                self._threads.pop(key, None)
                self._done.pop(key, None)
            error = self._errors[key]
        raise error


_LOADS = _ModelLoads()
atexit.register(_LOADS.join_all)


def _key() -> tuple:
    folder = weights_dir()
    return str(folder), weights_stamp(folder)


def start_loading_model() -> None:
    """Begin loading the model in the background when weights are present (cheap when done)."""
    key = _key()
    if key[1] is not None:
        _LOADS.start(key)


def _import_captum() -> None:
    try:
        import captum.attr  # noqa: F401
    except Exception:  # noqa: BLE001 — the Explain button reports a real failure itself
        pass


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
