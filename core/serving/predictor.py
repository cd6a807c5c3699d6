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
from core.evaluation.evidence import evidence_for, image_reliable
from core.model.description import describe
from core.model.frozen import optimise_for_inference
from core.model.recalibration_maps import calibrated_flags
from core.serving import attribution, batch_predict
from core.serving.decision import resolve_target
from core.serving.graphs import ServedEncoders
from core.serving.loading import load_served, ood_detector, release_freed_memory
from core.serving.precision import FreezeState, Int8State, Precision
from core.serving.prediction import Attribution, InputError, Prediction

__all__ = ["Attribution", "FreezeState", "InputError", "Int8State", "Precision", "Prediction", "Predictor",
           "qa_points", "release_freed_memory"]


def qa_points(metadata) -> dict:
    """Report-QA operating points of the findings the image supports (core.evaluation.operating_points,
    core.evaluation.evidence); the others are never flagged."""
    qa = describe(metadata).discordance
    points = qa.points if qa else {}
    reliable = image_reliable(metadata, points)
    return {f: op for f, op in points.items() if reliable[f]}


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
        # held while Captum's hooks are on the shared modules (attribute) or while they are traced
        # (freeze_encoders): a trace must not run a hook, and a hook must not see a trace's tensors
        self._hooks_lock = threading.Lock()
        # the predict path's encoders: eager here; freeze_encoders() swaps in frozen ones, and the
        # int8 image encoder (core.model.int8_image) from the calibration in ``int8_dir`` (the weights folder)
        self.encoders = ServedEncoders(self.model, size=self.size, tokens=self.tokens, hooks_lock=self._hooks_lock,
                                       fast=fast, int8_dir=int8_dir)
        self.version = desc.version or "unknown"
        # what this model predicts comes from its weights (core.model.description), not from this code
        facts = desc
        self.findings, self.heads, self.text_modes = facts.findings, facts.heads, facts.text_modes
        self.evidence = {m: {h: evidence_for(desc, m, h, self.findings) for h in self.heads}
                         for m in self.text_modes}
        self.image_reliable = image_reliable(desc, self.findings)
        self.qa_points = qa_points(desc)
        self.ood = ood_detector(ood_tensors)
        # per-finding Platt maps, applied in core.serving.batch_predict as in evaluation (split_eval);
        # thresholds and report-QA points in the metadata are already on the recalibrated scale
        self.recalibration = desc.recalibration
        self.calibrated = {m: {h: calibrated_flags(self.recalibration, m, h, self.findings) for h in self.heads}
                           for m in self.text_modes}

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

    def build_int8_image(self) -> bool:
        """Build the int8 image encoder from the weights' calibration (core.model.int8_image, ~1.4 s;
        the file is read here, off the first prediction's path). Works on a copy of the
        encoder, but must not run beside predictions: torch.fx patches nn.Module.__call__ for the
        whole process while it traces (the app holds its model lock, ui.resources).
        freeze_encoders() serves it. False (and ``int8_state`` says why) when there is none to build."""
        return self.encoders.build_int8_image()

    def freeze_encoders(self, *, int8: bool = True) -> list[str]:
        """Swap TorchScript-frozen encoders into the predict path where they match eager on
        inputs of several batch sizes and lengths (core.model.frozen.frozen_features); returns which
        ("image (int8)" when the int8 image encoder serves: ``int8=True`` and the weights
        have a calibration, core.model.int8_image). Takes ~2.5 s (tracing and the graphs' first
        runs), so the app does it on its background thread after the first prediction,
        holding its model lock (ui.resources); both graphs are swapped in at the end. An
        attribution waits for the trace (``_hooks_lock``), and always uses the eager fp32
        modules."""
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
        return batch_predict.predict_batch(self, grays, texts, modes, colorfulness=colorfulness, target=target)

    def predict(self, gray: np.ndarray, text: str = "", mode: str = "report", *,
                colorfulness: float = 0.0, target: str | None = None) -> Prediction:
        return self.predict_batch([gray], [text], [mode], colorfulness=[colorfulness], target=target)[0]

    # -------------------------------------------------------------- attribute
    def attribute(self, gray: np.ndarray, text: str = "", mode: str = "report", *, finding: str,
                  head: str = "fusion", method: str = "gradcam", ig_steps: int = 16) -> Attribution:
        """Image heatmap (Grad-CAM or Integrated Gradients) and per-token text scores
        (Integrated Gradients on the word embeddings) for one finding and head (core.serving.attribution)."""
        with self._hooks_lock:  # Captum hooks the shared modules: never while they are traced
            return attribution.attribute(self, gray, text, mode, finding=finding, head=head, method=method,
                                         ig_steps=ig_steps)
