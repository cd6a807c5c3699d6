"""The one pixel pipeline (core.data.preprocess): a JPEG reaches the model through the same
decode and resize in training (a file, ``load_resized``) and in serving (uploaded bytes,
``decode_image`` then ``prepare``), and the two normalisations are one."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from core.data.image_bank import ImageBank
from core.data.images import decode_image
from core.data.preprocess import load_resized, normalise, prepare, resize_gray


def _film(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = 128 + 80 * np.sin(x / 17.0) * np.cos(y / 23.0)
    return np.clip(base + rng.normal(0, 12, (h, w)), 0, 255).astype(np.uint8)


def _jpeg(gray: np.ndarray, path) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, format="JPEG", quality=90)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_a_jpeg_at_the_collections_scale_gets_the_same_pixels_in_training_and_serving(tmp_path):
    # the IU copies are <= 512 px: the DCT draft (>= 2x the target) leaves them whole
    data = _jpeg(_film(312, 256), tmp_path / "film.jpg")
    trained = load_resized(tmp_path / "film.jpg", 128)
    served = resize_gray(decode_image(data).gray, 128)
    np.testing.assert_array_equal(trained, served)
    # and the tensors the model reads are equal to the bit
    bank = ImageBank.build(tmp_path, ["film"], 128, paths={"film": tmp_path / "film.jpg"})
    x_train = normalise(bank.pixels, 0.6, 0.24)[0]
    x_serve = prepare(decode_image(data).gray, size=128, mean=0.6, std=0.24)
    assert torch.equal(x_train, x_serve)


def test_a_large_jpeg_differs_only_by_the_documented_draft(tmp_path):
    """2,000 px -> 128 px: the draft decode differs from a whole decode by under a grey level
    on average (the module docstring gives the measured figure)."""
    data = _jpeg(_film(2000, 2000, seed=1), tmp_path / "big.jpg")
    trained = load_resized(tmp_path / "big.jpg", 128).astype(int)
    served = resize_gray(decode_image(data).gray, 128).astype(int)
    assert np.abs(trained - served).mean() < 2.0
