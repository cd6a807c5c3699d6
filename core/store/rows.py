"""One prediction as the log records it (``LogEntry``), checked where it is made: every value checked
and made JSON-safe, names reduced to a base name (or a hash), so a bad row never reaches the file."""
from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from core.data.labels import DECISIONS, FINDINGS, HEADS, TEXT_MODES
from core.errors import LogEntryError
from core.store.schema import prob_column, utc_iso

MAX_REVIEW_PX = 256
VERDICTS: tuple[str, ...] = ("present", "absent", "uncertain")
SOURCES: tuple[str, ...] = ("predict", "batch", "cli")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise LogEntryError("image_png must be PNG bytes; pass the review copy core.data.images makes")
    return struct.unpack(">II", data[16:24])


def _probs(name: str, values: Mapping[str, float | None] | None,
           findings: Sequence[str] = FINDINGS) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for finding, value in (values or {}).items():
        if finding not in findings:
            raise LogEntryError(f"{name} has unknown finding {finding!r}; use one of {', '.join(findings)}")
        if value is not None:
            value = float(value)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise LogEntryError(f"{name}[{finding!r}] = {value} is not a probability; pass a number in [0, 1]")
        out[finding] = value
    return out


def _thresholds(values: Mapping[str, Any], findings: Sequence[str] = FINDINGS) -> dict[str, Any]:
    """finding -> threshold (the fused head's), or head -> finding -> threshold (every head's)."""
    if values and all(isinstance(v, Mapping) for v in values.values()):
        unknown = [h for h in values if h not in HEADS]
        if unknown:
            raise LogEntryError(f"thresholds has unknown heads {unknown}; use {', '.join(HEADS)}")
        return {head: _probs(f"thresholds[{head!r}]", per, findings) for head, per in values.items()}
    return _probs("thresholds", values, findings)


def _score(value) -> float:
    value = float(value or 0.0)
    if not math.isfinite(value) or value < 0:
        raise LogEntryError(f"discordance_score is {value}; pass a finite number >= 0")
    return value


def _evidence(values: Mapping[str, Any] | None, findings: Sequence[str] = FINDINGS) -> dict[str, dict]:
    """finding -> {auc, ci, positives, reliable, source}: only those keys, JSON-safe."""
    out = {}
    for finding, e in (values or {}).items():
        if finding not in findings:
            raise LogEntryError(f"evidence has unknown finding {finding!r}; use one of {', '.join(findings)}")
        e = e or {}
        auc = e.get("auc")
        out[finding] = {"auc": None if auc is None or auc != auc else float(auc),
                        "ci": list(e["ci"]) if e.get("ci") else None, "positives": int(e.get("positives") or 0),
                        "reliable": bool(e.get("reliable")), "source": str(e.get("source") or "")}
    return out


