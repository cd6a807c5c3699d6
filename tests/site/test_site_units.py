"""The site validation's parts without the model: the site table, the labels, the verdicts, the resumable run
(a stub predictor), the adaptation's refit, refusal and provenance, the report, and bad input to the CLI."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from core.data.labels import FINDINGS
from core.data.site_table import SiteError, read_site_csv
from core.evaluation import site_adapt as A
from core.evaluation import site_verdict as V
from core.evaluation.recalibration import PlattMap, Recalibration
from core.evaluation.site_labels import agreement, report_labels, site_labels
from core.model.description import ModelDescription

ROOT = Path(__file__).resolve().parents[2]


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def png(path: Path, value: int) -> Path:
    Image.fromarray(np.full((64, 64), value, np.uint8)).save(path)
    return path


# -- the site table --------------------------------------------------------------------------------
def test_rows_sharing_an_id_are_one_study_with_its_labels(tmp_path):
    for i in range(3):
        png(tmp_path / f"{i}.png", 40 + i)
    table = read_site_csv(write_csv(tmp_path / "s.csv", [
        {"image": "0.png", "report": "Heart is enlarged.", "indication": "Dyspnea.", "id": "A",
         "label_Cardiomegaly": "1"},
        {"image": "1.png", "report": "", "indication": "", "id": "A", "label_Cardiomegaly": ""},
        {"image": "2.png", "report": "Normal.", "indication": "", "id": "", "label_Cardiomegaly": "0"}]), FINDINGS)
    assert [len(s.images) for s in table.studies] == [2, 1]
    assert table.studies[0].report == "Heart is enlarged." and table.studies[0].labels == {"Cardiomegaly": 1}
    assert table.studies[1].id == "row 4" and table.label_columns == ["Cardiomegaly"]
    assert table.n_images == 3


@pytest.mark.parametrize(("rows", "words"), [
    ([{"image": "0.png", "text": "x"}], "missing: report"),
    ([{"image": "0.png", "report": "x", "label_Effusion": "1"}], "names no finding"),
    ([{"image": "0.png", "report": "x", "label_Edema": "maybe"}], "line 2: label_Edema is 'maybe'"),
    ([{"image": "nope.png", "report": "x"}], "line 2: image 'nope.png' not found"),
    ([{"image": "0.png", "report": "x", "id": "A", "label_Edema": "1"},
      {"image": "0.png", "report": "x", "id": "A", "label_Edema": "0"}], "labelled 1 for Edema on an earlier row"),
    ([{"image": "0.png", "report": ""}], "nothing to take labels from"),
])
def test_a_bad_site_table_is_refused_in_one_sentence(tmp_path, rows, words):
    png(tmp_path / "0.png", 50)
    with pytest.raises(SiteError, match=words.replace("(", r"\(")):
        read_site_csv(write_csv(tmp_path / "s.csv", rows), FINDINGS)


# -- labels ----------------------------------------------------------------------------------------
def test_the_report_reader_reads_negations():
    got = report_labels("The heart is enlarged. No pulmonary edema. No focal consolidation.")
    assert got == {"Pneumonia": 0, "Edema": 0, "Cardiomegaly": 1, "Atelectasis": 0, "Consolidation": 0}
    assert report_labels("") == {}


def test_labels_from_columns_where_given_else_from_the_report_and_their_agreement():
    studies = [SimpleNamespace(report="Cardiomegaly.", labels={"Cardiomegaly": 1}),
               SimpleNamespace(report="Normal heart.", labels={"Cardiomegaly": 1}),
               SimpleNamespace(report="Atelectasis at the left base.", labels={})]
    Y, source = site_labels(studies, list(FINDINGS), ["Cardiomegaly"])
    k = FINDINGS.index("Cardiomegaly")
    assert list(Y[:, k][:2]) == [1, 1] and np.isnan(Y[2, k])  # an empty cell is unknown, not negative
    assert Y[2, FINDINGS.index("Atelectasis")] == 1 and source["Atelectasis"] == "report"
    agree = agreement(studies, list(FINDINGS), ["Cardiomegaly"])["findings"]["Cardiomegaly"]
    assert agree["n"] == 2 and agree["sensitivity"] == 0.5 and agree["agreement"] == 0.5


# -- verdicts --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("site", "ci", "verdict"), [
    (0.70, [0.62, 0.78], V.WORSE), (0.83, [0.75, 0.90], V.CONSISTENT), (0.95, [0.92, 0.97], V.BETTER)])
def test_the_auc_verdict_reads_both_intervals(site, ci, verdict):
    assert V.auc_verdict(site, ci, 0.85, [0.82, 0.87], positives=60, negatives=500) == verdict
    assert V.auc_verdict(site, ci, 0.85, [0.82, 0.87], positives=9, negatives=500) == V.TOO_FEW


def test_positives_needed_for_an_auc_interval():
    got = V.positives_for_auc_ci(0.85, 0.05, 0.10)
    assert 1.96 * V.auc_se(0.85, got["positives"], got["studies"] - got["positives"]) <= 0.05
    assert 1.96 * V.auc_se(0.85, got["positives"] - 1, round((got["positives"] - 1) * 9)) > 0.05
    assert V.positives_for_auc_ci(0.85, 0.10, 0.10)["positives"] < got["positives"] / 3


def test_the_calibration_verdict_names_what_is_off():
    cal = {"mean_predicted": 0.2, "observed": 0.1, "observed_ci": [0.07, 0.13], "slope": 0.5,
           "slope_ci": [0.3, 0.7], "top_bin": {"cut": 0.3, "n": 5}}
    v = V.calibration_verdict(cal, positives=40)
    assert v["verdict"] == V.MISCALIBRATED and "too high" in v["reasons"][0] and "over-confident" in v["reasons"][1]
    ok = dict(cal, observed=0.19, observed_ci=[0.15, 0.24], slope=1.0, slope_ci=[0.8, 1.3])
    assert V.calibration_verdict(ok, positives=40)["verdict"] == V.CALIBRATED
    assert V.calibration_verdict(ok, positives=4)["verdict"] == V.TOO_FEW


# -- the resumable run -----------------------------------------------------------------------------
class Stub:
    """A predictor stand-in: probabilities from the image's mean grey, the indication nudging them."""
    findings, version = FINDINGS, "stub-1"

    def __init__(self, recalibration=None) -> None:
        self.recalibration, self.images = recalibration, 0

    def predict_batch(self, grays, texts, modes, *, colorfulness=None, target=None):
        self.images += len(grays) if modes[0] == "none" else 0
        out = []
        for g, t in zip(grays, texts, strict=True):
            v = float(g.mean()) / 255
            p = {f: v * (k + 1) / 6 for k, f in enumerate(FINDINGS)}
            out.append(SimpleNamespace(image=p, fusion={f: x * (0.9 if t else 1.0) for f, x in p.items()},
                                       out_of_distribution=v > 0.9, ood_score=v))
        return out


