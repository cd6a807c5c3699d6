"""Validation during training: the encoders' features cached per image and per report, and the
AUCs that early stopping reads."""
from __future__ import annotations

import time

import numpy as np
import torch

from core.data.labels import FINDINGS, TEXT_MODES, TextMode
from core.evaluation.metrics import macro_auc, safe_auc
from core.model.inference import image_features, report_probabilities, text_features
from core.training.setup import RunData


def eval_image(model, data: RunData, device: torch.device, split: str = "val") -> tuple[float, list[float]]:
    """The image head alone on ``split``: macro AUC and per-finding AUCs (the image phase's score)."""
    s = data.samples[split]
    feats = image_features(model, data.pixels(s.image_rows), device=str(device))
    zeros = torch.zeros(len(data.reports), model.text_encoder.out_dim)
    probs = report_probabilities(model, feats, zeros, s.report_idx, len(data.reports), "none",
                                 temperature_scaled=False)["image"]
    rows = sorted(set(s.report_idx))
    Y, P = data.labels[rows].numpy(), probs[rows]
    aucs = [safe_auc(Y[:, k], P[:, k]) for k in range(len(FINDINGS))]
    return macro_auc(Y, P), aucs


class FeatureCache:
    """Frozen encoders' outputs: ``image`` per bank row, ``text[mode]`` per report. Empty until
    ``refresh`` (``image is None``)."""

    def __init__(self, model, tokenizer, data: RunData, text_max_len: int, device: torch.device,
                 timings: dict) -> None:
        self.model, self.tokenizer, self.data = model, tokenizer, data
        self.text_max_len, self.device, self.timings = text_max_len, device, timings
        self.image: torch.Tensor | None = None
        self.text: dict[str, torch.Tensor] = {}

    def refresh(self, splits=("train", "val")) -> None:
        """Image features per image row, text features per report and mode."""
        t0 = time.time()
        samples = self.data.samples
        rows = sorted({r for s in splits for r in samples[s].image_rows})
        feats = image_features(self.model, self.data.pixels(rows), device=str(self.device))
        self.image = torch.zeros(len(self.data.bank.ids), feats.shape[1])
        self.image[rows] = feats
        t1 = time.time()
        self.refresh_text(splits)
        # what a frozen epoch would cost if the encoders were recomputed each time (forward
        # only): one image and, for two of the three text modes, one text per sample
        keep = {k for s in splits for k in samples[s].report_idx}
        n_text = sum(1 for m in ("report", "indication") for k in keep if self.data.texts[m][k])
        per_sample = (t1 - t0) / len(rows) + (2 / 3) * (time.time() - t1) / max(n_text, 1)
        self.timings["encoder_forward_samples_per_s"] = 1 / per_sample
        self.timings["cache_features_s"] = time.time() - t0

    def refresh_text(self, splits=("train", "val")) -> None:
        keep = sorted({k for s in splits for k in self.data.samples[s].report_idx})
        self.text = {}
        for mode in TEXT_MODES:
            cache = torch.zeros(len(self.data.reports), self.model.text_encoder.out_dim)
            if mode != TextMode.NONE:
                texts = [self.data.texts[mode][k] for k in keep]
                cache[keep] = text_features(self.model, self.tokenizer, texts, max_len=self.text_max_len,
                                            device=str(self.device))
            self.text[mode] = cache


def eval_heads(model, data: RunData, cache: FeatureCache, split: str = "val") -> tuple[float, dict]:
    """Mean over text modes of the fused macro AUC, and per mode/head AUCs (on cached features)."""
    s = data.samples[split]
    feats = cache.image[s.image_rows]
    rows = sorted(set(s.report_idx))
    Y = data.labels[rows].numpy()
    out = {}
    for mode in TEXT_MODES:
        probs = report_probabilities(model, feats, cache.text[mode], s.report_idx, len(data.reports), mode,
                                     temperature_scaled=False)
        out[mode] = {h: [safe_auc(Y[:, k], probs[h][rows][:, k]) for k in range(len(FINDINGS))] for h in probs}
    score = float(np.mean([np.nanmean(out[m]["fusion"]) for m in TEXT_MODES]))
    return score, out
