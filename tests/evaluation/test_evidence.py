"""core.evaluation.evidence: the held-out evidence table and the "reliable from the image" rule."""
from __future__ import annotations

import json

from core.evaluation.evidence import build_evidence, evidence_for, image_reliable

FINDINGS = ["Pneumonia", "Cardiomegaly", "Edema"]


def write_eval(folder, mode, head, auc, ci, pos):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"test_{mode}_{head}.json").write_text(json.dumps(
        {"n_studies": 600, "auc": auc, "auc_ci": ci, "n_positive": pos}))


def test_rule_needs_ci_lower_bound_and_positives(tmp_path):
    write_eval(tmp_path, "none", "image",
               {"Pneumonia": 0.67, "Cardiomegaly": 0.87, "Edema": 0.93},
               {"Pneumonia": [0.41, 0.9], "Cardiomegaly": [0.82, 0.91], "Edema": [0.85, 0.98]},
               {"Pneumonia": 6, "Cardiomegaly": 55, "Edema": 9})
    ev = build_evidence(tmp_path, FINDINGS, ["none"], ["image"])
    assert ev["image_reliable"] == {"Pneumonia": False, "Cardiomegaly": True, "Edema": False}   # Edema: 9 positives
    entry = ev["table"]["none"]["image"]["Cardiomegaly"]
    assert entry == {"auc": 0.87, "ci": [0.82, 0.91], "positives": 55, "source": "test split, 600 studies",
                     "reliable": True}


def test_cross_validation_can_only_take_reliability_away(tmp_path):
    write_eval(tmp_path, "none", "image", {f: 0.9 for f in FINDINGS}, {f: [0.8, 0.95] for f in FINDINGS},
               {f: 40 for f in FINDINGS})
    cv = {"n_folds": 3, "n_folds_done": 3, "results": {"none_image": {"findings": {
        f: {"pooled_auc": a, "pooled_ci": [a - 0.1, a + 0.05], "positives": 30, "fold_mean": a, "fold_sd": 0.05}
        for f, a in zip(FINDINGS, (0.55, 0.9, 0.75), strict=False)}}}}
    ev = build_evidence(tmp_path, FINDINGS, ["none"], ["image"], cv_summary=cv)
    assert ev["image_reliable"] == {"Pneumonia": False, "Cardiomegaly": True, "Edema": True}
    assert ev["table"]["none"]["image"]["Pneumonia"]["cv"]["pooled_auc"] == 0.55


def test_cross_validated_macro_rides_with_the_evidence(tmp_path):
    """The sidebar shows the cross-validated macro AUC beside the test split's (issue 9)."""
    write_eval(tmp_path, "none", "image", {f: 0.9 for f in FINDINGS}, {f: [0.8, 0.95] for f in FINDINGS},
               {f: 40 for f in FINDINGS})
    cv = {"n_folds": 3, "n_folds_done": 3, "results": {"none_image": {
        "macro_pooled": 0.71981, "macro_pooled_ci": [0.68, 0.756], "n_studies": 2494, "findings": {
            f: {"pooled_auc": 0.7, "pooled_ci": [0.6, 0.8], "positives": 30, "fold_mean": 0.7, "fold_sd": 0.05}
            for f in FINDINGS}}}}
    ev = build_evidence(tmp_path, FINDINGS, ["none"], ["image"], cv_summary=cv)
    assert ev["cv"]["macro"] == {"none/image": {"macro_auc": 0.7198, "macro_auc_ci": [0.68, 0.756],
                                                "n_studies": 2494}}


def test_weights_without_evidence_are_never_reliable():
    meta = {}
    assert image_reliable(meta, FINDINGS) == {f: False for f in FINDINGS}
    assert all(e["auc"] is None and not e["reliable"] for e in evidence_for(meta, "none", "image", FINDINGS).values())
