"""Tiny copies of MIMIC-CXR-JPG, CheXpert and a CSV manifest in their official layouts, built
from IU X-ray studies (images re-encoded as JPEG, reports rewritten into MIMIC's free-text
format with its heading variants) or from synthetic studies when the IU copy is absent."""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from core.data.labels import FINDINGS
from core.data.sources.tables import OBSERVATIONS

# heading variants seen in real MIMIC-CXR reports: (indication heading, findings heading, impression heading)
VARIANTS = [("INDICATION", "FINDINGS", "IMPRESSION"), ("HISTORY", "FINDINGS", "IMPRESSION"),
            ("REASON FOR EXAM", "FINDINGS", "CONCLUSION"), ("CLINICAL INFORMATION", "FINDINGS AND IMPRESSION", None),
            ("CLINICAL HISTORY", "REPORT", "IMPRESSIONS")]


@dataclass
class Study:
    uid: str
    patient: str
    indication: str
    findings: str
    impression: str
    raw: list[int]                 # per finding: 1 / 0 / -1 (uncertain)
    frontals: list[np.ndarray]
    lateral: np.ndarray | None = None


def iu_studies(iu_dir: Path, n: int, *, uncertain_every: int = 3, offset: int = 0,
               exclude: set[str] = frozenset()) -> list[Study]:
    """n IU reports (none of ``exclude``) as studies; two consecutive reports share a patient;
    every ``uncertain_every``-th positive label becomes uncertain (-1)."""
    from core.data.images import load_png_gray
    from core.data.reports import load_reports
    reports = [r for r in load_reports(iu_dir) if r.uid not in exclude]
    # positives first, so a tiny copy still has every finding in train and validation
    pos = [r for r in reports if any(r.labels)]
    neg = [r for r in reports if not any(r.labels)]
    picked = (pos[offset:offset + n // 2] + neg[offset:offset + n - n // 2])[:n]
    lateral_dir = Path(iu_dir) / "lateral"
    lateral = sorted(lateral_dir.glob("*.jpg"))[:1] if lateral_dir.is_dir() else []
    out, k = [], 0
    for i, r in enumerate(picked):
        raw = []
        for y in r.labels:
            k += y
            raw.append(-1 if y and k % uncertain_every == 0 else y)
        out.append(Study(uid=str(50000000 + i), patient=str(10000000 + i // 2),
                         indication=r.sections.get("INDICATION", ""), findings=r.sections.get("FINDINGS", ""),
                         impression=r.sections.get("IMPRESSION", ""), raw=raw,
                         frontals=[load_png_gray(Path(iu_dir) / "NLMCXR_png" / f"{i_}.png") for i_ in r.image_ids[:2]],
                         lateral=load_png_gray(lateral[0]) if (lateral and i % 4 == 0) else None))
    return out


def synthetic_studies(n: int) -> list[Study]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        raw = [int(i % 5 == k) for k in range(len(FINDINGS))]
        if i % 7 == 3:
            raw[2] = -1
        img = np.clip(rng.normal(100 + 60 * raw[2], 20, (80, 72)), 0, 255).astype(np.uint8)
        out.append(Study(uid=str(50000000 + i), patient=str(10000000 + i // 2), indication="Cough.",
                         findings="Heart is enlarged." if raw[2] else "Lungs are clear.", impression="As above.",
                         raw=raw, frontals=[img], lateral=img.T.copy() if i % 4 == 0 else None))
    return out


def dicom_id(study: Study, k: int) -> str:
    h = hashlib.sha1(f"{study.uid}-{k}".encode()).hexdigest()
    return "-".join(h[i:i + 8] for i in range(0, 40, 8))


def mimic_report(study: Study, variant: int) -> str:
    ind, fin, imp = VARIANTS[variant % len(VARIANTS)]
    lines = ["                                 FINAL REPORT", " EXAMINATION:  CHEST (PA AND LAT)", ""]
    if study.indication:
        lines += [f" {ind}:  ___M with {study.indication}", ""]
    lines += [" TECHNIQUE:  Chest PA and lateral", "", " COMPARISON:  None.", ""]
    if imp is None:
        lines += [f" {fin}:", "", f" {study.findings} {study.impression}".rstrip(), ""]
    else:
        lines += [f" {fin}: ", "", f" {study.findings}", "", f" {imp}: ", "", f" {study.impression}", ""]
    return "\n".join(lines)


def _cell(v: int) -> str:
    return {1: "1.0", 0: "", -1: "-1.0"}[v]


def _gz_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    path.write_bytes(gzip.compress(buf.getvalue().encode()))


def _jpeg(path: Path, gray: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(gray).save(path, quality=95)


def make_mimic(root: Path, studies: list[Study], *, splits=("train", "train", "train", "validate", "test")) -> Path:
    """MIMIC-CXR-JPG 2.0.0 layout + MIMIC-CXR reports; split by patient (round-robin over ``splits``)."""
    root.mkdir(parents=True, exist_ok=True)
    meta, labels, split = [], [], []
    patients = sorted({s.patient for s in studies})
    split_of = {p: splits[i % len(splits)] for i, p in enumerate(patients)}
    for i, s in enumerate(studies):
        folder = root / "files" / f"p{s.patient[:2]}" / f"p{s.patient}" / f"s{s.uid}"
        views = [(g, "PA" if k == 0 else "AP") for k, g in enumerate(s.frontals)]
        if s.lateral is not None:
            views.append((s.lateral, "LATERAL"))
        for k, (gray, view) in enumerate(views):
            d = dicom_id(s, k)
            _jpeg(folder / f"{d}.jpg", gray)
            meta.append([d, s.patient, s.uid, "CHEST (PA AND LAT)", view, gray.shape[0], gray.shape[1]])
            split.append([d, s.uid, s.patient, split_of[s.patient]])
        folder.with_suffix(".txt").write_text(mimic_report(s, i))
        obs = {f: _cell(v) for f, v in zip(FINDINGS, s.raw, strict=True)}
        obs["No Finding"] = "1.0" if not any(s.raw) else ""
        obs["Support Devices"] = "1.0" if i % 3 == 0 else "0.0"
        labels.append([s.patient, s.uid, *[obs.get(o, "") for o in OBSERVATIONS]])
    _gz_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz",
            ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
             "Columns"], meta)
    _gz_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", ["subject_id", "study_id", *OBSERVATIONS], labels)
    _gz_csv(root / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id", "split"], split)
    return root


def make_chexpert(root: Path, studies: list[Study], *, n_valid: int = 4) -> Path:
    """CheXpert-v1.0-small layout: ROOT/train.csv, ROOT/valid.csv, paths starting with ROOT's name."""
    root.mkdir(parents=True, exist_ok=True)
    header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *OBSERVATIONS]
    tables = {"train": [], "valid": []}
    for i, s in enumerate(studies):
        part = "valid" if i < n_valid else "train"
        raw = [max(v, 0) if part == "valid" else v for v in s.raw]  # valid.csv: radiologists, no uncertain
        views = [(g, "Frontal", "PA") for g in s.frontals]
        views += [(s.lateral, "Lateral", "")] if s.lateral is not None else []
        for k, (gray, fl, appa) in enumerate(views):
            rel = f"{root.name}/{part}/patient{s.patient}/study{i + 1}/view{k + 1}_{fl.lower()}.jpg"
            _jpeg(root.parent / rel, gray)
            obs = {f: ("1.0" if v == 1 else "-1.0" if v == -1 else "0.0") for f, v in zip(FINDINGS, raw, strict=True)}
            tables[part].append([rel, "Male", 60, fl, appa, *[obs.get(o, "") for o in OBSERVATIONS]])
    for part, rows in tables.items():
        with (root / f"{part}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
    return root


def make_manifest(root: Path, studies: list[Study], *, with_split: bool = False) -> Path:
    """A hospital export: images/<study>_<k>.png and manifest.csv."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    header = ["image", "study_id", "patient_id", "indication", "report", *FINDINGS] + (["split"] if with_split else [])
    rows = []
    for s in studies:
        for k, gray in enumerate(s.frontals):
            rel = f"images/{s.uid}_{k}.png"
            Image.fromarray(gray).save(root / rel)
            row = [rel, s.uid, s.patient, s.indication, f"{s.findings} {s.impression}".strip(),
                   *[{1: "1", 0: "0", -1: "-1"}[v] for v in s.raw]]
            if with_split:
                row.append(("train", "train", "val", "test")[int(s.patient) % 4])
            rows.append(row)
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return root / "manifest.csv"


def iu_subset(iu_dir: Path, root: Path, n: int) -> tuple[Path, set[str]]:
    """An Open-I folder holding the last ``n`` IU reports that have a frontal image (links, no
    copies), and their uids (keep them out of a training copy: external validation)."""
    from core.data.reports import load_reports
    reports = load_reports(iu_dir)[-n:]
    png, xml = root / "NLMCXR_png", root / "NLMCXR_reports" / "ecgen-radiology"
    png.mkdir(parents=True)
    xml.mkdir(parents=True)
    rows = ["image_id,uid,view,width,height"]
    for r in reports:
        (xml / f"{r.uid}.xml").symlink_to(Path(iu_dir).resolve() / "NLMCXR_reports" / "ecgen-radiology"
                                          / f"{r.uid}.xml")
        for i in r.image_ids:
            (png / f"{i}.png").symlink_to(Path(iu_dir).resolve() / "NLMCXR_png" / f"{i}.png")
            rows.append(f"{i},{r.uid},frontal,0,0")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root, {r.uid for r in reports}
