"""What the command line prints of a prediction (scripts/predict.py): the JSON object of one study, the
batch CSV's header and rows, and the plain text. Every number goes through the one policy
(core.serving.decision) and the one rule for what a reader sees (``Prediction.shown``)."""
from __future__ import annotations

from core.data.labels import MODE_NAMES
from core.serving.decision import decide


def result_json(pred) -> dict:
    """The ``--json`` object of one study (see scripts/predict.py's docstring for its keys)."""
    d = pred.to_json()
    out = {k: d[k] for k in ("fusion", "image", "text", "discordant", "discordance",
                             "discordance_score", "out_of_distribution", "ood_score", "ood_reason", "text_mode",
                             "model", "image_reliable", "calibrated")}
    if not pred.has_text:  # the text head read nothing: its numbers would mean nothing
        out["text"] = None
    # held-out evidence behind each fused probability (core.evaluation.evidence): auc, ci, positives, reliable
    # held-out evidence: the cross-validated AUC first, the test split's under "test"
    out["evidence"] = {f: {k: e.get(k) for k in ("auc", "ci", "positives", "reliable", "source", "test")}
                       for f, e in d["evidence"].items()}
    # the one decision per finding (core.serving.decision) and the number a reader may see
    out["decision"], out["operating_point"] = pred.decision, pred.operating_point
    out["operating_point_name"], out["not_assessed"] = pred.operating_point_name, pred.not_assessed
    # the threshold of each assessed finding's decision (the operating point's)
    out["thresholds"] = {f: op["threshold"] for f, op in pred.operating_point.items()}
    out["probability"] = {f: pred.shown(f) for f in pred.fusion}
    return out


def batch_header(predictor) -> list[str]:
    return ["image", "id", "text_mode", *predictor.findings, "discordant", "out_of_distribution", "operating_point",
            *[f"decision_{f}" for f in predictor.findings]]


def batch_row(row, p, findings) -> list:
    """One study of the batch CSV (core.serving.batch_csv.BatchRow): the fused probabilities (the model's),
    then the decisions."""
    return [row.image, row.id, p.text_mode, *[f"{p.fusion[f]:.6f}" for f in findings],
            ";".join(p.discordant), int(p.out_of_distribution), p.operating_point_name,
            *[p.decision.get(f, "") for f in findings]]


def plain_lines(description, pred, row_id: int | None) -> list[str]:
    """The plain output: the mode and operating point first, then one block per finding: its decision,
    the number a reader may see, what a flag means there, and the evidence behind it."""
    decisions = decide(pred, description, pred.operating_point_name)
    out = [f"text mode: {MODE_NAMES[pred.text_mode]}; operating point: {pred.operating_point_name}; "
          f"model {pred.model}" + (f"; logged as #{row_id}" if row_id is not None else "")]
    if pred.out_of_distribution:
        out.append(f"NOT ASSESSED: this does not look like a frontal chest X-ray ({pred.ood_reason})")
    out.append(decisions.headline())
    for d in decisions:  # the weights' own findings (core.model.description)
        if not d.assessed:
            out.append(f"{d.finding:14s} not assessed: {d.reason}")
            continue
        number = f"{d.probability:.3f}" if d.probability is not None else "no calibrated number"
        e = pred.evidence[d.finding]
        held = (f"AUC {e['auc']:.2f} [{e['ci'][0]:.2f}, {e['ci'][1]:.2f}], {e['positives']} pos. ({e['source']})"
                if e.get("auc") is not None and e.get("ci") else "no held-out evidence")
        flag = "  DISCORDANT" if d.finding in pred.discordant else ""
        out.append(f"{d.finding:14s} {d.status.upper()}  probability {number}{flag}")
        out.append(f"{'':14s} {d.sentence()}")
        out.append(f"{'':14s} evidence: {held}")
    return out
