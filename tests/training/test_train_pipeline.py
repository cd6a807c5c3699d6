"""End to end on a small folder the test makes: train -> evaluate -> predict, resume from
a checkpoint, and a 2-process DistributedDataParallel run on CPU (gloo)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.synthetic import make_openi

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--image-size", "32", "--batch-size", "8", "--image-epochs", "1", "--frozen-epochs", "2",
        "--unfrozen-epochs", "1", "--no-fit-ood", "--aux-terms", "4"]


def run(args, env_extra=None, timeout=600):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    data = make_openi(tmp / "data", 40)
    env = {"CXR_RUNLOG": str(tmp / "runs.db")}
    res = run(["scripts/train.py", "--data", str(data), "--out", str(tmp / "w"), "--run-dir", str(tmp / "run"), *TINY],
              env)
    assert res.returncode == 0, res.stderr[-2000:]
    return tmp, data, res


def test_train_writes_weights_eval_and_runlog(trained):
    tmp, _, res = trained
    w = tmp / "w"
    meta = json.loads((w / "metadata.json").read_text())
    for key in ("labels", "thresholds", "preprocessing", "backbones", "split", "training_config", "git_commit",
                "text_max_len", "model_config"):
        assert key in meta
    assert set(meta["thresholds"]) == {"report", "indication", "none"}
    evals = sorted(p.name for p in (w / "eval").glob("*.json"))
    assert "test_report_fusion.json" in evals and "test_keyword_baseline.json" in evals
    from core.training.run_log import read_runs, read_table
    runs = read_runs(tmp / "runs.db")
    assert runs[0]["status"] == "finished"
    phases = {row["phase"] for row in read_table("epochs", runs[0]["id"], tmp / "runs.db")}
    assert phases == {"image", "frozen", "unfrozen"}
    assert read_table("steps", runs[0]["id"], tmp / "runs.db")


def test_evaluate_json_schema(trained):
    tmp, data, _ = trained
    out, csv_out = tmp / "e.json", tmp / "e.csv"
    res = run(["scripts/evaluate.py", "--weights", str(tmp / "w"), "--data", str(data), "--split", "all",
               "--text-mode", "indication", "--head", "image", "--json", str(out), "--predictions", str(csv_out),
               "--bootstrap", "50"])
    assert res.returncode == 0, res.stderr
    j = json.loads(out.read_text())
    for key in ("n_studies", "auc", "auc_ci", "macro_auc", "macro_auc_ci", "auprc", "ece", "thresholds",
                "keyword_baseline"):
        assert key in j
    assert j["n_studies"] == 40
    assert set(j["auc"]) == {"Pneumonia", "Edema", "Cardiomegaly", "Atelectasis", "Consolidation"}
    lines = csv_out.read_text().splitlines()
    assert lines[0].startswith("uid,image_id,Pneumonia") and len(lines) == 41


def test_predict_json_schema(trained):
    tmp, data, _ = trained
    image = next((data / "NLMCXR_png").glob("*.png"))
    res = run(["scripts/predict.py", "--weights", str(tmp / "w"), "--image", str(image), "--text",
               "Heart is enlarged.", "--text-mode", "report", "--json"])
    assert res.returncode == 0, res.stderr
    j = json.loads(res.stdout)
    for key in ("fusion", "image", "text", "thresholds", "discordant", "out_of_distribution", "model"):
        assert key in j
    assert all(0 <= v <= 1 for v in j["fusion"].values())
    batch = tmp / "batch.csv"
    batch.write_text(f"image,text,text_mode\n{image},No pneumonia.,report\n{image},,none\n")
    res = run(["scripts/predict.py", "--weights", str(tmp / "w"), "--batch", str(batch), "--json"])
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.strip().splitlines()) == 2


def test_resume_continues_from_checkpoint(tmp_path):
    data = make_openi(tmp_path / "data", 30)
    args = ["scripts/train.py", "--data", str(data), "--out", str(tmp_path / "w"), "--run-dir", str(tmp_path / "run"),
            *TINY, "--no-eval"]
    env = {"CXR_RUNLOG": str(tmp_path / "runs.db")}
    first = run(args[:-1] + ["--frozen-epochs", "0", "--unfrozen-epochs", "0", "--no-eval"], env)
    assert first.returncode == 0, first.stderr[-2000:]
    second = run(args, env)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resuming from" in second.stdout
    assert "image epoch" not in second.stdout  # the finished image phase is not redone


def test_ddp_two_processes_gloo(tmp_path):
    data = make_openi(tmp_path / "data", 24)
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "scripts/train.py", "--data", str(data), "--out", str(tmp_path / "w"), "--run-dir", str(tmp_path / "run"),
         *TINY, "--no-eval"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, CXR_RUNLOG=str(tmp_path / "runs.db"), OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "w" / "model.safetensors").is_file()
