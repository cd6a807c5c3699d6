"""The optional second series: the Grad-CAM overlay of one finding as a DICOM Secondary Capture.

    ds = build_overlay(source, gray, attribution, version="2026...")   # highdicom SCImage, RGB 8-bit

The heatmap (core.serving.predictor.Attribution, image head, Grad-CAM) is resized to the decoded
image and blended over it in a blue-to-red map; the SC copies the source's patient and study modules.
Its UIDs come from (study, the model version as served, the finding), so storing it again never adds
a second one and one UID always holds one picture. The finding is the leading *assessed* one
(``leading_finding``): never one the decisions left not assessed. Labelled in its Series Description as
research output, not for diagnosis.
"""
from __future__ import annotations

import numpy as np

from core.pacs.sr import MANUFACTURER, derived_uid, header_only

SERIES_NUMBER = 9902
MAX_SIDE = 1024   # the overlay is for looking at, not for measuring


def overlay_uids(study_uid: str, version: str, finding: str) -> tuple[str, str]:
    """``version``: as served ("+int8" when the int8 image encoder ran)."""
    return (derived_uid("cxr-findings-overlay-series", study_uid, version),
            derived_uid("cxr-findings-overlay", study_uid, version, finding))


def leading_finding(decisions, probabilities: dict) -> str | None:
    """The finding to explain: among the assessed ones (core.serving.decision.Decisions), the flagged first,
    then the one whose probability is highest relative to its operating point's threshold. None when no
    finding was assessed (an out-of-distribution image)."""
    assessed = [d for d in decisions if d.assessed and d.operating_point]
    if not assessed:
        return None
    best = max(assessed, key=lambda d: (d.flagged, probabilities[d.finding] / max(d.operating_point["threshold"],
                                                                                   1e-6)))
    return best.finding


def _colormap(heat: np.ndarray) -> np.ndarray:
    """[0, 1] -> RGB float in [0, 255]: blue (low) through green to red (high)."""
    h = np.clip(heat, 0.0, 1.0)[..., None]
    r = np.clip(1.5 - np.abs(4 * h - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * h - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * h - 1), 0, 1)
    return np.concatenate([r, g, b], axis=-1) * 255.0


def blend(gray: np.ndarray, heat: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """The image (longest side at most MAX_SIDE) with the heatmap over it, H×W×3 uint8."""
    from PIL import Image
    im = Image.fromarray(np.asarray(gray, dtype=np.uint8))
    if max(im.size) > MAX_SIDE:
        im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    base = np.asarray(im, dtype=np.float32)[..., None].repeat(3, axis=-1)
    hm = np.asarray(Image.fromarray(np.asarray(heat, dtype=np.float32)).resize(im.size, Image.Resampling.BILINEAR))
    hm = (hm - hm.min()) / (hm.max() - hm.min()) if hm.max() > hm.min() else np.zeros_like(hm)
    weight = alpha * hm[..., None]                      # cold regions stay the plain image
    return np.clip(base * (1 - weight) + _colormap(hm) * weight, 0, 255).astype(np.uint8)


def build_overlay(source, gray: np.ndarray, attribution, *, version: str):
    """The Secondary Capture of ``attribution`` (its ``heatmap`` and ``finding``) on ``gray``."""
    from highdicom.sc import SCImage
    header = header_only(source)
    series_uid, sop_uid = overlay_uids(str(header.StudyInstanceUID), version, attribution.finding)
    rgb = blend(gray, attribution.heatmap)
    ds = SCImage.from_ref_dataset(
        ref_dataset=header, pixel_array=rgb, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=series_uid, series_number=SERIES_NUMBER,
        sop_instance_uid=sop_uid, instance_number=1, manufacturer=MANUFACTURER[:64],
        patient_orientation=("L", "F"), transfer_syntax_uid="1.2.840.10008.1.2.1",
        series_description=f"AI Grad-CAM {attribution.finding} (research, not for diagnosis)"[:64])
    if "Laterality" not in ds:
        ds.Laterality = ""  # type 2C (a chest is not a paired part): present and empty
    return ds
