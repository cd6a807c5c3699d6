"""Open-I (IU X-ray) as a Collection: the reader is core.data.reports (``NLMCXR_png/<image_id>.png``,
``NLMCXR_reports/ecgen-radiology/<uid>.xml``, optional ``manifest.csv`` of views). Labels are
the MeSH major terms (no uncertain labels); reports have no patient id, so the split is the
seeded split by report that the shipped model uses (``split=None``)."""
from __future__ import annotations

from pathlib import Path

from core.data.reports import check_layout as check_openi_layout
from core.data.reports import load_reports
from core.data.sources import Collection

TITLE = "Indiana University Chest X-ray Collection (Open-I)"
LICENSE = "CC BY-NC-ND 4.0"
CITATION = ("Demner-Fushman D, et al. Preparing a collection of radiology examinations for distribution and "
            "retrieval. J Am Med Inform Assoc. 2016;23(2):304-310. doi:10.1093/jamia/ocv080")


def check_layout(root: Path) -> None:
    check_openi_layout(root)


def load(root: Path, *, uncertain_policy: str = "ignore", use_automatic: bool = False, seed: int = 0) -> Collection:
    reports = load_reports(root, use_automatic=use_automatic)
    png = Path(root) / "NLMCXR_png"
    paths = {i: png / f"{i}.png" for r in reports for i in r.image_ids}
    return Collection(name="openi", title=TITLE, root=Path(root), reports=reports, image_paths=paths, split=None,
                      license=LICENSE, citation=CITATION,
                      label_source="MeSH major terms" + (" + automatic terms" if use_automatic else ""))
