"""The fast inference path (BatchNorm folding + int8 text encoder, core/fast.py) keeps
every finding's test AUC within 0.005 of the fp32 eager model, and changes at most 1% of
the thresholded decisions, on the shipped weights and the real test split. Skips when the
weights or the data are absent."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.labels import FINDINGS

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights"


@pytest.fixture(scope="module")
def both(iu_xray_dir):
    if not (WEIGHTS / "model.safetensors").is_file():
        pytest.skip("no shipped weights in weights/ (train them with scripts/train.py)")
    from core.predictor import Predictor
    from core.reports import load_reports
    from core.split_eval import select_reports
    fast, plain = Predictor.load(WEIGHTS, fast=True), Predictor.load(WEIGHTS, fast=False)
    reports = select_reports(load_reports(iu_xray_dir), "test", plain.metadata["split"])
    return fast, plain, reports, iu_xray_dir


@pytest.mark.parametrize("mode", ["report", "indication", "none"])
def test_fast_path_keeps_auc(both, mode):
    from core.metrics import safe_auc
    from core.split_eval import predict_reports
    fast, plain, reports, data = both
    Y = np.array([r.labels for r in reports])
    pf = predict_reports(fast.model, fast.tokenizer, fast.metadata, reports, data, mode)
    pp = predict_reports(plain.model, plain.tokenizer, plain.metadata, reports, data, mode)
    for head in ("fusion", "image") + (("text",) if mode != "none" else ()):
        for k, finding in enumerate(FINDINGS):
            a, b = safe_auc(Y[:, k], pf[head][:, k]), safe_auc(Y[:, k], pp[head][:, k])
            assert abs(a - b) <= 0.005, (mode, head, finding, a, b)
        # the yes/no a user reads: at most 1% of the thresholded decisions may differ
        th = np.array([plain.metadata["thresholds"][mode][head][f] for f in FINDINGS])
        flips = float(((pf[head] >= th) != (pp[head] >= th)).mean())
        assert flips <= 0.01, (mode, head, flips)


def test_frozen_encoders_give_the_eager_probabilities(both):
    """freeze_encoders() (TorchScript-frozen encoders on the predict path, core.fast) changes no
    probability beyond float rounding: real test studies with their reports and indications,
    one at a time and in padded batches of mixed lengths and modes."""
    from PIL import Image
    fast, plain, reports, data = both
    assert fast.freeze_encoders() == ["image", "text"]
    studies = reports[:24]
    grays = [np.asarray(Image.open(Path(data) / "NLMCXR_png" / f"{r.image_ids[0]}.png").convert("L"))
             for r in studies]
    modes = ["report" if i % 3 else "indication" for i in range(len(studies))]
    modes[5] = "none"
    texts = [r.text(m) for r, m in zip(studies, modes, strict=True)]
    for size in (1, 8):
        for start in range(0, len(studies), size):
            part = slice(start, start + size)
            got = fast.predict_batch(grays[part], texts[part], modes[part])
            want = plain.predict_batch(grays[part], texts[part], modes[part])
            for g, w in zip(got, want, strict=True):
                for head in ("fusion", "image", "text"):
                    assert max(abs(getattr(g, head)[f] - getattr(w, head)[f]) for f in FINDINGS) <= 1e-4, head
