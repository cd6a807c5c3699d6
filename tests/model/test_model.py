"""Model forward/backward with tiny inputs (offline text backbone, DenseNet from scratch),
checkpoint round trip and damaged weights files."""
from __future__ import annotations

import json

import pytest
import torch

from core.data.labels import FINDINGS, TEXT_MODES
from core.model.checkpoint import WeightsError, load_weights, read_metadata, save_weights
from core.model.fusion import BackboneUnavailable, ModelConfig, build_model, load_image_weights


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, tokenizer = build_model(ModelConfig(num_aux=3))
    return model, tokenizer


def batch(tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def test_forward_backward_shapes_no_nans(tiny):
    model, tok = tiny
    model.train()
    x = torch.randn(3, 1, 64, 64)
    ids, mask = batch(tok, ["Heart is enlarged.", "No pneumonia.", ""])
    mode = torch.tensor([0, 1, TEXT_MODES.index("none")])
    out = model(x, ids, mask, mode)
    for head in ("fusion", "image", "text"):
        assert out[head].shape == (3, len(FINDINGS))
        assert torch.isfinite(out[head]).all()
    assert out["aux"].shape == (3, 3)
    loss = sum(o.sum() for o in out.values())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.zero_grad(set_to_none=True)


def test_empty_text_is_image_only(tiny):
    model, tok = tiny
    model.eval()
    x = torch.randn(1, 1, 64, 64)
    none = torch.tensor([TEXT_MODES.index("none")])
    ids1, m1 = batch(tok, ["Large heart."])
    ids2, m2 = batch(tok, ["Something else entirely."])
    with torch.no_grad():
        a = model(x, ids1, m1, none)
        b = model(x, ids2, m2, none)
    assert torch.allclose(a["fusion"], b["fusion"])  # text is ignored in mode none


def test_checkpoint_round_trip(tiny, tmp_path):
    model, tok = tiny
    model.eval()
    meta = {"version": "t1", "labels": list(FINDINGS), "preprocessing": {"image_size": 64, "mean": 0.5, "std": 0.25}}
    save_weights(model, meta, tmp_path, ood={"threshold": torch.tensor([1.0])})
    loaded, _, meta2, ood = load_weights(tmp_path)
    assert meta2["version"] == "t1" and meta2["model_config"]["num_aux"] == 3
    assert json.loads((tmp_path / "metadata.json").read_text())["version"] == "t1"
    assert ood["threshold"].item() == 1.0
    x = torch.randn(2, 1, 64, 64)
    ids, mask = batch(tok, ["Heart is enlarged.", "Clear lungs."])
    mode = torch.tensor([0, 1])
    with torch.no_grad():
        a, b = model(x, ids, mask, mode), loaded(x, ids, mask, mode)
    # encoders are stored in fp16: outputs agree closely, not bit for bit
    assert torch.allclose(a["fusion"], b["fusion"], atol=0.05)
    assert (tmp_path / "model.safetensors").stat().st_size < 60e6


def test_damaged_weights_give_clear_errors(tiny, tmp_path):
    with pytest.raises(WeightsError, match="no trained weights"):
        read_metadata(tmp_path)
    model, _ = tiny
    save_weights(model, {"version": "t2"}, tmp_path)
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(WeightsError, match="damaged"):
        load_weights(tmp_path)
    path.write_bytes(b"\x00" * 100)  # not a safetensors file at all
    with pytest.raises(WeightsError, match="damaged"):
        read_metadata(tmp_path)


def test_a_file_missing_an_image_encoder_tensor_is_refused(tiny, tmp_path):
    # every image-encoder tensor comes from the file: one missing must be refused, not served
    # with the random initialisation it would otherwise keep
    from safetensors.torch import load_file, save_file

    from core.model.checkpoint import DIGEST_KEY, content_digest
    model, _ = tiny
    save_weights(model, {"version": "t3"}, tmp_path)
    path = tmp_path / "model.safetensors"
    tensors = load_file(str(path))
    dropped = next(k for k in tensors
                   if k.startswith("image_encoder.features.denseblock4.") and k.endswith(".conv1.weight"))
    del tensors[dropped]
    meta = read_metadata(tmp_path)
    meta[DIGEST_KEY] = content_digest(tensors, meta)  # a consistent file, only the tensor is gone
    save_file(tensors, str(path), metadata={"cxr": json.dumps(meta)})
    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="does not match this model"):
        load_weights(tmp_path)


def test_image_weights_options(tiny, tmp_path):
    model, _ = tiny
    with pytest.raises(BackboneUnavailable, match="not found"):
        load_image_weights(model.image_encoder, str(tmp_path / "missing.safetensors"))
    from safetensors.torch import save_file
    state = {k: v.contiguous() for k, v in model.image_encoder.features.state_dict().items()}
    save_file(state, str(tmp_path / "d.safetensors"))
    load_image_weights(model.image_encoder, str(tmp_path / "d.safetensors"))
