"""scripts/validate_site.py on simulated sites made from the shipped weights' IU test split (tests/site_fixtures.py).

- the same images: the image-only AUC and its CI equal scripts/evaluate.py's to the last digit;
- a shifted scanner (gamma, contrast, JPEG quality, resolution): validation shows the miscalibration and the
  drifted flag rate; the adaptation, fitted on one half of the site, repairs them on the other half, in a new
  weights folder that names itself everywhere, the shipped weights untouched;
- a site with too few positives: verdicts say so, and the adaptation refuses in one line saying how many
  studies it would need.

Skips without the IU data. About three minutes on two cores (five model runs of 150-625 studies).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import site_fixtures as sf

ROOT = Path(__file__).resolve().parents[2]
SUPPORTED = ("Edema", "Cardiomegaly", "Atelectasis")


def run(args, **kw):
    env = {k: v for k, v in os.environ.items() if k != "CXR_WEIGHTS"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900, env=env,
                          **kw)


def validate(weights: Path, csv: Path, out: Path, *extra: str):
    return run(["scripts/validate_site.py", "--weights", str(weights), "--data", str(csv), "--json", str(out),
                "--no-progress", *extra])


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A private copy of the shipped weights (other work may rewrite weights/ mid-run)."""
    if not (ROOT / "weights" / "model.safetensors").is_file():
        pytest.skip("no shipped weights")
    out = tmp_path_factory.mktemp("shipped") / "weights"
    shutil.copytree(ROOT / "weights", out, ignore=shutil.ignore_patterns("eval"))
    return out


@pytest.fixture(scope="module")
def reports(iu_xray_dir, weights):
    return sf.test_reports(iu_xray_dir, weights)


@pytest.fixture(scope="module")
def same_site(tmp_path_factory, iu_xray_dir, weights, reports):
    folder = tmp_path_factory.mktemp("same")
    csv = sf.write_site(folder, reports, iu_xray_dir)
    r = validate(weights, csv, folder / "site.json", "--site", "IU test split")
    assert r.returncode == 0, r.stderr
    ev = run(["scripts/evaluate.py", "--weights", str(weights), "--data", str(iu_xray_dir), "--split", "test",
              "--text-mode", "none", "--head", "image", "--json", str(folder / "evaluate.json")])
    assert ev.returncode == 0, ev.stderr
    return {"result": json.loads((folder / "site.json").read_text()),
            "evaluate": json.loads((folder / "evaluate.json").read_text()), "folder": folder}


def test_same_images_give_evaluate_py_s_auc_exactly(same_site):
    site, ev = same_site["result"], same_site["evaluate"]
    task = site["tasks"]["none/image"]
    assert task["n_studies"] == ev["n_studies"] == 625
    for f, e in task["findings"].items():
        assert e["auc"] == ev["auc"][f], f
        assert e["auc_ci"] == ev["auc_ci"][f], f
        assert e["positives"] == ev["n_positive"][f]


def test_the_json_has_design_md_s_shape_and_the_reader_s_agreement(same_site):
    site = same_site["result"]
    assert site["n_studies"] == 625 and site["labels"] == "columns"
    assert set(site["tasks"]) == {"none/image", "indication/fusion"}
    # image + indication is measured where there is an indication (614 of the 625 reports)
    assert site["tasks"]["indication/fusion"]["n_studies"] == 614
    keys = {"positives", "auc", "auc_ci", "shipped_auc", "calibration_slope", "sensitivity", "specificity", "verdict"}
    for task in site["tasks"].values():
        for f, e in task["findings"].items():
            assert keys <= set(e), f
    cardio = site["tasks"]["none/image"]["findings"]["Cardiomegaly"]
    assert cardio["verdict"] == "consistent with the shipped evidence"
    assert cardio["calibration_verdict"]["verdict"] == "consistent with calibrated"
    assert cardio["operating_point"] == "specificity 0.90" and 0.85 <= cardio["specificity"] <= 0.95
    assert cardio["shipped_auc"] == 0.8464  # the weights' cross-validated (pooled out-of-fold) AUC
    pneumonia = site["tasks"]["none/image"]["findings"]["Pneumonia"]
    assert pneumonia["verdict"] == "too few positives to say" and pneumonia["sensitivity"] is None
    agreement = site["label_agreement"]["findings"]
    assert set(agreement) == {"Pneumonia", "Edema", "Cardiomegaly", "Atelectasis", "Consolidation"}
    assert all(a["agreement"] >= 0.97 for a in agreement.values())
    assert 0 < site["out_of_distribution"]["rate"] < 0.05


def test_the_html_report_is_self_contained_with_its_plots(same_site):
    page = (same_site["folder"] / "site.html").read_text()
    assert page.count("<svg") >= 10 and "Site validation — IU test split" in page
    assert "consistent with the shipped evidence" in page
    for banned in ("<script", "src=\"http", "src='http", "href=\"http", "@import", "url(http"):
        assert banned not in page


