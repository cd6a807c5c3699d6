"""The shipped weights give the probabilities they gave before the issue-11 refactor (same
network, same code path for a user): 10 real studies x 3 text modes x 3 heads, recorded in
tests/model/shipped_reference.json, to 1e-6. Skips when the weights are another model (a
retrain: regenerate the file) or the data is absent."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = json.loads((Path(__file__).with_name("shipped_reference.json")).read_text())


def test_shipped_weights_predict_what_they_predicted_before(iu_xray_dir):
    if not (ROOT / "weights" / "model.safetensors").is_file():
        pytest.skip("no shipped weights in weights/")
    from core.serving.predictor import Predictor
    predictor = Predictor.load(ROOT / "weights")
    if predictor.version != REFERENCE["model_version"]:
        pytest.skip(f"the shipped model is {predictor.version}, the reference is {REFERENCE['model_version']}")
    worst = 0.0
    for key, want in REFERENCE["predictions"].items():
        image_id, mode = key.split("|")
        gray = np.asarray(Image.open(Path(iu_xray_dir) / "NLMCXR_png" / f"{image_id}.png").convert("L"))
        got = predictor.predict(gray, REFERENCE["texts"][mode], mode)
        for head in ("fusion", "image", "text"):
            for finding, p in want[head].items():
                worst = max(worst, abs(getattr(got, head)[finding] - p))
    assert worst <= 1e-6, worst
