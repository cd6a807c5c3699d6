"""A site's own studies for validation (scripts/validate_site.py): the site CSV, checked and grouped.

    image,report,indication,id,label_Cardiomegaly,label_Edema
    img/0001.png,"Heart is enlarged. No edema.",Dyspnea.,A1,1,0
    img/0002.png,"No acute disease.",,A2,0,

``image`` (a path, relative to the CSV's folder or absolute) and ``report`` (the finished report text)
are required; ``indication`` (why the study was ordered) and ``id`` are optional. Rows that share an
``id`` are one study with several frontal images (its report, indication and labels come from its first
row; a later row may only repeat or leave them empty). ``label_<Finding>`` columns, one per finding the
site's readers labelled, hold 1, 0 or empty (not labelled). Nothing here reads pixels: the checks are
cheap, so bad input is refused before any model runs. A ``SiteError`` message is one sentence.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from core.data.text_clean import MAX_TEXT_CHARS, TextError, clean_text
from core.errors import CxrError

LABEL_PREFIX = "label_"
REQUIRED = ("image", "report")
OPTIONAL = ("indication", "id")
_TRUE, _FALSE = {"1", "1.0", "yes", "true"}, {"0", "0.0", "no", "false"}


class SiteError(CxrError, ValueError):
    """The site's table of studies cannot be used as given."""


@dataclass
class SiteStudy:
    """One study of the site: its images (sources: a path, or any string a loader understands), texts and
    the labels its readers gave (finding -> 1 / 0; a finding they did not label is absent)."""
    id: str
    images: list[str]
    report: str = ""
    indication: str = ""
    labels: dict[str, int] = field(default_factory=dict)


@dataclass
class SiteTable:
    """The studies of a site and what the table said about its labels."""
    studies: list[SiteStudy]
    label_columns: list[str]            # findings with a label_ column (empty: labels from the reports)
    source: str = ""                    # the CSV (or PACS) it came from, for the outputs

    @property
    def n_images(self) -> int:
        return sum(len(s.images) for s in self.studies)

    def image_rows(self) -> list[tuple[int, str]]:
        """(study index, image source) for every image, in order: what the model is run over."""
        return [(k, img) for k, s in enumerate(self.studies) for img in s.images]

    def fingerprint(self) -> str:
        """SHA-256 of what the predictions depend on (images in order, texts): the resumable parts
        (core.serving.site_run) of one table are never mixed with another's."""
        rows = [[s.id, s.images, s.report, s.indication] for s in self.studies]
        return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()


def _label(cell: str, where: str, column: str) -> int | None:
    v = (cell or "").strip().lower()
    if v == "":
        return None
    if v in _TRUE:
        return 1
    if v in _FALSE:
        return 0
    raise SiteError(f"{where}: {column} is {cell!r}; use 1, 0 or leave it empty (not labelled)")


def _text(cell: str, where: str, column: str) -> str:
    try:
        return clean_text(cell or "", max_chars=MAX_TEXT_CHARS)
    except TextError as exc:
        raise SiteError(f"{where}: {column}: {exc}") from None


def label_findings(header: list[str], findings) -> dict[str, str]:
    """column -> finding for the ``label_<Finding>`` columns (case-insensitive); an unknown finding is refused."""
    by_lower = {f.lower(): f for f in findings}
    out = {}
    for col in header:
        if col.lower().startswith(LABEL_PREFIX):
            name = col[len(LABEL_PREFIX):].strip()
            if name.lower() not in by_lower:
                raise SiteError(f"column {col!r} names no finding of these weights; use label_ + one of: "
                                f"{', '.join(findings)}")
            out[col] = by_lower[name.lower()]
    return out


def read_site_rows(rows: list[dict], header: list[str], findings, *, name: str, base: Path | None = None,
                   check_files: bool = True) -> SiteTable:
    """The studies of a site from CSV rows (``csv.DictReader``'s); ``base``: the folder relative image paths
    are read from. ``check_files``: every image must exist (False when a loader resolves the sources)."""
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise SiteError(f"{name} needs the columns image,report[,indication,id] (and optionally label_<Finding>); "
                        f"missing: {', '.join(missing)}")
    labels = label_findings(header, findings)
    if not rows:
        raise SiteError(f"{name} has a header but no study")
    by_id: dict[str, SiteStudy] = {}
    order: list[SiteStudy] = []
    for i, raw in enumerate(rows):
        row = {(k or "").strip(): (v if isinstance(v, str) else "") for k, v in raw.items()}
        where = f"{name} line {i + 2}"
        image = row.get("image", "").strip()
        if not image:
            raise SiteError(f"{where}: the image cell is empty")
        if check_files:
            path = Path(image)
            path = path if path.is_absolute() or base is None else base / path
            if not path.is_file():
                raise SiteError(f"{where}: image {image!r} not found")
            image = str(path)
        sid = row.get("id", "").strip() or f"row {i + 2}"
        report = _text(row.get("report", ""), where, "report")
        indication = _text(row.get("indication", ""), where, "indication")
        found = {f: v for col, f in labels.items() if (v := _label(row.get(col, ""), where, col)) is not None}
        study = by_id.get(sid)
        if study is None:
            study = by_id[sid] = SiteStudy(sid, [image], report, indication, found)
            order.append(study)
            continue
        study.images.append(image)
        for what, value, first in (("report", report, study.report), ("indication", indication, study.indication)):
            if value and first and value != first:
                raise SiteError(f"{where}: study {sid!r} already has another {what} (rows sharing an id are "
                                "one study; repeat its text or leave the cell empty)")
        for f, v in found.items():
            if study.labels.setdefault(f, v) != v:
                raise SiteError(f"{where}: study {sid!r} is labelled {study.labels[f]} for {f} on an earlier row")
        study.report, study.indication = study.report or report, study.indication or indication
    if not labels and not any(s.report for s in order):
        raise SiteError(f"{name} has no label_<Finding> column and no report text: nothing to take labels from")
    return SiteTable(order, sorted(set(labels.values()), key=list(findings).index), source=name)


def read_site_csv(path: Path, findings) -> SiteTable:
    """The site CSV at ``path`` (see the module docstring), every image checked to exist."""
    path = Path(path)
    if not path.is_file():
        raise SiteError(f"site table {path} not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SiteError(f"{path.name} is not a readable UTF-8 CSV ({exc})") from None
    return read_site_rows(rows, header, findings, name=path.name, base=path.parent)


def read_site_bytes(data: bytes, name: str, findings, files: dict[str, bytes]) -> SiteTable:
    """A site CSV uploaded with its images (the Site validation page): each ``image`` cell names one of
    ``files`` by its base name."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SiteError(f"{name} is not a UTF-8 CSV") from None
    reader = csv.DictReader(text.splitlines())
    rows, header = list(reader), list(reader.fieldnames or [])
    table = read_site_rows(rows, header, findings, name=name, check_files=False)
    for study in table.studies:
        study.images = [Path(i.replace("\\", "/")).name for i in study.images]
        missing = [i for i in study.images if i not in files]
        if missing:
            raise SiteError(f"{name}: study {study.id!r} names {missing[0]!r}, which is not among the uploaded "
                            f"images ({len(files)} uploaded)")
    return table


def bytes_loader(files: dict[str, bytes]):
    """A loader (core.serving.site_run) that decodes uploaded images by name."""
    from core.data.images import decode_image

    def load(name: str):
        return decode_image(files[name], filename=name)
    return load
