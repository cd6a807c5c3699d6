"""CheXpert v1.0 (Stanford) in its official layout: images and labels, no reports.

    ROOT/train.csv, ROOT/valid.csv      Path, Sex, Age, Frontal/Lateral, AP/PA + the 14 observations
    ROOT/train/patientNNNNN/studyN/viewN_frontal.jpg
    ROOT/valid/...

``Path`` starts with the release folder's own name (``CheXpert-v1.0-small/train/...``), so it
is read relative to ROOT's parent, or relative to ROOT when the first component differs.
Frontal images only (``Frontal/Lateral == Frontal``); a study is patient + study folder.
Labels: 1.0 / 0.0 / -1.0 uncertain / blank (see core.data.sources.policy). Text mode is ``none``
(CheXpert has no reports). Split: ``valid.csv`` (radiologist-labelled; the official test set
is not public) is the test split; ``train.csv`` is split by patient into train and val.
"""
from __future__ import annotations

import random
from pathlib import Path, PurePosixPath

from core.data.reports import DataLayoutError, Report
from core.data.sources import Collection
from core.data.sources.tables import OBSERVATIONS, finding_labels, read_table

TITLE = "CheXpert v1.0"
LICENSE = "Stanford University School of Medicine CheXpert Dataset Research Use Agreement"
CITATION = ("Irvin J, et al. CheXpert: A Large Chest Radiograph Dataset with Uncertainty Labels and Expert "
            "Comparison. AAAI 2019. arXiv:1901.07031")
COLUMNS = ("Path", "Frontal/Lateral", *OBSERVATIONS)
VAL_FRACTION = 0.1


def check_layout(root: Path) -> None:
    root = Path(root)
    for name in ("train.csv", "valid.csv"):
        if not (root / name).is_file():
            raise DataLayoutError(f"{root} is not in the CheXpert layout: expected train.csv and valid.csv")


def _resolve(root: Path, rel: str) -> Path:
    parts = PurePosixPath(rel).parts
    if parts and parts[0] == root.name:
        return root.parent / rel
    return root / rel


def _read(root: Path, name: str, policy: str, reports: dict, paths: dict) -> list[str]:
    rows = read_table(root / name, COLUMNS)
    studies = []
    for i, row in enumerate(rows, start=2):
        if row["Frontal/Lateral"].strip() != "Frontal":
            if row["Frontal/Lateral"].strip() != "Lateral":
                raise DataLayoutError(f"{name} line {i}: Frontal/Lateral is {row['Frontal/Lateral']!r}")
            continue
        rel = PurePosixPath(row["Path"])
        if len(rel.parts) < 4:
            raise DataLayoutError(f"{name} line {i}: path {row['Path']!r} is not .../patientN/studyN/view.jpg")
        patient, study = rel.parts[-3], rel.parts[-2]
        uid = f"{rel.parts[-4]}/{patient}/{study}"
        path = _resolve(root, row["Path"])
        if not path.is_file():
            raise DataLayoutError(f"{name} line {i}: image {path} does not exist")
        labels, mask, extra = finding_labels(row, policy, f"{name} line {i}")
        if uid not in reports:
            reports[uid] = Report(uid=uid, sections={}, mesh_major=[], mesh_automatic=[], labels=labels,
                                  label_mask=mask, patient=patient, extra_terms=extra)
            studies.append(uid)
        image_id = str(rel.with_suffix(""))
        reports[uid].image_ids.append(image_id)
        paths[image_id] = path
    return studies


def load(root: Path, *, uncertain_policy: str = "ignore", use_automatic: bool = False, seed: int = 0) -> Collection:
    root = Path(root)
    check_layout(root)
    reports: dict[str, Report] = {}
    paths: dict[str, Path] = {}
    train = _read(root, "train.csv", uncertain_policy, reports, paths)
    test = _read(root, "valid.csv", uncertain_policy, reports, paths)
    if not train or not test:
        raise DataLayoutError(f"{root}: train.csv and valid.csv must each list at least one frontal image")
    patients = sorted({reports[u].patient for u in train})
    random.Random(seed).shuffle(patients)
    val_patients = set(patients[:max(1, round(len(patients) * VAL_FRACTION))])
    split = {"train": [u for u in train if reports[u].patient not in val_patients],
             "val": [u for u in train if reports[u].patient in val_patients], "test": test}
    return Collection(name="chexpert", title=TITLE, root=root, reports=list(reports.values()), image_paths=paths,
                      split=split, has_text=False, license=LICENSE, citation=CITATION,
                      label_source=f"CheXpert labeller (train.csv), radiologists (valid.csv); uncertain: "
                                   f"{uncertain_policy}")
