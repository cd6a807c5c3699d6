"""The DICOMweb connection: QIDO-RS to find, WADO-RS to fetch, STOW-RS to store (dicomweb-client).

    pacs = connect(url)                       # credentials: $CXR_PACS_USER/$CXR_PACS_PASSWORD, else ~/.netrc
    pacs.find_studies(since="20261201")       # [StudyRef], CR/DX studies only
    pacs.series_metadata(study_uid, series_uid)  # DICOM JSON of each instance (no pixels)
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
    """A DICOMweb server; one ``requests.Session`` (keep-alive) shared by the calls."""

    def __init__(self, url: str, auth: tuple[str, str] | None = None, *, timeout: float = TIMEOUT_S) -> None:
        import requests
        from dicomweb_client.api import DICOMwebClient
        self.url = check_url(url)
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False          # no proxy or netrc surprises: credentials are ours, or none
        self.session.auth = auth
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.client = DICOMwebClient(self.url, session=self.session)
        self.client.set_http_retry_params(retry=False)

    def __repr__(self) -> str:  # never print the credentials
        return f"Pacs({self.url!r}, auth={'***' if self.session.auth else None})"

    def _do(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 — every failure leaves as one line of PacsError
            raise translate(exc, self.url, what) from None

    def _get(self, path: str, what: str, params=None, accept: str = "application/dicom+json",
             encoding: str | None = None):
        import requests
        headers = {"Accept": accept, **({"Accept-Encoding": encoding} if encoding else {})}

        def call():
            r = self.session.get(f"{self.url}/{path}", params=params, headers=headers, timeout=self.timeout)
            r.raise_for_status()
            return r
        try:
            return call()
        except requests.RequestException as exc:
            raise translate(exc, self.url, what) from None

    def _json(self, path: str, what: str, params=None) -> list[dict]:
        """A DICOM JSON answer (a list of objects); anything else is one line of PacsError."""
        r = self._get(path, what, params=params)
        if not r.content:
            return []
        try:
            data = r.json()
        except ValueError:
            data = None
        if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
            raise PacsError(f"the PACS at {self.url} did not answer in DICOM JSON while trying to {what}; "
                            "check that the URL is the DICOMweb root (e.g. http://host:8042/dicom-web)")
        return data

    # ---------------------------------------------------------------- QIDO-RS
    def check(self) -> None:
        """One cheap request: raises PacsAuthError / PacsUnavailable / PacsError when it fails."""
        self._json("studies", "list studies", params={"limit": 1})

    def find_studies(self, *, since: str | None = None, study_uid: str | None = None) -> list[StudyRef]:
        """CR/DX studies, oldest first: all of them, those from ``since`` (YYYYMMDD) on, or one by UID."""
        params = {"includefield": ["00080061", "00080020", "00080030", "00201208"]}
        if since:
            params["StudyDate"] = f"{since}-"
        if study_uid:
            params["StudyInstanceUID"] = study_uid
        found, offset = [], 0
        while True:
            page = self._json("studies", "list studies", params={**params, "limit": PAGE, "offset": offset})
            found += page
            if len(page) < PAGE:
                break
            offset += PAGE
        out = []
        for item in found:
            mods = tuple(str(m) for m in _values(item, "00080061"))
            uid = _first(item, "0020000D")
            if uid and (not mods or any(m in FIND_MODALITIES for m in mods)):
                out.append(StudyRef(uid, _first(item, "00080020") or "", _first(item, "00080030") or "", mods,
                                    int(_first(item, "00201208") or 0)))
        return sorted(out, key=lambda s: (s.date, s.time, s.study_uid))

    def accession_numbers(self, *, since: str | None = None) -> dict[str, str]:
        """Study UID -> AccessionNumber of the CR/DX studies (a site's reports are often keyed by it,
        core.pacs.site_source); kept on this side, never shown."""
        params = {"includefield": ["00080050", "00080061"]}
        if since:
            params["StudyDate"] = f"{since}-"
        out, offset = {}, 0
        while True:
            page = self._json("studies", "list studies", params={**params, "limit": PAGE, "offset": offset})
            for item in page:
                mods = tuple(str(m) for m in _values(item, "00080061"))
                uid, acc = _first(item, "0020000D"), _first(item, "00080050")
                if uid and acc and (not mods or any(m in FIND_MODALITIES for m in mods)):
                    out[str(uid)] = str(acc).strip()
            if len(page) < PAGE:
                return out
            offset += PAGE

    def series(self, study_uid: str) -> list[dict]:
        """DICOM JSON of each series of a study (UID, modality, number)."""
        return self._json(f"studies/{study_uid}/series", "list the series of a study")

    # ---------------------------------------------------------------- WADO-RS
    def series_metadata(self, study_uid: str, series_uid: str) -> list[dict]:
        return self._json(f"studies/{study_uid}/series/{series_uid}/metadata", "read a series' headers")

    def retrieve(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes:
        """The instance as a DICOM file, in the transfer syntax it is stored in (no server transcoding)."""
        # identity: pixel data is compressed already (or raw 16-bit on a LAN); a gzip'd answer cost Orthanc
        # ~85 ms of CPU per 2 MB image and this side ~8 ms to inflate, for nothing
        r = self._get(f"studies/{study_uid}/series/{series_uid}/instances/{sop_uid}", "fetch an image",
                      accept='multipart/related; type="application/dicom"; transfer-syntax=*',
                      encoding="identity")
        parts = _multipart(r.content, r.headers.get("content-type", ""))
        if not parts:
            raise PacsError(f"the PACS at {self.url} sent no DICOM part for an image it listed")
        return parts[0]

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


# -------------------------------------------------------------------- DICOM JSON / multipart

def _values(item: dict, tag: str) -> list:
    return list((item.get(tag) or {}).get("Value") or [])


def _first(item: dict, tag: str):
    values = _values(item, tag)
    return values[0] if values else None


def _multipart(body: bytes, content_type: str) -> list[bytes]:
    """The parts of a multipart/related body (WADO-RS answers one part per instance)."""
    boundary = None
    for piece in content_type.split(";"):
        key, _, value = piece.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not boundary:
        return [body] if body[128:132] == b"DICM" else []
    delim = b"--" + boundary.encode()
    parts = []
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if sep:
            parts.append(payload[:-2] if payload.endswith(b"\r\n") else payload)
    return parts
