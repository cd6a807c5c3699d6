"""In image-only mode a user reads one number per finding: the fused number is the image
head's, with the image head's threshold and evidence (they disagreed: Edema 0.785 over 0.095
fused against 0.788 over 0.041 image, and the evidence came from the fusion head)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.test_reliability_inputs import cached_predictor

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


def test_image_only_shows_the_image_heads_number_threshold_and_evidence(iu_xray_dir):
    predictor = cached_predictor(WEIGHTS)
    path = sorted((iu_xray_dir / "NLMCXR_png").glob("*.png"))[5]
    gray = np.asarray(Image.open(path).convert("L"))
    pred = predictor.predict(gray, "", "none")
    assert pred.fusion == pred.image
    assert pred.thresholds == pred.head_thresholds["image"] == pred.head_thresholds["fusion"]
    assert pred.evidence == pred.head_evidence["image"]
    assert pred.positive("fusion") == pred.positive("image")
    with_text = predictor.predict(gray, "Shortness of breath.", "indication")
    assert with_text.fusion != with_text.image  # with text the fused head is its own
