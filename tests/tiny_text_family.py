"""A second text-encoder family in one file: a tiny GRU over a WordPiece vocabulary built offline.

It exists to show that a non-BERT encoder is a one-file change (core.model.text_encoders): nothing
in core, ui or scripts knows about it. Its word pieces continue with ``@@`` (not BERT's
``##``), it stores everything it needs in the weights (the tokenizer as JSON in ``options``;
no backbone tables come from elsewhere) and its projection layer is what int8 may quantise.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from core.model.text_encoders import TextEncoder, register

CORPUS = ["The heart is enlarged.", "Cardiomegaly with mild pulmonary edema.", "No focal consolidation.",
          "Lungs are clear. No pneumothorax or effusion.", "Patchy atelectasis at the left base.",
          "Cough and fever, rule out pneumonia.", "Heart size is normal. Pulmonary vascularity is normal."]


def build_tokenizer_json(corpus=CORPUS, vocab_size: int = 120) -> str:
    """A small WordPiece vocabulary trained on ``corpus`` with the ``tokenizers`` library (no download)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="@@"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="@@")
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]"],
                                        continuing_subword_prefix="@@")
    tok.train_from_iterator(corpus, trainer)
    return tok.to_str()


@register
class TinyGRUEncoder(TextEncoder):
    family = "tinygru"
    continuation = "@@"  # its pieces continue a word with "@@", not BERT's "##"

    def __init__(self, vocab: int, dim: int, tokenizer_json: str) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=0)
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.proj = nn.Linear(dim, dim)
        self.out_dim = dim
        self._tokenizer_json = tokenizer_json

    @classmethod
    def load(cls, backbone: str, *, pretrained: bool = True, options: dict | None = None):
        from tokenizers import Tokenizer
        from transformers import PreTrainedTokenizerFast
        options = dict(options or {})
        text = options.get("tokenizer") or build_tokenizer_json()
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(text), pad_token="[PAD]",
                                            unk_token="[UNK]")
        return tokenizer, cls(len(tokenizer), int(options.get("dim", 16)), text)

    def options(self) -> dict:
        return {"tokenizer": self._tokenizer_json, "dim": self.out_dim}

    def forward_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.gru(self.embed(input_ids))
        hidden = torch.tanh(self.proj(hidden))
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def word_embeddings(self) -> nn.Module:
        return self.embed

    def quantisable_layers(self) -> list[str]:
        return ["proj"]

