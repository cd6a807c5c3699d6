"""Recalibration (issue 20): Platt maps per finding, their measurement, the honest protocol, the
shipped numbers and the model card's calibration table. Fast: no model runs here."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.data.labels import FINDINGS
from core.evaluation import recalibration as R
from core.model.description import read_description
from core.model.description_blocks import DiscordancePoints
from core.model.recalibration_maps import calibrated_flags

ROOT = Path(__file__).resolve().parents[2]
CV_ROOT = ROOT / "weights" / "eval" / "cv" / "img15-3fold"


def _overconfident(n: int, seed: int, *, prevalence_shift: float = -2.0, spread: float = 2.0):
    """Labels drawn from sigmoid(z), z ~ N(shift, 1.3), reported as sigmoid(spread * z + 2.5): too
    spread out (true slope 1 / spread) and about twice too high where p >= 0.3 (as issue 20 found)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.3, n) + prevalence_shift
    y = (rng.random(n) < R.sigmoid(z)).astype(float)
    return y, R.sigmoid(spread * z + 2.5)


def test_a_miscalibrated_score_gets_slope_one_on_data_the_map_never_saw():
    y_fit, p_fit = _overconfident(4000, 0)
    y, p = _overconfident(4000, 1)
    before = R.calibration_line(y, p)
    m = R.fit_platt(y_fit, p_fit)
    after = R.calibration_line(y, m(p))
    assert 0.4 < before[0] < 0.6                      # the score is twice too spread out
    assert 0.85 < after[0] < 1.15 and abs(after[1]) < 0.25
    tb = R.top_bin(y, m(p))
    assert tb["n"] > 50 and tb["within_tolerance"]     # the top bin's observed rate meets its mean prediction
    assert not R.top_bin(y, p)["within_tolerance"]


def test_measure_gives_bootstrap_cis_that_hold_the_point_estimate():
    y, p = _overconfident(1500, 2)
    m = R.measure(y, p, n_boot=200)
    lo, hi = m["slope_ci"]
    assert lo < m["slope"] < hi and m["positives"] == int(y.sum()) and m["n"] == 1500
    ci = m["top_bin"]["observed_ci"]
    assert ci[0] <= m["top_bin"]["observed"] <= ci[1]


def test_thresholds_through_the_map_keep_every_decision():
    rng = np.random.default_rng(3)
    y, p = _overconfident(3000, 4)
    maps = R.fit_maps({"none": {"image": np.tile(p[:, None], (1, len(FINDINGS)))}},
                      np.tile(y[:, None], (1, len(FINDINGS))), FINDINGS)
    block = R.Recalibration(maps=maps)
    P = np.concatenate([rng.random((2000, len(FINDINGS))) ** 3, p[:, None].repeat(len(FINDINGS), 1)])
    thresholds = {"none": {"image": {f: float(t) for f, t in zip(FINDINGS, rng.random(len(FINDINGS)) * 0.6,
                                                                     strict=True)}}}
    moved = R.map_thresholds(thresholds, block)
    Q = R.apply_maps(block, "none", "image", P, FINDINGS)
    for k, f in enumerate(FINDINGS):
        assert moved["none"]["image"][f] != thresholds["none"]["image"][f]
        before = P[:, k] >= thresholds["none"]["image"][f]
        after = Q[:, k] >= moved["none"]["image"][f]
        assert (before == after).all(), f
    # a probability exactly at its threshold stays at it
    t = thresholds["none"]["image"][FINDINGS[0]]
    assert R.apply_maps(block, "none", "image", np.full((1, len(FINDINGS)), t), FINDINGS)[0, 0] >= \
        moved["none"]["image"][FINDINGS[0]]


def test_report_qa_points_move_through_the_report_image_map():
    y, p = _overconfident(3000, 5)
    block = R.Recalibration(maps={"report": {"image": {"Edema": R.fit_platt(y, p)}}})
    out = R.map_discordance(DiscordancePoints(budget=0.04, points={"Edema": {"high": 0.5, "low": None}}), block)
    assert out.points["Edema"]["low"] is None
    assert out.points["Edema"]["high"] == pytest.approx(float(R.map_for(block, "report", "image", "Edema")(0.5)))


