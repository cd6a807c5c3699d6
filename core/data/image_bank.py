"""In-memory training data: every image decoded and resized once (ImageBank), the samples
indexing it, label matrices, normalisation and batch augmentation.

Every image is decoded and resized once and kept as uint8 (S x S bytes each: 377k MIMIC
images at 224 px are 19 GB); augmentation runs on whole batches as tensors. Decoding runs
in ``workers`` loader processes (torch DataLoader) when asked, through core.data.preprocess's
``load_resized`` (the one pixel pipeline).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from core.data.labels import TEXT_MODES
from core.data.preprocess import load_resized
from core.data.reports import Report, auxiliary_labels


class DecodeDataset(torch.utils.data.Dataset):
    """(index, uint8 S x S) per image path: what loader workers decode."""

    def __init__(self, paths: list[Path], size: int) -> None:
        self.paths, self.size = list(paths), size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return i, torch.from_numpy(load_resized(self.paths[i], self.size))


def decode_all(paths: list[Path], size: int, workers: int = 0, batch_size: int = 64) -> torch.Tensor:
    """N x S x S uint8 for the files, decoded in ``workers`` DataLoader processes (0 = here)."""
    out = torch.empty(len(paths), size, size, dtype=torch.uint8)
    if workers <= 0:
        for i, p in enumerate(paths):
            out[i] = torch.from_numpy(load_resized(p, size))
        return out
    loader = torch.utils.data.DataLoader(DecodeDataset(paths, size), batch_size=batch_size, num_workers=workers,
                                         shuffle=False)
    for idx, pix in loader:
        out[idx] = pix
    return out


@dataclass
class ImageBank:
    """uint8 images (N x S x S) addressed by image id."""
    ids: list[str]
    pixels: torch.Tensor

    @classmethod
    def build(cls, data_dir: Path, image_ids: list[str], size: int, *, paths: dict | None = None,
              workers: int = 0) -> ImageBank:
        """``paths`` maps image id -> file (core.data.sources); without it, Open-I's NLMCXR_png/<id>.png."""
        if paths is None:
            png = Path(data_dir) / "NLMCXR_png"
            files = [png / f"{i}.png" for i in image_ids]
        else:
            files = [paths[i] for i in image_ids]
        return cls(ids=list(image_ids), pixels=decode_all(files, size, workers))

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
    def build(cls, reports: list[Report], uids: list[str], bank_index: dict[str, int]) -> Samples:
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
    rows = [auxiliary_labels(r, vocab) for r in reports]
    return torch.tensor(rows, dtype=torch.float32).reshape(len(reports), len(vocab))


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Augmentation suited to frontal X-rays: small rotation, zoom and shift, contrast and
    brightness jitter. No horizontal flip: it would move the heart to the right."""
    b = x.shape[0]

    def rnd(lo, hi):
        return torch.empty(b).uniform_(lo, hi, generator=generator)

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
