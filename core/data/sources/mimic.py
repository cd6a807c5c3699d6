"""MIMIC-CXR-JPG 2.x in its official layout (PhysioNet), with the MIMIC-CXR reports.

    ROOT/files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg        images (MIMIC-CXR-JPG)
    ROOT/files/pXX/pSUBJECT/sSTUDY.txt                 free-text reports (MIMIC-CXR's
                                                       mimic-cxr-reports.zip, unzipped into ROOT)
    ROOT/mimic-cxr-2.0.0-metadata.csv.gz               dicom_id, subject_id, study_id, ViewPosition
    ROOT/mimic-cxr-2.0.0-chexpert.csv.gz               subject_id, study_id + the 14 observations
       (or -negbio.csv.gz when -chexpert is absent)    (1.0 / 0.0 / -1.0 uncertain / blank)
    ROOT/mimic-cxr-2.0.0-split.csv.gz                  dicom_id, study_id, subject_id, split
                                                       (train / validate / test, by patient)

A study is one report: its frontal images (ViewPosition PA or AP; laterals are left out),
its sections (core.data.sources.sections: INDICATION / FINDINGS / IMPRESSION and their variants),
its labels after the uncertain-label policy. The official split is used (it is by patient).
A study without a report is kept image-only; a study listed with no image file on disk,
or an image whose split disagrees with its study's, is a layout error.
"""
from __future__ import annotations

from pathlib import Path

from core.data.reports import DataLayoutError, Report
from core.data.sources import Collection
from core.data.sources.sections import section_report
from core.data.sources.tables import OBSERVATIONS, find_file, finding_labels, read_table

TITLE = "MIMIC-CXR-JPG"
LICENSE = "PhysioNet Credentialed Health Data License 1.5.0"
CITATION = ("Johnson AEW, et al. MIMIC-CXR-JPG, a large publicly available database of labeled chest "
            "radiographs. arXiv:1901.07042 (2019); Johnson AEW, et al. MIMIC-CXR, a de-identified publicly "
            "available database of chest radiographs with free-text reports. Sci Data 6, 317 (2019)")
FRONTAL = ("PA", "AP")
SPLITS = {"train": "train", "validate": "val", "test": "test"}


def _files(root: Path) -> tuple[Path, Path, Path]:
    if not (root / "files").is_dir():
        raise DataLayoutError(f"{root} is not in the MIMIC-CXR-JPG layout: expected files/pXX/pSUBJECT/sSTUDY/")
    meta = find_file(root, ("mimic-cxr-2.*-metadata.csv.gz", "mimic-cxr-2.*-metadata.csv"), "metadata table")
    labels = find_file(root, ("mimic-cxr-2.*-chexpert.csv.gz", "mimic-cxr-2.*-chexpert.csv",
                              "mimic-cxr-2.*-negbio.csv.gz", "mimic-cxr-2.*-negbio.csv"), "label table")
    split = find_file(root, ("mimic-cxr-2.*-split.csv.gz", "mimic-cxr-2.*-split.csv"), "split table")
    return meta, labels, split


def check_layout(root: Path) -> None:
    _files(Path(root))


def study_dir(root: Path, subject: str, study: str) -> Path:
    return root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"


def load(root: Path, *, uncertain_policy: str = "ignore", use_automatic: bool = False, seed: int = 0) -> Collection:
    root = Path(root)
    meta_path, label_path, split_path = _files(root)
    meta = read_table(meta_path, ("dicom_id", "subject_id", "study_id", "ViewPosition"))
    label_rows = read_table(label_path, ("subject_id", "study_id", *OBSERVATIONS))
    split_rows = read_table(split_path, ("dicom_id", "study_id", "subject_id", "split"))
    dicom_split = {}
    for row in split_rows:
        if row["split"] not in SPLITS:
            raise DataLayoutError(f"{split_path.name}: unknown split {row['split']!r} (train, validate or test)")
        dicom_split[row["dicom_id"]] = SPLITS[row["split"]]
    frontal: dict[str, list[dict]] = {}
    any_view = {row["study_id"] for row in meta}
    for row in meta:
        if row["ViewPosition"].strip().upper() in FRONTAL:
            frontal.setdefault(row["study_id"], []).append(row)
    reports, paths, split = [], {}, {"train": [], "val": [], "test": []}
    for row in label_rows:
        study, subject = row["study_id"], row["subject_id"]
        if study not in any_view:
            raise DataLayoutError(f"study {study} of {label_path.name} has no image in {meta_path.name}")
        images = frontal.get(study)
        if not images:
            continue  # a study with lateral views only
        labels, mask, extra = finding_labels(row, uncertain_policy, f"{label_path.name}, study {study}")
        folder = study_dir(root, subject, study)
        ids, names = [], set()
        for img in images:
            path = folder / f"{img['dicom_id']}.jpg"
            if not path.is_file():
                raise DataLayoutError(f"study {study} lists image {img['dicom_id']} but {path} does not exist")
            ids.append(img["dicom_id"])
            paths[img["dicom_id"]] = path
            names.add(dicom_split.get(img["dicom_id"]))
        if None in names or len(names) != 1:
            raise DataLayoutError(f"{split_path.name}: the images of study {study} are not all in one split")
        report_txt = folder.with_suffix(".txt")
        sections = section_report(report_txt.read_text(errors="replace")) if report_txt.is_file() else {}
        reports.append(Report(uid=study, sections=sections, mesh_major=[], mesh_automatic=[], image_ids=sorted(ids),
                              labels=labels, label_mask=mask, patient=subject, extra_terms=extra))
        split[names.pop()].append(study)
    if not reports:
        raise DataLayoutError(f"no study in {label_path.name} has a frontal image listed in {meta_path.name}")
    if not split["train"] or not split["val"]:
        raise DataLayoutError(f"{split_path.name} puts no frontal study in train or in validate")
    return Collection(name="mimic-cxr", title=TITLE, root=root, reports=reports, image_paths=paths, split=split,
                      has_text=any(r.sections for r in reports), license=LICENSE, citation=CITATION,
                      label_source=f"{label_path.name} (CheXpert-style labeller), uncertain: {uncertain_policy}")
