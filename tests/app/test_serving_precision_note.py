"""The model card's line on how the image encoder is served (ui.notices.serving_precision_note):
int8 only where the predictor says it serves int8 (or will, before it has warmed up), with the
changes the calibration measured; otherwise fp32 and why."""
from __future__ import annotations

from types import SimpleNamespace

from core.serving.precision import Int8State, Precision
from ui.notices import serving_precision_note

INFO = {"calibration": "512 training-split frontal images (seed 0)",
        "validation": {"n_studies": 467, "max_auc_change": 0.0013, "max_flipped_decisions": 0.0051,
                       "max_prob_change": 0.047}}


def test_int8_serving_says_what_it_changed():
    note = serving_precision_note(INFO, SimpleNamespace(image_precision=Precision.INT8, int8_state=Int8State.SERVING))
    assert "serves in int8" in note and "512 training-split" in note
    assert "467 studies" in note and "0.0013" in note and "0.5%" in note and "0.047" in note
    assert "fp32 encoder" in note  # heatmaps: what they explain


def test_no_calibration_means_fp32_and_how_to_make_one():
    note = serving_precision_note(None, None)
    assert "serves in fp32" in note and "calibrate_int8.py" in note


def test_a_calibration_that_does_not_fit_says_fp32_and_why():
    stale = SimpleNamespace(image_precision=Precision.FP32, int8_state=Int8State.OTHER_WEIGHTS)
    note = serving_precision_note(INFO, stale)
    assert "serves in fp32" in note and "other weights" in note and "int8 against" not in note


def test_before_the_model_has_warmed_up_it_says_when_int8_starts():
    for predictor in (None, SimpleNamespace(image_precision=Precision.FP32, int8_state=Int8State.NOT_BUILT)):
        note = serving_precision_note(INFO, predictor)
        assert "once the model has warmed up" in note and "0.0013" in note
