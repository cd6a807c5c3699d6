"""Evidence and report-QA discordance as the predictor and the CLI hand them out (tiny weights)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core.data.labels import FINDINGS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trusted_weights(tiny_weights, tmp_path_factory):
    """The tiny weights with a known evidence table and report-QA points: Cardiomegaly is
    reliable from the image and always disagrees with the report; Pneumonia has a point but
    is not reliable, so it must never be flagged."""
    from core.model.checkpoint import load_weights, save_weights
    model, _, meta, ood = load_weights(tiny_weights)
    entry = lambda ok: {"auc": 0.9 if ok else 0.55, "ci": [0.85, 0.95] if ok else [0.3, 0.8],  # noqa: E731
                        "positives": 50 if ok else 6, "source": "test split, 100 studies", "reliable": ok}
    table = {m: {h: {f: entry(f == "Cardiomegaly") for f in FINDINGS} for h in ("fusion", "image", "text")}
             for m in ("report", "indication", "none")}
    meta["evidence"] = {"table": table, "image_reliable": {f: f == "Cardiomegaly" for f in FINDINGS}}
    meta["discordance"] = {"budget": 0.04, "points": {"Cardiomegaly": {"high": 0.0, "low": None},
                                                      "Pneumonia": {"high": 0.0, "low": None}}}
    for mode in meta["thresholds"]:
        meta["thresholds"][mode]["text"] = {f: 1.0 for f in FINDINGS}   # the report never "says" a finding
    out = tmp_path_factory.mktemp("trusted") / "w"
    save_weights(model, meta, out, ood=ood)
    return out


@pytest.fixture(scope="module")
def film(iu_xray_dir):
    from core.data.images import load_png_gray
    return load_png_gray(sorted((iu_xray_dir / "NLMCXR_png").glob("*.png"))[0])


def test_discordance_only_in_report_mode_and_only_where_the_image_is_reliable(trusted_weights, film):
    from core.serving.predictor import Predictor
    p = Predictor.load(trusted_weights)
    report = p.predict(film, "Lungs are clear.", "report")
    assert report.discordant == ["Cardiomegaly"]
    d = report.discordance[0]
    assert d["finding"] == "Cardiomegaly" and d["direction"] == "image_positive" and d["margin"] == 0.0
    assert report.discordance_score == d["score"] > 0
    indication = p.predict(film, "Cough.", "indication")
    assert indication.discordant == [] and indication.discordance_score == 0.0


def test_every_probability_carries_its_evidence(trusted_weights, film):
    from core.serving.predictor import Predictor
    pred = Predictor.load(trusted_weights).predict(film, "", "none")
    assert set(pred.evidence) == set(FINDINGS)
    assert pred.evidence["Cardiomegaly"]["reliable"] and not pred.evidence["Pneumonia"]["reliable"]
    assert pred.image_reliable == {f: f == "Cardiomegaly" for f in FINDINGS}
    assert set(pred.head_evidence) == {"fusion", "image", "text"}


def test_predict_cli_json_has_evidence(trusted_weights, iu_xray_dir):
    image = sorted((iu_xray_dir / "NLMCXR_png").glob("*.png"))[0]
    res = subprocess.run([sys.executable, "scripts/predict.py", "--weights", str(trusted_weights), "--image",
                          str(image), "--text", "No acute disease.", "--text-mode", "report", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    j = json.loads(res.stdout)
    assert set(j["evidence"]) == set(FINDINGS)
    card = j["evidence"]["Cardiomegaly"]
    assert {k: card[k] for k in ("auc", "ci", "positives", "reliable")} == {"auc": 0.9, "ci": [0.85, 0.95],
                                                                           "positives": 50, "reliable": True}
    assert card["source"].startswith("test split") and card["test"] is None   # no cross-validation in these
    assert j["evidence"]["Pneumonia"]["reliable"] is False
    assert j["discordant"] == ["Cardiomegaly"] and j["discordance"][0]["finding"] == "Cardiomegaly"
    plain = subprocess.run([sys.executable, "scripts/predict.py", "--weights", str(trusted_weights), "--image",
                            str(image)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0 and "Pneumonia      not assessed: not supported from the image" in plain.stdout
    assert np.isfinite(j["discordance_score"])



def test_one_predictor_called_from_two_threads_answers_as_called_serially(tiny_weights, iu_xray_dir):
    """Predictor serialises its own model calls (issue 27; the app's lock used to do it). Grad-CAM hooks
    the eager image encoder that predictions run too before the warm-up: a prediction run inside an
    attribution's forward pass replaced the activations Captum had kept ("the differentiated Tensor
    ... appears to not have been used in the graph"). Here a second thread predicts exactly then, and
    both threads get what serial calls get."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from core.data.images import load_png_gray
    from core.serving.predictor import Predictor
    grays = [load_png_gray(p) for p in sorted((iu_xray_dir / "NLMCXR_png").glob("*.png"))[:2]]
    p = Predictor.load(tiny_weights)
    finding = p.findings[0]

    def explain():
        return p.attribute(grays[0], "Heart size is enlarged.", "report", finding=finding, head="image",
                           method="gradcam").heatmap

    def predict():
        return [(q.fusion, q.image, q.text, q.decision)
                for q in p.predict_batch(grays, ["Cough.", ""], ["indication", "none"])]

    with ThreadPoolExecutor(1) as one:  # serial, on a worker thread as in the app
        serial_heat, serial_preds = one.submit(explain).result(), one.submit(predict).result()

    in_attribution, predicted = threading.Event(), threading.Event()

    def hold(module, inputs, output):  # inside the attribution's forward pass (predictions run without grad)
        if torch.is_grad_enabled() and not in_attribution.is_set():
            in_attribution.set()
            predicted.wait(timeout=3)  # a prediction beside it runs now, unless the predictor makes it wait

    def predict_inside():
        assert in_attribution.wait(60)
        try:
            return predict()
        finally:
            predicted.set()

    handle = p.model.image_proj.register_forward_hook(hold)
    try:
        with ThreadPoolExecutor(2) as pool:
            preds = pool.submit(predict_inside)
            heat = pool.submit(explain)
            preds, heat = preds.result(), heat.result()
    finally:
        handle.remove()
    assert preds == serial_preds
    np.testing.assert_allclose(heat, serial_heat, atol=1e-6)
