"""Studies as ``Report`` objects (every dataset reader returns them, core.data.sources), their splits
and auxiliary labels, and the reader for the Indiana University Chest X-ray Collection (Open-I)
in its official layout.

    DATA/NLMCXR_png/<image_id>.png
    DATA/NLMCXR_reports/ecgen-radiology/<uid>.xml

A report's frontal images are those of its ``parentImage`` ids that exist as PNGs and,
when ``manifest.csv`` is present (the resized copy in ../shared ships one), whose view
is ``frontal``. The official release has no view list; there every image found counts
and lateral views must be filtered by the caller's own list (``--frontal-list``).
"""
from __future__ import annotations

import csv
import hashlib
import random
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from core.data.labels import FINDINGS, TextMode, labels_from_mesh, mesh_descriptor
from core.errors import DataError, OptionError

SECTIONS = ("COMPARISON", "INDICATION", "FINDINGS", "IMPRESSION")


class DataLayoutError(DataError):
    """The data folder does not follow the Open-I layout."""


@dataclass
class Report:
    uid: str
    sections: dict[str, str]
    mesh_major: list[str]
    mesh_automatic: list[str]
    image_ids: list[str] = field(default_factory=list)  # frontal images present on disk
    labels: list[int] = field(default_factory=list)
    # other datasets (core.data.sources): 0 where the uncertain-label policy says the loss skips a
    # label (empty = every label counts), the patient, and coded terms other than the five
    # findings that serve as auxiliary targets (e.g. CheXpert's Pleural Effusion)
    label_mask: list[int] = field(default_factory=list)
    patient: str = ""
    extra_terms: list[str] = field(default_factory=list)

    def text(self, mode: str) -> str:
        """The text a model sees for a text mode (see core.data.labels.TEXT_MODES)."""
        if mode == TextMode.REPORT:
            return " ".join(s for s in (self.sections.get("FINDINGS", ""), self.sections.get("IMPRESSION", "")) if s)
        if mode == TextMode.INDICATION:
            return self.sections.get("INDICATION", "")
        if mode == TextMode.NONE:
            return ""
        raise OptionError(f"unknown text mode {mode!r}; use report, indication or none")


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def parse_report(path: Path) -> Report:
    """Parse one ecgen-radiology XML file."""
    root = ET.parse(path).getroot()
    uid_el = root.find("IUXRId")
    uid = uid_el.get("id") if uid_el is not None else path.stem
    sections = {}
    for node in root.iter("AbstractText"):
        label = (node.get("Label") or "").upper()
        if label in SECTIONS:
            sections[label] = _clean(node.text)
    mesh = root.find("MeSH")
    major = [_clean(m.text) for m in mesh.findall("major")] if mesh is not None else []
    automatic = [_clean(m.text) for m in mesh.findall("automatic")] if mesh is not None else []
    images = [p.get("id") for p in root.findall("parentImage") if p.get("id")]
    return Report(uid=str(uid), sections=sections, mesh_major=[m for m in major if m],
                  mesh_automatic=[m for m in automatic if m], image_ids=images)


def check_layout(data_dir: Path) -> tuple[Path, Path]:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataLayoutError(f"data folder {data_dir} does not exist; get it with scripts/download_iu_xray.py")
    png = data_dir / "NLMCXR_png"
    xml = data_dir / "NLMCXR_reports" / "ecgen-radiology"
    if not png.is_dir() or not xml.is_dir():
        raise DataLayoutError(
            f"{data_dir} is not in the Open-I layout: expected NLMCXR_png/ and NLMCXR_reports/ecgen-radiology/")
    return png, xml


def _frontal_ids(data_dir: Path) -> set[str] | None:
    manifest = Path(data_dir) / "manifest.csv"
    if not manifest.is_file():
        return None
    with manifest.open(newline="") as fh:
        return {r["image_id"] for r in csv.DictReader(fh) if r.get("view", "frontal") == "frontal"}


