"""Validation: cached encoder features, the AUCs early stopping reads, and after training the
late-fusion weights, temperatures and thresholds fitted on the validation split."""
from __future__ import annotations

import time

import numpy as np
import torch

from core.data.labels import FINDINGS, HEADS, TEXT_MODES
from core.evaluation.metrics import fit_temperature, macro_auc, safe_auc
from core.evaluation.operating_points import fit_thresholds
from core.model.inference import image_features, report_logits, report_probabilities, text_features


class Calibration:
    """Feature caches, validation scores and calibration; a base of ``Trainer``."""

    def eval_image(self, split: str = "val") -> tuple[float, list[float]]:
        s = self.samples[split]
        feats = image_features(self.model, self.pixels(s.image_rows), device=str(self.device))
        zeros = torch.zeros(len(self.reports), self.model.text_encoder.out_dim)
        probs = report_probabilities(self.model, feats, zeros, s.report_idx, len(self.reports), "none",
                                     calibrated=False)["image"]
        rows = sorted(set(s.report_idx))
        Y, P = self.labels[rows].numpy(), probs[rows]
        aucs = [safe_auc(Y[:, k], P[:, k]) for k in range(len(FINDINGS))]
        return macro_auc(Y, P), aucs

    def cache_features(self, splits=("train", "val")) -> None:
        """Frozen encoders: image features per image row, text features per report and mode."""
        t0 = time.time()
        rows = sorted({r for s in splits for r in self.samples[s].image_rows})
        feats = image_features(self.model, self.pixels(rows), device=str(self.device))
        self.img_cache = torch.zeros(len(self.bank.ids), feats.shape[1])
        self.img_cache[rows] = feats
        t1 = time.time()
        self.refresh_text_cache(splits)
        # what a frozen epoch would cost if the encoders were recomputed each time (forward
        # only): one image and, for two of the three text modes, one text per sample
        keep = {k for s in splits for k in self.samples[s].report_idx}
        n_text = sum(1 for m in ("report", "indication") for k in keep if self.texts[m][k])
        per_sample = (t1 - t0) / len(rows) + (2 / 3) * (time.time() - t1) / max(n_text, 1)
        self.timings["encoder_forward_samples_per_s"] = 1 / per_sample
        self.timings["cache_features_s"] = time.time() - t0

    def refresh_text_cache(self, splits=("train", "val")) -> None:
        keep = sorted({k for s in splits for k in self.samples[s].report_idx})
        self.txt_cache = {}
        for mode in TEXT_MODES:
            cache = torch.zeros(len(self.reports), self.model.text_encoder.out_dim)
            if mode != "none":
                texts = [self.texts[mode][k] for k in keep]
                cache[keep] = text_features(self.model, self.tokenizer, texts, max_len=self.cfg.text_max_len,
                                            device=str(self.device))
            self.txt_cache[mode] = cache

    def eval_heads(self, split: str = "val") -> tuple[float, dict]:
        """Mean over text modes of the fused macro AUC, and per mode/head AUCs."""
        s = self.samples[split]
        feats = self.img_cache[s.image_rows]
        rows = sorted(set(s.report_idx))
        Y = self.labels[rows].numpy()
        out = {}
        for mode in TEXT_MODES:
            probs = report_probabilities(self.model, feats, self.txt_cache[mode], s.report_idx, len(self.reports),
                                         mode, calibrated=False)
            out[mode] = {h: [safe_auc(Y[:, k], probs[h][rows][:, k]) for k in range(len(FINDINGS))]
                         for h in probs}
        score = float(np.mean([np.nanmean(out[m]["fusion"]) for m in TEXT_MODES]))
        return score, out

    def fit_late_fusion(self, logits: dict, Y: np.ndarray, mi: int, mode: str) -> None:
        """Per finding, the convex combination of fusion/image/text logits (step 0.1) with
        the lowest validation log loss after temperature scaling. Text gets no weight in
        mode ``none``. Few parameters (two per finding), so validation can afford them."""
        grid = [(a / 10, b / 10, (10 - a - b) / 10) for a in range(11) for b in range(11 - a)]
        if mode == "none":
            grid = [g for g in grid if g[2] == 0]
        stacked = np.stack([logits["fusion"], logits["image"], logits["text"]], -1)
        for k in range(len(FINDINGS)):
            def loss(w, k=k):  # called at once, in this iteration
                z = stacked[:, k] @ np.array(w)
                z = z / fit_temperature(Y[:, k], z)
                return float(np.mean(np.logaddexp(0, z) - Y[:, k] * z))
            best = min(grid, key=loss)
            self.model.late_weights[mi, k] = torch.tensor(best)

    def calibrate(self) -> dict:
        """Late-fusion weights, temperatures per head/mode/finding and thresholds (Youden's J
        shrunk toward the training prevalence, core.evaluation.operating_points), all on validation."""
        s = self.samples["val"]
        feats = self.img_cache[s.image_rows]
        rows = sorted(set(s.report_idx))
        Y = self.labels[rows].numpy()
        prevalence = self.labels[sorted(set(self.samples["train"].report_idx))].numpy().mean(axis=0)
        probs: dict = {}
        temp = torch.ones_like(self.model.temperature)
        self.model.late_weights.zero_()
        self.model.late_weights[..., 0] = 1.0  # start from the fusion head alone
        for mi, mode in enumerate(TEXT_MODES):
            logits = report_logits(self.model, feats, self.txt_cache[mode], s.report_idx, len(self.reports), mode)
            self.fit_late_fusion({h: v[rows] for h, v in logits.items()}, Y, mi, mode)
            logits = report_logits(self.model, feats, self.txt_cache[mode], s.report_idx, len(self.reports), mode)
            probs[mode] = {}
            for hi, head in enumerate(HEADS):
                if head == "text" and mode == "none":
                    continue
                L = logits[head][rows]
                for k in range(len(FINDINGS)):
                    temp[hi, mi, k] = fit_temperature(Y[:, k], L[:, k])
                probs[mode][head] = 1 / (1 + np.exp(-L / temp[hi, mi].numpy()))
        self.model.temperature.copy_(temp)
        return fit_thresholds(probs, Y, prevalence, FINDINGS, TEXT_MODES, HEADS)
