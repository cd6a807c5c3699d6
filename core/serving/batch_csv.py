"""The batch CSV, one contract for the web batch (core.serving.batch_uploads) and the command line
(scripts/predict.py --batch), parsed here only: columns ``image`` (``file`` accepted), optional
``text``, ``text_mode`` (``mode`` accepted) and ``id``. Lenient where people type: header names
and the mode are read case-insensitively and stripped (``Report`` is ``report``)."""
from __future__ import annotations

from dataclasses import dataclass

from core.data.labels import resolve_mode
from core.data.text_clean import MAX_TEXT_CHARS, clean_text

COLUMNS = "image,text,text_mode,id"


@dataclass(frozen=True)
class BatchRow:
    """One row of the batch CSV, read."""
    image: str        # as written, stripped: a path (command line) or a file name (web)
    text: str         # cleaned (core.data.text_clean): no control characters, at most MAX_TEXT_CHARS
    mode: str         # the mode it is read in (core.data.labels.resolve_mode)
    id: str = ""      # the user's own study ID, stripped


def header(fieldnames) -> list[str]:
    """The CSV's column names as the contract reads them (``csv.DictReader.fieldnames = header(...)``)."""
    return [f.strip().lower() for f in fieldnames or []]


def has_image_column(fieldnames) -> bool:
    return bool({"image", "file"} & set(header(fieldnames)))


def cell(row: dict, name: str, alias: str) -> str:
    """A cell by its name or the older name for it (``file`` for ``image``, ``mode`` for ``text_mode``)."""
    return (row.get(name) if row.get(name) is not None else row.get(alias)) or ""


def read_row(row: dict, *, default_mode: str | None = None) -> BatchRow:
    """A row (keys from ``header``) -> BatchRow; a row without a mode is read in ``default_mode``
    (None: as everywhere else, core.data.labels.resolve_mode). Raises TextError (the text) or
    OptionError (the mode), both CxrError."""
    text = clean_text(row.get("text") or "", max_chars=MAX_TEXT_CHARS)
    mode = cell(row, "text_mode", "mode").strip().lower() or default_mode
    return BatchRow(cell(row, "image", "file").strip(), text, resolve_mode(text, mode),
                    (row.get("id") or "").strip())