def _sha256(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = value.lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise LogEntryError(f"{name} is not a SHA-256; pass its 64 hex digits")
    return value


def _finding_names(findings: Sequence[str] | None) -> tuple[str, ...]:
    """The model's findings, checked: distinct, non-empty names of at most 64 printable characters."""
    names = tuple(FINDINGS if findings is None else findings)
    bad = [f for f in names if not isinstance(f, str) or not f.strip() or len(f) > 64 or not f.isprintable()]
    if bad or len(set(names)) != len(names) or not names:
        raise LogEntryError(f"findings {list(names)} are not distinct names; pass the model's labels")
    return names


def hashed_name(name: str | None, data: bytes) -> str:
    """A stored name that names no one: 'upload-<first 12 hex of the file's SHA-256>' plus the
    original extension (PACS exports often name files after patients)."""
    suffix = Path(safe_name(name)).suffix.lower()
    suffix = suffix if suffix in (".png", ".jpg", ".jpeg", ".dcm", ".dicom") else ""
    return f"upload-{hashlib.sha256(data).hexdigest()[:12]}{suffix}"


def safe_name(name: str | None) -> str:
    """Base name only: a client may send a full path, which can name a patient or a folder."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in base if c.isprintable())[:255]


@dataclass(frozen=True, kw_only=True)
class LogEntry:
    """One prediction as the log records it: made once (core.serving.predict_and_log.log_entry), passed
    as one value (``store.log_prediction(entry)``, ``store.log_many(entries)``), checked when made, so an
    entry that exists can be written. ``findings``: those of the model that made it
    (core.model.description; None: the five of core.data.labels)."""
    model_version: str
    image_png: bytes | None          # the review copy (core.data.images), at most MAX_REVIEW_PX a side
    image_name: str | None
    image_sha256: str | None
    text: str | None
    text_mode: str
    fusion: Mapping[str, float]
    image: Mapping[str, float]
    text_probs: Mapping[str, float | None] | None
    thresholds: Mapping[str, Any]    # finding -> threshold (the fused head's), or head -> finding -> threshold
    discordant: Sequence[str] = ()
    out_of_distribution: bool = False
    ood_score: float | None = None
    source: str = "predict"
    text_sha256: str | None = None   # None: the text's own
    created_at: datetime | str | None = None  # None: when it is written
    discordance_score: float = 0.0
    evidence: Mapping[str, Any] | None = None
    image_reliable: Mapping[str, bool] | None = None
    original_name: bool = True       # False: image_name was made from the file's hash (hashed_name)
    findings: Sequence[str] | None = None
    calibrated: Mapping[str, bool] | None = None
    decision: Mapping[str, str] | None = None
    operating_point_name: str = ""
    operating_point: Mapping[str, Mapping[str, Any]] | None = None
    not_assessed: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        self.row()  # raises LogEntryError here, where the entry is made, not halfway through a batch

    @property
    def finding_names(self) -> tuple[str, ...]:
        """The model's findings, checked (the log gains a column for any it has not seen)."""
        return _finding_names(self.findings)

    def row(self) -> dict[str, Any]:
        """The entry as a row of the predictions table; ``created_at`` None is the time of this call."""
        findings = _finding_names(self.findings)
        if self.text_mode not in TEXT_MODES:
            raise LogEntryError(f"text_mode {self.text_mode!r} is unknown; use one of {', '.join(TEXT_MODES)}")
        if self.source not in SOURCES:
            raise LogEntryError(f"source {self.source!r} is unknown; use one of {', '.join(SOURCES)}")
        image_png = None if self.image_png is None else bytes(self.image_png)
        if image_png is not None:
            width, height = _png_size(image_png)
            if max(width, height) > MAX_REVIEW_PX:
                raise LogEntryError(f"image_png is {width}x{height}; "
                                    f"pass a review copy of at most {MAX_REVIEW_PX} px a side")
        discordant = list(self.discordant or ())
        unknown = [f for f in discordant if f not in findings]
        if unknown:
            raise LogEntryError(f"discordant has unknown findings {unknown}; use names from {', '.join(findings)}")
        text = self.text or ""
        text_sha256 = self.text_sha256
        if text_sha256 is None and text:
            text_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
        fusion_p = _probs("fusion", self.fusion, findings)
        decision = _decisions(self.decision, findings)
        return {
            "created_at": utc_iso(self.created_at),
            "model_version": str(self.model_version),
            "image_sha256": _sha256("image_sha256", self.image_sha256),
            "text_sha256": _sha256("text_sha256", text_sha256),
            "image_png": image_png,
            "image_name": safe_name(self.image_name),
            "text": text,
            "text_mode": self.text_mode,
            "fusion": json.dumps(fusion_p),
            "image": json.dumps(_probs("image", self.image, findings)),
            "text_probs": json.dumps(_probs("text_probs", self.text_probs, findings)),
            "thresholds": json.dumps(_thresholds(self.thresholds, findings)),
            "discordant": json.dumps(discordant),
            "n_discordant": len(discordant),
            "out_of_distribution": int(bool(self.out_of_distribution)),
            "ood_score": None if self.ood_score is None else float(self.ood_score),
            "source": self.source,
            **{prob_column(f): fusion_p.get(f) for f in findings},
            "discordance_score": _score(self.discordance_score),
            "evidence": json.dumps(_evidence(self.evidence, findings)),
            "image_reliable": json.dumps({f: bool(v) for f, v in (self.image_reliable or {}).items() if f in findings}),
            "calibrated": json.dumps({f: bool(v) for f, v in (self.calibrated or {}).items() if f in findings}),
            "original_name": int(bool(self.original_name)),
            "decision": json.dumps(decision),
            "operating_point_name": str(self.operating_point_name or ""),
            "operating_point": json.dumps({f: dict(v) for f, v in (self.operating_point or {}).items()
                                           if f in findings}),
            "not_assessed": json.dumps({f: str(v) for f, v in (self.not_assessed or {}).items() if f in findings}),
            "n_flagged": sum(1 for v in decision.values() if v == "flagged") if decision else None,
        }


def _decisions(values: Mapping[str, str] | None, findings: Sequence[str]) -> dict[str, str]:
    out = {}
    for f, v in (values or {}).items():
        if f not in findings:
            raise LogEntryError(f"decision has unknown finding {f!r}; use names from {', '.join(findings)}")
        if v not in DECISIONS:
            raise LogEntryError(f"decision {v!r} for {f} is unknown; use one of {', '.join(DECISIONS)}")
        out[f] = v
    return out
