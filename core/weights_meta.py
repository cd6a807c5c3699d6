"""The metadata of a weights file, read without torch.

The sidebar and every page need the model's facts (version, thresholds, evidence) before
any model is loaded; importing torch for that would put seconds on the first page view.
A safetensors file starts with an 8-byte little-endian header length and a JSON header
whose ``__metadata__`` holds our metadata under ``"cxr"`` (core.checkpoint writes it).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

from core.errors import CxrError

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "metadata.json"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the header size


class WeightsError(CxrError, RuntimeError):
    """The weights folder is missing, truncated or does not match this code."""


def read_metadata(weights_dir: Path) -> dict:
    path = Path(weights_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise WeightsError(f"no trained weights at {path}; train them with: "
                           f"python scripts/train.py --data DIR --out {weights_dir}")
    try:
        with open(path, "rb") as fh:
            (size,) = struct.unpack("<Q", fh.read(8))
            if size > _MAX_HEADER:
                raise ValueError("header too large")
            header = json.loads(fh.read(size))
        return json.loads(header["__metadata__"]["cxr"])
    except Exception as exc:
        raise WeightsError(f"{path} is damaged or not a weights file of this tool ({type(exc).__name__}); "
                           "retrain or restore it") from None
