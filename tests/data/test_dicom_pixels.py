"""core.data.dicom_pixels: the fast DICOM pixel path gives the pixels the plain path gave.

The LUT table is exact where it applies; a large JPEG 2000 is read at a reduced resolution level
(close to, not equal to, the full decode downscaled); JPEG-LS through CharLS equals pylibjpeg's.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pydicom = pytest.importorskip("pydicom")

from core.data import dicom_pixels  # noqa: E402
from core.data.dicom_pixels import _values, first_frame, j2k_level, monochrome_to_gray  # noqa: E402
from core.data.images import MAX_SIDE, ImageDecodeError, _rescale, decode_image  # noqa: E402
from tests.data.test_imaging import _compressed, chest_like, make_dicom  # noqa: E402


def dataset(data: bytes):
    return pydicom.dcmread(io.BytesIO(data))


def large(side: int, seed: int = 0) -> np.ndarray:
    """A smooth 12-bit image in 16 bits, ``side`` px square (a chest-like gradient, upsampled)."""
    small = chest_like(side // 8, side // 8, seed=seed)
    return (np.asarray(Image.fromarray(small).resize((side, side), Image.BILINEAR)).astype(np.uint16) * 16)


def voi_lut_sequence(ds, table: np.ndarray, first: int) -> None:
    from pydicom.dataset import Dataset
    item = Dataset()
    item.LUTDescriptor = [len(table), first, 16]
    item.LUTData = [int(v) for v in table]
    ds.VOILUTSequence = [item]


CASES = {
    "window, MONOCHROME2": dict(window=(2048, 4096)),
    "window, MONOCHROME1": dict(window=(1500, 2000), photometric="MONOCHROME1"),
    "negative slope": dict(rescale=(-1.0, 4095.0)),
    "signed, negative values": dict(signed=True, rescale=(1.0, -1024.0), window=(0, 800)),
    "VOI LUT sequence, monotone": dict(voi=lambda n: np.sqrt(np.arange(n)) * 100),
    "VOI LUT sequence, not monotone (whole-image path)": dict(voi=lambda n: (np.arange(n) % 700) * 10),
}


@pytest.mark.parametrize("case", CASES)
def test_lut_table_equals_the_whole_image_computation(case):
    kw = dict(CASES[case])
    signed, voi = kw.pop("signed", False), kw.pop("voi", None)
    arr = large(320, seed=3)
    if signed:
        arr = arr.astype(np.int16) - 1500
    ds = dataset(make_dicom(arr, **kw))
    if voi is not None:
        voi_lut_sequence(ds, voi(4096).astype(np.uint16), 0)
    photometric = str(ds.PhotometricInterpretation)
    fast = monochrome_to_gray(ds.pixel_array, ds, photometric, _rescale)
    np.testing.assert_array_equal(fast, _rescale(_values(ds.pixel_array, ds, photometric)))


def test_j2k_level_is_the_coarsest_still_at_least_the_side():
    assert j2k_level(2500, 2500, 1024) == 1 and j2k_level(2048, 1800, 1024) == 1
    assert j2k_level(2047, 1500, 1024) == 1 and j2k_level(2046, 1500, 1024) == 0 and j2k_level(900, 900, 1024) == 0
    assert j2k_level(4300, 3500, 1024) == 2 and j2k_level(3000, 3000, 512) == 2


def test_large_jpeg2000_is_read_at_a_reduced_level_close_to_the_full_decode(tmp_path, monkeypatch):
    arr = large(2200)
    data = _compressed(arr, "JPEG2000Lossless", tmp_path, window=(2048, 4096))
    out = decode_image(data)
    assert out.gray.shape == (MAX_SIDE, MAX_SIDE)
    assert any("1/2 resolution level" in n for n in out.notes)
    monkeypatch.setattr(dicom_pixels, "_j2k_reduced", lambda *a, **k: None)      # the full decode
    full = decode_image(data)
    assert not any("resolution level" in n for n in full.notes)
    diff = np.abs(out.gray.astype(int) - full.gray.astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 16, (diff.mean(), diff.max())


def test_small_jpeg2000_is_decoded_in_full(tmp_path):
    arr = large(640)
    ds = dataset(_compressed(arr, "JPEG2000Lossless", tmp_path))
    values, level = first_frame(ds, 1, min_side=MAX_SIDE)
    assert level == 0
    np.testing.assert_array_equal(values, arr)


def test_truncated_large_jpeg2000_falls_back_to_one_clear_line(tmp_path):
    """The reduced-level reader refuses a truncated stream; pydicom's full decode then words the error."""
    ds = dataset(_compressed(large(2200), "JPEG2000Lossless", tmp_path))
    from pydicom.encaps import encapsulate, get_frame
    frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    ds.PixelData = encapsulate([frame[: len(frame) // 3]])
    assert dicom_pixels._j2k_reduced(ds, 1, MAX_SIDE) is None
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with pytest.raises(ImageDecodeError, match="JPEG 2000") as err:
        decode_image(buf.getvalue())
    assert "\n" not in str(err.value)


def test_jpeg_ls_through_charls_equals_pylibjpeg(tmp_path):
    pytest.importorskip("jpeg_ls")
    arr = large(800, seed=5)
    ds = dataset(_compressed(arr, "JPEGLSLossless", tmp_path))
    values, level = first_frame(ds, 1, min_side=MAX_SIDE)
    from pydicom.pixels import pixel_array
    np.testing.assert_array_equal(values, pixel_array(ds, index=0, decoding_plugin="pylibjpeg"))
    np.testing.assert_array_equal(values, arr)
    assert level == 0
