"""Heatmap over an X-ray as an RGB array (PIL + numpy; no plotting library needed)."""
from __future__ import annotations

import numpy as np
from PIL import Image

# A small perceptual colormap (inferno-like anchors), interpolated linearly.
_ANCHORS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32)


def colormap(values: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint8 RGB."""
    v = np.clip(np.nan_to_num(values.astype(np.float32)), 0, 1) * (len(_ANCHORS) - 1)
    lo = np.floor(v).astype(int).clip(0, len(_ANCHORS) - 2)
    t = (v - lo)[..., None]
    return (_ANCHORS[lo] * (1 - t) + _ANCHORS[lo + 1] * t).round().astype(np.uint8)


def overlay(gray: np.ndarray, heat: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """Blend ``heat`` (any size, [0, 1]) over ``gray`` (H×W uint8). The model squashes the image
    to a square, so the heatmap is stretched back over the whole image, not cropped."""
    h, w = gray.shape
    heat_img = Image.fromarray((np.clip(heat, 0, 1) * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)
    heat_full = np.asarray(heat_img, dtype=np.float32) / 255.0
    rgb = np.repeat(gray[..., None].astype(np.float32), 3, axis=2)
    # weight by the heat itself so cold regions keep the X-ray visible
    a = (alpha * heat_full)[..., None]
    return (rgb * (1 - a) + colormap(heat_full).astype(np.float32) * a).round().astype(np.uint8)


def colour_bar_css(low: str, high: str) -> str:
    """A small horizontal colour bar of ``colormap`` as HTML (labels are escaped by the caller's choice:
    fixed strings only)."""
    stops = ", ".join(f"rgb({r},{g},{b})" for r, g, b in _ANCHORS.astype(int))
    return ('<div style="font-size:12px;color:#555">'
            f'<div style="height:10px;border-radius:3px;background:linear-gradient(to right, {stops})"></div>'
            f'<div style="display:flex;justify-content:space-between">'
            f'<span>{low}</span><span>{high}</span></div></div>')
