"""Lateral views as training data and as a second view (issue 9: the lever measured by
`scripts/cv.py --laterals`)."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from core.data.laterals import lateral_paths
from core.evaluation.cross_validation import read_predictions_csv

ROOT = Path(__file__).resolve().parents[2]


def test_lateral_paths_reads_the_manifest_keeps_existing_files_and_filters_by_report(tmp_path):
    (tmp_path / "lateral").mkdir()
    for name in ("CXR1_IM-1-2001", "CXR1_IM-1-3001", "CXR2_IM-2-2001"):
        (tmp_path / "lateral" / f"{name}.jpg").write_bytes(b"jpeg")
    with (tmp_path / "lateral_manifest.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_id", "uid", "view", "width", "height"])
        w.writerows([["CXR1_IM-1-2001", "1", "lateral", 256, 256], ["CXR1_IM-1-3001", "1", "lateral", 256, 256],
                     ["CXR2_IM-2-2001", "2", "lateral", 256, 256], ["CXR3_IM-3-2001", "3", "lateral", 256, 256]])
    found = lateral_paths(tmp_path)
    assert {u: [p.name for p in ps] for u, ps in found.items()} == {
        "1": ["CXR1_IM-1-2001.jpg", "CXR1_IM-1-3001.jpg"], "2": ["CXR2_IM-2-2001.jpg"]}  # report 3: no file
    assert list(lateral_paths(tmp_path, ["2", "3"])) == ["2"]
    assert lateral_paths(tmp_path / "elsewhere") == {}  # a folder without laterals


def test_cross_validation_with_laterals_scores_the_image_head_over_both_views(tmp_path, iu_xray_dir):
    """A tiny fold trained with --laterals: the held-out reports get an image-only prediction
    from the frontal film (oof_none_image) and one over frontal + lateral (oof_none_views);
    they differ exactly for the reports that have a lateral."""
    cmd = [sys.executable, "scripts/cv.py", "--data", str(iu_xray_dir), "--name", "lat", "--root", str(tmp_path),
           "--folds", "2", "--only-fold", "0", "--max-reports", "80", "--image-size", "64", "--image-epochs", "1",
           "--frozen-epochs", "1", "--unfrozen-epochs", "0", "--laterals"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "CXR_RUNLOG": str(tmp_path / "runs.db")})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "laterals:" in out.stdout and "in the training split" in out.stdout
    fold = tmp_path / "lat" / "fold0"
    uids, frontal, labels = read_predictions_csv(fold / "oof_none_image.csv")
    uids_v, views, labels_v = read_predictions_csv(fold / "oof_none_views.csv")
    assert uids == uids_v and np.array_equal(labels, labels_v)
    with_lateral = set(lateral_paths(iu_xray_dir, uids))
    assert with_lateral  # (in the first 80 reports nearly every one has a lateral)
    for uid, a, b in zip(uids, frontal, views, strict=True):
        if uid in with_lateral:
            assert not np.allclose(a, b, atol=1e-6), uid
        else:
            assert np.allclose(a, b, atol=1e-6), uid
    assert "none_views" in (tmp_path / "lat" / "summary.json").read_text()
