"""How the predict path's encoders are served, as enums: the image encoder's precision, the
int8 image encoder's state and each encoder's freezing.

Each member carries its user-facing sentence (``.message``), so a page prints the sentence and
compares by member, never by a literal string. ``.value`` is a short stable code for JSON
(scripts/bench.py). No torch here: the pages import this without loading the model.
"""
from __future__ import annotations

from enum import Enum

from core.model.description import INT8_FILE

_MAKE_ONE = "scripts/calibrate_int8.py makes one"
_REMAKE = "run scripts/calibrate_int8.py"


class Precision(Enum):
    """What the predict path's image encoder computes in."""
    FP32 = "fp32"
    INT8 = "int8"

    @property
    def message(self) -> str:
        return {Precision.FP32: "the image encoder serves in fp32",
                Precision.INT8: "the image encoder serves in int8 (oneDNN; the stem in fp32)"}[self]


class Int8State(Enum):
    """Where the int8 image encoder (core.model.int8_image) stands: on its way (NOT_BUILT, BUILT),
    serving (SERVING), or refused for good, fp32 serving (``refused``)."""
    NOT_BUILT = "not built"
    BUILT = "built"
    SERVING = "serving"
    NO_WEIGHTS_FOLDER = "no weights folder"
    NO_CALIBRATION = "no calibration"
    UNREADABLE = "unreadable"
    NO_ENGINE = "no engine"
    OTHER_WEIGHTS = "other weights"
    DOES_NOT_FIT = "does not fit"
    TRACE_DIFFERED = "trace differed"

    @property
    def refused(self) -> bool:
        """The int8 encoder will not serve this model: fp32 does, and ``message`` says why."""
        return self not in (Int8State.NOT_BUILT, Int8State.BUILT, Int8State.SERVING)

    @property
    def message(self) -> str:
        return _INT8_MESSAGES[self]


_INT8_MESSAGES = {
    Int8State.NOT_BUILT: "the int8 image encoder is not built yet",
    Int8State.BUILT: "the int8 image encoder is built and serves once the encoders are frozen",
    Int8State.SERVING: "the int8 image encoder serves",
    Int8State.NO_WEIGHTS_FOLDER: "no weights folder to find a calibration in",
    Int8State.NO_CALIBRATION: f"no {INT8_FILE} next to the weights ({_MAKE_ONE})",
    Int8State.UNREADABLE: f"{INT8_FILE} is not a readable int8 calibration (damaged, truncated or another "
                          f"file; {_REMAKE})",
    Int8State.NO_ENGINE: "this torch build has no onednn quantised engine",
    Int8State.OTHER_WEIGHTS: f"{INT8_FILE} was made for other weights ({_REMAKE})",
    Int8State.DOES_NOT_FIT: f"{INT8_FILE} not used: its activations do not fit this image encoder ({_REMAKE})",
    Int8State.TRACE_DIFFERED: "trace differed from eager int8; fp32 serves",
}


class FreezeState(Enum):
    """One encoder on the predict path: eager until ``Predictor.freeze_encoders()`` swaps in its
    TorchScript-frozen graph (core.model.frozen), which it does only where the graph matches eager."""
    OFF = "off"                          # Predictor(fast=False): the plain eager reference, never frozen
    EAGER = "eager"                      # not frozen yet
    FROZEN = "frozen"
    KEPT_EAGER = "kept eager"            # tracing failed or its graph differed from eager: eager serves

    @property
    def message(self) -> str:
        return {FreezeState.OFF: "eager (the plain fp32 reference; never frozen)",
                FreezeState.EAGER: "eager (frozen once the model has warmed up)",
                FreezeState.FROZEN: "a frozen TorchScript graph",
                FreezeState.KEPT_EAGER: "eager (its frozen graph failed or did not match eager)"}[self]
