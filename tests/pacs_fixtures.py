"""A real PACS for the tests: Debian's Orthanc with its DICOMweb plugin on a free loopback port,
its own temporary storage, authentication on and the DICOM port off; and chest X-ray DICOM
studies made from the shared IU images (full-size 16-bit, MONOCHROME1/2, several transfer
syntaxes, frontal and lateral as separate series, some with the indication).

    with Orthanc(tmp_path) as pacs:                 # pacs.url is the DICOMweb root
        pacs.upload(make_instance(png, tmp_path / "a.dcm", study_uid=..., syntax="jpeg-lossless"))

Used by tests/pacs/ and scripts/bench_pacs.py. Orthanc (``apt-get install orthanc
orthanc-dicomweb``) and the dcmtk / gdcm tools are Debian packages (.ci/run installs them).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scripts._server import free_port

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER, PASSWORD = "cxr", "pacs-test-password"
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"    # Computed Radiography Image Storage
# name -> (command that compresses IN into OUT, transfer syntax UID it makes)
SYNTAXES = {
    "explicit": (None, "1.2.840.10008.1.2.1"),
    "jpeg-lossless": (["dcmcjpeg", "+e1"], "1.2.840.10008.1.2.4.70"),   # process 14, selection value 1
    "jpeg-ls": (["dcmcjpls", "+el"], "1.2.840.10008.1.2.4.80"),
    "rle": (["dcmcrle"], "1.2.840.10008.1.2.5"),
    "jpeg2000": (["gdcmconv", "--j2k"], "1.2.840.10008.1.2.4.90"),
}


def missing_tools() -> list[str]:
    """The Debian programs these fixtures need that are not installed."""
    tools = [ORTHANC, "dcmcjpeg", "dcmcjpls", "dcmcrle", "gdcmconv", "dciodvfy"]
    out = [t for t in tools if not shutil.which(t) and not Path(t).is_file()]
    if not Path(DICOMWEB_PLUGIN).is_file():
        out.append(DICOMWEB_PLUGIN)
    return out


class Orthanc:
    """One Orthanc process with its own storage under ``folder``; a context manager."""

    def __init__(self, folder: Path, *, user: str = USER, password: str = PASSWORD) -> None:
        self.folder = Path(folder)
        self.user, self.password = user, password
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The DICOMweb root (what ``scripts/pacs.py --url`` takes)."""
        return f"{self.root}/dicom-web"

    def env(self) -> dict[str, str]:
        return {"CXR_PACS_USER": self.user, "CXR_PACS_PASSWORD": self.password}

    def start(self) -> Orthanc:
        storage = self.folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "cxr-test", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
            "HttpPort": self.port, "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
            "RegisteredUsers": {self.user: self.password}, "DicomServerEnabled": False,
            "Plugins": [DICOMWEB_PLUGIN], "HttpsVerifyPeers": False, "ConcurrentJobs": 1,
            "StableAge": 1, "SaveJobs": False, "HttpThreadsCount": 8,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Ssl": False,
                         "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
        }
        cfg = self.folder / "orthanc.json"
        cfg.write_text(json.dumps(config))
        self.log = (self.folder / "orthanc.log").open("wb")
        self.proc = subprocess.Popen([ORTHANC, str(cfg)], stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.folder)
        deadline = time.monotonic() + 60
        while not self.alive():
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({self.proc.returncode}): "
                                   f"{(self.folder / 'orthanc.log').read_text(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("Orthanc did not answer within 60 s")
            time.sleep(0.2)
        return self

    def alive(self) -> bool:
        import requests
        try:
            return requests.get(f"{self.root}/system", auth=(self.user, self.password), timeout=2).ok
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        if getattr(self, "log", None):
            self.log.close()

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---------------------------------------------------------------- REST helpers
    def rest(self, method: str, path: str, **kw):
        import requests
        r = requests.request(method, f"{self.root}{path}", auth=(self.user, self.password), timeout=60, **kw)
        r.raise_for_status()
        return r.json() if r.content and "json" in r.headers.get("content-type", "") else r.content

    def upload(self, path: Path | bytes) -> dict:
        data = path if isinstance(path, bytes) else Path(path).read_bytes()
        return self.rest("POST", "/instances", data=data, headers={"content-type": "application/dicom"})

    def delete_all(self) -> None:
        for study in self.rest("GET", "/studies"):
            self.rest("DELETE", f"/studies/{study}")

    def instances_of(self, study_uid: str, modality: str | None = None) -> list[dict]:
        """Tags (simplified) of every instance of a study, optionally of one modality."""
        found = self.rest("POST", "/tools/find", json={"Level": "Instance", "Query": {"StudyInstanceUID": study_uid},
                                                       "Expand": True})
        out = []
        for inst in found:
            tags = self.rest("GET", f"/instances/{inst['ID']}/simplified-tags")
            if modality is None or tags.get("Modality") == modality:
                out.append(tags)
        return out

    def file_of(self, sop_uid: str) -> bytes:
        found = self.rest("POST", "/tools/find", json={"Level": "Instance", "Query": {"SOPInstanceUID": sop_uid}})
        return self.rest("GET", f"/instances/{found[0]}/file")


