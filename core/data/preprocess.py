"""Image preprocessing shared by training, evaluation and the app: one function, so the
model sees the same pixels everywhere."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def resize_gray(gray: np.ndarray, size: int) -> np.ndarray:
    """Square resize of an 8-bit grayscale image (the collection's copies were squashed
    to a square once already, so aspect is not preserved here either)."""
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError("expected an 8-bit grayscale image (H x W uint8)")
    return np.asarray(Image.fromarray(gray).resize((size, size), Image.BILINEAR))


def to_tensor(gray_resized: np.ndarray, mean: float, std: float) -> torch.Tensor:
    """uint8 H x W -> normalised float tensor 1 x H x W."""
    x = torch.from_numpy(np.array(gray_resized, dtype=np.float32)).div_(255.0)  # copy: inputs may be read-only
    return x.sub_(mean).div_(std).unsqueeze(0)


def prepare(gray: np.ndarray, *, size: int, mean: float, std: float) -> torch.Tensor:
    return to_tensor(resize_gray(gray, size), mean, std)
