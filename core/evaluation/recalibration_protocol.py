"""The recalibration protocol (scripts/recalibrate.py runs it; docs/calibration.md states its numbers):
measure the maps where nothing scores its own map, gate them on the recipe's cross-validation, say
which targets they meet, and write the recalibrated description.

- ``measure_cv``: the recipe's out-of-fold predictions (3 models), ``within`` (each model's predictions
  through a map fitted on that model's other held-out reports) and ``across`` (fold k by the map of the
  other folds);
- ``measure_test`` (maps fitted on val: the test split, once) or ``measure_crossfit`` (maps fitted on
  val+test: each of ``parts`` parts scored by a map fitted on the others);
- ``gate``: every map must be confirmed by the within-model cross-validation (or, where the recipe's folds
  have too few positives, by the shipped model's own cross-fit); ``Unconfirmed`` says which and why;
- ``recalibrated``: the description with the maps, thresholds and report-QA points through them.

Which findings are pooled and judged is read from the weights' evidence (``image_reliable``), never named.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.evaluation.cross_validation import read_predictions_csv
from core.evaluation.cv_layout import CvLayout, oof_key, oof_path
from core.evaluation.eval_files import eval_pairs
from core.evaluation.recalibration import (
    TASKS,
    FoldPredictions,
    Maps,
    NotCalibrated,
    Recalibration,
    apply_maps,
    before_after,
    cross_fitted,
    map_discordance,
    map_thresholds,
    pooled_before_after,
)
from core.model.description import ModelDescription

FORMULA = "p' = sigmoid(a * logit(p) + b)"
SLOPE_MIN_POSITIVES = 50  # the slope target is judged where the fitting data hold this many positives
SCRIPT = "scripts/recalibrate.py"


def fitting_data(inputs: dict, splits: list[str]):
    """({mode: {head: P}}, Y) of the named splits stacked (rows in split order)."""
    probs: dict = {}
    Y = None
    for mode, head in inputs[splits[0]]:
        P = np.concatenate([inputs[s][(mode, head)][1] for s in splits])
        probs.setdefault(mode, {})[head] = P
        Y = np.concatenate([inputs[s][(mode, head)][2] for s in splits])
    return probs, Y


def cv_folds(cv_root: Path, key: str) -> list[FoldPredictions]:
    """The out-of-fold predictions of one key (``oof_key(mode, head)``) of every fold that has them."""
    layout = CvLayout(cv_root)
    return [FoldPredictions(*read_predictions_csv(oof_path(layout.root / name, key)))
            for name in sorted(layout.folds_with(key))]


def measure_cv(cv_root: Path, findings, pool, *, inner: int, min_positives: int, n_boot: int) -> dict:
    """scheme -> 'mode/head' -> finding -> before/after (core.evaluation.recalibration.before_after)."""
    out = {"root": str(cv_root), "folds": sorted(p.name for p in cv_root.glob("fold*") if p.is_dir()),
           "within": {}, "across": {}, "pooled": {"within": {}, "across": {}}}
    for mode, head in eval_pairs():
        folds = cv_folds(cv_root, oof_key(mode, head))
        if len(folds) < 2:
            continue
        for scheme in ("within", "across"):
            cf = cross_fitted(folds, findings, scheme=scheme, inner=inner, min_positives=min_positives)
            res = before_after(cf["P"], cf["Q"], cf["Y"], findings, cf["calibrated"], n_boot=n_boot)
            out[scheme][f"{mode}/{head}"] = res
            out["pooled"][scheme][f"{mode}/{head}"] = pooled_before_after(cf["P"], cf["Q"], cf["Y"], findings,
                                                                          cf["calibrated"], pool)
    out["n_reports"] = {k: v[findings[0]]["before"]["n"] for k, v in out["within"].items()}
    return out


def measure_test(inputs: dict, maps: Maps, findings, pool, *, n_boot: int) -> tuple[dict, dict]:
    """('mode/head' -> finding -> before/after, 'mode/head' -> pooled top bin before/after) on test."""
    out, pooled = {}, {}
    recal = Recalibration(maps=maps)
    for (mode, head), (_, P, Y) in inputs["test"].items():
        Q = apply_maps(recal, mode, head, P, findings)
        calibrated = {f: maps[mode][head][f].calibrated for f in findings}
        out[f"{mode}/{head}"] = before_after(P, Q, Y, findings, calibrated, n_boot=n_boot)
        pooled[f"{mode}/{head}"] = pooled_before_after(P, Q, Y, findings, calibrated, pool)
    return out, pooled


def measure_crossfit(inputs: dict, splits: list[str], findings, pool, *, parts: int, min_positives: int,
                     n_boot: int) -> tuple[dict, dict]:
    """As measure_test, on the fitting reports themselves, each scored by a map fitted on the other
    ``parts - 1`` parts of them (the shipped model's own predictions; no report scores its own map)."""
    out, pooled = {}, {}
    for mode, head in inputs[splits[0]]:
        fold = FoldPredictions([u for s in splits for u in inputs[s][(mode, head)][0]],
                               np.concatenate([inputs[s][(mode, head)][1] for s in splits]),
                               np.concatenate([inputs[s][(mode, head)][2] for s in splits]))
        cf = cross_fitted([fold], findings, scheme="within", inner=parts, min_positives=min_positives)
        out[f"{mode}/{head}"] = before_after(cf["P"], cf["Q"], cf["Y"], findings, cf["calibrated"], n_boot=n_boot)
        pooled[f"{mode}/{head}"] = pooled_before_after(cf["P"], cf["Q"], cf["Y"], findings, cf["calibrated"], pool)
    return out, pooled


@dataclass(frozen=True)
class Unconfirmed:
    """A map the cross-validation does not confirm, and why."""
    mode: str
    head: str
    finding: str
    why: str

    def __str__(self) -> str:
        return f"{self.mode}/{self.head}/{self.finding}: {self.why}"


def gate(maps: Maps, cv: dict, shipped: dict | None = None) -> list[Unconfirmed]:
    """Maps the within-model cross-validation does not confirm (``shipped``: the shipped model's own
    cross-fit, which confirms a map where the recipe's folds have too few positives to fit one)."""
    bad = []
    for mode, heads in maps.items():
        for head, per in heads.items():
            cvres = cv["within"].get(f"{mode}/{head}")
            for f, m in per.items():
                if not m.calibrated:
                    continue
                if cvres is None:
                    bad.append(Unconfirmed(mode, head, f, "no cross-validation predictions to confirm it"))
                    continue
                r = cvres[f]
                own = (shipped or {}).get(f"{mode}/{head}", {}).get(f, {})
                if not r["calibrated"] and own.get("calibrated"):
                    r = own
                if not r["calibrated"]:
                    bad.append(Unconfirmed(mode, head, f, "cross-validation cannot calibrate it in every model "
                                           "(too few positives, or a score that does not rank it)"))
                    continue
                s0, s1 = r["before"]["slope"], r["after"]["slope"]
                if not (math.isfinite(s0) and math.isfinite(s1) and s0 > 0 and s1 > 0):
                    bad.append(Unconfirmed(mode, head, f, "no finite calibration slope in cross-validation"))
                elif abs(math.log(s1)) > abs(math.log(s0)) + 1e-9:
                    bad.append(Unconfirmed(mode, head, f,
                                           f"cross-validated slope {s0:.2f} -> {s1:.2f}, farther from 1"))
    return bad


def drop_unconfirmed(maps: Maps, unconfirmed: list[Unconfirmed]) -> Maps:
    """The maps with every unconfirmed one replaced by "not calibrated" (--drop-unconfirmed)."""
    out = {m: {h: dict(per) for h, per in heads.items()} for m, heads in maps.items()}
    for u in unconfirmed:
        old = out[u.mode][u.head][u.finding]
        out[u.mode][u.head][u.finding] = NotCalibrated("not confirmed by cross-validation", old.positives, old.n)
    return out


def targets(cv: dict, test: dict, pooled: dict, pool: list[str], fitted_positives: dict[str, int]) -> dict:
    """The issue's targets per task: the top bin within 25% for every supported finding (and pooled over
    those a number is shown for); the slope 0.8-1.25 where the fitting data hold ``SLOPE_MIN_POSITIVES``
    positives (fewer leave its interval too wide to judge). On the within-model CV and on test."""
    out = {}
    for source, block in (("cv_within", cv["within"]), ("cv_across", cv["across"]), ("test", test)):
        out[source] = {}
        for task, (mode, head) in TASKS.items():
            res = block.get(f"{mode}/{head}")
            if res is None:
                continue
            row = {}
            for f in pool:
                if f not in res:
                    continue
                r = res[f]
                t = r["targets"] or {}
                judged = fitted_positives.get(f, 0) >= SLOPE_MIN_POSITIVES
                row[f] = {"calibrated": r["calibrated"],
                          "slope_in_band": t.get("slope_in_band") if judged else None,
                          "top_bin_within": t.get("top_bin_within"),
                          "top_bin_n": (r["after"] or r["before"])["top_bin"]["n"]}
            tb = ((pooled or {}).get(source, {}).get(f"{mode}/{head}") or {}).get("after")
            if tb is not None:
                row["pooled"] = {"findings": tb["findings"], "top_bin_within": tb["within_tolerance"],
                                 "top_bin_n": tb["n"]}
            out[source][task] = row
    return out


def recalibrated(desc: ModelDescription, maps: Maps, results: dict) -> ModelDescription:
    """The description with the maps, and the thresholds and report-QA points carried through them (a
    monotone map: every decision stays the same), a new version and its refit entry. Thresholds and points
    start from those before any earlier recalibration, so recalibrating twice does not compound."""
    previous = desc.recalibration.extra if desc.recalibration else {}
    base_thresholds = previous.get("thresholds_before") or desc.thresholds
    base_points = previous.get("discordance_points_before") or (desc.discordance.points if desc.discordance else None)
    when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    block = Recalibration(maps=maps, method="platt", extra={
        "formula": results["formula"], "fitted_on": results["fitted_on"], "min_positives": results["min_positives"],
        "thresholds_before": base_thresholds, "discordance_points_before": base_points,
        "cv": {"root": results["cv"]["root"], "scheme": "within", "inner": results["inner"]},
        "at": when, "script": SCRIPT})
    discordance = replace(desc.discordance, points=base_points) if desc.discordance else None
    return desc.refitted("recal", script=SCRIPT, when=when,
                         what="per-finding Platt maps; thresholds and report-QA points through them",
                         recalibration=block, thresholds=map_thresholds(base_thresholds, block),
                         discordance=map_discordance(discordance, block))

