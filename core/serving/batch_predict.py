"""Prediction: a batch of studies through the predict path's encoders (core.serving.graphs) and
the model's heads into ``Prediction``s, each with its thresholds, held-out evidence, report QA
and out-of-distribution check."""
from __future__ import annotations

import copy
import time

import numpy as np
import torch

from core.data.labels import effective_mode
from core.evaluation.keyword_baseline import negated_only
from core.evaluation.operating_points import discordance
from core.evaluation.recalibration import apply_maps
from core.serving.decision import decide
from core.serving.prediction import Prediction, check_choice


@torch.inference_mode()
def predict_batch(predictor, grays: list[np.ndarray], texts: list[str], modes: list[str], *,
                  colorfulness: list[float] | None = None, target: str | None = None) -> list[Prediction]:
    """One model call for the studies, on ``predictor``'s encoders and facts
    (core.serving.predictor.Predictor), decided at the operating point ``target`` (None: each mode's
    default; core.serving.decision)."""
    p = predictor
    t0 = time.perf_counter()
    for m in modes:
        check_choice("text mode", m, p.text_modes)
    modes = [effective_mode(t, m) for t, m in zip(texts, modes, strict=True)]
    x = torch.cat([p.image_tensor(g) for g in grays]).contiguous(memory_format=torch.channels_last)
    img = p.image_features(x)
    txt = torch.zeros(len(texts), p.model.text_encoder.out_dim)
    with_text = [i for i, m in enumerate(modes) if m != "none"]
    if with_text:
        enc = p.tokens([texts[i] for i in with_text])
        txt[with_text] = p.text_features(enc["input_ids"], enc["attention_mask"])
    mode_idx = torch.tensor([p.text_modes.index(m) for m in modes])
    logits = p.model.temperature_scaled(p.model.forward_heads(img, txt, mode_idx), mode_idx)
    probs = {h: torch.sigmoid(logits[h]).numpy() for h in p.heads}
    if p.recalibration:  # the weights' per-finding maps: the probability a user reads
        probs = {h: v.astype(np.float64) for h, v in probs.items()}
        for m in set(modes):
            rows = [i for i, mode in enumerate(modes) if mode == m]
            for h in p.heads:
                probs[h][rows] = apply_maps(p.recalibration, m, h, probs[h][rows], p.findings)
    ms = (time.perf_counter() - t0) * 1000 / len(grays)
    out = []
    for i, mode in enumerate(modes):
        heads = {h: {f: float(probs[h][i, k]) for k, f in enumerate(p.findings)} for h in p.heads}
        thr, evidence, calibrated = p.thresholds[mode], p.evidence[mode], p.calibrated[mode]
        if mode == "none":  # image only: one image number, not a fused head that read nothing beside it
            heads = {**heads, "fusion": heads["image"]}
            thr, evidence, calibrated = ({**d, "fusion": d["image"]} for d in (thr, evidence, calibrated))
        ood = p.ood.check(grays[i], colorfulness[i] if colorfulness else 0.0) if p.ood else None
        # report QA exists in report mode only: an indication rarely names the finding
        disc = (discordance(heads["image"], heads["text"], thr["text"], p.qa_points,
                            ruled_out=negated_only(texts[i], p.findings)) if mode == "report" else [])
        pred = Prediction(
            fusion=heads["fusion"], image=heads["image"], text=heads["text"], thresholds=dict(thr["fusion"]),
            head_thresholds={h: dict(thr[h]) for h in p.heads},
            discordant=[d["finding"] for d in disc],
            out_of_distribution=bool(ood.out_of_distribution) if ood else False,
            ood_score=float(ood.score) if ood else 0.0, ood_reason=ood.reason if ood else "",
            text_mode=mode, has_text=mode != "none", model=p.served_version, latency_ms=ms,
            evidence=copy.deepcopy(evidence["fusion"]),
            head_evidence=copy.deepcopy(evidence), image_reliable=dict(p.image_reliable),
            discordance=disc, discordance_score=max((d["score"] for d in disc), default=0.0),
            calibrated=dict(calibrated["fusion"]),
            head_calibrated={h: dict(calibrated[h]) for h in p.heads})
        out.append(pred.with_decisions(decide(pred, p.description, target)))
    return out