@pytest.fixture(scope="module")
def shifted(tmp_path_factory, iu_xray_dir, weights, reports):
    """The site's scanner is another: adapt on one half, validate the other half with both weights."""
    folder = tmp_path_factory.mktemp("shifted")
    fit, held = sf.halves(reports)
    fit_csv = sf.write_site(folder, fit, iu_xray_dir, shift=sf.SCANNER_SHIFT, name="fit.csv")
    held_csv = sf.write_site(folder, held, iu_xray_dir, shift=sf.SCANNER_SHIFT, name="held.csv")
    digest = hashlib.sha256((weights / "model.safetensors").read_bytes()).hexdigest()
    adapted = folder / "weights-site"
    a = validate(weights, fit_csv, folder / "fit.json", "--site", "Shifted scanner", "--adapt", str(adapted))
    assert a.returncode == 0, a.stderr
    b = validate(weights, held_csv, folder / "held_shipped.json")
    assert b.returncode == 0, b.stderr
    c = validate(adapted, held_csv, folder / "held_adapted.json")
    assert c.returncode == 0, c.stderr
    return {"fit": json.loads((folder / "fit.json").read_text()), "adapt_stderr": a.stderr,
            "shipped": json.loads((folder / "held_shipped.json").read_text()),
            "adapted": json.loads((folder / "held_adapted.json").read_text()), "weights": adapted,
            "digest_before": digest, "digest_after": hashlib.sha256((weights / "model.safetensors").read_bytes())
            .hexdigest(), "held_csv": held_csv, "folder": folder}


def test_validation_shows_the_shifted_scanner_s_miscalibration(shifted):
    for task in ("none/image", "indication/fusion"):
        e = shifted["shipped"]["tasks"][task]["findings"]["Cardiomegaly"]
        cal = e["calibration"]
        assert e["calibration_verdict"]["verdict"] == "miscalibrated", task
        assert cal["mean_predicted"] > cal["observed_ci"][1]  # predicts far more Cardiomegaly than there is
        assert e["operating_point_verdict"]["verdict"] == "differs from what a flag states"
        assert e["specificity_ci"][1] < 0.85  # the stated 0.90 no longer holds: more false flags


def test_adaptation_repairs_it_on_held_out_studies_of_that_site(shifted):
    for task in ("none/image", "indication/fusion"):
        before = shifted["shipped"]["tasks"][task]["findings"]
        after = shifted["adapted"]["tasks"][task]["findings"]
        e = after["Cardiomegaly"]
        lo, hi = e["calibration"]["observed_ci"]
        assert e["calibration_verdict"]["verdict"] == "consistent with calibrated", task
        assert lo <= e["calibration"]["mean_predicted"] <= hi
        assert e["specificity_ci"][0] <= 0.90 <= e["specificity_ci"][1]  # a flag means what it says again
        for f in ("Cardiomegaly", "Atelectasis"):  # the overall miscalibration shrinks for both
            gap = [abs(x[f]["calibration"]["mean_predicted"] - x[f]["calibration"]["observed"])
                   for x in (before, after)]
            assert gap[1] < gap[0] / 2, (task, f, gap)
            assert after[f]["auc"] == pytest.approx(before[f]["auc"], abs=1e-12)  # a monotone map: same ranking


def test_the_adapted_weights_name_themselves_and_leave_the_shipped_ones_alone(shifted, weights):
    assert shifted["digest_before"] == shifted["digest_after"]
    meta = json.loads((shifted["weights"] / "metadata.json").read_text())
    assert "+site-shifted-scanner-" in meta["version"]
    site = meta["site_adaptation"]
    assert site["site"] == "Shifted scanner" and site["studies"] == 313 and site["labels"] == "columns"
    assert site["shipped_version"] == json.loads((weights / "metadata.json").read_text())["version"]
    assert site["adapted"]["none/image"] == ["Cardiomegaly", "Atelectasis"]
    assert "Edema" in site["refused"]["none/image"]  # 8 positives in 313 studies
    assert shifted["adapted"]["model"] == meta["version"]
    assert "not adapted: none/image: Edema: 8 positives in 313 studies" in shifted["adapt_stderr"]
    plan = shifted["fit"]["adaptation"]["plan"]["none/image"]["Cardiomegaly"]
    cf = plan["cross_fitted"]  # the numbers for the adapted model come from parts the refit did not see
    assert cf["log_loss_after"] < cf["log_loss_before"]
    image = shifted["folder"] / "images" / sorted(os.listdir(shifted["folder"] / "images"))[0]
    r = run(["scripts/predict.py", "--weights", str(shifted["weights"]), "--image", str(image), "--json", "--no-log"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["model"].startswith(meta["version"])


@pytest.fixture(scope="module")
def few(tmp_path_factory, iu_xray_dir, weights, reports):
    folder = tmp_path_factory.mktemp("few")
    csv = sf.write_site(folder, sf.few_positives(reports, n=150), iu_xray_dir, labels=False)
    r = validate(weights, csv, folder / "few.json", "--site", "Small clinic", "--adapt", str(folder / "w"))
    return {"run": r, "result": json.loads((folder / "few.json").read_text()), "folder": folder}


def test_a_site_with_too_few_positives_gets_verdicts_that_say_so(few):
    result = few["result"]
    assert result["n_studies"] == 150 and result["labels"] == "report" and "label_agreement" not in result
    for task in result["tasks"].values():
        for f, e in task["findings"].items():
            if e["positives"] < 10:
                assert e["verdict"] == "too few positives to say", f
                assert e["needed"]["studies"] > 150


def test_a_site_with_too_few_positives_is_refused_adaptation_in_one_line(few):
    r = few["run"]
    assert r.returncode == 2 and "Traceback" not in r.stderr
    error = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1
    assert "no finding could be adapted" in error[0] and "a site calibration needs at least 20" in error[0]
    assert "studies at this site's prevalence" in error[0]
    assert not (few["folder"] / "w" / "model.safetensors").exists()
