"""The prediction log as flat rows and CSV (no image bytes), the shape reviewers download."""
from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from core.labels import FINDINGS, HEADS

CSV_COLUMNS: list[str] = (
    ["id", "created_at", "model_version", "source", "image_name", "original_name", "image_sha256", "text_sha256",
     "text_mode", "text", "note"]
    + [f"{head}_{f.lower()}" for head in HEADS for f in FINDINGS]
    + [f"threshold_{f.lower()}" for f in FINDINGS]
    + ["discordant", "n_discordant", "discordance_score", "out_of_distribution", "ood_score"]
    + [f"{k}_{f.lower()}" for f in FINDINGS for k in ("reliable_from_image", "evidence_auc", "evidence_ci",
                                                      "evidence_positives")]
    + ["reviewed"] + [f"verdict_{f.lower()}" for f in FINDINGS] + ["reviewer", "reviewed_at"]
)
_HEAD_KEYS = {"fusion": "fusion", "image": "image", "text": "text_probs"}


def flatten(row: Mapping[str, Any]) -> dict[str, Any]:
    """A prediction row as flat values (no image bytes), the shape of the CSV export."""
    flat = {k: row.get(k) for k in CSV_COLUMNS if k in row and not isinstance(row.get(k), (dict, list))}
    for head, key in _HEAD_KEYS.items():
        for finding in FINDINGS:
            flat[f"{head}_{finding.lower()}"] = (row.get(key) or {}).get(finding)
    thresholds = row.get("thresholds") or {}
    thresholds = thresholds.get("fusion", thresholds)  # per-head thresholds: the fused head's
    for finding in FINDINGS:
        flat[f"threshold_{finding.lower()}"] = thresholds.get(finding)
    flat["discordant"] = ";".join(row.get("discordant") or [])
    evidence, reliable = row.get("evidence") or {}, row.get("image_reliable") or {}
    for finding in FINDINGS:
        e, low = evidence.get(finding) or {}, finding.lower()
        flat[f"reliable_from_image_{low}"] = reliable.get(finding) if reliable else None
        flat[f"evidence_auc_{low}"] = e.get("auc")
        flat[f"evidence_ci_{low}"] = "–".join(f"{c:.3f}" for c in e["ci"]) if e.get("ci") else None
        flat[f"evidence_positives_{low}"] = e.get("positives") if e else None
    verdicts = row.get("verdicts") or {}
    for finding in FINDINGS:
        flat[f"verdict_{finding.lower()}"] = (verdicts.get(finding) or {}).get("verdict")
    flat["reviewer"] = ";".join(sorted({v["reviewer"] for v in verdicts.values() if v.get("reviewer")}))
    flat["reviewed_at"] = max((v["updated_at"] for v in verdicts.values()), default=None)
    return flat


def export_csv(rows: list[Mapping[str, Any]]) -> str:
    """Rows from ``list_predictions`` as CSV text (free text kept verbatim, quoted as needed)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in flatten(row).items()})
    return buf.getvalue()
