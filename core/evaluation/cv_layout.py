"""Where a cross-validation run keeps its files: written by scripts/cv.py
(core.training.kfold), read back by core.evaluation.cross_validation. Torch-free.

    <root>/folds.json                 the folds' held-out uids, and how many test reports stayed out
    <root>/summary.json               per-fold and pooled out-of-fold AUCs (cross_validation.summarise)
    <root>/runs.db                    the folds' run log (kept out of the main one)
    <root>/fold<k>/split.json         the fold's inner split (train / val) and its held-out reports (test)
    <root>/fold<k>/oof_<key>.csv      out-of-fold predictions; key = <text mode>_<head>, or none_views
    <root>/fold<k>/fold.json          written last: the fold is finished
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.evaluation.eval_files import eval_name

FOLDS = "folds.json"
SUMMARY = "summary.json"
RUNLOG = "runs.db"
SPLIT = "split.json"
DONE = "fold.json"
VIEWS = "none_views"  # the image head over frontal and lateral views, averaged


def oof_key(mode: str, head: str) -> str:
    """``report_fusion``: the key of one text mode and head (the CSV is ``oof_<key>.csv``)."""
    return eval_name("oof", mode, head)[len("oof_"):]


@dataclass(frozen=True)
class CvLayout:
    """The files of one cross-validated recipe, under ``root`` (``--root/--name`` of scripts/cv.py)."""
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def folds_file(self) -> Path:
        return self.root / FOLDS

    @property
    def summary_file(self) -> Path:
        return self.root / SUMMARY

    @property
    def runlog(self) -> Path:
        return self.root / RUNLOG

    def fold_dir(self, k: int) -> Path:
        return self.root / f"fold{k}"

    def done_folds(self) -> list[Path]:
        """The finished folds' folders, in name order."""
        return sorted(p.parent for p in self.root.glob(f"fold*/{DONE}"))

    def folds_with(self, key: str) -> set[str]:
        """Names of the folds (``fold0``...) that have ``oof_<key>.csv``."""
        return {p.parent.name for p in self.root.glob(f"fold*/oof_{key}.csv")}


def oof_path(fold_dir: Path, key: str) -> Path:
    return Path(fold_dir) / f"oof_{key}.csv"


def oof_keys(fold_dir: Path) -> set[str]:
    """The out-of-fold keys one fold has written."""
    return {p.stem[len("oof_"):] for p in Path(fold_dir).glob("oof_*.csv")}
