"""The predict path's encoders and how they are served: eager at first; the int8 image encoder
built from the weights' calibration (core.model.int8_image); TorchScript-frozen graphs swapped
in where they match eager (core.model.frozen). Its states are enums (core.serving.precision):
``int8_state``, ``image_precision``, ``image_graph`` and ``text_graph``."""
from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from core.model.frozen import frozen_features
from core.serving.precision import FreezeState, Int8State, Precision


def _refused(why) -> Int8State:
    """Why a calibration is not used (core.model.int8_image.Unused) -> the int8 state reported."""
    from core.model.int8_image import Unused  # torch.ao and torchvision: off the model load's path
    return {Unused.NO_FILE: Int8State.NO_CALIBRATION, Unused.UNREADABLE: Int8State.UNREADABLE,
            Unused.NO_ENGINE: Int8State.NO_ENGINE, Unused.OTHER_WEIGHTS: Int8State.OTHER_WEIGHTS,
            Unused.DOES_NOT_FIT: Int8State.DOES_NOT_FIT}[why]


# what the frozen graphs are traced and checked on: batch sizes 1 and 3, texts of several lengths
_TRACE_TEXTS = [["The heart is enlarged.", "No acute cardiopulmonary abnormality. The lungs are clear."],
                ["Cough."], ["Mild pulmonary edema.", "Normal.", "Heart size is at the upper limits of normal."]]


class ServedEncoders:
    """``image_features`` and ``text_features``: what a prediction calls. ``tokens`` encodes
    texts as the predictor does; ``hooks_lock`` is the predictor's (held while Captum's hooks
    are on the shared modules or while they are traced: a trace must not run a hook, and a hook
    must not see a trace's tensors)."""

    def __init__(self, model, *, size: int, tokens: Callable, hooks_lock: threading.Lock, fast: bool,
                 int8_dir: Path | None) -> None:
        self.model, self.size, self._tokens, self._hooks_lock, self.fast = model, size, tokens, hooks_lock, fast
        self.image_features = model.image_encoder.forward_features
        self.text_features = model.text_encoder.forward_features
        # the int8 image encoder: built by build_int8_image() from the calibration in ``int8_dir``
        # (the weights folder), served once freeze() has traced it
        self._int8_dir = Path(int8_dir) if fast and int8_dir is not None else None
        self.int8_image = None
        self.int8_state = Int8State.NOT_BUILT if self._int8_dir else Int8State.NO_WEIGHTS_FOLDER
        self.image_precision = Precision.FP32
        self.image_graph = self.text_graph = FreezeState.EAGER if fast else FreezeState.OFF

    def build_int8_image(self) -> bool:
        """See ``Predictor.build_int8_image``."""
        if self.int8_image is not None or self._int8_dir is None:
            return self.int8_image is not None
        from core.model.int8_image import find_calibration, served_encoder, stored_encoder_digest
        folder, calibration, why = self._int8_dir, *find_calibration(self._int8_dir)
        self._int8_dir = None  # built or refused: either way, once
        if calibration is not None:
            with self._hooks_lock:  # the copy must not carry an attribution's hooks
                encoder = copy.deepcopy(self.model.image_encoder)
            self.int8_image, why = served_encoder(encoder, calibration, self.size,
                                                  digest=stored_encoder_digest(folder))
        self.int8_state = _refused(why) if why is not None else Int8State.BUILT
        return self.int8_image is not None

    def freeze(self, *, int8: bool = True) -> list[str]:
        """See ``Predictor.freeze_encoders``."""
        if not self.fast:
            return []
        if int8:
            self.build_int8_image()
        images = [torch.linspace(-2, 2, n * self.size * self.size).reshape(n, 1, self.size, self.size)
                  .contiguous(memory_format=torch.channels_last) for n in (1, 3)]
        encoded = [self._tokens(t) for t in _TRACE_TEXTS]
        image = None
        with self._hooks_lock:
            if int8 and self.int8_image is not None:
                # quantised ops are not oneDNN Graph (LLGA) patterns: traced without fusion
                image = frozen_features(self.int8_image, [(x,) for x in images])
                self.int8_state = Int8State.SERVING if image is not None else Int8State.TRACE_DIFFERED
            precision = Precision.INT8 if image is not None else Precision.FP32
            if image is None:
                image = frozen_features(self.model.image_encoder, [(x,) for x in images], onednn_fusion=True)
            text = frozen_features(self.model.text_encoder, [(e["input_ids"], e["attention_mask"]) for e in encoded])
        frozen = []
        # swapped in together, once all compiling is done
        if image is not None:
            self.image_features, self.image_precision = image, precision
            frozen.append("image (int8)" if precision is Precision.INT8 else "image")
        if text is not None:
            self.text_features = text
            frozen.append("text")
        self.image_graph = FreezeState.FROZEN if image is not None else FreezeState.KEPT_EAGER
        self.text_graph = FreezeState.FROZEN if text is not None else FreezeState.KEPT_EAGER
        return frozen
