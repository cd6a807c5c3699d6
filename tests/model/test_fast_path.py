"""The fast inference path (BatchNorm folding and frozen graphs, core/model/frozen.py; the int8
image encoder, core/model/int8_image.py) keeps every finding's test AUC within 0.005 of the fp32
eager model, and changes at most 1% of the thresholded decisions, on the shipped weights
and the real test split. Skips when the weights or the data are absent."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.data.labels import FINDINGS
from core.serving.precision import Int8State, Precision

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "weights"


@pytest.fixture(scope="module")
def both(iu_xray_dir):
    if not (WEIGHTS / "model.safetensors").is_file():
        pytest.skip("no shipped weights in weights/ (train them with scripts/train.py)")
    from core.data.reports import load_reports
    from core.evaluation.split_eval import select_reports
    from core.serving.predictor import Predictor
    fast, plain = Predictor.load(WEIGHTS, fast=True), Predictor.load(WEIGHTS, fast=False)
    reports = select_reports(load_reports(iu_xray_dir), "test", plain.metadata["split"])
    return fast, plain, reports, iu_xray_dir


_PLAIN: dict[str, dict] = {}


def plain_probabilities(both, mode: str) -> dict:
    """The fp32 eager model's test-split probabilities (computed once per mode)."""
    from core.evaluation.split_eval import predict_reports
    _, plain, reports, data = both
    if mode not in _PLAIN:
        _PLAIN[mode] = predict_reports(plain.model, plain.tokenizer, plain.metadata, reports, data, mode)
    return _PLAIN[mode]


def assert_same_decisions(both, mode: str, pf: dict) -> None:
    """Every head's AUC per finding within 0.005 of fp32 eager; at most 1% of decisions flipped."""
    from core.evaluation.metrics import safe_auc
    _, plain, reports, _ = both
    Y = np.array([r.labels for r in reports])
    pp = plain_probabilities(both, mode)
    for head in ("fusion", "image") + (("text",) if mode != "none" else ()):
        for k, finding in enumerate(FINDINGS):
            a, b = safe_auc(Y[:, k], pf[head][:, k]), safe_auc(Y[:, k], pp[head][:, k])
            assert abs(a - b) <= 0.005, (mode, head, finding, a, b)
        # the yes/no a user reads: at most 1% of the thresholded decisions may differ
        th = np.array([plain.metadata["thresholds"][mode][head][f] for f in FINDINGS])
        flips = float(((pf[head] >= th) != (pp[head] >= th)).mean())
        assert flips <= 0.01, (mode, head, flips)


@pytest.mark.parametrize("mode", ["report", "indication", "none"])
def test_fast_path_keeps_auc(both, mode):
    from core.evaluation.split_eval import predict_reports
    fast, _, reports, data = both
    assert_same_decisions(both, mode, predict_reports(fast.model, fast.tokenizer, fast.metadata, reports, data, mode))


@pytest.fixture(scope="module")
def int8_image(both):
    from core.model.description import read_int8_info
    fast = both[0]
    if read_int8_info(WEIGHTS) is None:
        pytest.skip("the shipped weights have no int8 calibration (scripts/calibrate_int8.py makes one)")
    assert fast.build_int8_image(), fast.int8_state.message
    return fast.encoders.int8_image


@pytest.mark.parametrize("mode", ["report", "indication", "none"])
def test_int8_image_encoder_keeps_auc(both, int8_image, mode):
    """The served int8 image encoder (core.model.int8_image), on the test split it was not calibrated
    or checked on (calibration: training images; its gate: the validation split)."""
    from core.evaluation.split_eval import predict_reports
    fast, _, reports, data = both
    assert_same_decisions(both, mode, predict_reports(fast.model, fast.tokenizer, fast.metadata, reports, data, mode,
                                                      image_encoder=int8_image.forward_features))


def test_frozen_int8_graph_gives_the_eager_int8_features(both, int8_image):
    """What freeze_encoders() serves is the int8 encoder, traced: same features on real test
    images, one at a time and in batches of 8."""
    import torch
    from PIL import Image
    fast, _, reports, data = both
    assert fast.freeze_encoders() == ["image (int8)", "text"]
    assert fast.image_precision is Precision.INT8 and fast.int8_state is Int8State.SERVING
    x = torch.cat([fast.image_tensor(np.asarray(Image.open(Path(data) / "NLMCXR_png" / f"{r.image_ids[0]}.png")
                                                .convert("L"))) for r in reports[:16]])
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for size in (1, 8):
            for s in range(0, len(x), size):
                got, want = fast.image_features(x[s:s + size]), int8_image.forward_features(x[s:s + size])
                assert torch.allclose(got, want, atol=1e-4, rtol=0)


def test_frozen_encoders_give_the_eager_probabilities(both):
    """freeze_encoders() (TorchScript-frozen encoders on the predict path, core.model.frozen) changes no
    probability beyond float rounding: real test studies with their reports and indications,
    one at a time and in padded batches of mixed lengths and modes."""
    from PIL import Image
    fast, plain, reports, data = both
    assert fast.freeze_encoders(int8=False) == ["image", "text"]
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