def test_too_few_positives_gives_no_map_and_the_finding_is_marked():
    rng = np.random.default_rng(6)
    p = rng.random(467)
    y = np.zeros(467)
    y[:12] = 1                                         # Edema's 12 validation positives
    assert R.fit_platt(y, p) is None
    maps = R.fit_maps({"none": {"image": p[:, None]}}, y[:, None], ["Edema"])
    entry = maps["none"]["image"]["Edema"]
    assert isinstance(entry, R.NotCalibrated) and not entry.calibrated and "12 positives" in entry.reason
    block = R.Recalibration(maps=maps)
    assert calibrated_flags(block, "none", "image", ["Edema"]) == {"Edema": False}
    assert calibrated_flags(None, "none", "image", ["Edema"]) == {"Edema": True}   # older weights: as before
    assert (R.apply_maps(block, "none", "image", p[:, None], ["Edema"])[:, 0] == p).all()


def test_a_score_that_does_not_rank_gets_no_map():
    rng = np.random.default_rng(7)
    y = (rng.random(2000) < 0.2).astype(float)
    p = np.where(y == 1, 0.1, 0.3) + rng.random(2000) * 0.01   # positives score lower
    assert R.fit_platt(y, p) is None


def _folds(n_folds=3, n=600, seed=8):
    out = []
    for k in range(n_folds):
        y, p = _overconfident(n, seed + k)
        out.append(R.FoldPredictions([f"f{k}-{i}" for i in range(n)], p[:, None], y[:, None]))
    return out


def test_cross_fitting_never_measures_a_map_on_what_fitted_it(monkeypatch):
    folds = _folds()
    seen = []
    real = R._fit_apply

    def spy(fit_uids, fit_y, fit_p, apply_uids, apply_p, **kw):
        seen.append((set(fit_uids), set(apply_uids)))
        return real(fit_uids, fit_y, fit_p, apply_uids, apply_p, **kw)
    monkeypatch.setattr(R, "_fit_apply", spy)
    for scheme in ("within", "across"):
        seen.clear()
        out = R.cross_fitted(folds, ["Edema"], scheme=scheme, inner=3)
        assert out["calibrated"]["Edema"]
        assert seen and all(not (fit & held) for fit, held in seen)
        measured = set().union(*(held for _, held in seen))
        assert measured == {u for f in folds for u in f.uids}          # every report measured once...
        assert sum(len(h) for _, h in seen) == len(measured)           # ...by exactly one map
        if scheme == "across":                                         # fold k's map: the other folds only
            for k, (fit, held) in enumerate(seen):
                assert held == set(folds[k].uids) and fit == {u for j, f in enumerate(folds) if j != k for u in f.uids}
        else:                                                          # within: the same model's other reports
            for fit, held in seen:
                fold = next(set(f.uids) for f in folds if held <= set(f.uids))
                assert fit <= fold
        s = R.calibration_line(out["Y"][:, 0], out["Q"][:, 0])[0]
        assert 0.8 < s < 1.25


def test_overlapping_fit_and_measure_sets_are_refused():
    folds = _folds()
    with pytest.raises(R.RecalibrationError, match="both in the fitting and the measured set"):
        R._fit_apply(["a", "b"], np.array([0, 1.0]), np.array([0.2, 0.8]), ["b", "c"], np.array([0.5, 0.5]),
                     min_positives=1, l2=1.0)
    dup = [folds[0], R.FoldPredictions(folds[0].uids, folds[1].P, folds[1].Y)]
    with pytest.raises(R.RecalibrationError, match="two folds"):
        R.cross_fitted(dup, ["Edema"], scheme="across")
    with pytest.raises(R.RecalibrationError):
        R.cross_fitted(folds, ["Edema"], scheme="pooled")


