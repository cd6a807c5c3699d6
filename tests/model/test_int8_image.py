"""The int8 image encoder (core/model/int8_image.py): its traceable forward is the encoder's, a
stored calibration rebuilds exactly the graph a direct conversion gives, and a calibration
that is damaged, incomplete or made for other weights is not used (fp32 serves, and the
predictor says why). Random-weight encoders at 64 px; the fidelity on real data is in
tests/model/test_fast_path.py."""
from __future__ import annotations

import shutil
import warnings

import pytest
import torch

from core.model import int8_image as q8
from core.model.description import INT8_FILE, read_int8_info
from core.model.frozen import fold_batchnorm
from core.model.fusion import ImageEncoder

pytestmark = pytest.mark.skipif(not q8.available(), reason="this torch build has no oneDNN quantised engine")

SIZE = 64


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    enc = ImageEncoder().eval()
    fold_batchnorm(enc)  # as served (core.model.frozen)
    return enc


@pytest.fixture(scope="module")
def pixels():
    return torch.randn(24, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def state(encoder, pixels):
    return q8.calibrate(encoder, pixels)


def test_traceable_encoder_is_the_image_encoder_to_the_bit(encoder, pixels):
    with torch.inference_mode():
        assert torch.equal(q8.TraceableImageEncoder(encoder.features)(pixels[:3]), encoder.forward_features(pixels[:3]))


def test_a_stored_calibration_rebuilds_the_directly_converted_graph(encoder, pixels, state, tmp_path):
    from torch.ao.quantization.quantize_fx import convert_fx
    observed = q8._observed(encoder, SIZE, stored=False)
    with torch.inference_mode():
        for s in range(0, len(pixels), 32):  # the batches calibrate() uses
            observed(pixels[s:s + 32])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        direct = convert_fx(observed)
    q8.save_calibration(tmp_path / INT8_FILE, state, {"encoder_sha256": q8.encoder_digest(encoder)})
    stored, info = q8.read_calibration(tmp_path / INT8_FILE)
    rebuilt = q8.int8_encoder(encoder, stored, SIZE)
    with torch.inference_mode():
        got, want, fp32 = rebuilt(pixels[:4]), direct(pixels[:4]), encoder.forward_features(pixels[:4])
    assert torch.equal(got, want)
    assert not torch.equal(got, fp32)  # it is int8...
    assert ((got - fp32).norm() / fp32.norm()) < 0.1  # ...and close to fp32
    assert info == read_int8_info(tmp_path)  # the page-side reader (no torch) sees the same info


def test_a_calibration_made_for_other_weights_is_not_used(encoder, state):
    other = ImageEncoder().eval()
    fold_batchnorm(other)
    info = {"encoder_sha256": q8.encoder_digest(encoder)}
    assert q8.served_encoder(encoder, (state, info), SIZE)[0] is not None
    module, why = q8.served_encoder(other, (state, info), SIZE)
    assert module is None and why is q8.Unused.OTHER_WEIGHTS


def test_a_calibration_missing_an_activation_is_refused(encoder, state):
    incomplete = dict(list(state.items())[2:])
    with pytest.raises(ValueError, match="missing"):
        q8.int8_encoder(encoder, incomplete, SIZE)
    module, why = q8.served_encoder(encoder, (incomplete, {"encoder_sha256": q8.encoder_digest(encoder)}), SIZE)
    assert module is None and why is q8.Unused.DOES_NOT_FIT


def test_a_damaged_calibration_file_is_not_used(tmp_path):
    (tmp_path / INT8_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    calibration, why = q8.find_calibration(tmp_path)
    assert calibration is None and why is q8.Unused.UNREADABLE
    assert read_int8_info(tmp_path) is None
    calibration, why = q8.find_calibration(tmp_path / "absent")
    assert calibration is None and why is q8.Unused.NO_FILE


def test_the_predictor_serves_int8_only_with_a_fitting_calibration(tiny_weights, tmp_path):
    """Real (tiny, trained) weights: with a calibration made for them the predict path is int8
    and says so; with one made for other weights it stays fp32 and says why."""
    import numpy as np

    from core.serving.predictor import Int8State, Precision, Predictor
    folder = tmp_path / "w"
    shutil.copytree(tiny_weights, folder)
    plain = Predictor.load(folder)
    assert plain.freeze_encoders() == ["image", "text"] and plain.image_precision is Precision.FP32
    assert plain.int8_state is Int8State.NO_CALIBRATION and "no " + INT8_FILE in plain.int8_state.message
    encoder = plain.model.image_encoder
    x = torch.randn(8, 1, plain.size, plain.size, generator=torch.Generator().manual_seed(2))
    # made for the encoder as stored in the file (its digest does not depend on this CPU's rounding)
    q8.save_calibration(folder / INT8_FILE, q8.calibrate(encoder, x),
                        {"encoder_sha256": q8.stored_encoder_digest(folder)})
    served = Predictor.load(folder)
    assert served.freeze_encoders() == ["image (int8)", "text"]
    assert served.image_precision is Precision.INT8 and served.int8_state is Int8State.SERVING
    assert served.served_version == served.version + "+int8" and plain.served_version == plain.version
    gray = (np.arange(96 * 96) % 251).astype(np.uint8).reshape(96, 96)
    got, want = served.predict(gray, "Heart size normal."), plain.predict(gray, "Heart size normal.")
    assert got.fusion.keys() == want.fusion.keys()
    assert got.model == served.version + "+int8" and want.model == plain.version  # what the log keeps
    assert max(abs(got.image[f] - want.image[f]) for f in got.image) < 0.2  # int8, not another model
    q8.save_calibration(folder / INT8_FILE, q8.calibrate(encoder, x), {"encoder_sha256": "0" * 64})
    stale = Predictor.load(folder)
    assert stale.freeze_encoders() == ["image", "text"] and stale.image_precision is Precision.FP32
    assert stale.int8_state is Int8State.OTHER_WEIGHTS and "other weights" in stale.int8_state.message


def test_a_calibration_is_written_only_within_its_limits(tiny_weights, iu_xray_dir, tmp_path, monkeypatch):
    """scripts/calibrate_int8.py's core: training images in, the validation split's changes
    measured, and nothing written when they exceed the limits."""
    from core.serving import int8_calibration as int8_calibrate
    from core.serving.predictor import Predictor
    folder = tmp_path / "w"
    shutil.copytree(tiny_weights, folder)
    monkeypatch.setattr(int8_calibrate, "MAX_AUC_CHANGE", -1.0)  # any change is too much
    with pytest.raises(int8_calibrate.CalibrationRejected, match="not written"):
        int8_calibrate.calibrate_weights(folder, iu_xray_dir, images=32)
    assert not (folder / INT8_FILE).exists()
    monkeypatch.setattr(int8_calibrate, "MAX_AUC_CHANGE", 1.0)
    monkeypatch.setattr(int8_calibrate, "MAX_FLIPS", 1.0)
    info = int8_calibrate.calibrate_weights(folder, iu_xray_dir, images=32)
    assert read_int8_info(folder) == info
    assert info["calibration"].startswith("32 training-split") and info["validation"]["n_studies"] > 0
    assert set(info["validation"]["modes"]) == {"report", "indication", "none"}
    assert Predictor.load(folder).freeze_encoders() == ["image (int8)", "text"]


def test_the_calibration_script_refuses_bad_input_in_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    for args in (["--images", "0"], ["--data", str(tmp_path / "absent"), "--weights", str(tmp_path)]):
        res = subprocess.run([sys.executable, "scripts/calibrate_int8.py", *args], cwd=root, capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert not (tmp_path / INT8_FILE).exists()


def test_the_calibration_digest_is_the_stored_encoders_not_the_folded_one(tiny_weights, tmp_path):
    """BatchNorm folding rounds differently on other CPUs: the digest a calibration is tied to
    is taken from the weights file, so it is the same on any machine and before or after folding."""
    from core.serving.predictor import Predictor
    served = Predictor.load(tiny_weights)  # folded (fast=True)
    plain = Predictor.load(tiny_weights, fast=False)
    assert q8.encoder_digest(served.model.image_encoder) != q8.encoder_digest(plain.model.image_encoder)
    # the stored digest follows the file's image encoder, and only it
    from safetensors import safe_open
    from safetensors.torch import save_file
    folder = tmp_path / "w"
    shutil.copytree(tiny_weights, folder)
    path = folder / "model.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        tensors, meta = {k: fh.get_tensor(k) for k in fh.keys()}, fh.metadata()
    assert q8.stored_encoder_digest(folder) == q8.stored_encoder_digest(tiny_weights)
    name = next(k for k in sorted(tensors) if k.startswith("image_encoder.") and tensors[k].is_floating_point())
    tensors[name] = tensors[name] + 1
    save_file(tensors, str(path), metadata=meta)
    assert q8.stored_encoder_digest(folder) != q8.stored_encoder_digest(tiny_weights)
