"""A second text-encoder family (tests/tiny_text_family.py, one file) goes through every path the
BERT family does: build, a training step, int8 quantisation, save, load, predict and per-word
Integrated Gradients with its own word-piece merging."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.data.labels import FINDINGS, HEADS, TEXT_MODES
from core.model.checkpoint import load_weights, read_metadata, save_weights
from core.model.frozen import quantize_text
from core.model.fusion import ModelConfig, build_model
from core.model.text_encoders import UnknownTextEncoder, family
from tests.tiny_text_family import TinyGRUEncoder

TEXT = "Cardiomegaly with mild pulmonary edema."


def metadata(findings=FINDINGS) -> dict:
    return {"version": "tiny-gru-1", "labels": list(findings), "text_max_len": 32,
            "preprocessing": {"image_size": 64, "mean": 0.5, "std": 0.25},
            "thresholds": {m: {h: {f: 0.5 for f in findings} for h in HEADS} for m in TEXT_MODES}}


@pytest.fixture(scope="module")
def tiny_gru():
    torch.manual_seed(0)
    return build_model(ModelConfig(text_type="tinygru", text_backbone="tiny-corpus", embed_dim=16))


def test_family_is_found_by_name_and_unknown_names_fail_in_one_line():
    assert family("tinygru") is TinyGRUEncoder and family("bert").family == "bert"
    with pytest.raises(UnknownTextEncoder, match="add core/model/text_encoders/nosuch.py"):
        family("nosuch")
    with pytest.raises(UnknownTextEncoder):
        family("../../evil")  # weights cannot make us import a module outside the package


def test_a_training_step_moves_the_text_encoder(tiny_gru):
    model, tokenizer = tiny_gru
    enc = model.text_encoder
    before = {n: p.detach().clone() for n, p in enc.named_parameters()}
    opt = torch.optim.SGD(list(enc.tuned_parameters()) + list(model.text_proj.parameters())
                          + list(model.text_head.parameters()), lr=0.5)
    batch = tokenizer([TEXT, "Lungs are clear."], padding=True, return_tensors="pt")
    model.train()
    out = model(torch.zeros(2, 1, 64, 64), batch["input_ids"], batch["attention_mask"], torch.tensor([0, 0]))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(out["text"], torch.eye(2, len(FINDINGS)))
    loss.backward()
    opt.step()
    model.eval()
    assert any(not torch.equal(before[n], p) for n, p in enc.named_parameters())


def test_save_load_predict_attribute(tiny_gru, tmp_path):
    from core.serving.predictor import Predictor
    model, _ = tiny_gru
    save_weights(model, metadata(), tmp_path)
    stored = read_metadata(tmp_path)["model_config"]
    assert stored["text_type"] == "tinygru" and "tokenizer" in stored["text_options"]

    loaded, tokenizer, meta, _ = load_weights(tmp_path)
    assert isinstance(loaded.text_encoder, TinyGRUEncoder) and meta["labels"] == list(FINDINGS)
    batch = tokenizer([TEXT], return_tensors="pt")
    with torch.no_grad():  # what was saved comes back (the encoder in fp16, as every family)
        a = model.text_encoder.forward_features(batch["input_ids"], batch["attention_mask"])
        b = loaded.text_encoder.forward_features(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(a, b, atol=1e-2)

    predictor = Predictor(loaded, tokenizer, meta)
    gray = (np.random.default_rng(0).random((96, 96)) * 255).astype(np.uint8)
    with_text, without = predictor.predict(gray, TEXT, "report"), predictor.predict(gray, "", "report")
    assert set(with_text.fusion) == set(FINDINGS) and without.text_mode == "none"
    assert with_text.text != without.text  # the text head read the text

    attr = predictor.attribute(gray, TEXT, "report", finding="Edema", head="text", method="ig", ig_steps=8)
    pieces = [p for p, _ in attr.tokens]
    assert any(p.startswith("@@") for p in pieces)  # the vocabulary split at least one word...
    words = [w for w, _ in attr.words]  # ...and the family joined it again
    assert words == ["cardiomegaly", "with", "mild", "pulmonary", "edema", "."]
    assert sum(s for _, s in attr.words) == pytest.approx(sum(s for _, s in attr.tokens))


def test_int8_quantisation_uses_the_family_layers(tiny_gru):
    import copy
    model = copy.deepcopy(tiny_gru[0]).eval()
    quantize_text(model)
    assert type(model.text_encoder.proj).__module__.startswith("torch.ao.nn.quantized")
    ids = torch.tensor([[2, 3, 4]])
    assert model.text_encoder.forward_features(ids, torch.ones_like(ids)).shape == (1, 16)


def test_the_trainer_trains_the_family_unchanged(tmp_path):
    """scripts/train.py --text-family tinygru: every phase runs, the unfrozen phase tunes the
    family's parameters, and the weights it writes name the family and load again."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.synthetic import make_openi
    root = Path(__file__).resolve().parents[2]
    data = make_openi(tmp_path / "data", 24)
    argv = ["scripts/train.py", "--data", str(data), "--out", str(tmp_path / "w"), "--run-dir", str(tmp_path / "run"),
            "--text-family", "tinygru", "--text-backbone", "tiny-corpus", "--image-size", "32", "--batch-size", "8",
            "--image-epochs", "1", "--frozen-epochs", "1", "--unfrozen-epochs", "1", "--no-fit-ood",
            "--aux-terms", "4", "--no-eval"]
    code = ("import runpy, sys; import tests.tiny_text_family; "  # the family registers itself on import
            f"sys.argv = {argv!r}; runpy.run_path('scripts/train.py', run_name='__main__')")
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, CXR_RUNLOG=str(tmp_path / "runs.db")))
    assert res.returncode == 0, res.stderr[-2000:]
    assert "unfrozen" in res.stdout
    assert read_metadata(tmp_path / "w")["model_config"]["text_type"] == "tinygru"
    model, _, _, _ = load_weights(tmp_path / "w")
    assert isinstance(model.text_encoder, TinyGRUEncoder)
