"""Batched inference over many studies (validation, evaluation, benchmarks).

Features are computed once per image and once per (report, text mode); the heads run on
features, and a report's probability is the mean over its frontal images.
"""
from __future__ import annotations

import numpy as np
import torch

from core.data.labels import HEADS, TEXT_MODES
from core.model.fusion import FusionModel


@torch.inference_mode()
def image_features(model: FusionModel, pixels: torch.Tensor, *, batch_size: int = 64,
                   device: str = "cpu", encoder=None) -> torch.Tensor:
    """pixels: normalised N x 1 x S x S float tensor -> N x 1024 features. ``encoder``: another
    callable for the image encoder's features (the served int8 one, core.model.int8_image)."""
    model.image_encoder.eval()
    encode = encoder or model.image_encoder.forward_features
    out = []
    for i in range(0, len(pixels), batch_size):
        x = pixels[i:i + batch_size].to(device)
        if device != "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(encode(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, model.image_encoder.out_dim)


@torch.inference_mode()
def text_features(model: FusionModel, tokenizer, texts: list[str], *, max_len: int, batch_size: int = 64,
                  device: str = "cpu") -> torch.Tensor:
    """N texts -> N x H features; empty texts get zeros (the heads mask them anyway).
    Texts are sorted by length so each batch pads only to its own longest text."""
    model.text_encoder.eval()
    feats = torch.zeros(len(texts), model.text_encoder.out_dim)
    order = sorted((i for i, t in enumerate(texts) if t.strip()), key=lambda i: len(texts[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=max_len,
                        return_tensors="pt")
        f = model.text_encoder.forward_features(enc["input_ids"].to(device), enc["attention_mask"].to(device))
        feats[idx] = f.float().cpu()
    return feats


@torch.inference_mode()
def head_logits(model: FusionModel, img_feats: torch.Tensor, txt_feats: torch.Tensor, mode: str, *,
                temperature_scaled: bool = True) -> dict[str, torch.Tensor]:
    model.eval()
    m = torch.full((len(img_feats),), TEXT_MODES.index(mode), dtype=torch.long)
    logits = model.forward_heads(img_feats, txt_feats, m)
    return model.temperature_scaled(logits, m) if temperature_scaled else {h: logits[h] for h in HEADS}


def per_report(values: torch.Tensor, report_idx: list[int], n_reports: int) -> np.ndarray:
    """Mean over each report's images (rows of ``values`` belong to ``report_idx``)."""
    idx = torch.tensor(report_idx)
    sums = torch.zeros(n_reports, values.shape[1]).index_add_(0, idx, values.float())
    counts = torch.zeros(n_reports).index_add_(0, idx, torch.ones(len(idx))).clamp(min=1)
    return (sums / counts[:, None]).numpy()


def report_probabilities(model: FusionModel, img_feats: torch.Tensor, report_txt_feats: torch.Tensor,
                         report_idx: list[int], n_reports: int, mode: str, *,
                         temperature_scaled: bool = True) -> dict[str, np.ndarray]:
    """Per-report probabilities of every head. ``img_feats`` is per sample (image),
    ``report_txt_feats`` per report; ``report_idx`` maps samples to reports."""
    txt = report_txt_feats[torch.tensor(report_idx)] if len(report_idx) else report_txt_feats[:0]
    logits = head_logits(model, img_feats, txt, mode, temperature_scaled=temperature_scaled)
    return {h: per_report(torch.sigmoid(logits[h]), report_idx, n_reports) for h in HEADS}


def report_logits(model: FusionModel, img_feats, report_txt_feats, report_idx, n_reports, mode) -> dict:
    """Per-report logits before temperature scaling (mean over images; the fusion head's
    after late fusion), for fitting late fusion and temperatures."""
    txt = report_txt_feats[torch.tensor(report_idx)]
    logits = head_logits(model, img_feats, txt, mode, temperature_scaled=False)
    m = torch.full((len(img_feats),), TEXT_MODES.index(mode), dtype=torch.long)
    with torch.inference_mode():
        logits["fusion"] = model.late_fused(logits, m)
    return {h: per_report(logits[h], report_idx, n_reports) for h in HEADS}
