"""A sixth finding, end to end, with no code change: weights that name six findings load,
predict and explain all six; the prediction log (a real file that already holds five-finding
rows, from before the findings table existed) gains a column for the new one; rows read back,
filter, take verdicts and export with the new finding's columns, old rows blank there."""
from __future__ import annotations

import csv
import io
import sqlite3

import numpy as np
import pytest
import torch

from core.data.labels import FINDINGS, HEADS, TEXT_MODES
from core.model.checkpoint import read_metadata, save_weights
from core.model.fusion import ModelConfig, build_model
from core.store import LogEntry, PredictionStore, prob_column

SIX = (*FINDINGS, "Pleural Effusion")  # a space in the name: columns must still be safe


def five(p: float) -> dict:
    return {f: p for f in FINDINGS}


@pytest.fixture(scope="module")
def six_weights(tmp_path_factory):
    """Six-finding weights of the shipped architecture (BERT family), saved by the project's writer."""
    torch.manual_seed(0)
    model, _ = build_model(ModelConfig(num_findings=len(SIX), embed_dim=32))
    model.eval()
    meta = {"version": "six-1", "labels": list(SIX), "text_max_len": 64,
            "preprocessing": {"image_size": 64, "mean": 0.5, "std": 0.25},
            "thresholds": {m: {h: {f: 0.5 for f in SIX} for h in HEADS} for m in TEXT_MODES}}
    out = tmp_path_factory.mktemp("six")
    save_weights(model, meta, out)
    return out


