"""The DICOMweb connection: QIDO-RS to find, WADO-RS to fetch, STOW-RS to store, all through dicomweb-client;
DICOM JSON answers become pydicom Datasets (``Dataset.from_json``), read by keyword.

    pacs = connect(url)                       # credentials: $CXR_PACS_USER/$CXR_PACS_PASSWORD, else ~/.netrc
    pacs.find_studies(since="20261201")       # [StudyRef], CR/DX studies only
    pacs.series_metadata(study_uid, series_uid)  # each instance's header, a pydicom Dataset (no pixels)
    pacs.retrieve(study_uid, series_uid, sop_uid)  # the instance's bytes, in its stored transfer syntax
    pacs.store(dataset)                       # STOW-RS into the dataset's study

Credentials never come from argv, never appear in a message, a log or ``repr``; a URL that
carries them is refused. Every HTTP failure becomes one line: ``PacsAuthError`` (the server
refused the credentials), ``PacsUnavailable`` (no answer, or a server error), ``PacsError`` (the rest).
"""
from __future__ import annotations

import netrc
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.errors import CxrError

USER_ENV, PASSWORD_ENV, URL_ENV = "CXR_PACS_USER", "CXR_PACS_PASSWORD", "CXR_PACS_URL"
TIMEOUT_S = 60
PAGE = 200                      # QIDO results per request
FIND_MODALITIES = ("CR", "DX")


class PacsError(CxrError, RuntimeError):
    """Talking to the PACS failed; the message says what to check."""


class PacsConfigError(PacsError, ValueError):
    """The PACS address or the credentials are missing or malformed (a usage error)."""


class PacsAuthError(PacsError):
    """The PACS refused the credentials."""


class PacsUnavailable(PacsError):
    """The PACS did not answer, or failed mid-request."""


@dataclass(frozen=True)
class StudyRef:
    """One study as QIDO-RS lists it: acquisition facts only, never a patient identifier."""
    study_uid: str
    date: str            # YYYYMMDD, '' when absent
    time: str
    modalities: tuple[str, ...]
    instances: int = 0   # NumberOfStudyRelatedInstances: a change means new images (or our SR)

    @property
    def short(self) -> str:
        return short_hash(self.study_uid)


def short_hash(uid: str) -> str:
    """12 hex digits of the SHA-256 of a UID: a name for a study that names no one."""
    import hashlib
    return hashlib.sha256(uid.encode()).hexdigest()[:12]


def check_url(url: str) -> str:
    """The DICOMweb root without a trailing slash; refuses what is not http(s) or carries credentials."""
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PacsConfigError("the PACS URL must look like http(s)://host:port/dicom-web (the DICOMweb root)")
    if parts.username or parts.password:
        raise PacsConfigError(f"the PACS URL must not carry credentials; set {USER_ENV} and {PASSWORD_ENV} instead")
    return url.rstrip("/")


def credentials(url: str, environ=None) -> tuple[str, str] | None:
    """(user, password) from $CXR_PACS_USER/$CXR_PACS_PASSWORD, else from ~/.netrc ($NETRC) for the
    URL's host, else None (an open server)."""
    env = os.environ if environ is None else environ
    user, password = env.get(USER_ENV) or "", env.get(PASSWORD_ENV) or ""
    if user or password:
        if not (user and password):
            raise PacsConfigError(f"set both {USER_ENV} and {PASSWORD_ENV} (or neither, to use ~/.netrc)")
        return user, password
    try:
        found = netrc.netrc(env.get("NETRC") or None).authenticators(urlsplit(url).hostname or "")
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return None
    if found and found[0] and found[2]:
        return found[0], found[2]
    return None


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def translate(exc: BaseException, url: str, what: str) -> PacsError:
    """An HTTP library's exception as one of ours, in one line that names no credential."""
    import requests
    if isinstance(exc, PacsError):
        return exc
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code in (401, 403):
            return PacsAuthError(f"the PACS at {url} refused the credentials (HTTP {code}) while trying to {what}; "
                                 f"check {USER_ENV} and {PASSWORD_ENV} (or ~/.netrc)")
        if code >= 500:
            return PacsUnavailable(f"the PACS at {url} failed (HTTP {code}) while trying to {what}")
        return PacsError(f"the PACS at {url} answered HTTP {code} while trying to {what}; "
                         "check that the URL is the DICOMweb root")
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return PacsUnavailable(f"cannot reach the PACS at {url} while trying to {what} "
                               "(connection refused, dropped or timed out)")
    return PacsError(f"the PACS at {url} gave an answer this tool cannot read while trying to {what} "
                     f"({type(exc).__name__}: {_one_line(exc)})")


