"""The prediction log as flat rows and CSV (no image bytes), the shape reviewers download."""
from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from core.data.labels import FINDINGS, HEADS
from core.store.schema import finding_key


def csv_columns(findings: Sequence[str] = FINDINGS) -> list[str]:
    """The export's columns for these findings (the log's, PredictionStore.findings)."""
    return (
        ["id", "created_at", "model_version", "source", "image_name", "image_name_kind", "image_sha256",
         "text_sha256", "text_mode", "text", "note", "note_by", "note_at"]
        + [f"{head}_{finding_key(f)}" for head in HEADS for f in findings]
        + [f"threshold_{finding_key(f)}" for f in findings]
        + ["operating_point_name"]
        + [f"{k}_{finding_key(f)}" for f in findings for k in ("decision", "sensitivity", "specificity", "ppv")]
        + ["discordant", "n_discordant", "discordance_score", "out_of_distribution", "ood_score"]
        + ["evidence_for"]
        + [f"{k}_{finding_key(f)}" for f in findings for k in ("reliable_from_image", "evidence_auc", "evidence_ci",
                                                          "evidence_positives", "calibrated")]
        + ["reviewed"] + [f"verdict_{finding_key(f)}" for f in findings] + ["reviewer", "reviewed_at"]
    )


CSV_COLUMNS: list[str] = csv_columns(FINDINGS)  # the five of core.data.labels; a log that has seen more has more
_HEAD_KEYS = {"fusion": "fusion", "image": "image", "text": "text_probs"}


def row_findings(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The five of core.data.labels (every log has their columns), then any other finding of these
    rows in first-seen order."""
    return list(dict.fromkeys([*FINDINGS, *(f for r in rows for f in (r.get("fusion") or {}))]))


def flatten(row: Mapping[str, Any], findings: Sequence[str] = FINDINGS) -> dict[str, Any]:
    """A prediction row as flat values (no image bytes), the shape of the CSV export."""
    flat = {k: row.get(k) for k in csv_columns(()) if k in row and not isinstance(row.get(k), (dict, list))}
    for head, key in _HEAD_KEYS.items():
        for finding in findings:
            flat[f"{head}_{finding_key(finding)}"] = (row.get(key) or {}).get(finding)
    thresholds = row.get("thresholds") or {}
    thresholds = thresholds.get("fusion", thresholds)  # per-head thresholds: the fused head's
    for finding in findings:
        flat[f"threshold_{finding_key(finding)}"] = thresholds.get(finding)
    flat["discordant"] = ";".join(row.get("discordant") or [])
    if row.get("text_mode") != "report":  # report QA exists in report mode only: no score, not 0
        flat["discordance_score"] = None
    flat["image_name_kind"] = None if row.get("original_name") is None else (
        "original" if row["original_name"] else "hashed (upload-<hash>)")
    evidence, reliable = row.get("evidence") or {}, row.get("image_reliable") or {}
    calibrated = row.get("calibrated") or {}
    # the evidence columns are the fused number's, in the row's mode (image only: the image head's);
    # reliable_from_image is always the image-only evidence's verdict
    source = next((e.get("source") for e in evidence.values() if isinstance(e, dict) and e.get("source")), None)
    flat["evidence_for"] = (f"{row.get('text_mode')} mode, {'image' if row.get('text_mode') == 'none' else 'fused'}"
                            " head" + (f"; {source}" if source else "") if evidence else None)
    for finding in findings:
        e, low = evidence.get(finding) or {}, finding_key(finding)
        flat[f"reliable_from_image_{low}"] = reliable.get(finding) if reliable else None
        flat[f"evidence_auc_{low}"] = e.get("auc")
        flat[f"evidence_ci_{low}"] = "–".join(f"{c:.3f}" for c in e["ci"]) if e.get("ci") else None
        flat[f"evidence_positives_{low}"] = e.get("positives") if e else None
        # whether fusion_<finding> went through the weights' recalibration (empty: not recorded, older rows)
        flat[f"calibrated_{low}"] = calibrated.get(finding) if calibrated else None
    # the decision shown when it was logged (empty: rows from before decisions were recorded)
    decision, points = row.get("decision") or {}, row.get("operating_point") or {}
    flat["operating_point_name"] = row.get("operating_point_name") or None
    for finding in findings:
        low, op = finding_key(finding), points.get(finding) or {}
        flat[f"decision_{low}"] = decision.get(finding)
        for key in ("sensitivity", "specificity", "ppv"):
            flat[f"{key}_{low}"] = op.get(key)
    verdicts = row.get("verdicts") or {}
    for finding in findings:
        flat[f"verdict_{finding_key(finding)}"] = (verdicts.get(finding) or {}).get("verdict")
    flat["reviewer"] = ";".join(sorted({v["reviewer"] for v in verdicts.values() if v.get("reviewer")}))
    flat["reviewed_at"] = max((v["updated_at"] for v in verdicts.values()), default=None)
    return flat


def export_csv(rows: list[Mapping[str, Any]], findings: Sequence[str] | None = None) -> str:
    """Rows from ``list_predictions`` as CSV text (free text kept verbatim, quoted as needed), one
    group of columns per finding (default: the rows' own findings)."""
    findings = row_findings(rows) if findings is None else list(findings)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=csv_columns(findings), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in flatten(row, findings).items()})
    return buf.getvalue()
