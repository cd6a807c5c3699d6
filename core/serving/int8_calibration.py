"""Make the int8 image encoder's calibration for a weights folder (core.model.int8_image), and
measure what int8 changes before it is written.

Calibrated on training-split frontal images only; the fidelity check runs on the
validation split (the test split stays for tests/model/test_fast_path.py): every head's AUC
per finding in every text mode, the share of thresholded decisions that flip, and the
largest probability change. A calibration that moves any AUC by more than
``MAX_AUC_CHANGE`` or flips more than ``MAX_FLIPS`` of the decisions is not written.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.errors import CxrError
from core.model.description import INT8_FILE

MAX_AUC_CHANGE = 0.005
MAX_FLIPS = 0.01


class CalibrationRejected(CxrError):
    """int8 would change the predictions more than allowed; the calibration was not written."""


def _calibration_pixels(collection, reports, desc, images: int, seed: int) -> torch.Tensor:
    from core.data.image_bank import ImageBank
    from core.data.preprocess import normalise
    pre = desc.preprocessing
    frontals = [r.image_ids[0] for r in reports if r.image_ids]
    pick = [frontals[k] for k in np.random.default_rng(seed).permutation(len(frontals))[:images]]
    bank = ImageBank.build(collection.root, pick, pre.image_size, paths=collection.image_paths)
    return normalise(bank.pixels, pre.mean, pre.std)


def _change(a: float, b: float) -> float | None:
    """|a - b|, or None where an AUC is undefined (no positives): JSON has no NaN."""
    return None if np.isnan(a) or np.isnan(b) else abs(float(a) - float(b))


def fidelity(predictor, int8_encoder, reports, data_dir: Path, *, paths: dict | None = None) -> dict:
    """fp32 against int8 on ``reports``: per text mode and head, each finding's AUC change,
    the flipped decisions and the largest probability change."""
    from core.evaluation.metrics import safe_auc
    from core.evaluation.split_eval import predict_reports
    model, desc = predictor.model, predictor.description
    Y = np.array([r.labels for r in reports])
    out = {"n_studies": len(reports), "n_positive": dict(zip(predictor.findings, map(int, Y.sum(0)), strict=True)),
           "modes": {}}
    worst_auc = worst_flips = worst_dp = 0.0
    for mode in predictor.text_modes:
        fp32 = predict_reports(model, predictor.tokenizer, desc, reports, data_dir, mode, paths=paths)
        int8 = predict_reports(model, predictor.tokenizer, desc, reports, data_dir, mode, paths=paths,
                               image_encoder=int8_encoder.forward_features)
        out["modes"][mode] = {}
        for head in predictor.heads:
            auc_change = {f: _change(safe_auc(Y[:, k], int8[head][:, k]), safe_auc(Y[:, k], fp32[head][:, k]))
                          for k, f in enumerate(predictor.findings)}
            th = np.array([desc.thresholds_for(mode, head)[f] for f in predictor.findings])
            flips = float(((int8[head] >= th) != (fp32[head] >= th)).mean())
            dp = float(np.abs(int8[head] - fp32[head]).max())
            out["modes"][mode][head] = {"auc_change": auc_change, "flipped_decisions": flips, "max_prob_change": dp}
            worst_auc = max([worst_auc, *(v for v in auc_change.values() if v is not None)])
            worst_flips, worst_dp = max(worst_flips, flips), max(worst_dp, dp)
    out.update(max_auc_change=worst_auc, max_flipped_decisions=worst_flips, max_prob_change=worst_dp)
    return out


def calibrate_weights(weights_dir: Path, data_dir: Path, *, images: int = 512, seed: int = 0,
                      dataset: str | None = None) -> dict:
    """Calibrate, check on the validation split, and write ``image_int8.safetensors`` next to
    the weights; returns the info written. Raises CalibrationRejected (nothing written)."""
    from core.evaluation.split_eval import select_reports, weights_collection
    from core.model.int8_image import calibrate, int8_encoder, save_calibration, stored_encoder_digest
    from core.serving.predictor import Predictor
    predictor = Predictor.load(weights_dir)
    desc = predictor.description
    coll = weights_collection(desc, Path(data_dir), dataset)
    train = select_reports(coll.reports, "train", desc.split)
    val = select_reports(coll.reports, "val", desc.split)
    pixels = _calibration_pixels(coll, train, desc, images, seed)
    encoder = predictor.model.image_encoder
    state = calibrate(encoder, pixels)
    check = fidelity(predictor, int8_encoder(encoder, state, predictor.size), val, data_dir, paths=coll.image_paths)
    info = {"encoder_sha256": stored_encoder_digest(weights_dir), "weights_version": predictor.version,
            "engine": "onednn", "torch": torch.__version__.split("+")[0],
            "calibration": f"{len(pixels)} training-split frontal images (seed {seed})",
            "fp32_layers": "stem convolution", "validation": check}
    if check["max_auc_change"] > MAX_AUC_CHANGE or check["max_flipped_decisions"] > MAX_FLIPS:
        raise CalibrationRejected(
            f"int8 would change an AUC by {check['max_auc_change']:.4f} (allowed {MAX_AUC_CHANGE}) and flip "
            f"{check['max_flipped_decisions']:.1%} of decisions (allowed {MAX_FLIPS:.0%}) on the validation split; "
            f"{INT8_FILE} not written, fp32 serves")
    save_calibration(Path(weights_dir) / INT8_FILE, state, info)
    return info
