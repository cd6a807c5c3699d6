"""The one pixel pipeline shared by training, evaluation and the app, so the model sees the
same pixels everywhere: decode (core.data.images), square bilinear resize, scale to [0, 1],
normalise by the weights' mean and std.

One difference is deliberate: a JPEG *file* read for training or evaluation (``load_resized``)
is decoded at a reduced DCT scale (Pillow ``draft``, never below twice the target size) before
the same resize, while an uploaded JPEG is decoded whole (the guard and the review thumbnail
need the full image). On the IU copies (<= 512 px) the draft never applies and the two give
identical pixels (tests/data/test_preprocess.py); on a 2,500 px JPEG resized to 128 px they differ
by 0.78 grey levels on average (max 20 of 255), for a 13x faster decode of MIMIC-size files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.data.images import load_png_gray


def resize_gray(gray: np.ndarray, size: int) -> np.ndarray:
    """Square resize of an 8-bit grayscale image (the collection's copies were squashed
    to a square once already, so aspect is not preserved here either)."""
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError("expected an 8-bit grayscale image (H x W uint8)")
    return np.asarray(Image.fromarray(gray).resize((size, size), Image.BILINEAR))


def load_resized(path: Path, size: int) -> np.ndarray:
    """uint8 S x S grey image from a PNG or JPEG file (see the module docstring on JPEG draft)."""
    path = Path(path)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        with Image.open(path, formats=("JPEG",)) as im:
            im.draft("L", (2 * size, 2 * size))  # DCT-domain downscale: several times faster on large JPEGs
            if im.mode == "L":
                return np.array(resize_gray(np.asarray(im, dtype=np.uint8), size))
    return np.array(resize_gray(load_png_gray(path), size))  # a writable copy


def normalise(pixels_u8: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """N x S x S uint8 -> N x 1 x S x S float, scaled to [0, 1] and normalised."""
    return pixels_u8.float().div_(255.0).sub_(mean).div_(std).unsqueeze(1)


def to_tensor(gray_resized: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """uint8 H x W -> normalised float tensor 1 x H x W."""
    return normalise(torch.from_numpy(np.array(gray_resized, dtype=np.uint8))[None], mean, std)[0]


def prepare(gray: np.ndarray, *, size: int, mean: float, std: float) -> torch.Tensor:
    return to_tensor(resize_gray(gray, size), mean, std)
