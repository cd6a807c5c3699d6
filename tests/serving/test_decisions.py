"""Issue 26: one decision per finding (core.serving.decision), operating points a reader can act on
(core.evaluation.operating_targets), and the numbers the shipped weights state for them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.data.labels import FLAGGED, NOT_ASSESSED, NOT_FLAGGED
from core.evaluation import operating_targets as T
from core.model.description import ModelDescription, read_description
from core.serving.decision import NOT_SUPPORTED, TargetError, decide_values

REPO = Path(__file__).resolve().parents[2]
WEIGHTS = REPO / "weights"
FINDINGS = ("Pneumonia", "Edema", "Cardiomegaly", "Atelectasis", "Consolidation")
RELIABLE = {"Pneumonia": False, "Edema": True, "Cardiomegaly": True, "Atelectasis": True, "Consolidation": False}


def description(points: dict) -> ModelDescription:
    """Weights that say only their evidence verdicts and operating points."""
    return ModelDescription.from_metadata({
        "evidence": {"image_reliable": RELIABLE},
        "operating_points": {"points": points, "default": {m: T.default_name(m) for m in T.MODE_HEAD}}})


def op(threshold: float, **extra) -> dict:
    return {"threshold": threshold, "sensitivity": 0.5, "specificity": 0.9, "sensitivity_ci": [0.4, 0.6],
            "specificity_ci": [0.88, 0.92], "ppv": 0.2, "prevalence": 0.05, "positives": 60, "negatives": 2000,
            "source": "test folds", **extra}


POINTS = {mode: {f: {name: op(0.3 if "0.90" in name else 0.1) for name in T.NAMES} for f in FINDINGS}
          for mode in T.MODE_HEAD}


def values(mode="none", p=0.5, **kw):
    args = dict(mode=mode, probabilities={f: p for f in FINDINGS}, calibrated={f: f != "Atelectasis" for f in FINDINGS},
                image_reliable=RELIABLE)
    args.update(kw)
    return decide_values(description(POINTS), **args)


# -- the policy ---------------------------------------------------------------------------------
def test_image_only_never_assesses_a_finding_the_image_cannot_support():
    d = values("none", 0.9)
    assert d["Pneumonia"].status == NOT_ASSESSED and d["Pneumonia"].reason == NOT_SUPPORTED
    assert d["Pneumonia"].probability is None and d["Pneumonia"].operating_point is None
    assert d.flagged() == ["Edema", "Cardiomegaly", "Atelectasis"]
    assert set(d.operating_points()) == {"Edema", "Cardiomegaly", "Atelectasis"}   # assessed findings only
    assert values("indication", 0.9).not_assessed().keys() == {"Pneumonia", "Consolidation"}


def test_report_mode_assesses_every_finding():
    assert values("report", 0.9).assessed() == list(FINDINGS)


def test_out_of_distribution_image_assesses_nothing():
    d = values("report", 0.99, out_of_distribution=True, ood_reason="colour photograph")
    assert d.flagged() == [] and d.assessed() == [] and d.operating_points() == {}
    assert all("out-of-distribution image: colour photograph" == x.reason for x in d)
    assert d.headline().startswith("Not assessed")


def test_flag_is_the_operating_points_threshold_and_the_number_only_when_calibrated():
    at = values("none", 0.2)               # under 0.3 (specificity 0.90), over 0.1 (the others)
    assert at["Edema"].status == NOT_FLAGGED and at.operating_point == "specificity 0.90"
    other = values("none", 0.2, target="sensitivity 0.80")
    assert other["Edema"].status == FLAGGED and other.operating_point == "sensitivity 0.80"
    assert other["Edema"].operating_point["name"] == "sensitivity 0.80"
    assert at["Edema"].probability == 0.2 and at["Atelectasis"].probability is None   # not calibrated: no number
    assert at["Atelectasis"].status == NOT_FLAGGED                                       # but still decided
    assert values("report", 0.2).operating_point == "specificity 0.98"                   # the report's own default


def test_a_sentence_says_what_a_flag_means():
    d = values("none", 0.9)["Cardiomegaly"]
    text = d.sentence()
    assert text.startswith("Flagged at specificity 0.90") and "50% [40%, 60%] of studies with Cardiomegaly" in text
    assert "10% [8%, 12%] of studies without it" in text and "20% of its flags are true" in text
    assert "test folds" in text
    assert d.operating_point_json()["specificity_ci"] == [0.88, 0.92]


def test_unknown_operating_point_is_refused_with_the_choices():
    with pytest.raises(TargetError, match="specificity 0.90"):
        values(target="specificity 0.5")
    assert T.parse_target("spec=0.95") == "specificity 0.95" and T.parse_target("sens 0.8") == "sensitivity 0.80"


def test_weights_without_operating_points_assess_nothing_and_say_why():
    d = decide_values(description({}), mode="report", probabilities={f: 0.9 for f in FINDINGS},
                      calibrated={}, image_reliable=RELIABLE)
    assert d.flagged() == [] and {x.reason for x in d} == {"no operating point in these weights for this "
                                                            "finding and mode"}


# -- choosing a point ---------------------------------------------------------------------------
def test_specificity_threshold_leaves_the_target_share_of_negatives_under_it():
    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.1).astype(int)
    p = np.clip(rng.normal(0.3 + 0.3 * y, 0.15), 0, 1)
    for target in (0.8, 0.9, 0.95):
        t = T.threshold_for(y, p, T.SPECIFICITY, target)
        assert np.mean(p[y == 0] < t) >= target - 1e-9
        assert np.mean(p[y == 0] < t) < target + 0.002
    t = T.threshold_for(y, p, T.SENSITIVITY, 0.8)
    assert np.mean(p[y == 1] >= t) >= 0.8
    assert T.threshold_for(np.zeros(5), np.ones(5), T.SENSITIVITY, 0.8) is None   # no positive to read it from


def test_cross_fitted_counts_measure_near_the_target_on_held_out_parts():
    rng = np.random.default_rng(1)
    folds = []
    for shift in (0.0, 0.2, -0.1):            # three models on three scales: a threshold would not transfer
        y = (rng.random(900) < 0.1).astype(int)
        folds.append((y, np.clip(rng.normal(0.3 + shift + 0.25 * y, 0.12), 0, 1)))
    c = T.cross_fitted_counts(folds, T.SPECIFICITY, 0.90)
    s = c.summary(0.1)
    assert abs(s["specificity"] - 0.90) < 0.03 and s["positives"] + s["negatives"] == 2700
    assert s["specificity_ci"][0] < s["specificity"] < s["specificity_ci"][1]
    assert T.ppv(s["sensitivity"], s["specificity"], 0.1) == pytest.approx(s["ppv"], abs=1e-4)


# -- the shipped weights -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped():
    return read_description(WEIGHTS)


def test_shipped_operating_points_meet_the_issues_targets(shipped):
    """Issue 26's targets, as the weights state them (scripts/choose_operating_points.py measured them):
    at most 30% of studies with none of the findings flagged, image only and with the indication, on
    cross-validation and on the test split; measured specificity within 0.05 of the stated one."""
    block = shipped.operating_points.to_dict()  # as the weights' JSON states it
    assert block["default"] == {"none": "specificity 0.90", "indication": "specificity 0.90",
                                "report": "specificity 0.98"}
    for mode in ("none", "indication"):
        rates = block["normal_flag_rate"][mode]
        assert rates["stated"]["rate"] <= 0.30 and rates["test"]["rate"] <= 0.30
        assert rates["stated"]["n"] > 2000 and rates["test"]["n"] > 500
        # only what the image supports, from the weights' own evidence
        assert set(block["points"][mode]) == {f for f, ok in shipped.image_reliable.items() if ok}
    for mode, per in block["points"].items():
        for f, choices in per.items():
            for name, e in choices.items():
                kind, target = T.split_name(name)
                if kind != T.SPECIFICITY:
                    continue
                assert abs(e["specificity"] - target) <= 0.05, (mode, f, name)
                assert abs(e["test"]["specificity"] - target) <= 0.05, (mode, f, name, "test")
                assert e["sensitivity_ci"][0] <= e["sensitivity"] <= e["sensitivity_ci"][1]
    # stated where they were chosen: cross-validation for the image tasks
    assert block["points"]["none"]["Edema"]["specificity 0.90"]["source"].startswith("cross-validation: 2494")


def test_shipped_report_qa_reads_few_negations_as_findings(shipped):
    """Test reports that rule a finding out (and whose labels agree): at most 5% flagged for it overall
    at the report's default point. (Per finding the issue asks <= 10%: Atelectasis has one such report,
    which the model flags; see docs/decisions.md.)"""
    neg = shipped.operating_points.extra.get("negations")
    if neg is None:
        pytest.skip("the weights were written without --data: no negation measurement")
    r = neg[T.default_name("report")]
    assert r["overall"]["rate"] <= 0.05 and r["overall"]["n"] >= 300
    for f, c in r["findings"].items():
        if c["n"] >= 20:
            assert c["rate"] <= 0.10, f


def test_edema_has_a_calibrated_number_for_every_task_the_image_supports(shipped):
    for mode, head in (("none", "image"), ("indication", "fusion")):
        assert shipped.recalibration.map_for(mode, head, "Edema") is not None
    assert shipped.recalibration.extra["fitted_on"]["n_reports"] > 1000


# -- end to end: the shipped model on real films ---------------------------------------------------
def _predict(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/predict.py", "--no-log", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_cli_json_carries_decisions_for_a_normal_film_and_none_for_a_photograph(iu_xray_dir, tmp_path):
    from PIL import Image
    from skimage import color, data

    film = iu_xray_dir / "NLMCXR_png" / "CXR12_IM-0133-1001.png"   # a report with none of the five findings
    photo = tmp_path / "astronaut.png"
    Image.fromarray((color.rgb2gray(data.astronaut()) * 255).astype("uint8")).save(photo)
    batch = tmp_path / "b.csv"
    batch.write_text(f"image,text,text_mode\n{film},,\n{photo},,\n{film},Stable cardiomegaly without overt "
                     "pulmonary edema.,report\n")
    out = _predict("--batch", str(batch), "--json")
    assert out.returncode == 0, out.stderr
    normal, astronaut, report = (json.loads(line) for line in out.stdout.splitlines())
    assert normal["decision"] == {"Pneumonia": NOT_ASSESSED, "Edema": NOT_FLAGGED, "Cardiomegaly": NOT_FLAGGED,
                                  "Atelectasis": NOT_FLAGGED, "Consolidation": NOT_ASSESSED}
    assert normal["probability"]["Pneumonia"] is None and normal["probability"]["Edema"] is not None
    assert set(normal["operating_point"]) == {"Edema", "Cardiomegaly", "Atelectasis"}
    point = normal["operating_point"]["Edema"]
    assert {"sensitivity", "specificity", "sensitivity_ci", "specificity_ci", "source"} <= set(point)
    assert normal["operating_point_name"] == "specificity 0.90" and normal["text"] is None
    assert normal["evidence"]["Edema"]["source"].startswith("cross-validation")
    assert normal["evidence"]["Edema"]["test"]["positives"] < normal["evidence"]["Edema"]["positives"]
    assert astronaut["out_of_distribution"] and set(astronaut["decision"].values()) == {NOT_ASSESSED}
    assert astronaut["operating_point"] == {} and "photograph" in astronaut["ood_reason"]
    # "without overt pulmonary edema": neither a flag nor a report-QA discordance for Edema
    assert report["decision"]["Edema"] == NOT_FLAGGED and "Edema" not in report["discordant"]
    assert report["operating_point_name"] == "specificity 0.98"


def test_cli_operating_point_is_named_and_a_bad_one_is_one_line(iu_xray_dir):
    film = iu_xray_dir / "NLMCXR_png" / "CXR12_IM-0133-1001.png"
    out = _predict("--image", str(film), "--operating-point", "sensitivity 0.90")
    assert out.returncode == 0, out.stderr
    assert "operating point: sensitivity 0.90" in out.stdout and "not assessed" in out.stdout
    bad = _predict("--image", str(film), "--operating-point", "specificity 0.5")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "specificity 0.90" in bad.stderr


# -- item 12: what an upload that is not a film is told ---------------------------------------------
def test_a_text_file_named_dcm_is_told_it_is_not_dicom_and_no_error_offers_tiff():
    from core.data.images import ImageDecodeError, decode_image
    with pytest.raises(ImageDecodeError, match="not DICOM") as err:
        decode_image(b"Patient report, not an image.\n" * 20, filename="study.dcm")
    assert "holds no image" not in str(err.value)
    with pytest.raises(ImageDecodeError) as err:
        decode_image(b"not an image" * 10, filename="x.png")
    assert "TIFF" not in str(err.value) and "PNG, JPEG or DICOM" in str(err.value)


def test_a_greyscale_photograph_is_not_called_part_of_a_film(shipped):
    from skimage import color, data

    from core.model.checkpoint import load_weights
    from core.model.guard import PARTIAL_REASON
    from core.serving.loading import ood_detector
    det = ood_detector(load_weights(WEIGHTS)[3])
    for image in (color.rgb2gray(data.astronaut()), data.camera() / 255.0):
        r = det.check((image * 255).astype("uint8"))
        assert r.out_of_distribution and r.reason != PARTIAL_REASON and "photograph" in r.reason
