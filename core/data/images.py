"""Decode uploads (PNG, JPEG, TIFF, GIF, BMP, WebP, DICOM) into one format: an 8-bit
grayscale numpy array (H×W uint8), which is what the model and the OOD guard consume.

    from core.data.images import decode_image
    img = decode_image(uploaded_bytes)          # DecodedImage(gray, format, width, height, notes, ...)

Rules this module keeps:
- the format is detected from the bytes, never trusted from the file name;
- hostile input (zero bytes, truncated files, decompression bombs, random bytes) raises
  ImageDecodeError with one user-facing sentence that says what to do;
- nothing patient-identifying reaches notes or errors: messages are fixed strings, never
  a library's exception text, a DICOM value or the file name (names often carry patient names).
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from core.errors import CxrError

MIN_SIDE = 32          # smaller than this cannot be a radiograph (icons, tracking pixels)
MAX_SIDE = 1024        # longer sides are downscaled: the model reads 128 px, the page shows ~600
COLOR_EPS = 2.0        # channel spread (0-255) below this is JPEG chroma noise, not colour

# Only formats that are plausible for a radiograph export. Restricting Image.open keeps
# exotic parsers (EPS, which shells out to Ghostscript; PSD; ICNS...) out of reach.
PIL_FORMATS = ("PNG", "JPEG", "TIFF", "GIF", "BMP", "WEBP")

# The only DICOM attributes we ever surface: acquisition facts, none identifying.
SAFE_DICOM_FIELDS = ("Modality", "BodyPartExamined", "ViewPosition", "PhotometricInterpretation",
                     "Rows", "Columns", "BitsStored")


class ImageDecodeError(CxrError, ValueError):
    """The upload cannot be turned into a grayscale image; the message says what to do."""


@dataclass
class DecodedImage:
    gray: np.ndarray                 # H×W uint8
    format: str                      # "PNG", "JPEG", "DICOM", ...
    width: int
    height: int
    notes: list[str] = field(default_factory=list)
    colorfulness: float = 0.0        # mean max-min channel spread in [0, 1]; 0 for gray inputs
    metadata: dict = field(default_factory=dict)   # safe_dicom_metadata() for DICOM, else {}


# ---------------------------------------------------------------- helpers used by callers

def thumbnail(gray: np.ndarray, max_side: int = 256) -> np.ndarray:
    """Downscaled copy (aspect kept) for storing a review image next to a prediction."""
    im = Image.fromarray(_as_uint8(gray))
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(im, dtype=np.uint8)


def encode_png(gray: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(_as_uint8(gray)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def load_png_gray(path: str | Path) -> np.ndarray:
    """Grayscale uint8 array of an image on disk (the data folder's PNGs are already 'L')."""
    with Image.open(path, formats=PIL_FORMATS) as im:
        if im.mode == "L":
            return np.asarray(im, dtype=np.uint8).copy()
    return decode_image(Path(path).read_bytes()).gray


def safe_dicom_metadata(ds) -> dict:
    """Non-identifying acquisition fields of a pydicom Dataset (allowlist, never a denylist)."""
    out = {}
    for key in SAFE_DICOM_FIELDS:
        value = ds.get(key)
        if value is None or value == "":
            continue
        out[key] = int(value) if key in ("Rows", "Columns", "BitsStored") else str(value)
    return out


def _as_uint8(gray: np.ndarray) -> np.ndarray:
    gray = np.asarray(gray)
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale array, got shape {gray.shape}")
    return gray if gray.dtype == np.uint8 else _rescale(gray)


def _rescale(arr: np.ndarray) -> np.ndarray:
    """Min/max to 0-255: what a viewer shows for a windowed or high-bit image."""
    arr = np.asarray(arr, dtype=np.float32)
    finite = np.isfinite(arr)
    if not finite.all():                                   # NaN/inf in float TIFFs: paint them black
        arr = np.where(finite, arr, arr[finite].min() if finite.any() else 0.0)
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.round((arr - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114   # ITU-R 601, as Pillow


def _colorfulness(rgb: np.ndarray) -> float:
    """Mean per-pixel channel spread in [0, 1]; gray stored as RGB (and JPEG chroma noise) ~0."""
    rgb = rgb.astype(np.float32)
    spread = rgb.max(axis=-1) - rgb.min(axis=-1)
    spread = np.where(spread < COLOR_EPS, 0.0, spread)
    return float(spread.mean() / 255.0)


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"The image declares {width}×{height} pixels, more than the {max_pixels:,} allowed; "
            "export it at a smaller size (a chest X-ray needs at most about 3000 px a side).")
    if min(width, height) < MIN_SIDE:
        raise ImageDecodeError(
            f"The image is {width}×{height} pixels, too small to be an X-ray; upload the full-resolution image.")


def _finish(gray: np.ndarray, fmt: str, notes: list[str], colorfulness: float, metadata: dict) -> DecodedImage:
    """Downscale very large images so the longest side is MAX_SIDE (memory and speed downstream)."""
    h, w = gray.shape
    if max(h, w) > MAX_SIDE:
        scale = MAX_SIDE / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        gray = np.asarray(Image.fromarray(gray).resize(size, Image.Resampling.LANCZOS))
        notes.append(f"downscaled from {w}×{h} to {size[0]}×{size[1]}")
        h, w = gray.shape
    return DecodedImage(gray=np.ascontiguousarray(gray, dtype=np.uint8), format=fmt, width=w, height=h,
                        notes=notes, colorfulness=round(colorfulness, 4), metadata=metadata)


# ---------------------------------------------------------------- entry point

def decode_image(data: bytes, *, filename: str | None = None, max_pixels: int = 60_000_000,
                 max_bytes: int = 50 * 1024 * 1024) -> DecodedImage:
    """Decode an upload into an 8-bit grayscale image, or raise ImageDecodeError.

    ``filename`` is only a hint: a file ending in .dcm without the DICOM preamble is
    force-read as DICOM. It never appears in a message."""
    if data is None or len(data) == 0:
        raise ImageDecodeError("The file is empty (0 bytes); upload the image file again.")
    if len(data) > max_bytes:
        raise ImageDecodeError(
            f"The file is {len(data) / 2**20:.0f} MB, over the {max_bytes / 2**20:.0f} MB limit; "
            "export the image as PNG or JPEG at a smaller size.")
    data = bytes(data)
    if len(data) >= 132 and data[128:132] == b"DICM":
        return _decode_dicom(data, max_pixels=max_pixels, force=False)
    looks_dicom_name = bool(filename) and str(filename).lower().endswith((".dcm", ".dicom"))
    if not looks_dicom_name:
        return _decode_pillow(data, max_pixels=max_pixels)
    try:
        return _decode_dicom(data, max_pixels=max_pixels, force=True)
    except ImageDecodeError as dicom_error:
        # A ".dcm" that is really a PNG/JPEG: trust the content, not the name.
        try:
            return _decode_pillow(data, max_pixels=max_pixels)
        except ImageDecodeError:
            raise dicom_error from None


# ---------------------------------------------------------------- Pillow formats

def _decode_pillow(data: bytes, *, max_pixels: int) -> DecodedImage:
    corrupt = ImageDecodeError(
        "The file could not be decoded (it is truncated, corrupt or not an image); "
        "re-export it as PNG, JPEG or DICOM and upload again.")
    try:
        # Pillow raises DecompressionBombError above 2×MAX_IMAGE_PIXELS (~179 MP) on open.
        # We leave that process-wide setting alone (Streamlit threads share it): our own
        # max_pixels check below is stricter by default and runs on the declared size,
        # before a single pixel is decoded.
        im = Image.open(io.BytesIO(data), formats=PIL_FORMATS)
    except Image.DecompressionBombError:
        raise ImageDecodeError(
            "The image declares far more pixels than an X-ray has (a decompression bomb or a huge export); "
            "export it at a smaller size.") from None
    except Exception:
        raise ImageDecodeError(
            "The file is not a supported image; upload a PNG, JPEG or DICOM chest X-ray.") from None

    with im:
        fmt = im.format or "image"
        width, height = im.size
        _check_size(width, height, max_pixels)
        notes: list[str] = []
        n_frames = getattr(im, "n_frames", 1) or 1
        if n_frames > 1:
            notes.append(f"first frame of {n_frames} used")
        try:
            im.seek(0)
            if fmt == "JPEG" and max(width, height) > 2 * MAX_SIDE:
                im.draft(im.mode, (MAX_SIDE, MAX_SIDE))   # let libjpeg decode at 1/2..1/8 scale
            im.load()
            if im.getexif().get(0x0112, 1) != 1:           # phone photos of films carry EXIF rotation
                im = ImageOps.exif_transpose(im)
                notes.append("rotated upright per EXIF orientation")
            gray, colorfulness = _pil_to_gray(im, notes)
        except ImageDecodeError:
            raise
        except MemoryError:
            raise ImageDecodeError("The image is too large to decode here; export it at a smaller size.") from None
        except Exception:
            raise corrupt from None
    return _finish(gray, fmt, notes, colorfulness, {})


def _pil_to_gray(im: Image.Image, notes: list[str]) -> tuple[np.ndarray, float]:
    bits = "16" if im.mode.startswith("I;16") else "high"
    im = _normalise_mode(im, notes)
    w, h = im.size
    if max(w, h) > MAX_SIDE:
        # Downscale before going to numpy: a 60 MP RGB photo as float32 would need ~1 GB.
        scale = MAX_SIDE / max(w, h)
        im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
        notes.append(f"downscaled from {w}×{h} to {im.width}×{im.height}")
    if im.mode == "L":
        return np.asarray(im, dtype=np.uint8), 0.0
    if im.mode in ("I", "F"):
        arr = np.asarray(im)
        if arr.dtype.kind in "ui" and arr.size and int(arr.max()) <= 255 and int(arr.min()) >= 0:
            return arr.astype(np.uint8), 0.0                      # 8-bit content in a wide container
        notes.append(f"{bits}-bit image rescaled to 8 bits")
        return _rescale(arr), 0.0
    if im.mode == "RGBA":
        rgba = np.asarray(im, dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * alpha                               # composite on black
    else:
        rgb = np.asarray(im, dtype=np.float32)
    return _rescale_rgb(rgb), _colorfulness(rgb)


def _normalise_mode(im: Image.Image, notes: list[str]) -> Image.Image:
    """Bring Pillow's many modes down to L, RGB, RGBA (with real transparency), I or F."""
    mode = im.mode
    if mode in ("L", "RGB", "I", "F"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode.startswith("I"):                                      # I;16, I;16B, I;16L...
        return im.convert("I")
    if mode == "P":
        notes.append("palette image converted to grayscale")
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "CMYK":
        notes.append("CMYK image converted to grayscale")
        im = im.convert("RGB")
    if im.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        im = im.convert("RGBA")
        if im.getchannel("A").getextrema()[0] < 255:
            notes.append(f"{mode} transparency flattened onto black")
            return im
    return im.convert("RGB")                                      # YCbCr, LAB, HSV, RGBX, opaque RGBA


def _rescale_rgb(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.round(_luminance(rgb)), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- DICOM

def _decode_dicom(data: bytes, *, max_pixels: int, force: bool) -> DecodedImage:
    import pydicom
    from pydicom.pixels import apply_color_lut

    from core.data.dicom_pixels import first_frame, monochrome_to_gray

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=force)
    except Exception:
        raise ImageDecodeError("The file looks like DICOM but could not be read; "
                               "re-export it from the PACS or viewer, or upload a PNG.") from None
    if force and not any(k in ds for k in ("SOPClassUID", "Modality", "PixelData", "StudyInstanceUID")):
        # no preamble and none of the elements every DICOM image has: a file only named .dcm
        raise ImageDecodeError("The file is named .dcm but is not DICOM (no DICOM header); upload the image as "
                               "exported from the PACS or viewer, or a PNG or JPEG.")
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ImageDecodeError("This DICOM file holds no image (no pixel data); "
                               "upload the image instance of the study, not a report or structured document.")
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        # Raw datasets without a file meta header: pydicom knows how it parsed them.
        implicit, little = getattr(ds, "original_encoding", (True, True))
        ds.file_meta = meta or pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = (pydicom.uid.ImplicitVRLittleEndian if implicit else
                                          pydicom.uid.ExplicitVRLittleEndian if little else
                                          pydicom.uid.ExplicitVRBigEndian)
    tsyntax = ds.file_meta.TransferSyntaxUID
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        n_frames = int(ds.get("NumberOfFrames") or 1)
    except Exception:
        raise ImageDecodeError("This DICOM file lacks valid Rows/Columns; re-export it, or upload a PNG.") from None
    _check_size(cols, rows, max_pixels)

    notes: list[str] = []
    try:
        # Decode only the first frame: a cine loop of 500 frames must not cost 500 decodes.
        arr, level = first_frame(ds, n_frames, min_side=MAX_SIDE)
    except MemoryError:
        raise ImageDecodeError("The DICOM image is too large to decode here; export it at a smaller size.") from None
    except Exception:
        # Usually a compressed transfer syntax with no installed plugin; also corrupt data.
        # The transfer syntax name comes from pydicom's UID dictionary, not from the file's values.
        name = tsyntax.name if tsyntax.is_valid else "an unknown transfer syntax"
        if not tsyntax.is_compressed:
            raise ImageDecodeError(f"The DICOM pixel data ({name}) is truncated or corrupt; "
                                   "re-export the image from the PACS or viewer, or upload a PNG.") from None
        raise ImageDecodeError(
            f"The DICOM pixel data ({name}) could not be decoded here; export the image as PNG, "
            "or install the decoder for it (pylibjpeg with its plugins, or python-gdcm).") from None
    if n_frames > 1:
        notes.append(f"first frame of {n_frames} used")
    if level:
        notes.append(f"JPEG 2000 decoded at its 1/{2 ** level} resolution level ({arr.shape[1]}×{arr.shape[0]})")

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 8)
    colorfulness = 0.0
    if photometric == "PALETTE COLOR" and arr.ndim == 2:
        arr = apply_color_lut(arr, ds)
        notes.append("palette DICOM converted to grayscale")
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rgb = arr[..., :3].astype(np.float32)
        if rgb.max() > 255:                            # 16-bit colour (or 16-bit palette LUT)
            rgb = rgb * (255.0 / float(rgb.max()))
        colorfulness = _colorfulness(rgb)
        gray = _rescale_rgb(rgb)
        if photometric != "PALETTE COLOR":
            notes.append("colour DICOM converted to grayscale")
    elif arr.ndim == 2:
        gray = monochrome_to_gray(arr, ds, photometric, _rescale)
        if "WindowCenter" in ds or "VOILUTSequence" in ds:
            notes.append("DICOM window (VOI LUT) applied")
        if photometric == "MONOCHROME1":
            notes.append("MONOCHROME1 inverted")
        if bits > 8:
            notes.append(f"{bits}-bit image rescaled to 8 bits")
    else:
        raise ImageDecodeError("This DICOM image has an unsupported pixel layout; export it as PNG and upload that.")
    return _finish(gray, "DICOM", notes, colorfulness, safe_dicom_metadata(ds))
