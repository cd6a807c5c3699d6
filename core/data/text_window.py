"""Fit a long text into the text encoder's window, and say exactly what was read.

    window = fit_text(text, tokenizer, max_len=160)
    predictor.predict(gray, window.read, "report")   # the model reads window.read
    window.note                                       # one line for the user, "" when nothing was cut

The encoder reads at most ``max_len`` word pieces, some of them special (BERT: [CLS], [SEP]). Cut
at the end, a long FINDINGS section pushes the IMPRESSION — the part that matters — out
unseen. So when the text has an IMPRESSION heading, the IMPRESSION is kept whole and the
text before it is cut instead; without one the beginning is kept (what the encoder would
read anyway), and the note says how much was not read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_IMPRESSION = re.compile(r"\b(IMPRESSION|CONCLUSION)S?\s*[:\-]", re.IGNORECASE)
SPECIAL_TOKENS = 2  # BERT's [CLS] ... [SEP]; a tokenizer that says how many it adds is asked instead


@dataclass
class TextWindow:
    read: str                       # the text the model reads (one or two parts of the original, joined by a space)
    original_chars: int
    pieces_total: int               # word pieces in the original (no special tokens)
    pieces_read: int
    skipped: list[tuple[int, int]] = field(default_factory=list)  # character spans of the original not read
    impression_first: bool = False  # the IMPRESSION was kept by cutting the text before it
    limit: int = 0                  # word pieces of text the encoder reads at most (its window less its markers)

    @property
    def truncated(self) -> bool:
        return bool(self.skipped)

    @property
    def chars_read(self) -> int:
        """Characters of the original the model read (``read`` may join two parts with a space)."""
        return self.original_chars - sum(b - a for a, b in self.skipped)

    @property
    def note(self) -> str:
        if not self.truncated:
            return ""
        cut = sum(b - a for a, b in self.skipped)
        where = ("the end of the text before the IMPRESSION (the IMPRESSION was read whole)"
                 if self.impression_first else "everything after the first part")
        return (f"The text model reads at most {self.limit} word pieces of text; this text has "
                f"{self.pieces_total:,}. Not read: {cut:,} of {self.original_chars:,} characters — {where}.")


def _pieces(tokenizer, text: str) -> list[tuple[int, int]]:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False)
    return [tuple(o) for o in enc["offset_mapping"]]


def _count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])


def fit_text(text: str, tokenizer, *, max_len: int) -> TextWindow:
    """The part of ``text`` the encoder can read whole (see the module docstring)."""
    text = text or ""
    offsets = _pieces(tokenizer, text)
    special = getattr(tokenizer, "num_special_tokens_to_add", None)
    budget = max(1, max_len - (special() if special else SPECIAL_TOKENS))
    total = len(offsets)
    if total <= budget:
        return TextWindow(read=text, original_chars=len(text), pieces_total=total, pieces_read=total, limit=budget)
    headings = list(_IMPRESSION.finditer(text))
    heading = headings[-1] if headings else None  # the last IMPRESSION heading
    if heading is not None and heading.start() > 0:
        start = heading.start()
        impression = [o for o in offsets if o[0] >= start]
        before = [o for o in offsets if o[1] <= start]
        if len(impression) >= budget - 1 or not before:  # the impression alone fills the window
            end = impression[min(budget, len(impression)) - 1][1]
            read = text[start:end]
            skipped = [(0, start)] + ([(end, len(text))] if end < len(text) else [])
            return TextWindow(read=read, original_chars=len(text), pieces_total=total,
                              pieces_read=_count(tokenizer, read), skipped=skipped, impression_first=True, limit=budget)
        keep = budget - len(impression)
        while keep > 0:
            head_end = before[keep - 1][1]
            read = text[:head_end].rstrip() + " " + text[start:]
            if _count(tokenizer, read) <= budget:  # joining can merge pieces: check, shrink if needed
                return TextWindow(read=read, original_chars=len(text), pieces_total=total,
                                  pieces_read=_count(tokenizer, read), skipped=[(head_end, start)],
                                  impression_first=True, limit=budget)
            keep -= 1
    end = offsets[budget - 1][1]
    return TextWindow(read=text[:end], original_chars=len(text), pieces_total=total, pieces_read=budget,
                      skipped=[(end, len(text))], limit=budget)
