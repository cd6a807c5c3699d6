"""A 2-process gloo torchrun training on the MIMIC-CXR-JPG layout (a tiny copy built from IU
studies), killed after its first checkpoints and resumed on ONE process, then validated
externally on IU reports the copy does not contain: the weights say trained on mimic-cxr,
validated on openi, and evaluate.py scores IU with --split all."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.layouts import iu_studies, iu_subset, make_mimic

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--image-size", "64", "--batch-size", "8", "--image-epochs", "12", "--frozen-epochs", "1",
        "--unfrozen-epochs", "0", "--no-fit-ood", "--aux-terms", "4", "--no-eval"]


def descendants(pid: int) -> list[int]:
    """Child processes (recursively) of a process this test started, from /proc."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        for child in (task / "children").read_text().split():
            out += [int(child), *descendants(int(child))]
    return out


def test_ddp_mimic_resume_on_other_world_size_then_external_iu(tmp_path, iu_xray_dir):
    iu, held_out = iu_subset(iu_xray_dir, tmp_path / "iu", 16)
    data = make_mimic(tmp_path / "mimic", iu_studies(iu_xray_dir, 40, exclude=held_out))
    env = dict(os.environ, CXR_RUNLOG=str(tmp_path / "runs.db"), OMP_NUM_THREADS="1")
    args = ["scripts/train.py", "--dataset", "mimic-cxr", "--data", str(data), "--out", str(tmp_path / "w"),
            "--run-dir", str(tmp_path / "run"), "--uncertain-policy", "ignore", "--loader-workers", "1", *TINY]
    ddp = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                            "29561", *args], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state = tmp_path / "run" / "last.pt"
    deadline = time.time() + 600
    while time.time() < deadline and not state.exists() and ddp.poll() is None:
        time.sleep(0.2)
    for pid in descendants(ddp.pid) + [ddp.pid]:  # both workers (own sessions) and the launcher, mid image phase
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    out = ddp.communicate()[0]
    assert state.exists(), out[-3000:]
    import torch
    saved = torch.load(state, map_location="cpu", weights_only=True)
    assert saved["world"] == 2 and saved["phase"] == "image" and saved["epoch"] < 10, out[-2000:]
    done = saved["epoch"] + 1  # image epochs finished before the kill

    res = subprocess.run([sys.executable, *args, "--external-data", str(iu), "--external-dataset", "openi"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "checkpoint from 2 process(es), resuming on 1" in res.stdout
    assert f"image epoch {done}/12" not in res.stdout and f"image epoch {done + 1}/12" in res.stdout
    meta = json.loads((tmp_path / "w" / "metadata.json").read_text())
    assert meta["trained_on"]["dataset"] == "mimic-cxr" and meta["training_config"]["uncertain_policy"] == "ignore"
    ext = meta["external_validation"][0]
    assert (ext["trained_on"], ext["validated_on"], ext["n_studies"]) == ("mimic-cxr", "openi", 16)
    assert {"report/fusion", "indication/fusion", "none/image"} <= set(ext["results"])
    assert (tmp_path / "w" / "eval" / "external_openi_none_image.json").is_file()

    ev = subprocess.run([sys.executable, "scripts/evaluate.py", "--weights", str(tmp_path / "w"), "--data", str(iu),
                         "--split", "all", "--text-mode", "indication", "--head", "fusion", "--json",
                         str(tmp_path / "e.json"), "--bootstrap", "20"], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600)
    assert ev.returncode == 0, ev.stderr
    j = json.loads((tmp_path / "e.json").read_text())
    assert j["external"] and j["trained_on"] == "mimic-cxr" and j["n_studies"] == 16
    same = ext["results"]["indication/fusion"]["macro_auc"]
    assert abs(j["macro_auc"] - same) < 1e-6 or (j["macro_auc"] != j["macro_auc"] and same != same)
    refused = subprocess.run([sys.executable, "scripts/evaluate.py", "--weights", str(tmp_path / "w"), "--data",
                              str(iu), "--split", "test", "--json", str(tmp_path / "r.json")], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "use --split all" in refused.stderr
