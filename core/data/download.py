"""Downloading the IU X-ray collection from Open-I (scripts/download_iu_xray.py runs it): resumable HTTP
range downloads, checksums where known, archive checks and a safe extraction (no member outside its folder),
a stamp when a folder is complete."""
from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import shutil
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import Request, urlopen

from core.errors import CxrError

BASE_URL = "https://openi.nlm.nih.gov/imgs/collections"
CHUNK = 1 << 20
LICENSE = ("The IU Chest X-ray Collection is licensed CC BY-NC-ND 4.0 (non-commercial, no derivatives). "
           "Cite: Demner-Fushman D, et al. Preparing a collection of radiology examinations for distribution "
           "and retrieval. J Am Med Inform Assoc. 2016;23(2):304-310. doi:10.1093/jamia/ocv080")


@dataclass(frozen=True)
class Archive:
    name: str      # file name on the server and in --out
    target: str    # folder under --out that receives the files
    suffix: str    # the files that matter in it


ARCHIVES = (  # reports first: small, so a broken setup shows up in seconds
    Archive("NLMCXR_reports.tgz", "NLMCXR_reports/ecgen-radiology", ".xml"),
    Archive("NLMCXR_png.tgz", "NLMCXR_png", ".png"),
)
# Open-I publishes no checksums; fill one in only from a download you verified. Never guess.
SHA256: dict[str, str | None] = {"NLMCXR_reports.tgz": None, "NLMCXR_png.tgz": None}
STAMP = ".complete.json"


class DownloadError(CxrError, RuntimeError):
    """A download stopped before the archive was whole (run again to resume)."""


class Unreachable(DownloadError):
    """The server cannot be reached at all."""


class CorruptArchive(DownloadError):
    """An archive is complete in size but not a valid .tgz (or fails its checksum)."""


def _total(content_range: str | None) -> int | None:
    """``bytes 100-199/2000`` or ``bytes */2000`` -> 2000."""
    tail = (content_range or "").rpartition("/")[2].strip()
    return int(tail) if tail.isdigit() else None


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:,.1f} MB"


def fetch(url: str, dest: Path, *, sha256: str | None = None, timeout: float = 60, log=print) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming what is already there."""
    host = urlparse(url).hostname or url
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "cxr-download/1 (python urllib)"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as exc:
        if exc.code == 416 and have and _total(exc.headers.get("Content-Range")) == have:
            return _finish(part, dest, sha256=sha256)  # the .part was already whole
        if exc.code == 416:  # the .part is longer than the file: start over
            part.unlink()
            return fetch(url, dest, sha256=sha256, timeout=timeout, log=log)
        raise DownloadError(f"{host} answered HTTP {exc.code} ({exc.reason}) for {url}") from None
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"cannot reach {host}: {reason} — check your connection or copy the archives "
                          f"into {dest.parent}") from None
    with resp:
        if resp.status == 206:
            if not (resp.headers.get("Content-Range") or "").startswith(f"bytes {have}-"):
                part.unlink(missing_ok=True)
                raise DownloadError(f"{host} sent the wrong part of {dest.name}; discarded it, run again")
            total, mode = _total(resp.headers.get("Content-Range")), "ab"
            log(f"{dest.name}: resuming at {_mb(have)} of {_mb(total)}")
        else:  # a fresh start, or a server that ignored Range
            length = resp.headers.get("Content-Length")
            have, total, mode = 0, int(length) if length and length.isdigit() else None, "wb"
            log(f"{dest.name}: downloading {_mb(total)} from {host}")
        got, shown = have, time.monotonic()
        try:
            with part.open(mode) as fh:
                while chunk := resp.read(CHUNK):
                    fh.write(chunk)
                    got += len(chunk)
                    if time.monotonic() - shown > 10:
                        shown = time.monotonic()
                        log(f"{dest.name}: {_mb(got)} of {_mb(total)}")
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(f"download of {dest.name} broke off at {_mb(got)} of {_mb(total)} "
                                f"({exc or type(exc).__name__}); run again to resume") from None
    if total is not None and got != total:
        raise DownloadError(f"download of {dest.name} stopped at {got} of {total} bytes; run again to resume")
    return _finish(part, dest, sha256=sha256)


def _finish(part: Path, dest: Path, *, sha256: str | None) -> Path:
    if sha256:
        digest = hashlib.sha256()
        with part.open("rb") as fh:
            while block := fh.read(CHUNK):
                digest.update(block)
        if digest.hexdigest() != sha256.lower():
            part.unlink()
            raise CorruptArchive(f"{dest.name} does not match its known SHA-256; deleted it, run again to re-download")
    part.replace(dest)
    return dest


def _wanted(member: tarfile.TarInfo, suffix: str) -> str | None:
    """The file name to extract a member as, or None to skip it."""
    path = PurePosixPath(member.name)
    if not (member.isfile() and path.name.endswith(suffix)) or path.name.startswith("."):
        return None  # folders, links, macOS ._ files
    if path.is_absolute() or ".." in path.parts:
        return None  # a crafted name aimed outside the archive's own tree
    return path.name


def verify(path: Path, *, suffix: str) -> int:
    """Read the archive through once (gzip CRC, tar headers); returns how many ``suffix`` files it holds."""
    try:
        with gzip.open(path) as gz:
            with tarfile.open(fileobj=gz, mode="r|") as tar:
                count = sum(1 for m in tar if _wanted(m, suffix))
            while gz.read(CHUNK):  # to the end, where gzip checks its CRC and length
                pass
    except (OSError, EOFError, tarfile.TarError, zlib.error) as exc:
        bad = path.with_name(path.name + ".corrupt")
        path.replace(bad)
        raise CorruptArchive(f"{path.name} is not a valid .tgz ({exc or type(exc).__name__}); moved it to "
                             f"{bad.name}, run again to re-download") from None
    if not count:
        raise CorruptArchive(f"{path.name} holds no {suffix} files; is it the right archive?")
    return count


def extract(path: Path, target: Path, *, suffix: str) -> int:
    """Extract the ``suffix`` files flat into ``target`` (names only: no path from the archive is trusted)."""
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            name = _wanted(member, suffix)
            if name is None:
                continue
            with tar.extractfile(member) as src, (staging / name).open("wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)
    count = sum(1 for _ in staging.iterdir())  # distinct names: what is_complete will find
    target.mkdir(parents=True, exist_ok=True)
    for file in staging.iterdir():  # merge: files already in target are replaced, others kept
        file.replace(target / file.name)
    staging.rmdir()
    (target / STAMP).write_text(json.dumps({"archive": path.name, "files": count}))
    return count


def is_complete(target: Path, *, suffix: str) -> bool:
    try:
        expected = json.loads((target / STAMP).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return sum(1 for _ in target.glob(f"*{suffix}")) >= expected


def install(archive: Archive, out: Path, *, base_url: str, timeout: float, remove_archive: bool, log=print) -> None:
    target = out / archive.target
    if is_complete(target, suffix=archive.suffix):
        log(f"{archive.target}/: already complete, skipped")
        return
    path = out / archive.name
    if path.exists():
        log(f"{archive.name}: found in {out}, not downloading")
    else:
        fetch(f"{base_url.rstrip('/')}/{archive.name}", path, sha256=SHA256.get(archive.name), timeout=timeout,
              log=log)
    n = verify(path, suffix=archive.suffix)
    log(f"{archive.name}: verified, {n} {archive.suffix} files; extracting")
    extract(path, target, suffix=archive.suffix)
    if remove_archive:
        path.unlink()
