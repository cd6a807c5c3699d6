"""Comparing two cross-validated recipes on the same held-out reports (core.evaluation.cross_validation.compare,
scripts/compare_cv.py): the paired difference finds a real gain and is zero against itself."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from core.data.labels import FINDINGS
from core.evaluation.cross_validation import compare

ROOT = Path(__file__).resolve().parents[2]


def _write_fold(path: Path, uids, P, Y) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["uid", *FINDINGS, *[f"label_{f}" for f in FINDINGS]])
        for u, p, y in zip(uids, P, Y, strict=True):
            w.writerow([u, *[f"{x:.6f}" for x in p], *[int(v) for v in y]])


def _recipes(tmp_path):
    rng = np.random.default_rng(0)
    Y = (rng.random((400, len(FINDINGS))) < 0.25).astype(float)
    good = np.clip(0.35 * Y + 0.65 * rng.random(Y.shape), 0, 1)  # informative
    noise = rng.random(Y.shape)  # chance
    uids = [str(i) for i in range(len(Y))]
    for k, rows in enumerate((slice(0, 200), slice(200, 400))):
        _write_fold(tmp_path / "a" / f"fold{k}" / "oof_none_image.csv", uids[rows], good[rows], Y[rows])
        _write_fold(tmp_path / "b" / f"fold{k}" / "oof_none_image.csv", uids[rows][::-1], noise[rows][::-1],
                    Y[rows][::-1])  # another row order: matched by report, not by position
    _write_fold(tmp_path / "a" / "fold2" / "oof_none_image.csv", ["x"], good[:1], Y[:1])  # only A finished it


def test_paired_difference_finds_the_better_recipe_on_the_shared_folds(tmp_path):
    _recipes(tmp_path)
    out = compare(tmp_path / "a", "none_image", tmp_path / "b", "none_image", n_boot=200)
    assert out["folds"] == ["fold0", "fold1"] and out["n_studies"] == 400
    assert out["macro"]["diff"] > 0.2 and out["macro"]["diff_ci"][0] > 0.1
    for row in out["findings"].values():
        assert row["diff_ci"][0] < row["diff"] < row["diff_ci"][1] and row["diff_ci"][0] > 0
    same = compare(tmp_path / "a", "none_image", tmp_path / "a", "none_image", n_boot=50)
    assert same["macro"]["diff"] == 0 and same["macro"]["diff_ci"] == [0.0, 0.0]


def test_compare_cli_prints_the_table_and_refuses_folders_without_common_folds(tmp_path):
    _recipes(tmp_path)
    cmd = [sys.executable, "scripts/compare_cv.py", "--a", f"{tmp_path / 'a'}:none_image",
           "--b", f"{tmp_path / 'b'}:none_image", "--n-boot", "50", "--json", str(tmp_path / "c.json")]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "400 held-out reports" in out.stdout and "macro" in out.stdout
    assert json.loads((tmp_path / "c.json").read_text())["folds"] == ["fold0", "fold1"]
    bad = subprocess.run([*cmd[:3], f"{tmp_path / 'a'}:none_views", *cmd[4:6]], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "no fold has oof_none_views.csv" in bad.stderr and "Traceback" not in bad.stderr


def test_an_ensemble_averages_its_members_on_the_reports_all_of_them_scored(tmp_path):
    from core.evaluation.metrics import safe_auc
    _recipes(tmp_path)
    # an ensemble of a recipe with itself is that recipe
    alone = compare(tmp_path / "a", "none_image", tmp_path / "b", "none_image", n_boot=50)
    twice = compare([tmp_path / "a", tmp_path / "a"], "none_image", tmp_path / "b", "none_image", n_boot=50)
    assert twice["macro"]["a"] == alone["macro"]["a"] and twice["n_studies"] == alone["n_studies"]
    # A + B averaged, by report (B's rows are in another order), on the folds both finished
    both = compare([tmp_path / "a", tmp_path / "b"], "none_image", tmp_path / "b", "none_image", n_boot=50)
    assert both["folds"] == ["fold0", "fold1"] and both["a"].endswith("/a+" + str(tmp_path / "b") + ":none_image")
    rows = [row for k in (0, 1) for row in _rows(tmp_path / "a" / f"fold{k}" / "oof_none_image.csv")]
    b = {u: p for k in (0, 1) for u, p, _ in _rows(tmp_path / "b" / f"fold{k}" / "oof_none_image.csv")}
    P = np.array([(p + b[u]) / 2 for u, p, _ in rows])
    Y = np.array([y for _, _, y in rows])
    for k, f in enumerate(FINDINGS):
        assert abs(both["findings"][f]["a"] - safe_auc(Y[:, k], P[:, k])) < 1e-9
    cmd = [sys.executable, "scripts/compare_cv.py", "--a", f"{tmp_path / 'a'}+{tmp_path / 'b'}:none_image",
           "--b", f"{tmp_path / 'b'}:none_image", "--n-boot", "50"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "400 held-out reports" in out.stdout, out.stderr


def _rows(path):
    from core.evaluation.cross_validation import read_predictions_csv
    return list(zip(*read_predictions_csv(path), strict=True))


def test_fold_seed_keeps_the_folds_while_the_training_seed_changes(tmp_path, iu_xray_dir):
    """A seed ensemble trains each member on the same reports: --fold-seed fixes the folds (and
    the inner splits), --seed only the training. Fold 9 of 2 does not exist, so nothing trains."""
    import os

    def folds(*flags):
        name = "run" + "".join(flags).replace("-", "_")
        cmd = [sys.executable, "scripts/cv.py", "--data", str(iu_xray_dir), "--name", name, "--root", str(tmp_path),
               "--folds", "2", "--only-fold", "9", "--max-reports", "200", *flags]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "CXR_RUNLOG": str(tmp_path / "runs.db")})
        assert out.returncode == 2 and "no finished fold" in out.stderr, out.stderr[-2000:]
        return json.loads((tmp_path / name / "folds.json").read_text())["folds"]

    base = folds()
    assert folds("--seed", "1", "--fold-seed", "0") == base
    assert folds("--seed", "1") != base
