"""Uncertain labels: the one place that turns a labeller's cell into a training label.

MIMIC-CXR-JPG's ``-chexpert.csv.gz`` / ``-negbio.csv.gz`` and CheXpert's ``train.csv`` code
each observation as ``1.0`` (positive), ``0.0`` (negative), ``-1.0`` (uncertain) or blank
(not mentioned). Blank counts as negative (the CheXpert paper's convention: the report did
not mention it). What an uncertain label becomes is the user's choice, ``--uncertain-policy``:

    ignore    the loss skips it (training split); validation/test count it as negative,
              since calibration and thresholds need a binary label (U-Ignore)
    positive  it counts as positive (U-Ones)
    negative  it counts as negative (U-Zeros)

The policy is written into the weights' metadata (``training_config.uncertain_policy``).
"""
from __future__ import annotations

from core.errors import CxrError, OptionError

UNCERTAIN_POLICIES: tuple[str, ...] = ("ignore", "positive", "negative")
POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1

_CELLS = {"1": POSITIVE, "1.0": POSITIVE, "0": NEGATIVE, "0.0": NEGATIVE, "-1": UNCERTAIN, "-1.0": UNCERTAIN,
          "": NEGATIVE}


class LabelValueError(CxrError, ValueError):
    """A label cell that is none of 1, 0, -1 or blank."""


def parse_cell(value: str | None) -> int:
    """1 / 0 / -1 from a labeller's cell (blank = not mentioned = 0)."""
    text = (value or "").strip()
    if text.lower() in ("nan", "none"):
        text = ""
    if text not in _CELLS:
        raise LabelValueError(f"label value {value!r} is not one of 1, 0, -1 or blank")
    return _CELLS[text]


def apply_policy(values: list[int], policy: str) -> tuple[list[int], list[int]]:
    """(binary labels, mask: 1 = the loss uses this label) for one study's raw values."""
    if policy not in UNCERTAIN_POLICIES:
        raise OptionError(f"unknown uncertain-label policy {policy!r}; use one of {', '.join(UNCERTAIN_POLICIES)}")
    labels, mask = [], []
    for v in values:
        if v == UNCERTAIN:
            labels.append(1 if policy == "positive" else 0)
            mask.append(0 if policy == "ignore" else 1)
        else:
            labels.append(int(v == POSITIVE))
            mask.append(1)
    return labels, mask
