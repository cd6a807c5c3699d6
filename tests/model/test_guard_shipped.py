"""The guard that ships in weights/ (not a freshly fitted one), on films it was never fit on.

Targets (issue 9): <= 2% of real frontal films of the val + test splits flagged; >= 95% of
real laterals flagged *as laterals*; >= 90% of halves and centre crops of films; >= 95% of
the non-chest set. Rates are printed so they can be quoted:
    python -m pytest -q tests/model/test_guard_shipped.py -s
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.model.guard import LATERAL_REASON, OODDetector

ROOT = Path(__file__).resolve().parents[2]


def gray(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


@pytest.fixture(scope="module")
def shipped():
    from safetensors import safe_open

    from core.model.checkpoint import OOD_PREFIX, WEIGHTS_FILE, read_metadata
    path = ROOT / "weights" / WEIGHTS_FILE
    if not path.is_file():
        pytest.skip("no shipped weights in weights/")
    with safe_open(str(path), framework="pt") as fh:
        tensors = {k[len(OOD_PREFIX):]: fh.get_tensor(k) for k in fh.keys() if k.startswith(OOD_PREFIX)}
    return OODDetector.from_tensors(tensors), read_metadata(ROOT / "weights")


@pytest.fixture(scope="module")
def held_out(shipped, iu_xray_dir):
    """Frontal and lateral films of the val and test splits (the guard was fit on train)."""
    _, meta = shipped
    held = set(meta["split"]["val"]) | set(meta["split"]["test"])
    with open(iu_xray_dir / "manifest.csv", newline="") as fh:
        frontal = [gray(iu_xray_dir / "NLMCXR_png" / f"{r['image_id']}.png") for r in csv.DictReader(fh)
                   if r["uid"] in held]
    lateral = []
    if (iu_xray_dir / "lateral_manifest.csv").is_file():
        with open(iu_xray_dir / "lateral_manifest.csv", newline="") as fh:
            lateral = [gray(iu_xray_dir / "lateral" / f"{r['image_id']}.jpg") for r in csv.DictReader(fh)
                       if r["uid"] in held]
    return frontal, lateral


def share(det, images) -> tuple[float, list]:
    results = [det.check(g) for g in images]
    return float(np.mean([r.out_of_distribution for r in results])), results


def test_real_frontal_films_pass(shipped, held_out, capsys):
    rate, _ = share(shipped[0], held_out[0])
    with capsys.disabled():
        print(f"\n[guard] real frontal films (val+test, n={len(held_out[0])}): {rate:.1%} flagged")
    assert len(held_out[0]) >= 500 and rate <= 0.02


def test_laterals_flagged_as_laterals(shipped, held_out, capsys):
    if not held_out[1]:
        pytest.skip("this copy of IU X-ray has no lateral/ folder")
    rate, results = share(shipped[0], held_out[1])
    as_lateral = float(np.mean([r.reason == LATERAL_REASON for r in results]))
    with capsys.disabled():
        print(f"[guard] real laterals (n={len(results)}): {rate:.1%} flagged, {as_lateral:.1%} as '{LATERAL_REASON}'")
    assert rate >= 0.95 and as_lateral >= 0.95


def test_parts_of_a_film_flagged(shipped, held_out, capsys):
    films = held_out[0][:400]
    crops = {
        "upper half": [g[: g.shape[0] // 2] for g in films],
        "lower half": [g[g.shape[0] // 2:] for g in films],
        "left half": [g[:, : g.shape[1] // 2] for g in films],
        "right half": [g[:, g.shape[1] // 2:] for g in films],
        "centre 50%": [g[g.shape[0] // 4: 3 * g.shape[0] // 4, g.shape[1] // 4: 3 * g.shape[1] // 4] for g in films],
    }
    rates = {k: share(shipped[0], v)[0] for k, v in crops.items()}
    with capsys.disabled():
        print("[guard] parts of films (n=400 each): " + ", ".join(f"{k} {v:.1%}" for k, v in rates.items()))
    assert all(v >= 0.90 for v in rates.values()), rates


def test_non_chest_images_flagged(shipped, capsys):
    from tests.model.test_ood import flagged, non_chest_images
    cats = non_chest_images(np.random.default_rng(0))
    items = [x for v in cats.values() for x in v]
    rate, n = flagged(shipped[0], items)
    with capsys.disabled():
        print(f"[guard] non-chest images (n={n}): {rate:.1%} flagged")
    assert n >= 80 and rate >= 0.95
