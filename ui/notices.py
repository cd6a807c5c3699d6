"""Messages several pages share: missing weights, what the log stores, intended use."""
from __future__ import annotations

import streamlit as st

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
