"""Train tiny models on the CheXpert and CSV layouts (built from IU studies) and on a
torchxrayvision checkpoint; the weights record the dataset, the uncertain-label policy and
the image encoder's datasets, and evaluate.py refuses data the encoder's pretraining saw."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.layouts import iu_studies, iu_subset, make_chexpert, make_manifest

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--image-size", "64", "--batch-size", "8", "--image-epochs", "1", "--frozen-epochs", "1",
        "--unfrozen-epochs", "0", "--no-fit-ood", "--aux-terms", "4"]
XRV_NAME = "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"


def run(args, tmp, timeout=900):
    env = dict(os.environ, CXR_RUNLOG=str(tmp / "runs.db"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def meta(weights: Path) -> dict:
    return json.loads((weights / "metadata.json").read_text())


def test_csv_layout_trains_with_policy(tmp_path, iu_xray_dir):
    manifest = make_manifest(tmp_path / "export", iu_studies(iu_xray_dir, 30))
    res = run(["scripts/train.py", "--dataset", "csv", "--data", str(manifest), "--out", str(tmp_path / "w"),
               "--run-dir", str(tmp_path / "run"), "--uncertain-policy", "positive", *TINY, "--no-eval"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    m = meta(tmp_path / "w")
    assert m["trained_on"]["dataset"] == "csv" and m["training_config"]["uncertain_policy"] == "positive"
    assert "uncertain: positive" in m["label_source"] and m["image_encoder_datasets"] == ["csv"]
    assert sorted(u for v in m["split"].values() for u in v) == sorted(f"{50000000 + i}" for i in range(30))


def test_chexpert_on_torchxrayvision_weights_and_refusal(tmp_path, iu_xray_dir):
    from tests.xrv_fake import write_checkpoint
    ckpt = tmp_path / XRV_NAME
    write_checkpoint(ckpt)
    data = make_chexpert(tmp_path / "CheXpert-v1.0-small", iu_studies(iu_xray_dir, 30), n_valid=6)
    res = run(["scripts/train.py", "--dataset", "chexpert", "--data", str(data), "--out", str(tmp_path / "w"),
               "--run-dir", str(tmp_path / "run"), "--image-weights", str(ckpt), "--unfreeze", "none", *TINY], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    m = meta(tmp_path / "w")
    assert m["backbones"]["image_pretraining"]["kind"] == "torchxrayvision"
    assert set(m["image_encoder_datasets"]) == {"chexpert", "mimic-cxr", "nih", "openi", "padchest"}
    assert (m["preprocessing"]["mean"], m["preprocessing"]["std"]) == (0.5, 1 / 2048)  # xrv's [-1024, 1024] scaling
    assert "image_s" not in m["timings"]  # no from-scratch image phase on pretrained weights
    iu, _ = iu_subset(iu_xray_dir, tmp_path / "iu", 12)
    refused = run(["scripts/evaluate.py", "--weights", str(tmp_path / "w"), "--data", str(iu), "--split", "all",
                   "--text-mode", "none", "--head", "image", "--json", str(tmp_path / "e.json")], tmp_path)
    assert refused.returncode == 2 and not (tmp_path / "e.json").exists()
    assert refused.stderr.count("\n") == 1 and "pretrained on openi" in refused.stderr
    # CheXpert is in the pretraining too: even its held-out split is refused
    same = run(["scripts/evaluate.py", "--weights", str(tmp_path / "w"), "--dataset", "chexpert", "--data", str(data),
                "--split", "test", "--text-mode", "none", "--head", "image", "--json", str(tmp_path / "t.json")],
               tmp_path)
    assert same.returncode == 2 and "pretrained on chexpert" in same.stderr
    # a hospital export nobody trained on is an external validation (other IU studies than the training copy)
    export = make_manifest(tmp_path / "export", iu_studies(iu_xray_dir, 16, offset=40))
    ok = run(["scripts/evaluate.py", "--weights", str(tmp_path / "w"), "--dataset", "csv", "--data", str(export),
              "--split", "all", "--text-mode", "none", "--head", "image", "--json", str(tmp_path / "x.json"),
              "--bootstrap", "20"], tmp_path)
    assert ok.returncode == 0, ok.stderr
    j = json.loads((tmp_path / "x.json").read_text())
    assert j["n_studies"] == 16 and j["trained_on"] == "chexpert" and j["validated_on"] == "csv" and j["external"]
    split = run(["scripts/evaluate.py", "--weights", str(tmp_path / "w"), "--dataset", "csv", "--data", str(export),
                 "--split", "test", "--text-mode", "none", "--head", "image", "--json", str(tmp_path / "s.json")],
                tmp_path)
    assert split.returncode == 2 and "use --split all" in split.stderr


def test_bad_inputs_exit_2_one_line(tmp_path):
    from tests.layouts import make_mimic, synthetic_studies
    root = make_mimic(tmp_path / "mimic", synthetic_studies(8))
    (root / "mimic-cxr-2.0.0-split.csv.gz").unlink()
    cases = [
        ["scripts/train.py", "--dataset", "mimic-cxr", "--data", str(root), "--out", str(tmp_path / "w")],
        ["scripts/train.py", "--dataset", "chexpert", "--data", str(tmp_path), "--out", str(tmp_path / "w")],
        ["scripts/train.py", "--dataset", "padchest", "--data", str(tmp_path), "--out", str(tmp_path / "w")],
        ["scripts/train.py", "--dataset", "csv", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "w")],
        ["scripts/train.py", "--data", str(tmp_path), "--out", str(tmp_path / "w"), "--uncertain-policy", "maybe"],
        ["scripts/train.py", "--dataset", "csv", "--data", str(make_manifest(tmp_path / "c", synthetic_studies(20))),
         "--out", str(tmp_path / "w"), "--image-weights", str(tmp_path / "missing.pt")],
    ]
    for args in cases:
        res = run(args, tmp_path, timeout=300)
        assert res.returncode == 2, (args, res.stderr[-500:])
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: ") and "Traceback" not in res.stderr
