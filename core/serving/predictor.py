"""The one object the pages and command-line tools call: load once, predict, attribute.

    predictor = Predictor.load("weights")
    result = predictor.predict(gray, text="Heart size is enlarged.", mode="report")
    heat = predictor.attribute(gray, text, mode="report", finding="Cardiomegaly")

The coordinator: it reads the weights' typed description (core.model.description) and hands the work to
its homes: loading (core.serving.loading), the served encoders and their int8 and frozen
graphs (core.serving.graphs, states in core.serving.precision), prediction
(core.serving.batch_predict) and attribution (core.serving.attribution). What it returns is in
core.serving.prediction (re-exported here).
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from core.data.preprocess import prepare
from core.model.description import describe
from core.model.frozen import optimise_for_inference
from core.serving import attribution, batch_predict
from core.serving.batch_predict import ServedFacts, qa_points
from core.serving.decision import resolve_target
from core.serving.graphs import ServedEncoders
from core.serving.loading import load_served, ood_detector, release_freed_memory
from core.serving.precision import FreezeState, Int8State, Precision
from core.serving.prediction import Attribution, InputError, Prediction

__all__ = ["Attribution", "FreezeState", "InputError", "Int8State", "Precision", "Prediction", "Predictor",
           "qa_points", "release_freed_memory"]


class Predictor:
    """One loaded model serving predictions and attributions (see the module docstring)."""

    def __init__(self, model, tokenizer, metadata: dict, ood_tensors: dict | None = None, *,
                 fast: bool = True, int8_dir: Path | None = None) -> None:
        model.eval()
        # the text encoder stays fp32 (see core.model.frozen: int8 made a study's result depend on its
        # batch-mates), so attribution can use it as it is: it needs gradients through it
        self.model = optimise_for_inference(model, quantize=False) if fast else model
        self.attr_text_encoder = self.model.text_encoder
        self.tokenizer = tokenizer
        self.metadata = metadata  # the raw dict, for tools that pass it on (they describe() it)
        self.description = desc = describe(metadata)
        pre = desc.preprocessing
        self.size, self.mean, self.std = pre.image_size, pre.mean, pre.std
        self.max_len = int(desc.text_max_len or 160)
        self.fast = fast
        # One model call at a time, from any number of threads (the app's sessions): Captum's hooks are on
        # the shared modules while an attribution runs, torch.fx patches nn.Module.__call__ for the whole
        # process while the int8 encoder is built, and a trace (freeze_encoders) must not run a hook nor a
        # hook see a trace's tensors. Re-entrant: ``exclusive()`` holds it across several calls.
        self._lock = threading.RLock()
        # the predict path's encoders: eager here; freeze_encoders() swaps in frozen ones, and the
        # int8 image encoder (core.model.int8_image) from the calibration in ``int8_dir`` (the weights folder)
        self.encoders = ServedEncoders(self.model, size=self.size, tokens=self.tokens, hooks_lock=self._lock,
                                       fast=fast, int8_dir=int8_dir)
        self.version = desc.version or "unknown"
        # what this model predicts, and what a prediction states beside its numbers (core.serving.batch_predict)
        self.facts = facts = ServedFacts.of(desc)
        self.findings, self.heads, self.text_modes = facts.findings, facts.heads, facts.text_modes
        self.evidence, self.image_reliable, self.qa_points = facts.evidence, facts.image_reliable, facts.qa_points
        self.recalibration, self.calibrated = facts.recalibration, facts.calibrated
        self.ood = ood_detector(ood_tensors)

    @property
    def thresholds(self) -> dict:
        """text mode -> head -> finding -> threshold, as the weights' description has them."""
        return self.description.thresholds

    @classmethod
    def load(cls, weights_dir: str | Path = "weights", *, fast: bool = True,
             release_memory: bool = True) -> Predictor:
        """``fast`` folds BatchNorm (core.model.frozen) and, when the folder has a calibration, serves
        the image encoder in int8 once ``freeze_encoders()`` has run (core.model.int8_image);
        False is the plain fp32 eager model, the reference the fast path is tested against.
        ``release_memory=False`` leaves ``release_freed_memory()`` (~0.2 s) to the caller."""
        return load_served(Path(weights_dir),
                           lambda *parts: cls(*parts, fast=fast, int8_dir=Path(weights_dir)),
                           release_memory=release_memory)

    # ------------------------------------------------------ the served encoders
    @property
    def image_features(self):
        return self.encoders.image_features

    @property
    def text_features(self):
        return self.encoders.text_features

    @property
    def int8_state(self) -> Int8State:
        return self.encoders.int8_state

    @property
    def image_precision(self) -> Precision:
        """Of the predict path's image encoder: INT8 once the int8 encoder serves."""
        return self.encoders.image_precision

    @property
    def served_version(self) -> str:
        """The weights' version, marked "+int8" while the int8 image encoder serves: a logged
        row says which of the two computed it (they differ by up to a few hundredths)."""
        return f"{self.version}+int8" if self.image_precision is Precision.INT8 else self.version

    def exclusive(self):
        """The predictor to the caller alone while held (``with predictor.exclusive():``): calls from other
        threads wait. Each call below holds it on its own; hold it across several that must be served
        by the same encoders (a warm-up's build and freeze, core.serving.loader)."""
        return self._lock

    def build_int8_image(self) -> bool:
        """Build the int8 image encoder from the weights' calibration (core.model.int8_image, ~1.4 s;
        the file is read here, off the first prediction's path). Works on a copy of the
        encoder, but must not run beside predictions: torch.fx patches nn.Module.__call__ for the
        whole process while it traces (it holds the predictor's lock, ``exclusive``).
        freeze_encoders() serves it. False (and ``int8_state`` says why) when there is none to build."""
        with self._lock:
            return self.encoders.build_int8_image()

    def freeze_encoders(self, *, int8: bool = True) -> list[str]:
        """Swap TorchScript-frozen encoders into the predict path where they match eager on
        inputs of several batch sizes and lengths (core.model.frozen.frozen_features); returns which
        ("image (int8)" when the int8 image encoder serves: ``int8=True`` and the weights
        have a calibration, core.model.int8_image). Takes ~2.5 s (tracing and the graphs' first
        runs), so the app does it on its background thread after the first prediction
        (core.serving.loader), holding the predictor's lock; both graphs are swapped in at the end. An
        attribution waits for the trace, and always uses the eager fp32 modules."""
        with self._lock:
            return self.encoders.freeze(int8=int8)

    # ----------------------------------------------------------------- inputs
    def image_tensor(self, gray: np.ndarray) -> torch.Tensor:
        return prepare(gray, size=self.size, mean=self.mean, std=self.std).unsqueeze(0)

    def tokens(self, texts: list[str]):
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_len, return_tensors="pt")

    # ---------------------------------------------------------------- predict
    def predict_batch(self, grays: list[np.ndarray], texts: list[str], modes: list[str], *,
                      colorfulness: list[float] | None = None, target: str | None = None) -> list[Prediction]:
        """``target``: the operating point the decisions are made at (core.serving.decision; None: the
        mode's default); a name that is not one of them raises TargetError before the model runs."""
        for m in set(modes):
            resolve_target(target, m)
        with self._lock:
            return batch_predict.predict_batch(self.facts, self._scores, grays, texts, modes,
                                               version=self.served_version, ood=self.ood,
                                               colorfulness=colorfulness, target=target)

    @torch.inference_mode()
    def _scores(self, grays: list[np.ndarray], texts: list[str], modes: list[str]) -> dict[str, np.ndarray]:
        """The model call (core.serving.batch_predict.Scores): head -> studies x findings probabilities, on
        the predict path's encoders; ``modes`` are the effective ones (core.data.labels.effective_mode)."""
        x = torch.cat([self.image_tensor(g) for g in grays]).contiguous(memory_format=torch.channels_last)
        img = self.image_features(x)
        txt = torch.zeros(len(texts), self.model.text_encoder.out_dim)
        with_text = [i for i, m in enumerate(modes) if m != "none"]
        if with_text:
            enc = self.tokens([texts[i] for i in with_text])
            txt[with_text] = self.text_features(enc["input_ids"], enc["attention_mask"])
        mode_idx = torch.tensor([self.text_modes.index(m) for m in modes])
        logits = self.model.temperature_scaled(self.model.forward_heads(img, txt, mode_idx), mode_idx)
        return {h: torch.sigmoid(logits[h]).numpy() for h in self.heads}

    def predict(self, gray: np.ndarray, text: str = "", mode: str = "report", *,
                colorfulness: float = 0.0, target: str | None = None) -> Prediction:
        return self.predict_batch([gray], [text], [mode], colorfulness=[colorfulness], target=target)[0]

    # -------------------------------------------------------------- attribute
    def attribute(self, gray: np.ndarray, text: str = "", mode: str = "report", *, finding: str,
                  head: str = "fusion", method: str = "gradcam", ig_steps: int = 16) -> Attribution:
        """Image heatmap (Grad-CAM or Integrated Gradients) and per-token text scores
        (Integrated Gradients on the word embeddings) for one finding and head (core.serving.attribution)."""
        with self._lock:  # Captum hooks the shared modules: never beside a prediction or a trace
            return attribution.attribute(self, gray, text, mode, finding=finding, head=head, method=method,
                                         ig_steps=ig_steps)
