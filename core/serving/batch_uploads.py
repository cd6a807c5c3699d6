"""Read a batch upload (the batch review page): image files, .zip archives (read in memory,
never extracted) and an optional CSV that maps file name -> text, mode and the user's own
study ID. The CSV is the CLI batch's (scripts/predict.py --batch), read by the same function
(core.serving.batch_csv); a row without a mode is read like everywhere else
(core.data.labels.resolve_mode: the indication when it has text). Pure
functions; problems become listed skips, a CSV that cannot be used raises CsvError."""
from __future__ import annotations

import csv
import io
import stat
import zipfile
from dataclasses import dataclass

from core.errors import CxrError
from core.serving.batch_csv import COLUMNS, cell, has_image_column, header, read_row
from core.store import safe_name

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
MAX_MEMBERS = 1000                 # entries looked at in one archive
MAX_MEMBER_BYTES = 50 * 2**20      # one image, uncompressed
MAX_TOTAL_BYTES = 400 * 2**20      # all images of one batch, uncompressed, held in memory
MAX_STUDIES = 500
MAX_CSV_BYTES = 5 * 2**20


@dataclass
class Item:
    name: str      # base name: what the CSV refers to and what the log keeps
    data: bytes


@dataclass
class TextRow:
    """What the CSV says of one file: the text, the mode it is read in, the user's own ID (kept in
    the page and its download only, never in the log)."""
    text: str = ""
    mode: str = "none"
    user_id: str = ""


@dataclass
class Skipped:
    name: str
    reason: str


def _unsafe(name: str) -> str | None:
    """Why an archive member's path is refused, or None. Nothing is written to disk, but an
    archive that tries path tricks is not trusted for any of its content's names."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path in archive"
    if ".." in name.replace("\\", "/").split("/"):
        return "path traversal ('..') in archive"
    return None


def _read_zip(name: str, data: bytes, budget: list[int]) -> tuple[list[Item], list[Skipped]]:
    items, skipped = [], []
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return [], [Skipped(name, "not a readable .zip archive")]
    if len(infos) > MAX_MEMBERS:
        skipped.append(Skipped(name, f"only the first {MAX_MEMBERS} of {len(infos)} entries were read"))
        infos = infos[:MAX_MEMBERS]
    for info in infos:
        member = info.filename
        if info.is_dir():
            continue
        base = safe_name(member)
        if base.startswith(".") or member.startswith("__MACOSX/"):
            continue  # OS metadata, not a study
        label = f"{name}:{member}"
        reason = _unsafe(member)
        if reason is None and stat.S_ISLNK(info.external_attr >> 16):
            reason = "symbolic link"
        if reason is None and info.flag_bits & 0x1:
            reason = "encrypted entry"
        if reason is None and base.lower().endswith(".zip"):
            reason = "nested archive (not opened)"
        if reason is None and not base.lower().endswith(IMAGE_SUFFIXES):
            reason = "not an image (PNG, JPEG or DICOM by extension)"
        if reason is None and info.file_size > MAX_MEMBER_BYTES:
            reason = f"larger than {MAX_MEMBER_BYTES // 2**20} MB uncompressed"
        if reason is None and info.file_size > budget[0]:
            reason = f"batch over {MAX_TOTAL_BYTES // 2**20} MB uncompressed; split it"
        if reason:
            skipped.append(Skipped(label, reason))
            continue
        try:
            with archive.open(info) as fh:
                content = fh.read(MAX_MEMBER_BYTES + 1)  # the header's size can lie: cap the real read
        except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError):
            skipped.append(Skipped(label, "unreadable entry (corrupt or unsupported compression)"))
            continue
        if len(content) > MAX_MEMBER_BYTES or len(content) > budget[0]:
            skipped.append(Skipped(label, "larger than its declared size allows"))
            continue
        budget[0] -= len(content)
        items.append(Item(base, content))
    return items, skipped


def expand_uploads(files: list[tuple[str, bytes]]) -> tuple[list[Item], list[Skipped]]:
    """(name, bytes) uploads -> images to score and the entries skipped, with reasons."""
    items, skipped = [], []
    budget = [MAX_TOTAL_BYTES]
    for name, data in files:
        base = safe_name(name)
        if base.lower().endswith(".zip"):
            got, skip = _read_zip(base, data, budget)
            items += got
            skipped += skip
        elif not base.lower().endswith(IMAGE_SUFFIXES):
            skipped.append(Skipped(base, "not an image (PNG, JPEG or DICOM by extension)"))
        elif len(data) > budget[0]:
            skipped.append(Skipped(base, f"batch over {MAX_TOTAL_BYTES // 2**20} MB; split it"))
        else:
            budget[0] -= len(data)
            items.append(Item(base, data))
    if len(items) > MAX_STUDIES:
        skipped += [Skipped(i.name, f"over {MAX_STUDIES} studies in one batch") for i in items[MAX_STUDIES:]]
        items = items[:MAX_STUDIES]
    return items, skipped


class CsvError(CxrError, ValueError):
    """The mapping CSV cannot be used; the message says how to fix it."""


def read_text_map(data: bytes) -> dict[str, TextRow]:
    """CSV with columns ``image`` (or ``file``) and optional ``text``, ``text_mode`` (or ``mode``)
    and ``id`` -> base name -> TextRow."""
    if len(data) > MAX_CSV_BYTES:
        raise CsvError(f"the CSV is over {MAX_CSV_BYTES // 2**20} MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CsvError("the CSV is not UTF-8 text; save it as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text))
    if not has_image_column(reader.fieldnames):
        raise CsvError(f"the CSV needs a header with an image column: {COLUMNS}")
    reader.fieldnames = header(reader.fieldnames)
    out = {}
    for n, row in enumerate(reader, start=2):
        if not safe_name(cell(row, "image", "file").strip()):
            continue
        try:
            study = read_row(row)
        except CxrError as exc:  # the text (TextError) or the mode (OptionError)
            raise CsvError(f"line {n}: {exc}") from None
        out[safe_name(study.image)] = TextRow(study.text, study.mode, study.id[:64])
    return out
