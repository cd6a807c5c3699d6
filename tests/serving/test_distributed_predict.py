"""Sharded, resumable batch inference (core.serving.sharded_batch, scripts/predict.py --batch --out): two
gloo processes under torchrun write exactly what one process writes, row for row; a run
killed with SIGKILL mid-way resumes (here on two processes) with no row twice and none
missing; torn lines are redone; parts of another batch are refused."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.serving.sharded_batch import (
    PartWriter,
    decode_line,
    done_rows,
    encode_line,
    merge,
    my_blocks,
    open_parts,
    parts_dir,
)

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, OMP_NUM_THREADS="1")  # the same threads in every process: same float sums


def test_lines_and_blocks(tmp_path):
    line = encode_line(7, ["a,b.png", "0.123456", ""])
    assert decode_line(line) == (7, ["a,b.png", "0.123456", ""])
    assert decode_line(line[:-1]) is None and decode_line(line[:-5] + "\n") is None
    assert decode_line(line.replace("0.123456", "0.923456")) is None  # altered -> redone
    assert my_blocks(40, set(), 0, 2) == [list(range(16)), list(range(32, 40))]
    assert my_blocks(40, set(), 1, 2) == [list(range(16, 32))]
    assert my_blocks(40, set(range(16)) | {16, 17}, 0, 1) == [list(range(16, 32)), list(range(32, 40))]


def test_torn_part_is_redone_and_merge_refuses_gaps(tmp_path):
    out = tmp_path / "p.csv"
    d = open_parts(out, {"batch_sha256": "x", "model": "m"})
    w = PartWriter(d, 0)
    w.write([(r, [f"img{r}", "0.5"]) for r in range(3)])
    w.close()
    with w.path.open("a") as fh:
        fh.write(encode_line(3, ["img3", "0.5"])[:-4])  # killed mid-line
    assert sorted(done_rows(d)) == [0, 1, 2]
    with pytest.raises(ValueError, match="1 row"):
        merge(out, ["image", "p"], 4)
    with pytest.raises(ValueError, match="another batch"):
        open_parts(out, {"batch_sha256": "y", "model": "m"})
    with open(w.path, "a") as fh:
        fh.write("\n" + encode_line(3, ["img3", "0.5"]) + encode_line(1, ["img1", "0.5"]))  # a duplicate copy
    assert merge(out, ["image", "p"], 4) == 4 and not parts_dir(out).exists()
    assert [r[0] for r in csv.reader(out.open())] == ["image", "img0", "img1", "img2", "img3"]


@pytest.fixture(scope="module")
def batch_csv(tmp_path_factory, iu_xray_dir):
    tmp = tmp_path_factory.mktemp("batch")
    pngs = sorted((iu_xray_dir / "NLMCXR_png").glob("*.png"))[:48]
    texts = ["Heart size is enlarged.", "", "Cough and fever.", "No acute disease, lungs clear"]
    rows = [(str(pngs[i % len(pngs)]), texts[i % 4], ("report", "none", "indication", "report")[i % 4])
            for i in range(200)]
    path = tmp / "studies.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "text", "text_mode"])
        w.writerows(rows)
    return path


def predict(weights, batch, out, nproc=1, port=29541):
    args = ["scripts/predict.py", "--weights", str(weights), "--batch", str(batch), "--out", str(out)]
    if nproc > 1:
        args = ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(port), *args]
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900, env=ENV)


def test_two_processes_equal_one_and_kill_resume(tmp_path, tiny_weights, batch_csv):
    single = tmp_path / "single.csv"
    res = predict(tiny_weights, batch_csv, single)
    assert res.returncode == 0, res.stderr[-2000:]
    want = single.read_text().splitlines()
    assert len(want) == 201 and not parts_dir(single).exists()

    two = tmp_path / "two.csv"
    res = predict(tiny_weights, batch_csv, two, nproc=2)
    assert res.returncode == 0, res.stderr[-2000:]
    assert two.read_text().splitlines() == want  # row for row

    # kill -9 once some blocks are on disk, then resume on two processes
    killed = tmp_path / "killed.csv"
    proc = subprocess.Popen([sys.executable, "scripts/predict.py", "--weights", str(tiny_weights), "--batch",
                             str(batch_csv), "--out", str(killed)], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and len(done_rows(parts_dir(killed))) < 32 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    before = len(done_rows(parts_dir(killed)))
    assert 32 <= before < 200 and not killed.exists()
    res = predict(tiny_weights, batch_csv, killed, nproc=2, port=29542)
    assert res.returncode == 0, res.stderr[-2000:]
    got = killed.read_text().splitlines()
    assert got == want  # no row twice, none missing, same numbers
