"""core.data.images on inputs generated here: hostile files, odd-but-valid formats, DICOM variants.

No patient data is committed: every DICOM is built in the test, with a fake PatientName
that must never surface in notes, metadata or errors."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core.data.images import (
    MAX_SIDE,
    ImageDecodeError,
    decode_image,
    encode_png,
    load_png_gray,
    safe_dicom_metadata,
    thumbnail,
)

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, SecondaryCaptureImageStorage, generate_uid  # noqa: E402

SECRETS = ("SECRET^NAME", "SECRET", "PID-424242", "19450101", "ACC-777")


# ---------------------------------------------------------------- builders

def pil_bytes(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def chest_like(h: int = 96, w: int = 80, seed: int = 0) -> np.ndarray:
    """A smooth gradient with noise: a plausible 8-bit grayscale image, not a real CXR."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = 60 + 120 * np.exp(-((x - w / 2) / (w / 5)) ** 2) + 40 * y / h + rng.normal(0, 5, (h, w))
    return np.clip(a, 0, 255).astype(np.uint8)


def make_dicom(pixels: np.ndarray | None, *, photometric: str = "MONOCHROME2", frames: int = 1,
               window: tuple[float, float] | None = None, rescale: tuple[float, float] | None = None,
               transfer_syntax=ExplicitVRLittleEndian, preamble: bool = True,
               rows_cols: tuple[int, int] | None = None) -> bytes:
    ds = Dataset()
    ds.PatientName = "SECRET^NAME"
    ds.PatientID = "PID-424242"
    ds.PatientBirthDate = "19450101"
    ds.AccessionNumber = "ACC-777"
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    if pixels is not None:
        arr = np.asarray(pixels)
        color = arr.ndim == (4 if frames > 1 else 3)
        shape = arr.shape[1:] if frames > 1 else arr.shape
        ds.Rows, ds.Columns = rows_cols or shape[:2]
        ds.SamplesPerPixel = 3 if color else 1
        if color:
            ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = photometric
        bits = arr.dtype.itemsize * 8
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
        ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
        if frames > 1:
            ds.NumberOfFrames = frames
        if window:
            ds.WindowCenter, ds.WindowWidth = window
        if rescale:
            ds.RescaleSlope, ds.RescaleIntercept = rescale
        data = arr.tobytes()
        if transfer_syntax.is_compressed:
            from pydicom.encaps import encapsulate
            data = encapsulate([data])
        ds.PixelData = data
        ds["PixelData"].VR = "OW" if bits > 8 else "OB"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    buf = io.BytesIO()
    if preamble:
        ds.save_as(buf, enforce_file_format=True)
    else:                                         # a bare dataset, as some old exporters write
        ds.save_as(buf, implicit_vr=False, little_endian=True)
    return buf.getvalue()


def assert_private(obj) -> None:
    text = repr(obj)
    for secret in SECRETS:
        assert secret not in text


# ---------------------------------------------------------------- hostile input

def test_zero_bytes():
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(b"", filename="x.png")


def test_over_byte_limit():
    with pytest.raises(ImageDecodeError, match="MB"):
        decode_image(b"\0" * 2048, max_bytes=1024)


@pytest.mark.parametrize("name", ["DOE_JANE.png", "DOE_JANE.dcm", None])
def test_random_bytes(name):
    data = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(ImageDecodeError) as err:
        decode_image(data, filename=name)
    assert "DOE" not in str(err.value)        # the file name is never echoed


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated(fmt):
    data = pil_bytes(Image.fromarray(chest_like(400, 300)), fmt)
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(data[: len(data) // 2])


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [100_000, 9_000])   # past Pillow's own limit; past only ours
def test_decompression_bomb_rejected_before_decoding(side):
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageDecodeError, match="pixels"):
        decode_image(_png_header_only(side, side))
    assert Image.MAX_IMAGE_PIXELS == before      # no process-wide setting was changed


def test_max_pixels_is_configurable():
    with pytest.raises(ImageDecodeError, match="allowed"):
        decode_image(pil_bytes(Image.fromarray(chest_like(100, 100))), max_pixels=5_000)


@pytest.mark.parametrize("size", [(1, 1), (20, 500), (500, 31)])
def test_tiny_images(size):
    with pytest.raises(ImageDecodeError, match="too small to be an X-ray"):
        decode_image(pil_bytes(Image.new("L", size, 128)))


