"""scripts/validate_site.py --pacs: studies found over DICOMweb (a real Orthanc, tests/pacs_fixtures.py) joined to
a reports CSV by AccessionNumber or StudyInstanceUID. Skips without the Debian tools or the IU data."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pacs_fixtures as pf
from tests import site_fixtures as sf

ROOT = Path(__file__).resolve().parents[2]
N = 10


@pytest.fixture(scope="module")
def site(tmp_path_factory, iu_xray_dir):
    missing = pf.missing_tools()
    if missing:
        pytest.skip(f"missing {', '.join(missing)}")
    folder = tmp_path_factory.mktemp("site-pacs")
    reports = [r for r in sf.test_reports(iu_xray_dir, ROOT / "weights") if len(r.image_ids) == 1][:N + 1]
    with pf.Orthanc(folder / "orthanc") as pacs:
        made = []
        for r in reports:
            uid = pf.study_uid_for(f"site-{r.uid}")
            m = pf.make_instance(iu_xray_dir / "NLMCXR_png" / f"{r.image_ids[0]}.png", folder / f"{r.uid}.dcm",
                                 study_uid=uid, size=512, syntax="explicit")
            pacs.upload(m.path)
            made.append((r, uid, f"ACC{uid[-7:]}"))
        yield {"pacs": pacs, "made": made, "folder": folder, "env": pf.env_with(pacs)}


def reports_csv(path: Path, made, key: str) -> Path:
    """Reports of the first N studies (the last study has none), plus one report of no study on the PACS."""
    from core.data.labels import FINDINGS
    rows = [{key: uid if key == "study_uid" else acc, "report": r.text("report"), "indication": r.text("indication"),
             **{f"label_{f}": v for f, v in zip(FINDINGS, r.labels, strict=True)}} for r, uid, acc in made[:N]]
    rows.append({**rows[0], key: "1.2.3.4.5" if key == "study_uid" else "NOSUCH"})
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def validate(site, reports: Path, out: Path):
    env = {k: v for k, v in site["env"].items() if k != "CXR_WEIGHTS"}
    return subprocess.run([sys.executable, "scripts/validate_site.py", "--pacs", site["pacs"].url, "--reports",
                           str(reports), "--json", str(out), "--no-progress", "--bootstrap", "100"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("key", ["accession", "study_uid"])
def test_pacs_studies_joined_to_their_reports(site, key):
    reports = reports_csv(site["folder"] / f"reports_{key}.csv", site["made"], key)
    out = site["folder"] / f"{key}.json"
    r = validate(site, reports, out)
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert result["n_studies"] == N and result["labels"] == "columns"
    assert "1 no study on the PACS" in result["source"]
    assert result["tasks"]["none/image"]["n_studies"] == N
    assert result["out_of_distribution"]["images"] == N
    assert pf.PASSWORD not in out.read_text()  # the credentials came from the environment, never into outputs


def test_reports_that_match_no_study_are_one_line(site, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("accession,report\nNOPE,Normal.\n")
    r = validate(site, path, tmp_path / "o.json")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: no study on") and len(r.stderr.strip().splitlines()) == 1
