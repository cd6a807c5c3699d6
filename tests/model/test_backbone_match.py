"""The text backbone's tables (not stored in a weights file) are accepted as loaded or rounded to
fp16, checked by the fingerprint the weights carry; anything else is refused and leaves them as
they were. A tiny BERT built from a config: no download, no site-packages model."""
from __future__ import annotations

import hashlib

import torch
from transformers import BertConfig, BertModel

from core.model.text_encoders.bert import BertEncoder


def tiny_bert() -> BertEncoder:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=120, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=40)
    encoder = BertEncoder(BertModel(config, add_pooling_layer=False))
    with torch.no_grad():  # values fp16 cannot hold exactly, so rounding is visible
        for p in encoder.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    return encoder


def tables(encoder: BertEncoder) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in encoder.state_dict().items() if k.startswith(BertEncoder.backbone_prefixes)}


def test_the_fingerprint_is_the_sha256_of_the_float32_word_embeddings():
    # the definition stored fingerprints were made with: changing it would refuse every weights file
    enc = tiny_bert()
    w = enc.word_embeddings().weight.detach().float().contiguous()
    assert enc.fingerprint() == hashlib.sha256(w.numpy().tobytes()).hexdigest()[:16]


def test_tables_as_loaded_are_accepted_unchanged():
    enc = tiny_bert()
    before = tables(enc)
    assert enc.match_backbone(enc.fingerprint())
    assert all(torch.equal(before[k], v) for k, v in tables(enc).items())


def test_tables_rounded_to_fp16_are_accepted_and_every_table_is_rounded():
    enc = tiny_bert()
    before = tables(enc)
    layers_before = {k: v.clone() for k, v in enc.state_dict().items() if k not in before}
    rounded = enc.word_embeddings().weight.detach().half().float()
    fingerprint = hashlib.sha256(rounded.numpy().tobytes()).hexdigest()[:16]
    assert fingerprint != enc.fingerprint()
    assert enc.match_backbone(fingerprint)
    after = tables(enc)
    for k, v in before.items():
        if v.is_floating_point():
            assert torch.equal(after[k], v.half().float()), k
            assert not torch.equal(after[k], v), k  # it did change
    # the encoder's own layers come from the weights file: untouched
    assert all(torch.equal(enc.state_dict()[k], v) for k, v in layers_before.items())


def test_another_backbone_is_refused_and_its_tables_stay_as_they_were():
    enc = tiny_bert()
    before = tables(enc)
    assert not enc.match_backbone("0123456789abcdef")
    assert all(torch.equal(before[k], v) for k, v in tables(enc).items())