def test_unsupported_container_rejected():
    with pytest.raises(ImageDecodeError, match="not a supported image"):
        decode_image(pil_bytes(Image.fromarray(chest_like()), "PPM"))


# ---------------------------------------------------------------- odd but valid

def test_plain_png_round_trip():
    gray = chest_like()
    out = decode_image(pil_bytes(Image.fromarray(gray)), filename="scan.jpg")   # content wins
    assert out.format == "PNG" and out.notes == [] and out.colorfulness == 0.0
    assert out.gray.dtype == np.uint8 and (out.width, out.height) == (80, 96)
    np.testing.assert_array_equal(out.gray, gray)


def test_png_named_dcm_is_decoded_as_png():
    out = decode_image(pil_bytes(Image.fromarray(chest_like())), filename="scan.dcm")
    assert out.format == "PNG"


def test_16bit_png_rescaled():
    arr = np.linspace(1000, 40000, 64 * 64).reshape(64, 64).astype(np.uint16)
    out = decode_image(pil_bytes(Image.fromarray(arr)))
    assert out.gray.min() == 0 and out.gray.max() == 255
    assert any("16-bit" in n for n in out.notes)
    assert np.all(np.diff(out.gray.ravel().astype(int)) >= 0)     # monotone mapping


def test_rgba_flattened_on_black():
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, 32:, 3] = 255                                          # left half transparent
    out = decode_image(pil_bytes(Image.fromarray(rgba, "RGBA")))
    assert any("transparency" in n for n in out.notes)
    assert out.gray[:, :32].max() == 0 and out.gray[:, 32:].min() == 200


def test_palette_image():
    gray = chest_like()
    out = decode_image(pil_bytes(Image.fromarray(gray).convert("P")))
    assert any("palette" in n for n in out.notes)
    assert np.abs(out.gray.astype(int) - gray).mean() < 3


def test_cmyk_jpeg():
    im = Image.fromarray(np.dstack([chest_like()] * 3)).convert("CMYK")
    out = decode_image(pil_bytes(im, "JPEG", quality=95))
    assert out.format == "JPEG" and any("CMYK" in n for n in out.notes)


