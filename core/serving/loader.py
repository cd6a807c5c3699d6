"""Loading the served model in the background, and its warm-up, for a long-running server (the app).

    loads = ModelLoads()
    loads.start(key)            # key = (weights folder, its stamp): returns at once
    predictor = loads.get(key)  # waits for that load; raises what stopped it (retried on the next call)

One worker thread (a single-worker ``ThreadPoolExecutor``) does every load and warm-up, one at a
time: transformers' lazy imports are not thread-safe, and two loads racing (a second weights
folder, a retry) failed with "cannot import name AutoConfig". The server starts a load as soon as
it can, so the imports (torch, torchvision, transformers: seconds) and the file read overlap with
the user choosing a file instead of all landing on the first Predict click.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

from core.serving.gc_pause import collector_paused

# The warm-up (warm_up below) only speeds up later requests and takes ~3 s of CPU, so it waits until the
# first prediction has run alone: DRAW_S after a page first asked for the model (time to draw the
# result), or IDLE_S after the load when nobody asked.
DRAW_S = 2.0
IDLE_S = 15.0


def load(folder: str):
    """The Predictor of a weights folder, for serving. The collector is paused across the imports and the
    load, then everything loaded frozen out of later full collections (core.serving.gc_pause): ~0.75 s less
    to the first prediction; the memory release (a full gc pass holding the GIL) waits for warm_up()."""
    with collector_paused(freeze=True):
        from core.serving.predictor import Predictor  # torch import only when the model is needed
        return Predictor.load(folder, release_memory=False)


def warm_up(predictor) -> None:
    """What makes later requests fast, off the first prediction's path: the loader's freed memory back to
    the OS, Captum imported (seconds, else on the first Explain), then the int8 image encoder
    (core.model.int8_image, ~1.4 s) and the frozen encoders (core.model.frozen), both with the
    predictor to themselves (``Predictor.exclusive``): torch.fx, which builds the int8 encoder, patches
    nn.Module.__call__ for the whole process while it traces, so a prediction beside the build failed
    ("module is not installed as a submodule"); beside the freeze, 2 of 5 browser runs hung. A prediction
    asked for in those ~4 s waits for them, once per server process."""
    from core.serving.loading import release_freed_memory
    release_freed_memory()
    try:
        import captum.attr  # noqa: F401
    except Exception:  # noqa: BLE001 — the Explain button reports a real failure itself
        pass
    with predictor.exclusive():
        predictor.build_int8_image()
        predictor.freeze_encoders()


def _unless_exiting(fn, *args) -> None:
    # the interpreter joins the worker at exit (a load is never cut inside torch's C++ code, which aborts
    # the process); a warm-up still waiting then is skipped: the main thread has stopped, nobody is served
    if threading.main_thread().is_alive():
        fn(*args)


class ModelLoads:
    """The Predictor of each weights key, loaded once per process (see the module docstring)."""

    def __init__(self, *, draw_s: float = DRAW_S, idle_s: float = IDLE_S) -> None:
        self._draw_s, self._idle_s = draw_s, idle_s
        self._lock = threading.Lock()  # guards the two dicts below
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-load")
        self._loads: dict[tuple, Future] = {}     # key -> the load's Future (the Predictor, or what stopped it)
        self._warm: dict[tuple, Future] = {}      # key -> its warm-up, once scheduled
        self._asked: set[tuple] = set()           # keys a caller has had the Predictor of

    def start(self, key: tuple) -> Future:
        """Begin loading ``key``'s folder (``key[0]``) unless a load of it is under way or done."""
        with self._lock:
            future = self._loads.get(key)
            if future is None:
                future = self._loads[key] = self._pool.submit(load, key[0])
                future.add_done_callback(lambda f: self._later(key, self._idle_s) if f.exception() is None else None)
            return future

    def started(self, key: tuple) -> bool:
        return key in self._loads

    def ready(self, key: tuple) -> bool:
        future = self._loads.get(key)
        return future is not None and future.done() and future.exception() is None

    def loaded(self, key: tuple):
        """The Predictor when it has loaded, else None; never waits, never starts a load."""
        return self._loads[key].result() if self.ready(key) else None

    def get(self, key: tuple):
        """The Predictor of ``key``, waiting for its load (started here if need be); raises what
        stopped the load, and a failed load is retried on the next call (the folder may be fixed by then)."""
        future = self.start(key)
        try:
            predictor = future.result()
        except BaseException:
            with self._lock:  # two sessions may meet the same failure: the first one forgets it
                if self._loads.get(key) is future:
                    del self._loads[key]
            raise
        with self._lock:
            first = key not in self._asked
            self._asked.add(key)
        if first:  # asked for: warm up once this prediction has been drawn
            self._later(key, self._draw_s)
        return predictor

    def warm_up_future(self, key: tuple) -> Future | None:
        """The warm-up of ``key`` once it is scheduled (tests wait on it), else None."""
        return self._warm.get(key)

    def _later(self, key: tuple, seconds: float) -> None:
        # a timer hands the warm-up to the worker after ``seconds``; the first of the two (asked, idle) wins
        timer = threading.Timer(seconds, self._warm_up, args=(key,))
        timer.daemon = True  # never keeps a process alive: a warm-up is only worth having in a live server
        timer.start()

    def _warm_up(self, key: tuple) -> None:
        with self._lock:
            if key in self._warm or not self.ready(key):
                return
            try:
                self._warm[key] = self._pool.submit(_unless_exiting, warm_up, self._loads[key].result())
            except RuntimeError:  # the interpreter is shutting down: nothing left to speed up
                pass
