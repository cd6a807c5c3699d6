"""Messages several pages share: missing weights, what the log stores, intended use."""
from __future__ import annotations

import streamlit as st

from core.serving.precision import Precision
from ui.config import TRAIN_COMMAND, TRY_COMMAND, weights_dir

INTENDED_USE = ("Research tool, not a medical device: it must not be used to diagnose or "
                "treat anyone. Every output needs a qualified reader.")

def stored(keep_name: bool) -> str:
    """What the log keeps, saying which file name it keeps."""
    name = ("the uploaded file's **own name** (you chose to keep it)" if keep_name else
            "**not** the uploaded file's name but one made from its hash ('upload-3fa9c2d1e0b4.png'; "
            "tick 'Keep the original file name' to keep it)")
    return ("**What the log keeps** for each prediction: a downscaled copy of the image "
            "(at most 256 px a side), the SHA-256 of the uploaded file and of the text, " + name + ", "
            "the text the model read and its mode, all heads' probabilities and thresholds, the held-out "
            "evidence behind them, the discordance and out-of-distribution flags, and reviewers' verdicts "
            "and notes. It never keeps DICOM headers or identifiers, nor the full-resolution image.")


STORED = stored(False)


def no_weights(reason: str | None = None) -> None:
    """Say that no model is loaded and how to train one."""
    st.info(f"No trained model in `{weights_dir()}` yet. Train one from the repository root into a run "
            "folder, then point `CXR_WEIGHTS` at its weights (or copy them to `weights/`):", icon=":material/info:")
    st.code(TRAIN_COMMAND, language="bash")
    st.code(TRY_COMMAND, language="bash")
    if reason:
        st.caption(reason)


def _int8_changes(info: dict) -> str:
    v = info.get("validation", {})
    return (f"On the validation split ({v.get('n_studies', '?')} studies), int8 against fp32 changed no finding's "
            f"AUC by more than {v.get('max_auc_change', float('nan')):.4f} (any head, any text mode), flipped "
            f"{v.get('max_flipped_decisions', float('nan')):.1%} of thresholded decisions at most, and moved a "
            f"probability by at most {v.get('max_prob_change', float('nan')):.3f}. Heatmaps are computed on "
            "the fp32 encoder.")


def serving_precision_note(info: dict | None, predictor=None) -> str:
    """How the image encoder is served (int8 or fp32, core.model.int8_image) and what int8 changes.
    ``info``: the calibration file's own description; ``predictor``: the loaded one, if any
    (its ``image_precision`` and ``int8_state``, core.serving.precision)."""
    if predictor is not None and predictor.image_precision is Precision.INT8:
        return (f"**Serving precision.** The image encoder serves in int8 (oneDNN; calibrated on "
                f"{info.get('calibration', 'training images') if info else 'training images'}; the stem in fp32). "
                + (_int8_changes(info) if info else ""))
    if info is None:
        return ("**Serving precision.** The image encoder serves in fp32 (no int8 calibration next to the weights; "
                "`python scripts/calibrate_int8.py` makes one).")
    if predictor is not None and predictor.int8_state.refused:
        return f"**Serving precision.** The image encoder serves in fp32: {predictor.int8_state.message}."
    return ("**Serving precision.** The image encoder serves in int8 once the model has warmed up (a few seconds "
            "after the first prediction), when its calibration fits these weights. " + _int8_changes(info))
