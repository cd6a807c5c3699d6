"""Clean user text before the model (and the log) see it."""
from __future__ import annotations

import unicodedata

from core.errors import CxrError

# The longest text the command lines, the web batch, the site table and the PACS indication take (one line
# refuses more): the findings and impression sections are far shorter.
MAX_TEXT_CHARS = 20_000
# The Predict page's text box takes more: a pasted whole report is fitted to the encoder's window with its
# IMPRESSION kept and the cut said (core.data.text_window; tests/app/test_app_predict.py, "Defect 3": 20,000+
# characters were once dropped there), so only text that is plainly not a report is refused.
MAX_PAGE_TEXT_CHARS = 200_000


class TextError(CxrError, ValueError):
    """Text the tool will not take."""


def clean_text(text: str, *, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Remove control characters (NUL, escapes; keep newlines and tabs as spaces),
    normalise Unicode and refuse text longer than ``max_chars``. Right-to-left scripts and
    emoji pass through unchanged; HTML and SQL are just text here."""
    text = unicodedata.normalize("NFC", text or "")
    if len(text) > max_chars:
        raise TextError(f"the text is {len(text):,} characters long; paste at most {max_chars:,} "
                        "(the findings and impression sections are enough)")
    return "".join(" " if ch in "\n\r\t" else ch for ch in text
                   if ch in "\n\r\t" or unicodedata.category(ch)[0] != "C" or unicodedata.category(ch) == "Cf").strip()