# -- the shipped recipe's cross-validated numbers (the issue's targets) ---------------------------
def _cv_task(mode: str, head: str) -> dict:
    from core.evaluation.cross_validation import read_predictions_csv
    folds = [R.FoldPredictions(*read_predictions_csv(p)) for p in sorted(CV_ROOT.glob(f"fold*/oof_{mode}_{head}.csv"))]
    cf = R.cross_fitted(folds, FINDINGS, scheme="within")
    return R.before_after(cf["P"], cf["Q"], cf["Y"], FINDINGS, cf["calibrated"], n_boot=0)


@pytest.mark.parametrize("mode,head", list(R.TASKS.values()), ids=list(R.TASKS))
def test_cross_validated_targets_on_the_shipped_recipe(mode, head):
    if not any(CV_ROOT.glob("fold*/oof_*.csv")):
        pytest.skip(f"no cross-validation predictions under {CV_ROOT}")
    res = _cv_task(mode, head)
    for f in ("Cardiomegaly", "Atelectasis"):
        assert res[f]["calibrated"], f
        assert R.SLOPE_BAND[0] <= res[f]["after"]["slope"] <= R.SLOPE_BAND[1], (f, res[f]["after"]["slope"])
        assert res[f]["before"]["slope"] < R.SLOPE_BAND[0] or f == "Cardiomegaly"   # it was miscalibrated
    assert res["Cardiomegaly"]["after"]["top_bin"]["within_tolerance"]
    # Edema: 20-24 positives per model, ~10 per fitting half: below the floor, so no map and the
    # product shows no probability for it (the issue's "cannot be calibrated")
    assert not res["Edema"]["calibrated"]


@pytest.mark.xfail(strict=True, reason="not reached: the recalibrated Atelectasis top bin (n = 35-40) is observed "
                   "at 0.17-0.23 against 0.36-0.38 predicted (docs/calibration.md); Platt cannot bend the "
                   "plateau of the score's top end, isotonic overfits on ~33 positives")
@pytest.mark.parametrize("mode,head", list(R.TASKS.values()), ids=list(R.TASKS))
def test_cross_validated_atelectasis_top_bin(mode, head):
    if not any(CV_ROOT.glob("fold*/oof_*.csv")):
        pytest.skip(f"no cross-validation predictions under {CV_ROOT}")
    assert _cv_task(mode, head)["Atelectasis"]["after"]["top_bin"]["within_tolerance"]


@pytest.mark.parametrize("mode,head", list(R.TASKS.values()), ids=list(R.TASKS))
def test_cross_validated_pooled_top_bin_the_issues_own_measure(mode, head):
    """Issue 20 found "among image-only predictions >= 0.3 for Edema, Cardiomegaly and Atelectasis, 25% were
    positive against a mean prediction of 0.56". Measured the same way over the numbers a user still reads
    (Edema shows none), cross-fitted: within 25% after, twice too high before."""
    if not any(CV_ROOT.glob("fold*/oof_*.csv")):
        pytest.skip(f"no cross-validation predictions under {CV_ROOT}")
    from core.evaluation.cross_validation import read_predictions_csv
    folds = [R.FoldPredictions(*read_predictions_csv(p)) for p in sorted(CV_ROOT.glob(f"fold*/oof_{mode}_{head}.csv"))]
    cf = R.cross_fitted(folds, FINDINGS, scheme="within")
    supported = [f for f, ok in read_description(ROOT / "weights").image_reliable.items() if ok]  # the evidence's
    pooled = R.pooled_before_after(cf["P"], cf["Q"], cf["Y"], FINDINGS, cf["calibrated"], supported)
    before, after = pooled["before"], pooled["after"]
    assert before["findings"] == ["Edema", "Cardiomegaly", "Atelectasis"] and not before["within_tolerance"]
    assert before["observed"] < 0.65 * before["mean_predicted"]
    assert after["findings"] == ["Cardiomegaly", "Atelectasis"] and after["n"] >= 200
    assert after["within_tolerance"], (after["mean_predicted"], after["observed"])


