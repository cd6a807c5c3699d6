"""The metadata of a weights file, read without torch.

The sidebar and every page need the model's facts (version, thresholds, evidence) before
any model is loaded; importing torch for that would put seconds on the first page view.
A safetensors file starts with an 8-byte little-endian header length and a JSON header
whose ``__metadata__`` holds our metadata under ``"cxr"`` (core.model.checkpoint writes it).
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from core.data.labels import FINDINGS, HEADS, TEXT_MODES
from core.errors import CxrError

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "metadata.json"
INT8_FILE = "image_int8.safetensors"  # the int8 image encoder's calibration (core.model.int8_image)
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the header size


class WeightsError(CxrError, RuntimeError):
    """The weights folder is missing, truncated or does not match this code."""


def read_metadata(weights_dir: Path) -> dict:
    path = Path(weights_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise WeightsError(f"no trained weights at {path}; train them with: "
                           f"python scripts/train.py --data DIR --out {weights_dir}")
    try:
        return _header_metadata(path, "cxr")
    except Exception as exc:
        raise WeightsError(f"{path} is damaged or not a weights file of this tool ({type(exc).__name__}); "
                           "retrain or restore it") from None


def _header_metadata(path: Path, key: str) -> dict:
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        if size > _MAX_HEADER:
            raise ValueError("header too large")
        header = json.loads(fh.read(size))
    return json.loads(header["__metadata__"][key])


def read_int8_info(weights_dir: Path) -> dict | None:
    """What the int8 calibration file says of itself (made for which encoder, on what, and the
    validation-split changes it measured), or None when there is no readable one."""
    path = Path(weights_dir) / INT8_FILE
    try:
        return _header_metadata(path, "int8") if path.is_file() else None
    except Exception:  # noqa: BLE001 — a damaged file is simply not used (core.model.int8_image)
        return None


# What a model predicts, read from its weights: its findings, heads and text modes.
class FactsError(CxrError, ValueError):
    """The weights' findings, heads or text modes do not fit the model or this code."""


@dataclass(frozen=True)
class ModelFacts:
    findings: tuple[str, ...] = FINDINGS
    heads: tuple[str, ...] = HEADS
    text_modes: tuple[str, ...] = TEXT_MODES

    def to_metadata(self) -> dict:
        return {"labels": list(self.findings), "heads": list(self.heads), "text_modes": list(self.text_modes)}


def model_facts(metadata: dict | None) -> ModelFacts:
    """Findings, heads and text modes of the weights with this metadata (constants where absent)."""
    metadata = metadata or {}
    facts = ModelFacts(findings=tuple(metadata.get("labels") or FINDINGS),
                       heads=tuple(metadata.get("heads") or HEADS),
                       text_modes=tuple(metadata.get("text_modes") or TEXT_MODES))
    # the architecture (core.model.fusion) implements these heads and modes, in this order
    if facts.heads != HEADS or facts.text_modes != TEXT_MODES:
        raise FactsError(f"these weights have heads {list(facts.heads)} and text modes {list(facts.text_modes)}; "
                         f"this code implements {list(HEADS)} and {list(TEXT_MODES)}: update the tool")
    if len(set(facts.findings)) != len(facts.findings) or not all(isinstance(f, str) and f.strip()
                                                                  for f in facts.findings):
        raise FactsError(f"the weights' findings {list(facts.findings)} must be distinct names; retrain them")
    return facts