def stub_site(tmp_path: Path, n: int = 40) -> Path:
    rows = []
    for i in range(n):
        rows.append({"image": png(tmp_path / f"{i}.png", 20 + 5 * i).name, "id": f"s{i // 2}",
                     "report": "Heart is enlarged." if (i // 2) % 3 else "Normal.",
                     "indication": "Cough." if (i // 2) % 2 else ""})
    return write_csv(tmp_path / "site.csv", rows)


def test_a_killed_run_resumes_with_the_blocks_it_had_not_finished(tmp_path):
    from core.data.site_table import bytes_loader
    from core.serving.site_run import predict_site
    table = read_site_csv(stub_site(tmp_path), FINDINGS)
    files = {p.name: p.read_bytes() for p in tmp_path.glob("*.png")}
    load = bytes_loader({str(tmp_path / k): v for k, v in files.items()})
    whole = predict_site(Stub(), table, load_image=load, out=tmp_path / "whole.json")

    def die(done, total):
        if done >= 16:
            raise KeyboardInterrupt  # as a kill after the first block was written
    with pytest.raises(KeyboardInterrupt):
        predict_site(Stub(), table, load_image=load, out=tmp_path / "run.json", on_progress=die)
    assert (tmp_path / "run.json.parts").is_dir()
    again = Stub()
    resumed = predict_site(again, table, load_image=load, out=tmp_path / "run.json")
    assert again.images == resumed.predicted_now == 40 - 16
    for task in whole.probs:
        np.testing.assert_array_equal(whole.probs[task], resumed.probs[task])
    assert whole.ood == resumed.ood and not (tmp_path / "run.json.parts").exists()
    # image + indication only for the studies with one; a study is the mean of its images
    assert np.isnan(whole.probs["indication/fusion"]).any() and not np.isnan(whole.probs["none/image"]).any()


def test_a_study_of_several_images_is_their_mean_before_the_map():
    from core.serving.site_run import _study_value
    m = PlattMap(a=0.7, b=-0.4)
    block = Recalibration(maps={"none": {"image": {"Edema": m}}})
    got = _study_value([float(m(0.2)), float(m(0.4))], block, "none", "image", "Edema")
    assert got == pytest.approx(float(m(0.3)), abs=1e-12)
    assert _study_value([0.2, 0.4], block, "none", "image", "Pneumonia") == pytest.approx(0.3)


# -- adaptation ------------------------------------------------------------------------------------
def desc_for_adaptation() -> ModelDescription:
    point = {"threshold": 0.3, "sensitivity": 0.6, "specificity": 0.9}
    return ModelDescription(
        version="v1+ops1", evidence={"image_reliable": {f: f == "Cardiomegaly" for f in FINDINGS}},
        recalibration={"method": "platt", "maps": {"none": {"image": {"Cardiomegaly": {"a": 0.8, "b": -0.2}}}}},
        operating_points={"points": {"none": {"Cardiomegaly": {"specificity 0.90": point}}}},
        thresholds={"none": {"image": {"Cardiomegaly": 0.3}}})


def synthetic(n: int, prevalence: float, seed: int = 0):
    """Labels and served probabilities that are too high and too spread out."""
    rng = np.random.default_rng(seed)
    z = rng.normal(np.log(prevalence / (1 - prevalence)) - 0.5, 1.2, n)  # the true logit
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    q = 1 / (1 + np.exp(-(2.0 * z + 1.5)))                                   # served: too spread out, too high
    Y = np.zeros((n, len(FINDINGS)))
    P = np.tile(q[:, None], (1, len(FINDINGS)))
    Y[:, FINDINGS.index("Cardiomegaly")] = y
    return Y, P


def test_the_refit_is_cross_fitted_gated_and_composed_with_the_shipped_map():
    desc = desc_for_adaptation()
    Y, P = synthetic(600, 0.12)
    plan = A.plan_adaptation(desc, Y, {"none/image": P}, site="Test site", n_boot=50)
    e = plan["none/image"]["Cardiomegaly"]
    assert e["status"] == A.ADAPTED and plan["none/image"]["Edema"]["status"] == A.NOT_ASSESSED
    cf = e["cross_fitted"]
    assert cf["log_loss_after"] < cf["log_loss_before"]
    assert abs(cf["after"]["mean_predicted"] - cf["after"]["observed"]) < abs(
        cf["before"]["mean_predicted"] - cf["before"]["observed"])
    site, shipped = PlattMap.from_dict(e["site_map"]), PlattMap(a=0.8, b=-0.2)
    p = np.array([0.01, 0.2, 0.7])
    assert PlattMap.from_dict(e["map"])(p) == pytest.approx(site(shipped(p)))
    new = A.adapted_description(desc, plan, site="Test site", n_studies=600, labels="columns")
    assert new.version.startswith("v1+ops1+site-test-site-")
    assert new.site_adaptation["adapted"] == {"none/image": ["Cardiomegaly"]}
    assert new.site_adaptation["shipped_version"] == "v1+ops1"
    point = new.operating_points.point("none", "Cardiomegaly", "specificity 0.90")
    assert point["source"].startswith("site Test site: 600 studies")
    assert new.thresholds["none"]["image"]["Cardiomegaly"] == pytest.approx(float(site(0.3)))
    assert new.recalibration.maps["none"]["image"]["Cardiomegaly"].provenance["site"] == "Test site"


def test_a_finding_with_too_few_positives_is_refused_with_what_it_would_need():
    desc = desc_for_adaptation()
    Y, P = synthetic(300, 0.03, seed=1)
    plan = A.plan_adaptation(desc, Y, {"none/image": P}, site="Small", n_boot=50)
    e = plan["none/image"]["Cardiomegaly"]
    pos = int(Y[:, FINDINGS.index("Cardiomegaly")].sum())
    assert e["status"] == A.REFUSED and pos < 20
    assert f"{pos} positives in 300 studies; a site calibration needs at least 20" in e["reason"]
    assert e["needed"]["studies"] == -(-20 * 300 // pos)
    with pytest.raises(A.AdaptError, match="no finding could be adapted"):
        A.adapted_description(desc, plan, site="Small", n_studies=300, labels="report")


def test_adapted_weights_are_never_written_over_the_shipped_ones(tmp_path):
    with pytest.raises(A.AdaptError, match="shipped weights folder"):
        A.write_adapted(tmp_path, tmp_path, None)


# -- the report ------------------------------------------------------------------------------------
def test_the_report_escapes_what_the_site_wrote():
    from core.evaluation.site_report import site_report_html
    page = site_report_html({"site": "<script>alert(1)</script>", "n_studies": 0, "tasks": {}})
    assert "<script>" not in page and "&lt;script&gt;" in page


# -- bad input to the CLI: one line, exit 2, before any model loads --------------------------------
def cli(*args):
    return subprocess.run([sys.executable, "scripts/validate_site.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("case", ["missing", "columns", "label", "image", "adapt-into-weights", "pacs-no-reports"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, case):
    png(tmp_path / "0.png", 50)
    good = {"image": "0.png", "report": "Normal."}
    rows = {"columns": [{"image": "0.png", "text": "x"}], "label": [dict(good, label_Effusion="1")],
            "image": [dict(good, image="gone.png")]}.get(case, [good])
    site = write_csv(tmp_path / "site.csv", rows)
    args = {"missing": ["--data", str(tmp_path / "none.csv")],
            "adapt-into-weights": ["--data", str(site), "--adapt", str(ROOT / "weights")],
            "pacs-no-reports": ["--pacs", "http://localhost:9/dicom-web"]}.get(case, ["--data", str(site)])
    r = cli(*args, "--json", str(tmp_path / "out.json"))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: ")
    assert not (tmp_path / "out.json").exists()


def test_the_json_contract_names_in_the_cli_help():
    r = cli("--help")
    assert r.returncode == 0 and "--adapt OUTDIR" in r.stdout and "--pacs URL" in r.stdout


def test_a_finding_without_positives_or_labels_is_measured_without_failing():
    from core.evaluation.site_measure import measure_site, ood_summary
    desc = desc_for_adaptation()
    rng = np.random.default_rng(1)
    Y = (rng.random((80, len(FINDINGS))) < 0.2).astype(float)
    Y[:, FINDINGS.index("Consolidation")] = 0           # no positive at all
    Y[:, FINDINGS.index("Pneumonia")] = np.nan          # nobody labelled it
    P = rng.random(Y.shape)
    result = measure_site(desc, Y, {"none/image": P}, ood=ood_summary([False] * 80, [[False]] * 80),
                          labels="columns", label_agreement=None, label_source={}, n_boot=20)
    per = result["tasks"]["none/image"]["findings"]
    assert per["Consolidation"]["auc"] is None and per["Consolidation"]["verdict"] == V.TOO_FEW
    assert per["Pneumonia"]["n"] == 0 and per["Pneumonia"]["verdict"] == V.TOO_FEW
    assert per["Cardiomegaly"]["operating_point"] == "specificity 0.90"
    assert per["Cardiomegaly"]["specificity"] is not None
    assert "label_agreement" not in result and "indication/fusion" not in result["tasks"]