def test_pooled_top_bin_counts_only_the_numbers_shown():
    Y = np.array([[1, 0], [0, 0], [1, 1], [0, 1]], dtype=float)
    P = np.array([[0.5, 0.9], [0.4, 0.35], [0.2, 0.6], [0.31, 0.1]])
    pool = ["Edema", "Cardiomegaly", "Atelectasis"]
    both = R.pooled_top_bin(Y, P, ["Edema", "Cardiomegaly"], pool=pool)
    assert both["n"] == 6 and both["positives"] == 2 and both["findings"] == ["Edema", "Cardiomegaly"]
    only = R.pooled_top_bin(Y, P, ["Edema", "Cardiomegaly"], {"Edema": False, "Cardiomegaly": True}, pool=pool)
    assert only["n"] == 3 and only["positives"] == 1 and only["mean_predicted"] == pytest.approx((0.9 + 0.35 + 0.6) / 3)
    assert R.pooled_top_bin(Y, P, ["Pneumonia", "X"], pool=pool)["n"] == 0
    assert R.pooled_top_bin(Y, P, ["Edema", "Cardiomegaly"], pool=["Cardiomegaly"])["findings"] == ["Cardiomegaly"]


# -- the command line ----------------------------------------------------------------------------
def test_cli_refuses_bad_input_in_one_line(capsys, tmp_path):
    from scripts import recalibrate
    with pytest.raises(SystemExit) as exc:
        from scripts._cli import run_main
        run_main(lambda: recalibrate.main(["--inner", "1"]))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--inner" in err and "\n" not in err
    with pytest.raises(SystemExit) as exc:
        run_main(lambda: recalibrate.main(["--weights", str(tmp_path), "--dry-run"]))
    assert exc.value.code == 2 and "no trained weights" in capsys.readouterr().err


