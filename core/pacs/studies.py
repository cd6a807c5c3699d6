"""Which image of a study to score: CR/DX chest series, the frontal view, the indication.

The frontal is chosen from the headers (ViewPosition PA before AP); an image without a
ViewPosition is decoded and asked to the guard (core.model.guard: its view stage tells a lateral
from a frontal). A study whose chest images are all laterals gets no findings and says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.pacs.connection import FIND_MODALITIES

if TYPE_CHECKING:
    from pydicom import Dataset

FRONTAL = ("PA", "AP")
LATERAL = ("LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "LATERAL DECUBITUS")
CHEST_PARTS = ("CHEST", "THORAX", "LUNG", "CHEST_TO_PELVIS", "TORSO")
SR_MODALITY = "SR"
INDICATION_KEYWORDS = ("ReasonForTheRequestedProcedure", "ReasonForStudy")


@dataclass
class Candidate:
    """One CR/DX image of a study, from its header."""
    series_uid: str
    sop_uid: str
    view: str                 # ViewPosition as written ('' when absent)
    body_part: str
    meta: Dataset             # the instance's header from WADO-RS metadata (no pixels)

    @property
    def kind(self) -> str:
        """'frontal', 'lateral' or 'unknown' (decided by the guard once decoded)."""
        v = self.view.upper()
        return "frontal" if v in FRONTAL else "lateral" if v in LATERAL else "unknown"


def is_chest(body_part: str) -> bool:
    """An image with no BodyPartExamined counts as a chest (the guard judges its pixels)."""
    return not body_part or body_part.upper().replace(" ", "_") in CHEST_PARTS


def candidates(series_list: list[Dataset], metadata_of) -> tuple[list[Candidate], list[str]]:
    """The chest CR/DX images of a study (``metadata_of(series_uid)`` reads a series' headers), and
    the series UIDs of its SRs."""
    images, srs = [], []
    for series in series_list:
        uid, modality = str(series.get("SeriesInstanceUID") or ""), str(series.get("Modality") or "")
        if not uid:
            continue
        if modality == SR_MODALITY:
            srs.append(uid)
            continue
        if modality not in FIND_MODALITIES:
            continue
        for meta in metadata_of(uid):
            sop = str(meta.get("SOPInstanceUID") or "")
            if not sop:
                continue
            images.append(Candidate(uid, sop, str(meta.get("ViewPosition") or "").strip(),
                                    str(meta.get("BodyPartExamined") or "").strip(), meta))
    return images, srs


def ordered(images: list[Candidate]) -> tuple[list[Candidate], list[Candidate], list[Candidate]]:
    """(frontal PA first then AP, unknown view, lateral) among the chest images."""
    chest = [c for c in images if is_chest(c.body_part)]
    frontal = sorted((c for c in chest if c.kind == "frontal"), key=lambda c: FRONTAL.index(c.view.upper()))
    return frontal, [c for c in chest if c.kind == "unknown"], [c for c in chest if c.kind == "lateral"]


def indication(ds: Dataset) -> str:
    """The indication written in an image's header ('' when there is none): from WADO-RS metadata, or
    the fetched file (what the log and the SR rest on)."""
    for keyword in INDICATION_KEYWORDS:
        value = ds.get(keyword)
        if value and str(value).strip():
            return str(value).strip()
    for item in ds.get("RequestAttributesSequence", []) or []:
        value = item.get("ReasonForTheRequestedProcedure") or item.get("ReasonForStudy")
        if value and str(value).strip():
            return str(value).strip()
    return ""
