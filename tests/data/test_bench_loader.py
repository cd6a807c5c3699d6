"""scripts/bench_loader.py: images/s per worker count on a folder the test makes; bad data -> exit 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.synthetic import make_openi

ROOT = Path(__file__).resolve().parents[2]


def test_bench_loader_json(tmp_path):
    data = make_openi(tmp_path / "data", 12)
    out = tmp_path / "loader.json"
    res = subprocess.run([sys.executable, "scripts/bench_loader.py", "--data", str(data), "--n", "12", "--size", "32",
                          "--batch-size", "4", "--workers", "0", "1", "--upscale", "300", "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    j = json.loads(out.read_text())
    assert j["n_images"] == 12 and set(j["images_per_s"]) == {"0", "1"}
    assert all(v > 0 for v in j["images_per_s"].values())
    bad = subprocess.run([sys.executable, "scripts/bench_loader.py", "--data", str(tmp_path / "nothing")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
