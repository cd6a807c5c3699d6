"""Held-out evidence behind every probability the tool shows.

For each text mode, head and finding: the AUC on studies never used to train or tune, its 95%
bootstrap CI and the number of positives behind it. The source is the test split of the
shipped model (``eval/test_<mode>_<head>.json``) and, when a cross-validation summary of the
recipe is given (``scripts/cv.py``), its pooled out-of-fold AUC as well.

The rule (issue 9): a finding is *reliable from the image* only if its image-only AUC has a
CI lower bound of at least 0.60 on at least 10 held-out positives, on the test split and,
where there is one, in cross-validation. Findings that are not get no discordance flag
from the image, and every page and CLI marks their probabilities.
"""
from __future__ import annotations

import json
from pathlib import Path

from core.evaluation.eval_files import eval_name
from core.model.description import describe

MIN_CI_LOWER = 0.60
MIN_POSITIVES = 10
IMAGE_KEY = ("none", "image")        # the image-only task: text mode none, image head
RULE = (f"reliable from the image: image-only held-out AUC 95% CI lower bound >= {MIN_CI_LOWER:.2f} "
        f"on >= {MIN_POSITIVES} positives (test split, and cross-validation where available)")


def _passes(auc, ci, positives) -> bool:
    return auc is not None and auc == auc and ci is not None and ci[0] == ci[0] \
        and ci[0] >= MIN_CI_LOWER and positives >= MIN_POSITIVES


def _entry(auc, ci, positives, source: str) -> dict:
    auc = None if auc is None or auc != auc else round(float(auc), 4)
    ci = None if not ci or ci[0] != ci[0] else [round(float(ci[0]), 4), round(float(ci[1]), 4)]
    return {"auc": auc, "ci": ci, "positives": int(positives), "source": source,
            "reliable": _passes(auc, ci, positives)}


def build_evidence(eval_dir: Path, findings: list[str], modes: list[str], heads: list[str], *,
                   cv_summary: dict | None = None, split: str = "test") -> dict:
    """The ``evidence`` block of the weights' metadata (see the module docstring)."""
    eval_dir = Path(eval_dir)
    table: dict = {}
    for mode in modes:
        for head in heads:
            path = eval_dir / f"{eval_name(split, mode, head)}.json"
            if not path.is_file():
                continue
            res = json.loads(path.read_text())
            src = f"{split} split, {res.get('n_studies', '?')} studies"
            table.setdefault(mode, {})[head] = {
                f: _entry(res["auc"].get(f), res.get("auc_ci", {}).get(f), res.get("n_positive", {}).get(f, 0), src)
                for f in findings}
            cv = (cv_summary or {}).get("results", {}).get(f"{mode}_{head}")
            if cv:
                for f in findings:
                    c = cv["findings"][f]
                    table[mode][head][f]["cv"] = {
                        "pooled_auc": round(c["pooled_auc"], 4), "pooled_ci": [round(x, 4) for x in c["pooled_ci"]],
                        "positives": c["positives"], "fold_mean": round(c["fold_mean"], 4),
                        "fold_sd": round(c["fold_sd"], 4), "folds": cv_summary.get("n_folds_done")}
    image = table.get(IMAGE_KEY[0], {}).get(IMAGE_KEY[1], {})
    image_reliable = {}
    for f in findings:
        e = image.get(f)
        ok = bool(e and e["reliable"])
        if ok and "cv" in e:
            ok = _passes(e["cv"]["pooled_auc"], e["cv"]["pooled_ci"], e["cv"]["positives"])
        image_reliable[f] = ok
    return {"rule": RULE, "split": split, "table": table, "image_reliable": image_reliable,
            "cv": ({"folds_done": cv_summary.get("n_folds_done"), "folds": cv_summary.get("n_folds"),
                    "recipe": cv_summary.get("recipe"), "macro": _cv_macros(cv_summary)} if cv_summary else None)}


