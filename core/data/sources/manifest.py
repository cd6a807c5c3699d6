"""A hospital's own export as a plain CSV manifest (``--dataset csv --data export.csv``, or a
folder holding ``manifest.csv``). One row per image:

    image                      path of a PNG/JPEG, relative to the CSV's folder or absolute (required)
    Pneumonia, Edema, Cardiomegaly, Atelectasis, Consolidation
                               1 / 0 / -1 (uncertain) / blank (= 0) per finding (all five required)
    study_id                   optional: rows with the same study_id are one study (default: one per row)
    patient_id                 optional: splits keep a patient's studies together
    indication, report         optional text (report = findings + impression)
    split                      optional: train / val / test for every row (default: seeded split by patient)
    view                       optional: rows whose view is not frontal / PA / AP are skipped

Labels must agree within a study. A row whose image does not exist is a layout error.
"""
from __future__ import annotations

from pathlib import Path

from core.data.labels import FINDINGS
from core.data.reports import DataLayoutError, Report, split_by_patient
from core.data.sources import Collection
from core.data.sources.policy import LabelValueError, apply_policy, parse_cell
from core.data.sources.tables import read_table

FRONTAL_VIEWS = ("", "frontal", "pa", "ap")


def _csv(root: Path) -> Path:
    path = Path(root)
    if path.is_dir():
        path = path / "manifest.csv"
    if not path.is_file():
        raise DataLayoutError(f"{root}: expected a CSV manifest file (or a folder holding manifest.csv)")
    return path


def check_layout(root: Path) -> None:
    read_table(_csv(root), ("image", *FINDINGS))


def load(root: Path, *, uncertain_policy: str = "ignore", use_automatic: bool = False, seed: int = 0) -> Collection:
    path = _csv(root)
    rows = read_table(path, ("image", *FINDINGS))
    if not rows:
        raise DataLayoutError(f"{path.name} has no rows")
    reports: dict[str, Report] = {}
    images: dict[str, Path] = {}
    given_split: dict[str, str] = {}
    for i, row in enumerate(rows, start=2):
        if (row.get("view") or "").strip().lower() not in FRONTAL_VIEWS:
            continue
        rel = (row["image"] or "").strip()
        file = Path(rel) if Path(rel).is_absolute() else path.parent / rel
        if not rel or not file.is_file():
            raise DataLayoutError(f"{path.name} line {i}: image {rel!r} does not exist")
        try:
            raw = [parse_cell(row[f]) for f in FINDINGS]
        except LabelValueError as exc:
            raise DataLayoutError(f"{path.name} line {i}: {exc}") from None
        labels, mask = apply_policy(raw, uncertain_policy)
        uid = (row.get("study_id") or "").strip() or f"row{i - 1}"
        sections = {k: " ".join((row.get(col) or "").split()) for k, col in
                    (("INDICATION", "indication"), ("FINDINGS", "report"))}
        report = reports.get(uid)
        if report is None:
            report = reports[uid] = Report(uid=uid, sections={k: v for k, v in sections.items() if v},
                                           mesh_major=[], mesh_automatic=[], labels=labels, label_mask=mask,
                                           patient=(row.get("patient_id") or "").strip())
        elif report.labels != labels or report.label_mask != mask:
            raise DataLayoutError(f"{path.name} line {i}: labels differ from an earlier row of study {uid}")
        image_id = f"{uid}#{len(report.image_ids)}"
        report.image_ids.append(image_id)
        images[image_id] = file
        if "split" in row:
            name = (row["split"] or "").strip().lower()
            if name not in ("train", "val", "test") or given_split.get(uid, name) != name:
                raise DataLayoutError(f"{path.name} line {i}: split must be train, val or test, one per study")
            given_split[uid] = name
    if not reports:
        raise DataLayoutError(f"{path.name} lists no frontal image")
    studies = list(reports.values())
    if given_split:
        split = {k: [u for u, s in given_split.items() if s == k] for k in ("train", "val", "test")}
    else:
        split = split_by_patient(studies, seed=seed)
    if not split["train"] or not split["val"]:
        raise DataLayoutError(f"{path.name}: the split leaves train or val empty (too few studies?)")
    return Collection(name="csv", title=f"CSV manifest {path.name}", root=path, reports=studies, image_paths=images,
                      split=split, has_text=any(r.sections for r in studies),
                      label_source=f"{path.name} columns; uncertain: {uncertain_policy}")