def test_animated_gif_first_frame():
    frames = [Image.fromarray(np.full((48, 48), v, np.uint8)) for v in (30, 120, 220)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = decode_image(buf.getvalue())
    assert out.format == "GIF" and "first frame of 3 used" in out.notes
    assert abs(int(out.gray.mean()) - 30) <= 2


@pytest.mark.parametrize("mode", ["L", "I;16", "F"])
def test_tiff(mode):
    gray = chest_like()
    arr = {"L": gray, "I;16": gray.astype(np.uint16) * 200, "F": gray.astype(np.float32) / 255}[mode]
    out = decode_image(pil_bytes(Image.fromarray(arr), "TIFF"))
    assert out.format == "TIFF" and out.gray.shape == gray.shape
    assert np.corrcoef(out.gray.ravel(), gray.ravel())[0, 1] > 0.99


def test_colour_photo_reports_colorfulness_gray_rgb_does_not():
    gray = chest_like()
    rgb_gray = decode_image(pil_bytes(Image.fromarray(np.dstack([gray] * 3)), "JPEG", quality=90))
    assert rgb_gray.colorfulness < 0.01
    colour = np.dstack([gray, 255 - gray, np.full_like(gray, 90)])
    assert decode_image(pil_bytes(Image.fromarray(colour))).colorfulness > 0.2


def test_very_large_png_downscaled():
    big = Image.fromarray(chest_like(600, 500)).resize((4100, 3000))
    out = decode_image(pil_bytes(big, compress_level=1))
    assert max(out.gray.shape) == MAX_SIDE and (out.width, out.height) == (MAX_SIDE, round(3000 * MAX_SIDE / 4100))
    assert any("downscaled from 4100×3000" in n for n in out.notes)


def test_very_large_jpeg_uses_reduced_decode():
    big = Image.fromarray(chest_like(600, 600)).resize((5000, 5000))
    out = decode_image(pil_bytes(big, "JPEG", quality=80))
    assert max(out.gray.shape) <= MAX_SIDE and out.format == "JPEG"


# ---------------------------------------------------------------- DICOM

def test_dicom_16bit_with_window_and_safe_metadata():
    arr = (chest_like().astype(np.uint16) * 16)
    out = decode_image(make_dicom(arr, window=(2000, 3000), rescale=(1, -1024)))
    assert out.format == "DICOM" and out.gray.shape == arr.shape
    assert "DICOM window (VOI LUT) applied" in out.notes and any("16-bit" in n for n in out.notes)
    assert out.metadata == {"Modality": "DX", "BodyPartExamined": "CHEST", "ViewPosition": "PA",
                            "PhotometricInterpretation": "MONOCHROME2", "Rows": 96, "Columns": 80,
                            "BitsStored": 16}
    assert_private(out)


def test_dicom_monochrome1_inverted():
    arr = chest_like().astype(np.uint16)
    mono2 = decode_image(make_dicom(arr)).gray
    mono1 = decode_image(make_dicom(arr, photometric="MONOCHROME1"))
    assert "MONOCHROME1 inverted" in mono1.notes
    np.testing.assert_allclose(mono1.gray.astype(int), 255 - mono2.astype(int), atol=1)
    assert_private(mono1)


def test_dicom_rgb():
    gray = chest_like()
    rgb = np.dstack([gray, gray // 2, 255 - gray]).astype(np.uint8)
    out = decode_image(make_dicom(rgb, photometric="RGB"))
    assert "colour DICOM converted to grayscale" in out.notes and out.colorfulness > 0.1
    assert out.gray.shape == gray.shape
    assert_private(out)


def test_dicom_multiframe_first_frame():
    frames = np.stack([chest_like(seed=i).astype(np.uint16) * (i + 1) for i in range(3)])
    out = decode_image(make_dicom(frames, frames=3))
    single = decode_image(make_dicom(frames[0])).gray
    assert "first frame of 3 used" in out.notes
    np.testing.assert_array_equal(out.gray, single)
    assert_private(out)


def test_dicom_without_pixel_data():
    with pytest.raises(ImageDecodeError, match="no pixel data") as err:
        decode_image(make_dicom(None))
    assert_private(err.value)


def test_dicom_compressed_without_decoder():
    # Uncompressed bytes under a JPEG-LS transfer syntax: whether or not a JPEG-LS plugin is
    # installed, decoding fails, and the message must name the syntax and the way out.
    data = make_dicom(chest_like().astype(np.uint16), transfer_syntax=JPEGLSLossless)
    with pytest.raises(ImageDecodeError) as err:
        decode_image(data)
    msg = str(err.value)
    assert "JPEG-LS Lossless" in msg and "PNG" in msg and "decoder" in msg
    assert_private(err.value)


def _compressed(arr: np.ndarray, syntax_name: str, tmp_path, **kw) -> bytes:
    """``make_dicom`` bytes re-encoded losslessly: pydicom's encoders, or dcmtk's dcmcjpeg for JPEG Lossless."""
    import shutil
    import subprocess

    from pydicom import uid
    plain = make_dicom(arr, **kw)
    if syntax_name == "JPEGLosslessSV1":
        if not shutil.which("dcmcjpeg"):
            pytest.skip("dcmcjpeg (Debian dcmtk) is not installed")
        src, out = tmp_path / "plain.dcm", tmp_path / "jpeg-lossless.dcm"
        src.write_bytes(plain)
        subprocess.run(["dcmcjpeg", "+e1", str(src), str(out)], check=True, capture_output=True, timeout=120)
        return out.read_bytes()
    ds = pydicom.dcmread(io.BytesIO(plain))
    try:
        ds.compress(getattr(uid, syntax_name))
    except RuntimeError as exc:  # no encoder for this syntax here (the decoder is what is tested)
        pytest.skip(f"no {syntax_name} encoder: {exc}")
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize("syntax_name", ["JPEGLosslessSV1", "JPEGLSLossless", "JPEG2000Lossless", "RLELossless"])
def test_dicom_compressed_lossless_decodes_like_uncompressed(syntax_name, tmp_path):
    """PACS images: 12-bit in 16, MONOCHROME1, with a VOI window, in each lossless syntax a PACS stores
    (JPEG Lossless process 14 SV1 and JPEG-LS were refused before the pylibjpeg / pyjpegls decoders)."""
    arr = (chest_like(600, 500).astype(np.uint16) * 16)
    kw = dict(photometric="MONOCHROME1", window=(2048, 4096))
    reference = decode_image(make_dicom(arr, **kw))
    data = _compressed(arr, syntax_name, tmp_path, **kw)
    assert pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID.is_compressed
    out = decode_image(data)
    np.testing.assert_array_equal(out.gray, reference.gray)
    assert "MONOCHROME1 inverted" in out.notes and "DICOM window (VOI LUT) applied" in out.notes
    assert_private(out)


def test_dicom_jpeg_lossless_full_size(tmp_path):
    """A full-size (3000 x 3000) 16-bit JPEG Lossless radiograph decodes, downscaled to MAX_SIDE px."""
    y, x = np.mgrid[0:3000, 0:3000]
    arr = ((x + y) % 4096).astype(np.uint16)
    out = decode_image(_compressed(arr, "JPEGLosslessSV1", tmp_path, window=(2048, 4096)))
    assert out.gray.shape == (MAX_SIDE, MAX_SIDE) and any("downscaled" in n for n in out.notes)
    assert_private(out)


def test_dicom_declared_size_checked_before_decoding():
    data = make_dicom(chest_like().astype(np.uint16), rows_cols=(20_000, 20_000))
    with pytest.raises(ImageDecodeError, match="allowed"):
        decode_image(data)


def test_dicom_without_preamble_needs_dcm_name():
    data = make_dicom(chest_like().astype(np.uint16), preamble=False)
    assert data[128:132] != b"DICM"
    assert decode_image(data, filename="IMG0001.DCM").format == "DICOM"
    with pytest.raises(ImageDecodeError):
        decode_image(data)


def test_pydicom_sample_files_never_leak_names():
    from pydicom.data import get_testdata_file
    for name in ("CT_small.dcm", "MR_small.dcm", "JPEG-lossy.dcm"):
        path = get_testdata_file(name)
        if path is None:
            continue
        ds = pydicom.dcmread(path)
        identifying = [str(ds.get(k)) for k in ("PatientName", "PatientID", "PatientBirthDate")
                       if ds.get(k) not in (None, "")]
        try:
            result = repr(decode_image(open(path, "rb").read()))
        except ImageDecodeError as exc:                  # JPEG-lossy: 12-bit JPEG, no decoder
            result = str(exc)
        for value in identifying:
            assert value not in result


def test_safe_dicom_metadata_is_an_allowlist():
    ds = pydicom.dcmread(io.BytesIO(make_dicom(chest_like().astype(np.uint16))))
    meta = safe_dicom_metadata(ds)
    assert set(meta) <= {"Modality", "BodyPartExamined", "ViewPosition", "PhotometricInterpretation",
                         "Rows", "Columns", "BitsStored"}
    assert_private(meta)


# ---------------------------------------------------------------- helpers

def test_thumbnail_and_encode_png(tmp_path):
    gray = chest_like(600, 400)
    small = thumbnail(gray, max_side=256)
    assert small.shape == (256, 171) and small.dtype == np.uint8
    data = encode_png(small)
    assert data.startswith(b"\x89PNG")
    path = tmp_path / "x.png"
    path.write_bytes(data)
    np.testing.assert_array_equal(load_png_gray(path), small)
    rgb_path = tmp_path / "rgb.png"
    Image.fromarray(np.dstack([gray] * 3)).save(rgb_path)
    np.testing.assert_array_equal(load_png_gray(rgb_path), gray)


def test_exif_orientation_applied():
    exif = Image.Exif()
    exif[0x0112] = 6                                               # "rotate 90° clockwise to view"
    data = pil_bytes(Image.fromarray(chest_like(96, 80)), "JPEG", exif=exif.tobytes())
    out = decode_image(data)
    assert out.gray.shape == (80, 96) and "rotated upright per EXIF orientation" in out.notes


def test_large_16bit_and_rgba_downscaled_before_numpy():
    arr = (np.indices((2500, 300)).sum(0) * 10).astype(np.uint16)
    out = decode_image(pil_bytes(Image.fromarray(arr), compress_level=1))
    assert out.gray.shape[0] == MAX_SIDE and any("16-bit" in n for n in out.notes)
    rgba = Image.fromarray(np.dstack([chest_like(300, 2200)] * 3)).convert("RGBA")
    out = decode_image(pil_bytes(rgba, compress_level=1))
    assert out.gray.shape[1] == MAX_SIDE and out.colorfulness == 0.0
