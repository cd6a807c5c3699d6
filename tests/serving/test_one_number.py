"""In image-only mode a user reads one number per finding: the fused number is the image
head's, with the image head's threshold and evidence (they disagreed: Edema 0.785 over 0.095
fused against 0.788 over 0.041 image, and the evidence came from the fusion head); the decision
is the image number's at the image-only operating point."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.reliability.test_reliability_inputs import cached_predictor

WEIGHTS = Path(__file__).resolve().parents[2] / "weights"


def test_image_only_shows_the_image_heads_number_threshold_and_evidence(iu_xray_dir):
    predictor = cached_predictor(WEIGHTS)
    path = sorted((iu_xray_dir / "NLMCXR_png").glob("*.png"))[5]
    gray = np.asarray(Image.open(path).convert("L"))
    pred = predictor.predict(gray, "", "none")
    assert pred.fusion == pred.image
    assert pred.head_thresholds["image"] == pred.head_thresholds["fusion"]
    # the thresholds a reader is shown are the operating point's, of the findings it assessed
    assert {f: pred.thresholds[f] for f in pred.operating_point} == {
        f: op["threshold"] for f, op in pred.operating_point.items()}
    assert pred.evidence == pred.head_evidence["image"]
    # the decision is the image head's number against the image-only operating point
    from core.model.description import read_description
    from core.serving.decision import decide_values
    by_image = decide_values(read_description(WEIGHTS), mode="none", probabilities=pred.image,
                             calibrated=pred.head_calibrated["image"], image_reliable=pred.image_reliable)
    assert by_image.status() == pred.decision and by_image.flagged() == pred.flagged()
    with_text = predictor.predict(gray, "Shortness of breath.", "indication")
    assert with_text.fusion != with_text.image  # with text the fused head is its own
