"""Lateral views of Open-I reports, where the folder has them (``lateral_manifest.csv`` +
``lateral/<image_id>.jpg``, as in ../shared/iu-xray): report uid -> its lateral files.

The official Open-I release keeps laterals among the frontals in ``NLMCXR_png/``; this layout
keeps them apart, so code that lists ``NLMCXR_png/`` sees frontal views only.
"""
from __future__ import annotations

import csv
from pathlib import Path


def lateral_paths(data_dir: Path, uids=None) -> dict[str, list[Path]]:
    """uid -> lateral image files that exist (only ``uids`` when given); {} without a manifest."""
    manifest = Path(data_dir) / "lateral_manifest.csv"
    if not manifest.is_file():
        return {}
    keep = set(uids) if uids is not None else None
    out: dict[str, list[Path]] = {}
    with manifest.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if keep is not None and row["uid"] not in keep:
                continue
            path = Path(data_dir) / "lateral" / f"{row['image_id']}.jpg"
            if path.is_file():
                out.setdefault(row["uid"], []).append(path)
    return out
