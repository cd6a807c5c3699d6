"""Datasets behind one interface: ``load_collection(name, path, ...) -> Collection``.

    openi      Indiana University Chest X-ray (Open-I): NLMCXR_png/ + ecgen-radiology XMLs  (core.data.sources.openi)
    mimic-cxr  MIMIC-CXR-JPG 2.x (+ MIMIC-CXR reports in the same files/ tree)  (core.data.sources.mimic)
    chexpert   CheXpert v1.0 (train.csv / valid.csv; images only, no reports)  (core.data.sources.chexpert)
    csv        a plain CSV manifest: image path, optional text, one column per finding  (core.data.sources.manifest)

Every reader returns studies as ``core.data.reports.Report`` (one per study: its frontal images,
sections, labels after the uncertain-label policy, patient) and the path of every image, so
training, evaluation and the image bank never look at a layout again. A reader raises
``core.data.reports.DataLayoutError`` (one sentence) on a folder that is not in its layout.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from core.data.reports import DataLayoutError, Report

DATASETS: tuple[str, ...] = ("openi", "mimic-cxr", "chexpert", "csv")
_MODULES = {"openi": "openi", "mimic-cxr": "mimic", "chexpert": "chexpert", "csv": "manifest"}


@dataclass
class Collection:
    name: str                         # one of DATASETS
    title: str                        # human-readable, for the metadata and the model card
    root: Path
    reports: list[Report]             # one per study with at least one frontal image
    image_paths: dict[str, Path]      # image id -> file
    split: dict[str, list[str]] | None = None  # predefined split (official, or by patient); None = seeded
    has_text: bool = True
    license: str = ""
    citation: str = ""
    label_source: str = ""
    notes: list[str] = field(default_factory=list)

    def metadata(self) -> dict:
        return {"dataset": self.name, "name": self.title, "license": self.license, "citation": self.citation,
                "label_source": self.label_source, "n_reports": len(self.reports),
                "n_images": sum(len(r.image_ids) for r in self.reports), "has_text": self.has_text}


def reader(name: str):
    if name not in _MODULES:
        raise DataLayoutError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    return importlib.import_module(f"core.data.sources.{_MODULES[name]}")


def check_layout(name: str, path: Path) -> None:
    """Raise DataLayoutError unless ``path`` looks like dataset ``name`` (cheap: files, headers)."""
    reader(name).check_layout(Path(path))


def load_collection(name: str, path: Path, *, uncertain_policy: str = "ignore", use_automatic: bool = False,
                    seed: int = 0) -> Collection:
    return reader(name).load(Path(path), uncertain_policy=uncertain_policy, use_automatic=use_automatic, seed=seed)
