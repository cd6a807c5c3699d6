"""CSV tables of the dataset readers (plain or gzip), checked for their columns, and the
CheXpert labeller's observation columns that MIMIC-CXR-JPG and CheXpert share."""
from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

from core.data.labels import FINDINGS
from core.data.reports import DataLayoutError
from core.data.sources.policy import LabelValueError, apply_policy, parse_cell

# the 14 observations of the CheXpert labeller (MIMIC-CXR-JPG -chexpert/-negbio, CheXpert csvs)
OBSERVATIONS: tuple[str, ...] = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
    "Support Devices")


def read_table(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a CSV (``.csv`` or ``.csv.gz``); DataLayoutError when a required column is missing."""
    path = Path(path)
    try:
        raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
        text = raw.decode("utf-8-sig")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataLayoutError(f"{path.name} cannot be read ({type(exc).__name__})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise DataLayoutError(f"{path.name} lacks the column(s) {', '.join(missing)}")
    return list(reader)


def finding_labels(row: dict[str, str], policy: str, where: str) -> tuple[list[int], list[int], list[str]]:
    """(labels, mask, other positive observations) of one labeller row."""
    try:
        raw = [parse_cell(row.get(f)) for f in FINDINGS]
        extra = [o for o in OBSERVATIONS if o not in FINDINGS and parse_cell(row.get(o)) == 1]
    except LabelValueError as exc:
        raise DataLayoutError(f"{where}: {exc}") from None
    labels, mask = apply_policy(raw, policy)
    return labels, mask, [e.lower() for e in extra]


def find_file(root: Path, patterns: tuple[str, ...], what: str) -> Path:
    for pattern in patterns:
        hits = sorted(Path(root).glob(pattern))
        if hits:
            return hits[-1]  # the newest version when several are present
    raise DataLayoutError(f"{root} has no {what} ({' or '.join(patterns)})")
