"""Per-token text attributions as coloured words. Every piece of user text is escaped."""
from __future__ import annotations

import html

POSITIVE, NEGATIVE = (214, 39, 40), (31, 119, 180)  # pushes the probability up / down


def tokens_html(words: list[tuple[str, float]]) -> str:
    """Words (``Attribution.words``: the text encoder merged its pieces) as <span>s whose
    background shows the sign and size of their attribution."""
    top = max((abs(s) for _, s in words), default=0.0) or 1.0
    spans = []
    for word, score in words:
        r, g, b = POSITIVE if score >= 0 else NEGATIVE
        alpha = min(1.0, abs(score) / top) * 0.8
        spans.append(f'<span title="{score:+.4f}" style="background: rgba({r},{g},{b},{alpha:.2f}); '
                     f'padding: 1px 3px; margin: 1px; border-radius: 3px; line-height: 1.9">{html.escape(word)}</span>')
    return '<div style="font-family: monospace">' + " ".join(spans) + "</div>"