def _dedupe_images(png_dir: Path, image_ids: list[str]) -> list[str]:
    """Drop byte-identical images within a report (the collection has a few)."""
    seen, keep = set(), []
    for image_id in image_ids:
        digest = hashlib.sha1((png_dir / f"{image_id}.png").read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            keep.append(image_id)
    return keep


def load_reports(data_dir: Path, *, use_automatic: bool = False, require_image: bool = True) -> list[Report]:
    """All reports of the collection with labels and frontal image ids present on disk."""
    png_dir, xml_dir = check_layout(data_dir)
    on_disk = {p.stem for p in png_dir.glob("*.png")}
    frontal = _frontal_ids(data_dir)
    xml_files = sorted(xml_dir.glob("*.xml"), key=lambda p: (len(p.stem), p.stem))
    if not xml_files:
        raise DataLayoutError(f"no report XMLs in {xml_dir}")
    reports = []
    for path in xml_files:
        try:
            report = parse_report(path)
        except ET.ParseError as exc:
            raise DataLayoutError(f"{path.name} is not valid XML ({exc})") from None
        ids = [i for i in report.image_ids if i in on_disk and (frontal is None or i in frontal)]
        report.image_ids = _dedupe_images(png_dir, ids)
        terms = report.mesh_major + (report.mesh_automatic if use_automatic else [])
        report.labels = labels_from_mesh(terms)
        if report.image_ids or not require_image:
            reports.append(report)
    if require_image and not reports:
        raise DataLayoutError(f"no report in {data_dir} has a frontal PNG in NLMCXR_png/")
    return reports


def auxiliary_vocabulary(reports: list[Report], *, size: int = 24, min_count: int = 15) -> list[str]:
    """Most frequent MeSH descriptors other than the five findings: extra targets that
    give the from-scratch image encoder more signal per image."""
    from core.data.findings import RECORDS
    finding_terms = {d for r in RECORDS for d in r.mesh}
    counts = Counter()
    for r in reports:
        counts.update({mesh_descriptor(t) for t in r.mesh_major + r.extra_terms} - finding_terms - {"no indexing"})
    return [t for t, c in counts.most_common() if c >= min_count][:size]


def auxiliary_labels(report: Report, vocab: list[str]) -> list[int]:
    descriptors = {mesh_descriptor(t) for t in report.mesh_major + report.extra_terms}
    return [int(v in descriptors) for v in vocab]


def split_reports(reports: list[Report], *, seed: int = 0, fractions=(0.65, 0.15, 0.20)) -> dict[str, list[str]]:
    """Seeded split by report uid, stratified by the rarest positive finding of each report
    (negatives form their own stratum), so every split gets its share of each finding."""
    rng = random.Random(seed)
    prevalence = [sum(r.labels[i] for r in reports) for i in range(len(FINDINGS))]
    strata: dict[int, list[str]] = {}
    for r in reports:
        positives = [i for i, y in enumerate(r.labels) if y]
        key = min(positives, key=lambda i: prevalence[i]) if positives else -1
        strata.setdefault(key, []).append(r.uid)
    split = {"train": [], "val": [], "test": []}
    for key in sorted(strata):
        uids = sorted(strata[key], key=int if all(u.isdigit() for u in strata[key]) else str)
        rng.shuffle(uids)
        n = len(uids)
        n_test = round(n * fractions[2])
        n_val = round(n * fractions[1])
        split["test"] += uids[:n_test]
        split["val"] += uids[n_test:n_test + n_val]
        split["train"] += uids[n_test + n_val:]
    return {k: sorted(v, key=lambda u: (len(u), u)) for k, v in split.items()}


def split_by_patient(reports: list[Report], *, seed: int = 0, fractions=(0.65, 0.15, 0.20)) -> dict[str, list[str]]:
    """Like split_reports, but every study of a patient lands in the same split: patients are
    stratified by their rarest positive finding over all their studies. Reports without a
    patient count as their own patient."""
    by_patient: dict[str, list[Report]] = {}
    for r in reports:
        by_patient.setdefault(r.patient or f"study:{r.uid}", []).append(r)
    merged = [Report(uid=p, sections={}, mesh_major=[], mesh_automatic=[],
                     labels=[max(r.labels[k] for r in rs) for k in range(len(FINDINGS))])
              for p, rs in by_patient.items()]
    split = split_reports(merged, seed=seed, fractions=fractions)
    return {k: sorted((r.uid for p in v for r in by_patient[p]), key=lambda u: (len(u), u)) for k, v in split.items()}