@pytest.fixture
def old_log(tmp_path, monkeypatch):
    """A log written before the findings table (schema 2) holding five-finding rows."""
    from core.store import schema
    path = tmp_path / "log.db"
    with monkeypatch.context() as patch:
        patch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
        PredictionStore(path)
    row = LogEntry(model_version="five-1", image_png=None, image_name="old.png", image_sha256=None,
                   text="Heart is enlarged.", text_mode="report", fusion=five(0.7), image=five(0.6),
                   text_probs=five(0.8), thresholds={h: five(0.5) for h in HEADS}).row()
    for column in ("calibrated", "decision", "operating_point_name", "operating_point", "not_assessed", "n_flagged"):
        row.pop(column)  # schema 4's and 5's columns
    with sqlite3.connect(path) as conn:
        conn.execute(f"INSERT INTO predictions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                     list(row.values()))
    return path


def test_weights_carry_six_findings(six_weights):
    meta = read_metadata(six_weights)
    assert meta["labels"] == list(SIX) and meta["heads"] == list(HEADS) and meta["text_modes"] == list(TEXT_MODES)
    assert meta["model_config"]["num_findings"] == 6


def test_sixth_finding_end_to_end(six_weights, old_log):
    from core.serving.predict_and_log import Study, predict_and_log
    from core.serving.predictor import Predictor

    predictor = Predictor.load(six_weights)
    assert predictor.findings == SIX
    gray = (np.random.default_rng(1).random((80, 80)) * 255).astype(np.uint8)
    png = io.BytesIO()
    from PIL import Image
    Image.fromarray(gray).save(png, format="PNG")

    store = PredictionStore(old_log)  # migration 3 runs: the log learns the five it has columns for
    assert store.findings() == list(FINDINGS)
    store.log_prediction(LogEntry(model_version="five-1", image_png=None, image_name="five.png", image_sha256=None,
                                  text="", text_mode="none", fusion=five(0.2), image=five(0.2), text_probs=None,
                                  thresholds={h: five(0.5) for h in HEADS}))
    done = predict_and_log(predictor, store, Study(gray, png.getvalue(), "six.png", "Small left effusion.",
                                                   "report"), source="cli", keep_name=True)
    assert done.row_id is not None and done.log_error is None
    pred = done.prediction
    assert list(pred.fusion) == list(SIX) and set(pred.head_thresholds["image"]) == set(SIX)
    assert set(pred.evidence) == set(SIX) and pred.image_reliable["Pleural Effusion"] is False

    assert store.findings() == list(SIX)
    with sqlite3.connect(old_log) as conn:
        columns = {n for (n,) in conn.execute("SELECT name FROM pragma_table_info('predictions')")}
    assert prob_column("Pleural Effusion") == "fusion_pleural_effusion" in columns

    row = store.get(done.row_id)
    assert row["fusion"]["Pleural Effusion"] == pytest.approx(pred.fusion["Pleural Effusion"])
    hits = store.list_predictions(finding="Pleural Effusion", min_prob=0.0)
    assert [r["id"] for r in hits] == [done.row_id]  # the old rows have no value for it
    store.set_verdict(done.row_id, "Pleural Effusion", "present", reviewer="rad")

    rows = list(csv.DictReader(io.StringIO(store.export_csv(store.list_predictions(limit=None, with_verdicts=True)))))
    assert len(rows) == 3
    new = next(r for r in rows if r["id"] == str(done.row_id))
    assert float(new["fusion_pleural_effusion"]) == pytest.approx(pred.fusion["Pleural Effusion"], abs=1e-6)
    assert new["verdict_pleural_effusion"] == "present" and new["threshold_pleural_effusion"] == "0.5"
    assert all(r["fusion_pleural_effusion"] == "" for r in rows if r["id"] != str(done.row_id))
    assert {r["fusion_edema"] != "" for r in rows} == {True}
    assert set(store.frame(limit=None).columns) >= {"fusion_pleural_effusion", "image_pleural_effusion"}

    attr = predictor.attribute(gray, "Small left effusion.", "report", finding="Pleural Effusion",
                               head="fusion", method="gradcam")
    assert attr.heatmap.shape == (64, 64) and attr.words


def test_a_finding_that_clashes_with_a_column_is_refused(tmp_path):
    from core.errors import CxrError
    store = PredictionStore(tmp_path / "log.db")
    clash = {**five(0.1), "edema!": 0.1}  # same column as Edema
    with pytest.raises(CxrError, match="share the column"):
        store.log_prediction(LogEntry(model_version="x", image_png=None, image_name="x.png", image_sha256=None, text="",
                                      text_mode="none", fusion=clash, image=clash, text_probs=None,
                                      thresholds=clash, findings=list(clash)))
    assert store.count() == 0 and store.findings() == list(FINDINGS)


def test_cli_writes_the_sixth_finding(six_weights, tmp_path):
    """scripts/predict.py --batch --out: one column per finding of the weights."""
    from PIL import Image

    from scripts.predict import main
    Image.fromarray((np.random.default_rng(2).random((70, 70)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "batch.csv").write_text("image,text\na.png,Small left effusion.\n")
    out = tmp_path / "out.csv"
    assert main(["--weights", str(six_weights), "--batch", str(tmp_path / "batch.csv"), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    # the batch form names the study (image, your id) and the mode read before the findings
    assert list(rows[0])[:9] == ["image", "id", "text_mode", *SIX] and 0 <= float(rows[0]["Pleural Effusion"]) <= 1


def test_evaluation_refuses_weights_whose_findings_differ_from_the_data_labels(six_weights):
    from core.evaluation.split_eval import require_label_order
    from core.model.description import FactsError
    require_label_order({"labels": list(FINDINGS)})
    with pytest.raises(FactsError, match="evaluate with the labels they were trained on"):
        require_label_order(read_metadata(six_weights))


def test_facts_fall_back_for_old_weights_and_refuse_what_the_code_cannot_run():
    from core.model.description import FactsError, ModelFacts, model_facts
    assert model_facts({}) == ModelFacts(FINDINGS, HEADS, TEXT_MODES)  # weights from before the facts
    assert model_facts({"labels": list(SIX)}).findings == SIX
    with pytest.raises(FactsError, match="update the tool"):
        model_facts({"heads": ["fusion", "image", "text", "ensemble"]})
    with pytest.raises(FactsError, match="distinct"):
        model_facts({"labels": ["Edema", "Edema"]})


SIXTH_RECORD = '''
import core.data.findings as F
F.RECORDS.append(F.Finding(
    "Pleural Effusion", "Pleural effusion", mesh=("pleural effusion",), keywords=(r"effusion",),
    rule_out=r"\\b(no|without)\\b[^.;]{0,60}\\beffusion", topic=r"effusion|pleura",
    denial="No pleural effusion.", assertion="There is a small right pleural effusion.", snomed="60046008"))
'''

SIXTH_REACHES = SIXTH_RECORD + '''
import json, tempfile
from pathlib import Path
import numpy as np
from core.data.labels import FINDINGS, labels_from_mesh
from core.evaluation.keyword_baseline import keyword_scores, rules_out
from core.evaluation.report_edits import edit_report
from core.evaluation import recalibration as R
from core.evaluation.model_card import model_card
from core.model.description import ModelDescription
from core.pacs.sr import _finding_code

out = {"findings": list(FINDINGS), "labels": labels_from_mesh(["Pleural Effusion/right", "Cardiomegaly/mild"])}
report = "The heart is normal. Small right pleural effusion."
out["keywords"] = [float(x) for x in keyword_scores(report)]
out["ruled_out"] = rules_out("No pleural effusion.", "Pleural Effusion")
out["deny"] = edit_report(report, "Pleural Effusion", "deny")
out["add"] = edit_report("The heart is normal.", "Pleural Effusion", "add")
code = _finding_code("Pleural Effusion")
out["sr_code"] = [code.value, code.scheme_designator, code.meaning]
reliable = {f: f in ("Cardiomegaly", "Pleural Effusion") for f in FINDINGS}
table = {"none": {"image": {f: {"auc": 0.8, "ci": [0.7, 0.9], "positives": 40, "reliable": reliable[f]}
                            for f in FINDINGS}}}
desc = ModelDescription(findings=FINDINGS, evidence={"image_reliable": reliable, "table": table})
out["supported"] = desc.supported
rng = np.random.default_rng(0)
Y = (rng.random((400, len(FINDINGS))) < 0.3).astype(float)
P = np.clip(Y * 0.5 + rng.random(Y.shape) * 0.5, 0.01, 0.99)
maps = R.fit_maps({"none": {"image": P}}, Y, FINDINGS)
out["calibrated"] = maps["none"]["image"]["Pleural Effusion"].calibrated
out["pooled"] = R.pooled_top_bin(Y, P, FINDINGS, pool=out["supported"])["findings"]
eval_dir = Path(tempfile.mkdtemp())
(eval_dir / "recalibration.json").write_text(json.dumps({"fitted_on": {"split": "val"},
    "maps": {"none": {"image": {f: m.to_dict() for f, m in maps["none"]["image"].items()}}},
    "supported": out["supported"]}))
card = model_card(desc, eval_dir)
out["card"] = [[f.name, f.display] for f in card.findings]
out["card_supported"] = card.supported
out["card_uncalibrated"] = card.calibration.uncalibrated
print(json.dumps(out))
'''


def test_a_sixth_finding_record_reaches_every_reader():
    """One more ``Finding`` in core/data/findings.py, nothing else changed: the labels, the keyword baseline
    and its negation rule, report QA's edits, the SR's code, recalibration (which pools it once the weights'
    evidence says the image supports it) and the model card all carry it."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    while not (root / "core").is_dir():
        root = root.parent
    done = subprocess.run([sys.executable, "-c", SIXTH_REACHES], cwd=root, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["findings"] == [*FINDINGS, "Pleural Effusion"]
    assert out["labels"] == [0, 0, 1, 0, 0, 1]
    assert out["keywords"][-1] > 0 and out["ruled_out"]
    assert "effusion" not in out["deny"].replace("No pleural effusion.", "") and out["deny"].endswith(
        "No pleural effusion.")
    assert out["add"].endswith("There is a small right pleural effusion.")
    assert out["sr_code"] == ["60046008", "SCT", "Pleural effusion"]
    assert out["supported"] == ["Cardiomegaly", "Pleural Effusion"]
    assert out["calibrated"] and "Pleural Effusion" in out["pooled"]
    assert ["Pleural Effusion", "Pleural effusion"] in out["card"]
    assert out["card_supported"] == ["Cardiomegaly", "Pleural Effusion"] and out["card_uncalibrated"] == []
