"""core.model.guard: the "is this a frontal chest X-ray?" guard.

Rates on real data are printed (pytest -q shows them) so they can be quoted:
    python -m pytest -q tests/model/test_ood.py
The first tests need no data (synthetic chest-like images); the rest use the IU X-ray copy
(skipped with a reason when absent) and non-chest images made here or shipped in packages."""
from __future__ import annotations

import gzip
import importlib.util
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from core.data.images import ImageDecodeError, decode_image, load_png_gray
from core.errors import DataError
from core.model.description import WeightsError
from core.model.guard import KEYS, OODDetector, OODResult, fit_ood

N_FIT = 1500


def report(capsys, title: str, rates: dict[str, tuple[float, int]]) -> None:
    with capsys.disabled():
        print(f"\n[ood] {title}")
        for name, (rate, n) in rates.items():
            print(f"[ood]   {name:<34} {100 * rate:5.1f}% flagged  (n={n})")


def flagged(det: OODDetector, items) -> tuple[float, int]:
    results = [det.check(g, c) for g, c in items]
    return float(np.mean([r.out_of_distribution for r in results])), len(results)


# ---------------------------------------------------------------- synthetic, no data needed

def synthetic_chest(rng: np.random.Generator, h: int = 160, w: int = 140) -> np.ndarray:
    """Bright torso, two dark lungs, a bright spine, jittered: chest-like, not a real CXR."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    cx, s = 0.5 + rng.normal(0, 0.02), 1 + rng.normal(0, 0.05)
    img = 40 + 150 * (((x - cx) / (0.45 * s)) ** 2 + ((y - 0.55) / 0.6) ** 2 < 1)
    for side in (-1, 1):
        lung = ((x - cx - side * 0.18 * s) / (0.13 * s)) ** 2 + ((y - 0.45) / (0.3 * s)) ** 2 < 1
        img = np.where(lung, img - 110 + rng.normal(0, 8), img)
    img = img + 60 * (np.abs(x - cx) < 0.04) + rng.normal(0, 6, (h, w))
    small = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).resize((w // 4, h // 4), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR))


@pytest.fixture(scope="module")
def synthetic_detector():
    rng = np.random.default_rng(0)
    train = [synthetic_chest(rng) for _ in range(200)]
    return OODDetector.from_tensors(fit_ood(train, n_components=8)), rng


def test_synthetic_guard_behaviour(synthetic_detector):
    det, rng = synthetic_detector
    held_out = [(synthetic_chest(rng), 0.0) for _ in range(100)]
    assert flagged(det, held_out)[0] <= 0.10
    noise = rng.integers(0, 256, (128, 128)).astype(np.uint8)
    assert det.check(noise).out_of_distribution
    result = det.check(held_out[0][0], colorfulness=0.3)
    assert result == OODResult(True, result.score, "colour photograph") and result.score >= 1.0
    blank = det.check(np.full((100, 100), 128, np.uint8))
    assert blank.out_of_distribution and blank.reason == "blank or uniform image"
    json.dumps(blank.__dict__)                                     # finite, JSON-friendly


def test_score_is_relative_to_threshold(synthetic_detector):
    det, rng = synthetic_detector
    for g in [synthetic_chest(rng) for _ in range(20)] + [rng.integers(0, 256, (64, 64)).astype(np.uint8)]:
        r = det.check(g)
        assert r.out_of_distribution == (r.score >= 1.0)
        assert det.score(g) == r.score
        assert (r.reason == "") == (not r.out_of_distribution)


def test_accepts_any_size_and_dtype(synthetic_detector):
    det, rng = synthetic_detector
    g = synthetic_chest(rng, 400, 333)
    a, b = det.score(g), det.score(g.astype(np.float32) * 10)     # scale-free features
    assert abs(a - b) < 0.05 * max(a, 1)
    with pytest.raises(ValueError, match="2-D"):
        det.score(np.dstack([g] * 3))


def test_fit_validates_input_and_tensors_validate_keys():
    rng = np.random.default_rng(1)
    with pytest.raises(DataError, match="at least"):
        fit_ood([synthetic_chest(rng) for _ in range(10)])
    tensors = fit_ood([synthetic_chest(rng, 64, 64) for _ in range(60)], n_components=4)
    assert set(tensors) == set(KEYS) and tensors["threshold"].ndim == 0
    with pytest.raises(WeightsError, match="pca_mean"):
        OODDetector.from_tensors({k: v for k, v in tensors.items() if k != "pca_mean"})


# ---------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def iu_images(iu_xray_dir):
    files = sorted((Path(iu_xray_dir) / "NLMCXR_png").glob("*.png"))
    if len(files) < N_FIT + 500:
        pytest.skip(f"need at least {N_FIT + 500} frontal PNGs in {iu_xray_dir}, found {len(files)}")
    random.Random(0).shuffle(files)
    return [load_png_gray(f) for f in files]


@pytest.fixture(scope="module")
def detector(iu_images):
    tensors = fit_ood(iu_images[:N_FIT])
    try:                      # the app stores these next to the model weights: prove they survive
        from safetensors.torch import load, save
        tensors = load(save(tensors))
    except ImportError:
        pass
    return OODDetector.from_tensors(tensors)


def test_unseen_real_cxrs_rarely_flagged(detector, iu_images, capsys):
    held_out = [(g, 0.0) for g in iu_images[N_FIT:]]
    rate, n = flagged(detector, held_out)
    report(capsys, f"in-distribution: unseen IU frontal CXRs (fit on {N_FIT})", {"real frontal CXR": (rate, n)})
    assert n >= 500 and rate <= 0.05


def test_real_cxr_variants(detector, iu_images, capsys):
    """Reported, not required: rotations/inversions should be flagged, exposure changes not."""
    imgs = iu_images[N_FIT:N_FIT + 400]
    variants = {
        "rotated 90° (report only)": [np.rot90(g) for g in imgs],
        "rotated 270° (report only)": [np.rot90(g, 3) for g in imgs],
        "upside down (report only)": [g[::-1] for g in imgs],
        "inverted / negative (report only)": [255 - g for g in imgs],
        "mirrored left-right (in-dist.)": [g[:, ::-1] for g in imgs],
        "gamma 0.6 (in-dist.)": [(255 * (g / 255.0) ** 0.6).astype(np.uint8) for g in imgs],
        "gamma 1.6 (in-dist.)": [(255 * (g / 255.0) ** 1.6).astype(np.uint8) for g in imgs],
    }
    rates = {k: flagged(detector, [(g, 0.0) for g in v]) for k, v in variants.items()}
    report(capsys, "variants of unseen real CXRs", rates)
    for k in ("gamma 0.6 (in-dist.)", "gamma 1.6 (in-dist.)"):
        assert rates[k][0] <= 0.10                                 # windowing must not trip the guard


def _package_photos() -> list[tuple[str, Path]]:
    """Natural/scientific photos shipped inside installed packages (no download)."""
    paths = []
    spec = importlib.util.find_spec("skimage")
    if spec and spec.origin:
        data = Path(spec.origin).parent / "data"
        paths += sorted(p for p in data.iterdir() if p.suffix in (".png", ".jpg"))
    spec = importlib.util.find_spec("matplotlib")
    if spec and spec.origin:
        sample = Path(spec.origin).parent / "mpl-data" / "sample_data"
        paths += [sample / n for n in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png")]
    return [(p.name, p) for p in paths if p.is_file()]


def _decoded(data: bytes):
    try:
        d = decode_image(data)
    except ImageDecodeError:
        return None                                  # too small / undecodable: never reaches the guard
    return d.gray, d.colorfulness


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def non_chest_images(rng: np.random.Generator) -> dict[str, list[tuple[np.ndarray, float]]]:
    cats: dict[str, list] = {}
    photos = [d for d in (_decoded(p.read_bytes()) for _, p in _package_photos()) if d]
    cats["colour photos"] = [d for d in photos if d[1] > 0]
    gray = []
    for g, _ in photos:                              # every photo, also as gray: the harder path
        h, w = g.shape
        gray += [g, g[h // 4:, : 3 * w // 4], g[:, ::-1], 255 - g]
    cats["photos as grayscale (+crops/flips)"] = [(g, 0.0) for g in gray]

    medical = []
    try:
        from pydicom.data import get_testdata_file
        for name in ("CT_small.dcm", "MR_small.dcm", "693_J2KI.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm",
                     "examples_overlay.dcm", "examples_palette.dcm", "examples_ybr_color.dcm",
                     "examples_rgb_color.dcm", "liver_1frame.dcm", "image_dfl.dcm", "SC_rgb_rle_2frame.dcm"):
            path = get_testdata_file(name)
            if path and (d := _decoded(Path(path).read_bytes())):
                medical.append(d)
    except ImportError:
        pass
    spec = importlib.util.find_spec("matplotlib")
    if spec and spec.origin:                         # a 256×256 16-bit MR slice shipped by matplotlib
        raw = Path(spec.origin).parent / "mpl-data" / "sample_data" / "s1045.ima.gz"
        if raw.is_file():
            mr = np.frombuffer(gzip.decompress(raw.read_bytes()), "<u2").reshape(256, 256)
            medical.append(_decoded(_png(mr.astype(np.uint16))))
    cats["non-chest DICOM/medical (CT,MR,US,NM)"] = medical

    text = []
    for i in range(12):
        w, h = int(rng.integers(200, 900)), int(rng.integers(200, 900))
        bg = int(rng.choice([255, 0, 230, 30]))
        im = Image.new("L", (w, h), bg)
        draw, font = ImageDraw.Draw(im), ImageFont.load_default(size=int(rng.integers(10, 40)))
        for y in range(5, h, font.size + 6):
            draw.text((5, y), f"Lorem ipsum dolor sit amet, chest film {i}", fill=255 - bg, font=font)
        text.append(_decoded(_png(np.asarray(im))))
    cats["rendered text"] = text

    noise = []
    for _ in range(6):
        noise.append(rng.integers(0, 256, (256, 256)).astype(np.uint8))
        noise.append(np.clip(rng.normal(128, 40, (300, 240)), 0, 255).astype(np.uint8))
        for s in (4, 8, 16):                          # smooth blobs: low-frequency noise
            a = np.asarray(Image.fromarray(rng.normal(size=(256 // s, 256 // s)).astype(np.float32), "F")
                           .resize((256, 256), Image.Resampling.BICUBIC))
            noise.append(((a - a.min()) / (np.ptp(a) + 1e-9) * 255).astype(np.uint8))
    cats["noise (white, gaussian, blobs)"] = [(n, 0.0) for n in noise]
    cats["flat"] = [(np.full((256, 256), v, np.uint8), 0.0) for v in (0, 1, 60, 128, 200, 254, 255)]

    x, y = np.meshgrid(np.linspace(0, 255, 256), np.linspace(0, 255, 256))
    r = np.hypot(x - 128, y - 128) * 255 / 181
    cats["gradients and patterns"] = [(a.astype(np.uint8), 0.0) for a in (
        x, y, 255 - x, 255 - y, (x + y) / 2, r, 255 - r, 128 + 127 * np.sin(x / 20),
        128 + 127 * np.sin(x / 20) * np.cos(y / 30))]

    shots = []
    for _ in range(10):
        w, h = int(rng.integers(400, 1400)), int(rng.integers(300, 900))
        col = lambda lo, hi: tuple(int(v) for v in rng.integers(lo, hi, 3))  # noqa: E731
        im = Image.new("RGB", (w, h), col(200, 256))
        draw = ImageDraw.Draw(im)
        draw.rectangle([0, 0, w, 40], fill=col(0, 120))
        for k in range(int(rng.integers(5, 25))):
            x0, y0 = int(rng.integers(0, w - 50)), int(rng.integers(40, h - 20))
            draw.rectangle([x0, y0, x0 + int(rng.integers(30, 300)), y0 + int(rng.integers(15, 120))],
                           fill=col(0, 256), outline=(0, 0, 0))
            draw.text((x0 + 4, y0 + 4), f"Button {k}", fill=(0, 0, 0))
        shots += [_decoded(_png(np.asarray(im))), _decoded(_png(np.asarray(im.convert("L"))))]
    cats["UI screenshots (colour + gray)"] = shots
    return {k: [d for d in v if d is not None] for k, v in cats.items()}


def test_non_chest_images_flagged(detector, capsys):
    cats = non_chest_images(np.random.default_rng(0))
    rates = {k: flagged(detector, v) for k, v in cats.items() if v}
    total = sum(r * n for r, n in rates.values()) / sum(n for _, n in rates.values())
    rates["ALL non-chest"] = (total, sum(n for _, n in rates.values()))
    report(capsys, "out-of-distribution: non-chest images", rates)
    # ≥ 80 even without scikit-image/matplotlib (their sample photos add ~130 when installed)
    assert rates["ALL non-chest"][1] >= 80 and total >= 0.95
    for name, (rate, n) in rates.items():
        assert rate >= 0.90, f"{name}: only {rate:.0%} of {n} flagged"