# -------------------------------------------------------------------- test studies

@dataclass
class Made:
    path: Path
    study_uid: str
    series_uid: str
    sop_uid: str
    view: str
    syntax: str
    indication: str


def _uid(*parts: str) -> str:
    import hashlib
    return f"2.25.{int.from_bytes(hashlib.sha256('|'.join(('cxr-test', *parts)).encode()).digest()[:16], 'big')}"


def make_instance(png: Path, out: Path, *, study_uid: str, view: str = "PA", syntax: str = "explicit",
                  size: int = 2500, monochrome1: bool = False, indication: str = "", modality: str = "DX",
                  body_part: str = "CHEST", series_number: int = 1, patient: str = "Doe^Jane",
                  study_date: str = "20261201", bits: int = 12, view_position: bool = True,
                  pixels: np.ndarray | None = None) -> Made:
    """One DICOM instance from a PNG: upscaled so the longer side is ``size`` px, ``bits``-bit in a
    16-bit container, with a VOI window, MONOCHROME1 (inverted) or 2, compressed with Debian's tools."""
    import pydicom
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset

    if pixels is None:
        with Image.open(png) as im:
            im = im.convert("L")
            scale = size / max(im.size)
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.BILINEAR)
            gray = np.asarray(im, dtype=np.uint16)
        top = (1 << bits) - 1
        arr = (gray.astype(np.uint32) * top // 255).astype(np.uint16)
        if monochrome1:
            arr = (top - arr).astype(np.uint16)
    else:
        arr = pixels.astype(np.uint16)
        top = (1 << bits) - 1
    series_uid = _uid(study_uid, view, str(series_number))
    sop_uid = _uid(series_uid, syntax, png.name)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = SYNTAXES["explicit"][1]
    sop_class = DX_STORAGE if modality == "DX" else CR_STORAGE
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = patient, f"MRN-{study_uid[-6:]}", "19600101", "F"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study_uid, study_date, "101500"
    ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = f"ACC{study_uid[-7:]}", "1", "Ref^Doctor"
    ds.StudyDescription = "XR CHEST"
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.Modality = series_uid, series_number, modality
    ds.BodyPartExamined = body_part
    if view_position:
        ds.ViewPosition = view
    ds.InstanceNumber = 1
    ds.Manufacturer = "cxr-test"
    ds.PatientOrientation = ""
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    if indication:
        ds.ReasonForTheRequestedProcedure = indication
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.WindowCenter, ds.WindowWidth = (top + 1) // 2, top + 1
    ds.PixelData = np.ascontiguousarray(arr).tobytes()
    out.parent.mkdir(parents=True, exist_ok=True)
    command, _ = SYNTAXES[syntax]
    raw = out if command is None else out.with_suffix(".raw.dcm")
    pydicom.dcmwrite(raw, ds, enforce_file_format=True)
    if command is not None:
        subprocess.run([*command, str(raw), str(out)], check=True, capture_output=True, timeout=120)
        raw.unlink()
    return Made(out, study_uid, series_uid, sop_uid, view, syntax, indication)


def iu_pairs(data_dir: Path, n: int, *, skip: int = 0) -> list[tuple[Path, Path | None]]:
    """n (frontal PNG, lateral JPEG or None) pairs of the same report from the IU copy."""
    import csv
    laterals = {}
    manifest = data_dir / "lateral_manifest.csv"
    if manifest.is_file():
        with manifest.open(newline="") as fh:
            for row in csv.DictReader(fh):
                laterals.setdefault(row["uid"], data_dir / "lateral" / f"{row['image_id']}.jpg")
    out = []
    with (data_dir / "manifest.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["view"] == "frontal"]
    for row in rows[skip:]:
        lat = laterals.get(row["uid"])
        out.append((data_dir / "NLMCXR_png" / f"{row['image_id']}.png", lat if lat and lat.is_file() else None))
        if len(out) == n:
            break
    return out


def study_uid_for(name: str) -> str:
    return _uid("study", name)


def env_with(pacs: Orthanc, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CXR_PACS_USER", "CXR_PACS_PASSWORD")}
    return {**env, **pacs.env(), **extra}
