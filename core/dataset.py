"""In-memory training data: decoded, resized images and tokenised texts per report.

The collection is small (a few thousand frontal images), so every image is decoded and
resized once and kept as uint8; augmentation runs on whole batches as tensors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.data import Report, auxiliary_labels
from core.labels import TEXT_MODES
from core.imaging import load_png_gray
from core.preprocess import resize_gray


@dataclass
class ImageBank:
    """uint8 images (N x S x S) addressed by image id."""
    ids: list[str]
    pixels: torch.Tensor

    @classmethod
    def build(cls, data_dir: Path, image_ids: list[str], size: int) -> "ImageBank":
        png = Path(data_dir) / "NLMCXR_png"
        arr = np.stack([resize_gray(load_png_gray(png / f"{i}.png"), size) for i in image_ids])
        return cls(ids=list(image_ids), pixels=torch.from_numpy(arr))

    def index(self) -> dict[str, int]:
        return {i: k for k, i in enumerate(self.ids)}

    def stats(self, rows: list[int]) -> tuple[float, float]:
        x = self.pixels[rows].float().div(255.0)
        return float(x.mean()), float(x.std())


@dataclass
class Samples:
    """One sample per (report, frontal image) of a split."""
    report_idx: list[int]
    image_rows: list[int]

    @classmethod
    def build(cls, reports: list[Report], uids: list[str], bank_index: dict[str, int]) -> "Samples":
        by_uid = {r.uid: k for k, r in enumerate(reports)}
        ri, ir = [], []
        for uid in uids:
            k = by_uid[uid]
            for image_id in reports[k].image_ids:
                ri.append(k)
                ir.append(bank_index[image_id])
        return cls(ri, ir)

    def __len__(self) -> int:
        return len(self.report_idx)


def label_matrix(reports: list[Report]) -> torch.Tensor:
    return torch.tensor([r.labels for r in reports], dtype=torch.float32)


def aux_matrix(reports: list[Report], vocab: list[str]) -> torch.Tensor:
    return torch.tensor([auxiliary_labels(r, vocab) for r in reports], dtype=torch.float32).reshape(len(reports), len(vocab))


def normalise(pixels_u8: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return pixels_u8.float().div_(255.0).sub_(mean).div_(std).unsqueeze(1)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Augmentation suited to frontal X-rays: small rotation, zoom and shift, contrast and
    brightness jitter. No horizontal flip: it would move the heart to the right."""
    b = x.shape[0]
    rnd = lambda lo, hi: torch.empty(b).uniform_(lo, hi, generator=generator)
    angle = rnd(-8, 8) * math.pi / 180
    scale = rnd(0.88, 1.08)
    tx, ty = rnd(-0.06, 0.06), rnd(-0.06, 0.06)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    fill = x.amin(dim=(1, 2, 3), keepdim=True)
    x = F.grid_sample(x - fill, grid, padding_mode="zeros", align_corners=False) + fill
    contrast = rnd(0.8, 1.2).view(b, 1, 1, 1)
    bright = rnd(-0.15, 0.15).view(b, 1, 1, 1)
    return x * contrast + bright


def mode_texts(reports: list[Report]) -> dict[str, list[str]]:
    return {m: [r.text(m) for r in reports] for m in TEXT_MODES}