class Pacs:
    """A DICOMweb server, spoken to through dicomweb-client over one ``requests.Session`` (keep-alive)."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None, *, timeout: float = TIMEOUT_S) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient
        self.url = check_url(url)
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False          # no proxy or netrc surprises: credentials are ours, or none
        self.session.auth = auth
        # identity: pixel data is compressed already (or raw 16-bit on a LAN); a gzip'd image cost Orthanc
        # ~85 ms of CPU per 2 MB and this side ~8 ms to inflate, for nothing (docs/pacs.md, Benchmark)
        self.session.headers["Accept-Encoding"] = "identity"
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.client = DICOMwebClient(self.url, session=self.session, timeout=timeout)
        self.client.set_http_retry_params(retry=False)

    def __repr__(self) -> str:  # never print the credentials
        return f"Pacs({self.url!r}, auth={'***' if self.session.auth else None})"

    def _do(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 — every failure leaves as one line of PacsError
            raise translate(exc, self.url, what) from None

    def _datasets(self, what: str, fn, *args, **kwargs) -> list:
        """A DICOM JSON answer as pydicom Datasets; what is not DICOM JSON is one line of PacsError."""
        import requests
        try:
            data = fn(*args, **kwargs)
        except requests.JSONDecodeError:
            data = None
        except Exception as exc:  # noqa: BLE001 — every failure leaves as one line of PacsError
            raise translate(exc, self.url, what) from None
        if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
            raise PacsError(f"the PACS at {self.url} did not answer in DICOM JSON while trying to {what}; "
                            "check that the URL is the DICOMweb root (e.g. http://host:8042/dicom-web)")
        return self._do(what, lambda: [_dataset(item) for item in data])

    # ---------------------------------------------------------------- QIDO-RS
    def check(self) -> None:
        """One cheap request: raises PacsAuthError / PacsUnavailable / PacsError when it fails."""
        self._datasets("list studies", self.client.search_for_studies, limit=1)

    def _studies(self, fields: list[str], since: str | None, study_uid: str | None = None) -> list:
        """The CR/DX studies QIDO-RS lists (every page); a study whose answer lacks ModalitiesInStudy counts."""
        filters = {**({"StudyDate": f"{since}-"} if since else {}),
                   **({"StudyInstanceUID": study_uid} if study_uid else {})}
        found = self._datasets("list studies", self.client.search_for_studies, fields=["ModalitiesInStudy", *fields],
                               search_filters=filters, limit=PAGE, get_remaining=True)
        return [ds for ds in found if ds.get("StudyInstanceUID")
                and (not _modalities(ds) or any(m in FIND_MODALITIES for m in _modalities(ds)))]

    def find_studies(self, *, since: str | None = None, study_uid: str | None = None) -> list[StudyRef]:
        """CR/DX studies, oldest first: all of them, those from ``since`` (YYYYMMDD) on, or one by UID."""
        found = self._studies(["StudyDate", "StudyTime", "NumberOfStudyRelatedInstances"], since, study_uid)
        out = [StudyRef(str(ds.StudyInstanceUID), str(ds.get("StudyDate") or ""), str(ds.get("StudyTime") or ""),
                        _modalities(ds), int(ds.get("NumberOfStudyRelatedInstances") or 0)) for ds in found]
        return sorted(out, key=lambda s: (s.date, s.time, s.study_uid))

    def accession_numbers(self, *, since: str | None = None) -> dict[str, str]:
        """Study UID -> AccessionNumber of the CR/DX studies (a site's reports are often keyed by it,
        core.pacs.site_source); kept on this side, never shown."""
        return {str(ds.StudyInstanceUID): str(ds.AccessionNumber).strip()
                for ds in self._studies(["AccessionNumber"], since) if ds.get("AccessionNumber")}

    def series(self, study_uid: str) -> list:
        """Each series of a study as a pydicom Dataset (SeriesInstanceUID, Modality, SeriesNumber)."""
        return self._datasets("list the series of a study", self.client.search_for_series, study_uid)

    # ---------------------------------------------------------------- WADO-RS
    def series_metadata(self, study_uid: str, series_uid: str) -> list:
        """The header of each instance of a series as a pydicom Dataset (no pixels)."""
        return self._datasets("read a series' headers", self.client.retrieve_series_metadata, study_uid, series_uid)

    def retrieve(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """The instance as a DICOM file, byte for byte as stored (transfer-syntax=*: no server transcoding)."""
        try:
            ds = self.client.retrieve_instance(study_uid, series_uid, sop_uid,
                                               media_types=(("application/dicom", "*"),))
        except IndexError:  # an empty multipart answer
            raise PacsError(f"the PACS at {self.url} sent no DICOM part for an image it listed") from None
        except Exception as exc:  # noqa: BLE001 — every failure leaves as one line of PacsError
            raise translate(exc, self.url, "fetch an image") from None
        # pydicom keeps the buffer it read: the file's own bytes, which the log hashes and the SR rests on
        return ds.buffer.getvalue()

    # ---------------------------------------------------------------- STOW-RS
    def store(self, dataset) -> None:
        """Store one dataset into its study (one STOW-RS request: stored whole, or not at all)."""
        result = self._do("store the report", self.client.store_instances, [dataset],
                          study_instance_uid=str(dataset.StudyInstanceUID))
        failed = result.get("FailedSOPSequence") if result is not None else None
        if failed:
            raise PacsError(f"the PACS at {self.url} refused to store the report")


def connect(url: str, *, environ=None, timeout: float = TIMEOUT_S) -> Pacs:
    """A Pacs at ``url`` with the environment's credentials (nothing is sent yet)."""
    url = check_url(url)
    return Pacs(url, credentials(url, environ), timeout=timeout)


def configured_url(environ=None) -> str | None:
    """The app's PACS: $CXR_PACS_URL, or None when no connection is configured."""
    env = os.environ if environ is None else environ
    return (env.get(URL_ENV) or "").strip() or None


# -------------------------------------------------------------------- DICOM JSON

def _without_bulk_data(item: dict) -> dict:
    """A DICOM JSON object less its BulkDataURI elements (the pixels: they come whole with retrieve())."""
    return {tag: {**m, "Value": [_without_bulk_data(i) for i in m["Value"]]} if m.get("vr") == "SQ" and m.get("Value")
            else m for tag, m in item.items() if "BulkDataURI" not in m}


def _dataset(item: dict):
    """One DICOM JSON object as a pydicom Dataset, without bulk data (pydicom would warn about each)."""
    from pydicom import Dataset
    return Dataset.from_json(_without_bulk_data(item))


def _modalities(ds) -> tuple[str, ...]:
    value = ds.get("ModalitiesInStudy") or ()
    return (str(value),) if isinstance(value, str) else tuple(str(m) for m in value)