# -- the model card --------------------------------------------------------------------------------
def test_model_card_shows_the_per_finding_calibration_table(app_env, monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest
    shipped = ROOT / "weights" / "model.safetensors"
    if not shipped.is_file():
        pytest.skip("no shipped weights in weights/")
    weights = tmp_path / "w"
    (weights / "eval").mkdir(parents=True)
    (weights / "model.safetensors").symlink_to(shipped)   # its metadata only: the card loads no model
    y, p = _overconfident(800, 9)
    m = R.fit_platt(y, p)
    row = R.before_after(np.tile(p[:, None], (1, 2)), np.c_[m(p), p], np.tile(y[:, None], (1, 2)),
                         ["Cardiomegaly", "Edema"], {"Cardiomegaly": True, "Edema": False}, n_boot=50)
    block = {"none/image": row, "indication/fusion": row}
    (weights / "eval" / "recalibration.json").write_text(json.dumps({
        "fitted_on": {"split": "val", "n_reports": 467}, "min_positives": 20,
        "maps": {"none": {"image": {"Cardiomegaly": m.to_dict(), "Edema": {"calibrated": False}}}},
        "cv": {"within": block, "across": block, "folds": ["fold0", "fold1"], "n_reports": {"none/image": 800}},
        "test": block, "command": "python scripts/recalibrate.py --dry-run",
        "pooled_top_bin": {"cv_within": {"none/image": R.pooled_before_after(
            np.tile(p[:, None], (1, 2)), np.c_[m(p), p], np.tile(y[:, None], (1, 2)), ["Cardiomegaly", "Edema"],
            {"Cardiomegaly": True, "Edema": False}, ["Cardiomegaly", "Edema"])}}}))
    monkeypatch.setenv("CXR_WEIGHTS", str(weights))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at = at.switch_page("pages/model_card.py").run()
    assert not at.exception and not at.error
    frames = [df.value for df in at.dataframe if "slope after" in df.value.columns]
    assert len(frames) == 6                                   # 3 sources x 2 tasks
    card = frames[0].set_index("finding")
    assert card.loc["Edema", "slope after"] == "not calibrated" and card.loc["Edema", "top bin after"] == "—"
    assert card.loc["Cardiomegaly", "slope after"].startswith(f"{row['Cardiomegaly']['after']['slope']:.2f}")
    tb = row["Cardiomegaly"]["before"]["top_bin"]
    assert card.loc["Cardiomegaly", "top bin before"].startswith(f"{tb['n']}: {tb['mean_predicted']:.2f} vs ")
    page = " ".join(m.value for m in at.markdown)
    assert "Cannot be calibrated" in page and "Edema" in page
    assert all("mean ECE" not in df.value.columns for df in at.dataframe)
    pooled = [df.value for df in at.dataframe if "within 25%" in df.value.columns]
    assert len(pooled) == 1 and list(pooled[0]["task"]) == ["Image only"]
    assert pooled[0].loc[0, "findings shown"] == "Cardiomegaly"     # Edema shows no number: not pooled


# -- serving and the Predict page ------------------------------------------------------------------
def test_shipped_weights_say_which_findings_are_calibrated():
    from core.model.description import read_description
    if not (ROOT / "weights" / "model.safetensors").is_file():
        pytest.skip("no shipped weights in weights/")
    desc = read_description(ROOT / "weights")
    if desc.recalibration is None:
        pytest.skip("the shipped weights carry no recalibration")
    for mode, head in R.TASKS.values():
        flags = calibrated_flags(desc.recalibration, mode, head, desc.findings)
        # issue 26: fitted on validation + test, Edema has a map too
        assert flags["Cardiomegaly"] and flags["Atelectasis"] and flags["Edema"]
        assert not flags["Pneumonia"] and not flags["Consolidation"]
    assert desc.recalibration.extra["fitted_on"]["split"] == "val+test"
    # every threshold went through the same map as the probabilities, except report QA's reading of the
    # text head, which scripts/choose_operating_points.py sets at specificity 0.98 (docs/decisions.md)
    mapped = R.map_thresholds(desc.recalibration.extra["thresholds_before"], desc.recalibration)
    assert desc.thresholds["report"]["text"] == desc.operating_points.extra["report_qa"]["text_thresholds"]
    mapped["report"]["text"] = desc.thresholds["report"]["text"]
    for mode, heads in desc.thresholds.items():  # to the last bit or two (scipy's expit/logit, not the fit's own)
        for head, per in heads.items():
            assert mapped[mode][head] == pytest.approx(per, rel=1e-12, abs=1e-15)


def _view_script():
    from core.serving.decision import Decisions, FindingDecision
    from ui import prediction_view
    op = {"name": "specificity 0.98", "threshold": 0.2, "sensitivity": 0.9, "specificity": 0.98,
          "sensitivity_ci": [0.8, 0.95], "specificity_ci": [0.97, 0.99], "ppv": 0.5, "prevalence": 0.05}
    decisions = Decisions(mode="report", operating_point="specificity 0.98", findings={
        "Pneumonia": FindingDecision("Pneumonia", "not flagged", "", None, op),      # decided, not calibrated
        "Edema": FindingDecision("Edema", "flagged", "", None, op),                  # decided, not calibrated
        "Cardiomegaly": FindingDecision("Cardiomegaly", "flagged", "", 0.41, op)})
    prediction_view.show_decisions(decisions, key="t", evidence={}, image_evidence={},
                                   image_reliable={"Pneumonia": False, "Edema": True, "Cardiomegaly": True})


def test_predict_view_shows_not_calibrated_instead_of_the_number():
    """A finding whose number is not calibrated is decided (its flag stands) but shows no number."""
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_function(_view_script, default_timeout=30).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table.loc["Edema", "probability"] == "not calibrated" and table.loc["Edema", "decision"] == "flagged"
    assert table.loc["Cardiomegaly", "probability"] == "0.410"
    assert any("Edema" in c.value and "calibrat" in c.value.lower() for c in at.caption)