def _cv_macros(cv_summary: dict) -> dict:
    """"mode/head" -> pooled out-of-fold macro AUC [CI] and studies: the headline numbers the
    sidebar shows beside the test split's, so a lucky split is never quoted alone."""
    out = {}
    for key, res in (cv_summary.get("results") or {}).items():
        if res.get("macro_pooled") is None:
            continue
        mode, head = key.split("_", 1)
        out[f"{mode}/{head}"] = {"macro_auc": round(res["macro_pooled"], 4),
                                 "macro_auc_ci": [round(x, 4) for x in res.get("macro_pooled_ci") or []],
                                 "n_studies": res.get("n_studies")}
    return out


def unknown_entry() -> dict:
    return {"auc": None, "ci": None, "positives": 0, "source": "no held-out evaluation in these weights",
            "reliable": False, "test": None}


def evidence_for(description, mode: str, head: str, findings) -> dict[str, dict]:
    """finding -> {auc, ci, positives, reliable, source, test} for one text mode and head: the
    cross-validated out-of-fold AUC is the headline where the weights have one (more positives than the
    test split: 19-234 against 5-55), the test split's is kept under ``test``."""
    ev = describe(description).evidence
    return {f: headline(ev.entry(mode, head, f) if ev else None) for f in findings}


def headline(entry: dict | None) -> dict:
    """One stored evidence entry with the cross-validation estimate first (see ``evidence_for``)."""
    if not entry:
        return unknown_entry()
    test = {k: entry.get(k) for k in ("auc", "ci", "positives", "source")}
    cv = entry.get("cv")
    if not cv:
        return {**test, "reliable": entry.get("reliable", False), "test": None}
    return {"auc": cv["pooled_auc"], "ci": cv["pooled_ci"], "positives": cv["positives"],
            "source": f"cross-validation, {cv.get('folds') or '?'} folds, out-of-fold",
            "reliable": entry.get("reliable", False), "test": test}


def image_reliable(description, findings) -> dict[str, bool]:
    block = describe(description).image_reliable
    return {f: bool(block.get(f, False)) for f in findings}


def card_rows(description, eval_dir: Path, mode: str, head: str, findings) -> list[dict]:
    """One row per finding for the model card: the cross-validated AUC [CI] and its positives (the
    headline), the test split's beside it with its count, reliability from the image, and the
    decision's default operating point where the weights have one for this mode (fused head)."""
    from core.evaluation.operating_targets import default_name
    desc = describe(description)
    ev = evidence_for(desc, mode, head, findings)
    reliable = image_reliable(desc, findings)
    ops = desc.operating_points
    points = ops.for_mode(mode) if ops else {}
    decided_head = ops.head.get(mode) if ops else None
    rows = []
    for f in findings:
        e, t = ev[f], ev[f].get("test") or {}
        op = points.get(f, {}).get(default_name(mode)) if head == decided_head else None
        rows.append({
            "finding": f,
            "AUC [95% CI]": _auc_text(e),
            "positives": e["positives"],
            "evidence from": e.get("source"),
            "test split AUC (positives)": (f"{_auc_text(t)} ({t.get('positives')})" if t.get("auc") is not None
                                           else "—"),
            "from the image": "reliable" if reliable[f] else "NOT reliable",
            "operating point": default_name(mode) if op else "—",
            "sensitivity [95% CI]": _rate_text(op, "sensitivity") if op else "—",
            "specificity [95% CI]": _rate_text(op, "specificity") if op else "—",
            "PPV": f"{op['ppv']:.2f}" if op and op.get("ppv") is not None else "—",
        })
    return rows


def _auc_text(e: dict) -> str:
    return f"{e['auc']:.3f} [{e['ci'][0]:.2f}, {e['ci'][1]:.2f}]" if e.get("auc") is not None and e.get("ci") else "—"


def _rate_text(op: dict, key: str) -> str:
    ci = op.get(f"{key}_ci")
    return f"{op[key]:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if op.get(key) is not None and ci else "—"
