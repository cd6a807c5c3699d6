"""scripts/pacs.py against a real PACS: Debian's Orthanc with DICOMweb, authentication on, the DICOM
port off, on a free loopback port with its own storage (tests/pacs_fixtures.py).

Studies are made here from the shared IU images: full-size 16-bit frontals in JPEG Lossless,
JPEG-LS, JPEG 2000 and RLE, MONOCHROME1 and 2, laterals as their own series, a frontal without a
ViewPosition (the guard decides), a lateral-only study, corrupt pixels, a hand. Skips with the
reason when the data or the Debian tools are missing.
"""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import pacs_fixtures as pf

ROOT = Path(__file__).resolve().parents[2]
_WEIGHTS: list[Path] = []


def weights() -> Path:
    """A private copy of the shipped weights, made once: other work may rewrite weights/ mid-run (a refit
    changes the version), and every run of these tests must see one model version."""
    if not _WEIGHTS:
        import atexit
        import shutil
        import tempfile
        folder = Path(tempfile.mkdtemp(prefix="pacs-test-weights-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        shutil.copytree(ROOT / "weights", folder / "weights")
        _WEIGHTS.append(folder / "weights")
    return _WEIGHTS[0]


def pacs_cli() -> list[str]:
    return [sys.executable, "scripts/pacs.py", "--weights", str(weights())]

pytestmark = pytest.mark.skipif(bool(pf.missing_tools()), reason=f"missing Debian tools: {pf.missing_tools()}")


def run_cli(args, env, timeout=300):
    return subprocess.run([*pacs_cli(), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def corrupt_instance(made: pf.Made, out: Path) -> Path:
    """The same header, its JPEG Lossless pixel data replaced by random bytes."""
    import numpy as np
    import pydicom
    from pydicom.encaps import encapsulate
    ds = pydicom.dcmread(made.path)
    ds.PixelData = encapsulate([np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()])
    ds.save_as(out, enforce_file_format=True)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory, iu_xray_dir):
    """One Orthanc with the test studies; yields a dict of what was made, the env and a fresh log."""
    folder = tmp_path_factory.mktemp("pacs")
    pairs = pf.iu_pairs(iu_xray_dir, 8)
    made: dict[str, dict] = {}
    with pf.Orthanc(folder / "orthanc") as pacs:
        specs = [  # name, syntax, size, MONOCHROME1, indication, view, lateral
            ("A", "jpeg-lossless", 3000, False, "Cough and fever for three days.", "PA", True),
            ("B", "jpeg-ls", 2500, True, "", "AP", True),
            ("C", "jpeg2000", 2000, False, "Shortness of breath.", None, True),
            ("R", "rle", 2000, True, "", "PA", False),
        ]
        for i, (name, syntax, size, mono1, indication, view, lateral) in enumerate(specs):
            frontal, lat = pairs[i]
            uid = pf.study_uid_for(name)
            f = pf.make_instance(frontal, folder / f"{name}-f.dcm", study_uid=uid, syntax=syntax, size=size,
                                 monochrome1=mono1, indication=indication, view=view or "",
                                 view_position=view is not None)
            pacs.upload(f.path)
            if lateral and lat is not None:
                pacs.upload(pf.make_instance(lat, folder / f"{name}-l.dcm", study_uid=uid, view="LL", syntax="rle",
                                             size=1500, series_number=2).path)
            made[name] = {"uid": uid, "frontal": f, "mode": "indication" if indication else "none"}
        # a study with only a lateral; one whose pixels are corrupt; a hand
        lat_only = pf.make_instance(pairs[4][1], folder / "L.dcm", study_uid=pf.study_uid_for("L"), view="LL",
                                    syntax="rle", size=1500)
        pacs.upload(lat_only.path)
        good = pf.make_instance(pairs[5][0], folder / "X-src.dcm", study_uid=pf.study_uid_for("X"),
                                syntax="jpeg-lossless", size=1000)
        pacs.upload(corrupt_instance(good, folder / "X.dcm"))
        hand = pf.make_instance(pairs[6][0], folder / "H.dcm", study_uid=pf.study_uid_for("H"), body_part="HAND",
                                size=1000)
        pacs.upload(hand.path)
        made.update(L={"uid": lat_only.study_uid}, X={"uid": good.study_uid}, H={"uid": hand.study_uid})
        env = pf.env_with(pacs, CXR_DB_PATH=str(folder / "predictions.db"))
        yield {"pacs": pacs, "made": made, "env": env, "folder": folder, "pairs": pairs}


@pytest.fixture(scope="module")
def predictor():
    """The shipped model, loaded once for the in-process checks (the CLI runs load their own)."""
    from core.serving.predictor import Predictor
    return Predictor.load(weights())


@pytest.fixture(scope="module")
def first_run(world):
    out = world["folder"] / "first.json"
    r = run_cli(["--url", world["pacs"].url, "--all", "--json", str(out)], world["env"])
    assert r.returncode == 0, r.stderr
    return {"result": r, "json": json.loads(out.read_text())}


def by_uid(report):
    return {s["study_uid"]: s for s in report["studies"]}


def sr_files(pacs: pf.Orthanc, study_uid: str) -> list:
    """Every SR of a study, read back over DICOMweb (QIDO-RS, then WADO-RS)."""
    import pydicom

    from core.pacs.connection import connect
    client = connect(pacs.url, environ=pacs.env())
    out = []
    for series in client.series(study_uid):
        if series.Modality != "SR":
            continue
        for meta in client.series_metadata(study_uid, series.SeriesInstanceUID):
            data = client.retrieve(study_uid, series.SeriesInstanceUID, meta.SOPInstanceUID)
            out.append(pydicom.dcmread(io.BytesIO(data)))
    return out


def pacs_rows(db_path) -> list[dict]:
    from core.store import PredictionStore
    return [r for r in PredictionStore(db_path).list_predictions(limit=None) if r["image_name"].startswith("pacs-")]


# ------------------------------------------------------------------------------------------ tests

def test_first_run_scores_chests_and_skips_the_rest(world, first_run):
    got, made = by_uid(first_run["json"]), world["made"]
    for name in "ABCR":
        s = got[made[name]["uid"]]
        assert s["status"] == "scored", s
        assert s["source_sop_instance_uid"] == made[name]["frontal"].sop_uid    # the frontal, not the lateral
        assert s["text_mode"] == made[name]["mode"]
        assert set(s["fusion"]) == {"Pneumonia", "Edema", "Cardiomegaly", "Atelectasis", "Consolidation"}
        assert s["model"] and "+int8" not in s["model"] and s["sr_sop_instance_uid"]
        # the decisions at the named operating point (issue 26): text null when no text was read
        assert s["operating_point_name"] == "specificity 0.90" and set(s["decision"]) == set(s["fusion"])
        assert (s["text"] is None) == (s["text_mode"] == "none")
        assert set(s["operating_point"]) == {f for f, d in s["decision"].items() if d != "not assessed"}
        assert {s["decision"][f] for f in ("Pneumonia", "Consolidation")} == {"not assessed"}   # image cannot
        assert all(s["probability"][f] is None for f in ("Pneumonia", "Consolidation"))
    assert got[made["L"]["uid"]]["status"] == "skipped" and "lateral" in got[made["L"]["uid"]]["reason"]
    assert got[made["X"]["uid"]]["status"] == "skipped" and "decoded" in got[made["X"]["uid"]]["reason"]
    assert got[made["H"]["uid"]]["status"] == "skipped" and "not a chest" in got[made["H"]["uid"]]["reason"]
    out = first_run["result"].stdout
    assert len(out.strip().splitlines()) == 7 and "Doe" not in out + first_run["result"].stderr
    for line in out.splitlines():   # what was flagged at the named point, never a number the app hides
        if " scored " in line:
            assert "flagged at specificity 0.90: " in line and "not assessed: Pneumonia, Consolidation" in line
            assert "highest" not in line and not any(c.isdigit() for c in line.split("specificity 0.90")[1]), line
    assert "at specificity 0.90" in first_run["result"].stderr
    # one log row per scored study, named by a hash, never a patient identifier
    rows = pacs_rows(world["env"]["CXR_DB_PATH"])
    assert len(rows) == 4 and all(r["source"] == "cli" for r in rows)
    assert not any("Doe" in json.dumps(r, default=str) or "MRN-" in json.dumps(r, default=str) for r in rows)


def test_the_connection_reads_headers_by_keyword_and_fetches_the_stored_file(world):
    """QIDO and WADO through dicomweb-client: answers are pydicom Datasets; an image comes back byte for byte
    as stored, in its own transfer syntax (the log hashes these bytes)."""
    from core.pacs.connection import connect
    pacs, made = world["pacs"], world["made"]
    client = connect(pacs.url, environ=pacs.env())
    refs = {r.study_uid: r for r in client.find_studies()}
    assert {made[n]["uid"] for n in "ABCRLXH"} <= set(refs)
    for name in "ABCR":
        f = made[name]["frontal"]
        assert refs[f.study_uid].date and set(refs[f.study_uid].modalities) & {"CR", "DX"}
        series = {s.SeriesInstanceUID: s.Modality for s in client.series(f.study_uid)}
        assert series[f.series_uid] in ("CR", "DX")
        meta = {m.SOPInstanceUID: m for m in client.series_metadata(f.study_uid, f.series_uid)}
        assert "PixelData" not in meta[f.sop_uid] and meta[f.sop_uid].get("ViewPosition", "") == f.view
        assert client.retrieve(f.study_uid, f.series_uid, f.sop_uid) == pacs.file_of(f.sop_uid)


def test_srs_are_in_the_right_studies_valid_and_say_the_decisions(world, first_run):
    from core.pacs.sr import ALGORITHM_NAME, algorithm_versions, read_sr
    got, made, pacs = by_uid(first_run["json"]), world["made"], world["pacs"]
    for name in "ABCR":
        uid = made[name]["uid"]
        srs = sr_files(pacs, uid)
        assert len(srs) == 1
        sr, source = srs[0], made[name]["frontal"]
        assert sr.StudyInstanceUID == uid and sr.SOPInstanceUID == got[uid]["sr_sop_instance_uid"]
        assert str(sr.PatientName) == "Doe^Jane" and sr.PatientID.startswith("MRN-")   # filed with the patient
        assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"                         # Comprehensive SR
        refs = [r.ReferencedSOPInstanceUID for e in sr.CurrentRequestedProcedureEvidenceSequence
                for s in e.ReferencedSeriesSequence for r in s.ReferencedSOPSequence]
        assert refs == [source.sop_uid]
        assert algorithm_versions(sr) == {got[uid]["model"]}
        assert ALGORITHM_NAME in str(sr)
        said = read_sr(sr)           # what the --json said, the SR says (issue 26: one decision, every output)
        assert said["operating_point"] == got[uid]["operating_point_name"] and said["text_mode"] == made[name]["mode"]
        for finding, decision in got[uid]["decision"].items():
            assert said["findings"][finding]["status"] == decision
            if decision == "not assessed":
                assert said["findings"][finding]["reason"] == got[uid]["not_assessed"][finding]
                continue
            op = got[uid]["operating_point"][finding]
            assert said["findings"][finding].get("probability") == got[uid]["probability"][finding]
            assert said["findings"][finding]["sensitivity"] == round(op["sensitivity"], 3)
            assert said["findings"][finding]["specificity_hi"] == round(op["specificity_ci"][1], 3)
            assert said["findings"][finding]["auc"] is not None and said["findings"][finding]["positives"] >= 10
        path = world["folder"] / f"sr-{name}.dcm"
        sr.save_as(path, enforce_file_format=True)
        check = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (check.stdout + check.stderr).splitlines() if line.startswith("Error")]
        assert not errors, errors


def test_sr_probabilities_equal_predict_cli(world, first_run):
    """The same images through scripts/predict.py --json, in the same text mode, give the same numbers."""
    got, made = by_uid(first_run["json"]), world["made"]
    batch = world["folder"] / "batch.csv"
    with batch.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "text", "text_mode"])
        for name in "ABCR":
            f = made[name]["frontal"]
            w.writerow([str(f.path), f.indication, made[name]["mode"]])
    r = subprocess.run([sys.executable, "scripts/predict.py", "--weights", str(weights()), "--batch", str(batch),
                        "--json", "--no-log"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for name, line in zip("ABCR", r.stdout.strip().splitlines(), strict=True):
        ref, mine = json.loads(line), got[made[name]["uid"]]
        assert ref["text_mode"] == mine["text_mode"] and ref["model"] == mine["model"]
        for finding, p in ref["fusion"].items():  # (the batch form's "image" key holds the file's name)
            assert mine["fusion"][finding] == pytest.approx(p, abs=1e-6), (name, finding)
        assert mine["decision"] == ref["decision"] and mine["operating_point_name"] == ref["operating_point_name"]
        assert mine["text"] == ref["text"]


def test_second_run_adds_nothing(world, first_run, predictor):
    """The same studies again (in-process, same code as the command): every one found done on the PACS."""
    from core.pacs.connection import connect
    from core.pacs.run import Runner
    from core.store import PredictionStore
    pacs, env, made = world["pacs"], world["env"], world["made"]
    client = connect(pacs.url, environ=pacs.env())
    again = by_uid({"studies": [o.to_json() for o in Runner(client, predictor, PredictionStore(env["CXR_DB_PATH"]))
                                .run(client.find_studies())]})
    assert {again[made[n]["uid"]]["status"] for n in "ABCR"} == {"exists"}
    assert {again[made[n]["uid"]]["status"] for n in "LXH"} == {"skipped"}
    for name in "ABCR":
        assert len(sr_files(pacs, made[name]["uid"])) == 1
    assert len(pacs_rows(env["CXR_DB_PATH"])) == 4


def test_kill9_then_resume_duplicates_nothing_and_loses_nothing(world, first_run):
    pacs, env, folder = world["pacs"], world["env"], world["folder"]
    uids = []
    for i, (frontal, _) in enumerate(pf.iu_pairs(Path(os.environ.get("IU_XRAY_DIR") or ROOT.parent / "shared/iu-xray"),
                                                 6, skip=20)):
        uid = pf.study_uid_for(f"K{i}")
        pacs.upload(pf.make_instance(frontal, folder / f"K{i}.dcm", study_uid=uid, syntax="rle", size=1200,
                                     study_date="20261203").path)
        uids.append(uid)
    args = ["--url", pacs.url, "--since", "20261203", "--batch", "1", "--workers", "1"]
    proc = subprocess.Popen([*pacs_cli(), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if any(pacs.instances_of(u, "SR") for u in uids[:2]):
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(1)  # a STOW request the PACS had received whole when the kill came is stored by it, not lost
    with_sr = [u for u in uids if pacs.instances_of(u, "SR")]
    assert 0 < len(with_sr) < len(uids)              # killed mid-way
    # the command again, in --follow mode: stopped by SIGTERM once its first pass is written, sent to its
    # whole process group as a service manager does (its worker processes too: they leave the stop to it)
    out = folder / "resume.json"
    proc = subprocess.Popen([*pacs_cli(), *args, "--follow", "--interval", "1", "--json", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not out.is_file() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    resumed = by_uid(json.loads(out.read_text()))
    assert {u for u in uids if resumed[u]["status"] == "exists"} == set(with_sr)   # found done on the PACS
    assert {u for u in uids if resumed[u]["status"] == "scored"} == set(uids) - set(with_sr)
    for u in uids:
        assert len(pacs.instances_of(u, "SR")) == 1
    from core.pacs.ledger import row_name
    names = [row["image_name"] for row in pacs_rows(env["CXR_DB_PATH"])]
    assert sorted(names) == sorted({*names}) and all(row_name(u) in names for u in uids)
    assert len(names) == 4 + len(uids)


def test_sr_without_log_row_is_reconciled_and_a_new_version_adds_its_own_sr(world, first_run, tmp_path, monkeypatch,
                                                                            predictor):
    """kill -9 between the SR and the log row: the re-run writes the row and no second SR; a new model
    version (whatever precision serves it) adds its own SR beside the old one."""
    from core.pacs.connection import connect
    from core.pacs.run import Runner
    from core.store import PredictionStore
    pacs, made = world["pacs"], world["made"]
    client = connect(pacs.url, environ=pacs.env())
    ref = client.find_studies(study_uid=made["A"]["uid"])
    store = PredictionStore(tmp_path / "other.db")         # a log that never saw study A
    out = Runner(client, predictor, store).run(ref)
    assert out[0].status == "exists" and out[0].row_id is not None and "log row" in out[0].reason
    assert Runner(client, predictor, store).run(ref)[0].row_id == out[0].row_id
    assert len(PredictionStore(tmp_path / "other.db").list_predictions()) == 1
    monkeypatch.setattr(predictor, "version", "test-version-2")   # undone after the test (the fixture is shared)
    monkeypatch.setattr(type(predictor), "served_version", property(lambda self: f"{self.version}+int8"))
    new = Runner(client, predictor, store).run(ref)[0]
    assert new.status == "scored" and new.model == "test-version-2+int8"
    srs = sr_files(pacs, made["A"]["uid"])
    from core.pacs.sr import algorithm_versions
    assert sorted(v for sr in srs for v in algorithm_versions(sr)) == sorted([out[0].model, "test-version-2+int8"])
    again = Runner(client, predictor, store).run(ref)[0]
    assert again.status == "exists" and len(sr_files(pacs, made["A"]["uid"])) == 2


def test_wrong_credentials_one_line(world):
    env = {**world["env"], "CXR_PACS_PASSWORD": "not-the-password"}
    r = run_cli(["--url", world["pacs"].url, "--all"], env, timeout=120)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "refused the credentials" in r.stderr
    assert "not-the-password" not in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_bad_arguments_and_credentials_in_url(world):
    env = world["env"]
    r = run_cli(["--url", world["pacs"].url.replace("http://", "http://cxr:pw@"), "--all"], env, timeout=60)
    assert r.returncode == 2 and "must not carry credentials" in r.stderr and r.stderr.count("\n") == 1
    r = run_cli(["--url", world["pacs"].url, "--since", "2026-12-01"], env, timeout=60)
    assert r.returncode == 2 and "YYYYMMDD" in r.stderr
    r = run_cli(["--url", world["pacs"].url, "--all", "--password", "x"], env, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    r = run_cli(["--url", world["pacs"].root, "--all"], env, timeout=60)   # Orthanc's REST root, not DICOMweb
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "DICOMweb root" in r.stderr
    assert "Traceback" not in r.stderr


def test_orthanc_stopped_mid_run(world, tmp_path, predictor):
    """The PACS dies mid-run: one line, exit 1, and every SR stored has its log row or gets it on a re-run."""
    pairs = world["pairs"]
    db = tmp_path / "stopped.db"
    with pf.Orthanc(tmp_path / "orthanc") as pacs:
        uids = []
        for i in range(8):
            uid = pf.study_uid_for(f"S{i}")
            made = pf.make_instance(pairs[i % len(pairs)][0], tmp_path / f"S{i}.dcm", study_uid=uid, size=900)
            pacs.upload(made.path)
            uids.append(uid)
        env = pf.env_with(pacs, CXR_DB_PATH=str(db))
        proc = subprocess.Popen([*pacs_cli(), "--url", pacs.url, "--all", "--batch", "1", "--workers", "1"], cwd=ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            if any(pacs.instances_of(u, "SR") for u in uids[:2]):
                break
            time.sleep(0.05)
        pacs.proc.kill()                                   # the server goes away mid-run
        pacs.proc.wait(timeout=30)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 1, stderr
        assert stderr.strip().count("\n") == 0 and "cannot reach the PACS" in stderr and "Traceback" not in stderr
    with pf.Orthanc(tmp_path / "orthanc") as pacs:         # back, on the same storage
        env = pf.env_with(pacs, CXR_DB_PATH=str(db))
        stored = [u for u in uids if pacs.instances_of(u, "SR")]
        logged = {r["image_name"] for r in pacs_rows(db)}
        from core.pacs.ledger import row_name
        assert logged <= {row_name(u) for u in stored}       # no row without its SR
        from core.pacs.connection import connect
        from core.pacs.run import Runner
        from core.store import PredictionStore
        client = connect(pacs.url, environ=env)       # the re-run (in-process: the model is loaded already)
        again = Runner(client, predictor, PredictionStore(db)).run(client.find_studies())
        assert {o.status for o in again} <= {"scored", "exists"}
        assert all(len(pacs.instances_of(u, "SR")) == 1 for u in uids)
        assert sorted(r["image_name"] for r in pacs_rows(db)) == sorted(row_name(u) for u in uids)


def test_overlay_series_when_asked(world, predictor, tmp_path):
    """--overlay: a Grad-CAM Secondary Capture beside the SR, valid, in the same study, stored once."""
    import pydicom

    from core.pacs.connection import connect
    from core.pacs.run import Runner
    pacs = world["pacs"]
    frontal, _ = world["pairs"][7]
    uid = pf.study_uid_for("overlay")
    pacs.upload(pf.make_instance(frontal, tmp_path / "o.dcm", study_uid=uid, size=1200, syntax="rle").path)
    client = connect(pacs.url, environ=pacs.env())
    ref = client.find_studies(study_uid=uid)
    out = Runner(client, predictor, None, overlay=True).run(ref)[0]
    assert out.status == "scored" and out.overlay_sop_instance_uid
    assert out.to_json()["overlay_sop_instance_uid"] == out.overlay_sop_instance_uid
    scs = [t for t in pacs.instances_of(uid) if t.get("SOPClassUID") == "1.2.840.10008.5.1.4.1.1.7"]
    assert len(scs) == 1 and scs[0]["PatientName"] == "Doe^Jane"
    path = tmp_path / "sc.dcm"
    path.write_bytes(pacs.file_of(out.overlay_sop_instance_uid))
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "RGB" and ds.StudyInstanceUID == uid and "Grad-CAM" in ds.SeriesDescription
    check = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    assert not [line for line in (check.stdout + check.stderr).splitlines() if line.startswith("Error")]
    assert Runner(client, predictor, None, overlay=True).run(ref)[0].status == "exists"
    assert len([t for t in pacs.instances_of(uid) if t.get("SOPClassUID") == "1.2.840.10008.5.1.4.1.1.7"]) == 1


def test_dry_run_writes_nothing(world, predictor, tmp_path):
    from core.pacs.connection import connect
    from core.pacs.run import Runner
    from core.store import PredictionStore
    pacs = world["pacs"]
    frontal, _ = world["pairs"][3]
    uid = pf.study_uid_for("dry-run")
    pacs.upload(pf.make_instance(frontal, tmp_path / "d.dcm", study_uid=uid, size=1000, indication="Fever.").path)
    client = connect(pacs.url, environ=pacs.env())
    store = PredictionStore(tmp_path / "dry.db")
    out = Runner(client, predictor, store, dry_run=True).run(client.find_studies(study_uid=uid))[0]
    assert out.status == "scored" and out.text_mode == "indication" and out.fusion
    assert out.sr_sop_instance_uid is None and "dry run" in out.reason
    assert not pacs.instances_of(uid, "SR") and store.list_predictions() == []


def test_another_operating_point_adds_its_own_sr(world, first_run, predictor, tmp_path):
    """--operating-point: the study is decided there, the SR names that point and is stored beside the
    default's (another content, another instance); again at that point: exists."""
    pacs, made = world["pacs"], world["made"]
    uid = made["B"]["uid"]
    out = tmp_path / "sens.json"
    r = run_cli(["--url", pacs.url, "--study", uid, "--operating-point", "sens=0.8", "--no-log", "--json", str(out)],
                world["env"])
    assert r.returncode == 0, r.stderr
    study = json.loads(out.read_text())["studies"][0]
    assert study["status"] == "scored" and study["operating_point_name"] == "sensitivity 0.80"
    assert "sensitivity 0.80" in r.stdout and "sensitivity 0.80" in r.stderr
    from core.pacs.sr import read_sr
    points = sorted(read_sr(sr)["operating_point"] for sr in sr_files(pacs, uid))
    assert points == ["sensitivity 0.80", "specificity 0.90"]
    r = run_cli(["--url", pacs.url, "--study", uid, "--operating-point", "sensitivity 0.80", "--no-log", "--json",
                 str(out)], world["env"])
    assert r.returncode == 0 and json.loads(out.read_text())["studies"][0]["status"] == "exists"
    assert len(sr_files(pacs, uid)) == 2


def test_a_photograph_sent_as_a_chest_dx_gets_an_sr_that_assesses_nothing(world, predictor, tmp_path):
    """Issue 26: an astronaut's photograph sent as a chest DX got "Atelectasis Present". Now: every finding
    not assessed, the SR says so and why, and holds no finding and no number."""
    import numpy as np
    from skimage import color, data

    from core.pacs.connection import connect
    from core.pacs.run import Runner
    from core.pacs.sr import read_sr
    pacs = world["pacs"]
    grey = (color.rgb2gray(data.astronaut()) * 4095).astype(np.uint16)
    uid = pf.study_uid_for("astronaut")
    pacs.upload(pf.make_instance(Path("astronaut.png"), tmp_path / "astro.dcm", study_uid=uid, pixels=grey).path)
    client = connect(pacs.url, environ=pacs.env())
    out = Runner(client, predictor, None).run(client.find_studies(study_uid=uid))[0]
    assert out.status == "scored" and out.out_of_distribution
    assert set(out.to_json()["decision"].values()) == {"not assessed"} and out.decisions.flagged() == []
    assert "not assessed: out-of-distribution image" in out.line() and "flagged" not in out.line()
    [sr] = sr_files(pacs, uid)
    said = read_sr(sr)
    assert said["findings"] == {} and said["out_of_distribution"] and said["assessment"].startswith(
        "Not assessed: out-of-distribution image")
    assert "Measurement Group" not in str(sr) and "52101004" not in str(sr)     # no group, no "Present"
    path = tmp_path / "astro-sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    check = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    assert not [line for line in (check.stdout + check.stderr).splitlines() if line.startswith("Error")]


def _same_content(a, b) -> None:
    """Two SRs say the same, under the same UIDs: every attribute but when each was made (content and
    creation date and time, the contributing equipment's contribution time)."""
    when = {"00080023", "00080033", "00080012", "00080013", "0018A002"}

    def without_when(node):
        if isinstance(node, dict):
            return {k: without_when(v) for k, v in node.items() if k not in when}
        if isinstance(node, list):
            return [without_when(v) for v in node]
        return node
    assert a.SOPInstanceUID == b.SOPInstanceUID and a.SeriesInstanceUID == b.SeriesInstanceUID
    assert without_when(a.to_json_dict()) == without_when(b.to_json_dict())
    assert a.ContentSequence == b.ContentSequence


def test_predict_page_sr_and_pacs_sr_of_one_file_are_one_instance(world, predictor, tmp_path):
    """Issue 26, item 7: the Predict page's SR download and the SR the PACS run stores, for the same file and
    model version, are the same instance with the same content, at either precision; fp32 and int8 (which
    differ in the third decimal) are two instances, each naming its precision."""
    import pydicom

    from core.data.images import decode_image
    from core.pacs.connection import connect
    from core.pacs.run import Runner
    from core.pacs.sr import algorithm_versions, sr_file
    from core.pacs.study_work import indication_in
    from core.serving.predict_and_log import Study, predict_and_log
    from core.serving.predictor import Predictor
    pacs = world["pacs"]
    frontal, _ = world["pairs"][2]
    int8 = Predictor.load(weights())                      # as the app serves it: int8 image encoder, frozen
    if not int8.build_int8_image():
        pytest.skip("these weights have no int8 calibration")
    int8.freeze_encoders()
    assert int8.served_version == f"{predictor.version}+int8"
    client = connect(pacs.url, environ=pacs.env())
    stored = {}
    for k, (model, name) in enumerate([(predictor, "fp32"), (int8, "int8")]):
        uid = pf.study_uid_for(f"one-instance-{name}")
        made = pf.make_instance(frontal, tmp_path / f"{name}.dcm", study_uid=uid, size=2000, syntax="jpeg-ls",
                                indication="Cough." if k else "")
        pacs.upload(made.path)
        data = made.path.read_bytes()
        # the Predict page's path: decode the upload, its header's indication, predict, the SR download
        decoded = decode_image(data, filename="upload.dcm")
        text = indication_in(data)
        pred = predict_and_log(model, None, Study(decoded.gray, data, "upload.dcm", text,
                                                  "indication" if text else "none",
                                                  colorfulness=decoded.colorfulness), source="predict").prediction
        page = pydicom.dcmread(io.BytesIO(sr_file(data, pred, model.description)))
        # the PACS path: the runner (the CLI's and the PACS page's), stored and read back
        out = Runner(client, model, None).run(client.find_studies(study_uid=uid))[0]
        [pacs_sr] = sr_files(pacs, uid)
        assert out.sr_sop_instance_uid == pacs_sr.SOPInstanceUID
        _same_content(page, pacs_sr)
        assert algorithm_versions(page) == {model.served_version}
        stored[name] = (data, pred, page)
    # the same file through both precisions: two instances, each naming what ran
    data, _, fp32_page = stored["fp32"]
    decoded = decode_image(data, filename="upload.dcm")
    int8_pred = predict_and_log(int8, None, Study(decoded.gray, data, "upload.dcm", "", "none",
                                                  colorfulness=decoded.colorfulness), source="predict").prediction
    int8_page = pydicom.dcmread(io.BytesIO(sr_file(data, int8_pred, int8.description)))
    assert int8_page.SOPInstanceUID != fp32_page.SOPInstanceUID
    assert algorithm_versions(int8_page) == {int8.served_version} != algorithm_versions(fp32_page)
