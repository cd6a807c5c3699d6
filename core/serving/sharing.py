"""Share the running app over an ngrok tunnel (pyngrok), behind HTTP basic auth, or, when the app has
sign-in configured ([auth] in .streamlit/secrets.toml, core.access.settings), behind that sign-in.

``scripts/share.py`` is the entry point; this module holds what it needs and what the app's
sidebar reads: ``resolve_config`` checks the token and credentials before anything starts,
``open_tunnel`` opens the tunnel, and ``write_status``/``share_status`` pass the public URL to
the app through a small JSON file (``$CXR_SHARE_STATUS``, else ``<repo>/var/share.json``).
The password is never written to that file.

How the credentials reach ngrok (checked against pyngrok 9.1's source): with config version
"3", pyngrok's default, ``connect`` opens a v3 endpoint, whose authentication is a traffic
policy, so we pass a ``basic-auth`` action; with config version "2" (a tunnel) we pass
``auth="user:password"``, which pyngrok turns into the agent's ``basic_auth`` option.

With sign-in, the identity provider sends users back to the ``redirect_uri`` it was registered with,
so the tunnel must be at that address: a reserved ngrok domain, passed as ``url`` (config version "3")
or ``domain`` ("2"). The tunnel then needs no password; a redirect URI on localhost cannot be shared.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from core.access.policy import is_loopback
from core.errors import CxrError

REPO = Path(__file__).resolve().parents[2]
TOKEN_ENV = "NGROK_AUTHTOKEN"
AUTH_ENV = "CXR_SHARE_AUTH"
PACS_URL_ENV = "CXR_PACS_URL"  # the app's PACS connection (core.pacs.connection.URL_ENV)


class ShareError(CxrError, RuntimeError):
    """Sharing failed."""


class ShareConfigError(ShareError):
    """The token or the credentials are missing or malformed (a usage error)."""


class TunnelError(ShareError):
    """The tunnel could not be opened (no network, no ngrok agent, ngrok refused); the app still runs locally."""


@dataclass(frozen=True)
class ShareConfig:
    port: int
    token: str
    auth: str | None  # "user:password"; None with sign-in, or with allow_no_auth
    signin: str | None = None  # with sign-in: the origin users are sent back to (https://<domain>)
    dropped_auth: bool = False  # a password was given but sign-in is used instead

    @property
    def domain(self) -> str | None:
        """The tunnel's reserved domain (sign-in only: its redirect URI's host)."""
        return urlparse(self.signin).hostname if self.signin else None

    def __repr__(self) -> str:  # never print secrets by accident
        return (f"ShareConfig(port={self.port}, token='***', auth={'***' if self.auth else None}, "
                f"signin={self.signin!r})")


def parse_auth(value: str) -> tuple[str, str]:
    """``user:password`` -> (user, password), within ngrok's basic-auth rules."""
    user, sep, password = value.partition(":")
    if not sep or not user.strip() or not password:
        raise ShareConfigError("credentials must look like user:password")
    if not 8 <= len(password) <= 128:
        raise ShareConfigError("the password must be 8 to 128 characters long (ngrok's rule for basic auth)")
    if ":" in password:
        raise ShareConfigError("the password must not contain a colon (ngrok reads user:password)")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ShareConfigError("credentials must not contain spaces or control characters")
    return user, password


def signin_origin(redirect_uri: str) -> str:
    """The public origin a tunnel must have for sign-in to come back to it, from the app's redirect URI."""
    parsed = urlparse(redirect_uri)
    host = parsed.hostname or ""
    if host == "localhost" or is_loopback(host):
        raise ShareConfigError(f"sign-in is configured with redirect_uri {redirect_uri}, which sends users back to "
                               "their own machine: reserve an ngrok domain, set redirect_uri = "
                               "\"https://<your-domain>/oauth2callback\" in .streamlit/secrets.toml, register it with "
                               "your identity provider, and share again (docs/access.md)")
    if parsed.scheme != "https" or parsed.port not in (None, 443):
        raise ShareConfigError(f"sign-in's redirect_uri {redirect_uri} must be "
                               "https://<your ngrok domain>/oauth2callback to be served by a tunnel")
    return f"https://{host}"


def resolve_config(*, port: int, auth: str | None = None, allow_no_auth: bool = False, allow_pacs: bool = False,
                   environ: dict[str, str] | None = None, signin_redirect: str | None = None) -> ShareConfig:
    """Check everything a tunnel needs before anything starts; ``auth`` falls back to $CXR_SHARE_AUTH.
    An app with a PACS connection ($CXR_PACS_URL) is shared only with ``allow_pacs``. ``signin_redirect``:
    the app's sign-in redirect URI when sign-in is configured; the tunnel then uses sign-in, not a password."""
    env = os.environ if environ is None else environ
    if (env.get(PACS_URL_ENV) or "").strip() and not allow_pacs:
        raise ShareConfigError(f"this app has a PACS connection ({PACS_URL_ENV} is set): anyone who gets through the "
                               "tunnel could list that PACS's studies, fetch their images and write reports into it; "
                               f"unset {PACS_URL_ENV}, or pass --allow-pacs to share it anyway")
    if not 1 <= int(port) <= 65535:
        raise ShareConfigError(f"port {port} is not between 1 and 65535")
    token = (env.get(TOKEN_ENV) or "").strip()
    if not token:
        raise ShareConfigError(f"set {TOKEN_ENV} to your ngrok authtoken (https://dashboard.ngrok.com)")
    auth = auth if auth is not None else (env.get(AUTH_ENV) or None)
    if signin_redirect:
        return ShareConfig(port=int(port), token=token, auth=None, signin=signin_origin(signin_redirect),
                           dropped_auth=auth is not None)
    if auth is None and not allow_no_auth:
        raise ShareConfigError(f"refusing to share without a password: pass --auth user:password or set {AUTH_ENV} "
                               "(or --allow-no-auth to share openly)")
    if auth is not None:
        parse_auth(auth)
    return ShareConfig(port=int(port), token=token, auth=auth)


def tunnel_options(auth: str | None, *, config_version: str, domain: str | None = None) -> dict[str, Any]:
    """The ``ngrok.connect`` keyword options that put basic auth in front of the tunnel, or (sign-in) that
    open it at the reserved ``domain`` the identity provider sends users back to."""
    if domain is not None:
        return {"url": f"https://{domain}"} if str(config_version) == "3" else {"domain": domain}
    if auth is None:
        return {}
    if str(config_version) == "3":
        policy = {"on_http_request": [{"actions": [{"type": "basic-auth", "config": {"credentials": [auth]}}]}]}
        return {"traffic_policy": policy}
    return {"auth": auth}


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def open_tunnel(config: ShareConfig, *, ngrok=None, conf=None) -> str:
    """Open an http tunnel to localhost:port and return its public URL (``ngrok``/``conf`` for tests)."""
    from pyngrok import exception  # imported here so the app imports this module without pyngrok's cost
    if ngrok is None or conf is None:
        from pyngrok import conf as pyngrok_conf
        from pyngrok import ngrok as pyngrok_ngrok
        ngrok, conf = ngrok or pyngrok_ngrok, conf or pyngrok_conf
    pyngrok_config = conf.get_default()
    pyngrok_config.auth_token = config.token
    options = tunnel_options(config.auth, config_version=getattr(pyngrok_config, "config_version", "3"),
                             domain=config.domain)
    local = f"the app stays reachable only at http://localhost:{config.port}"
    try:
        tunnel = ngrok.connect(str(config.port), "http", pyngrok_config=pyngrok_config, **options)
    except exception.PyngrokNgrokInstallError as exc:
        raise TunnelError(f"cannot install the ngrok agent ({_one_line(exc)}); check your connection "
                          f"or set PYNGROK_NGROK_PATH to an ngrok binary — {local}") from exc
    except exception.PyngrokError as exc:
        raise TunnelError(f"cannot open an ngrok tunnel ({_one_line(exc)}); "
                          f"check your connection and {TOKEN_ENV} — {local}") from exc
    except OSError as exc:  # urllib/socket errors that slip past pyngrok
        raise TunnelError(f"cannot reach ngrok ({_one_line(exc)}); {local}") from exc
    url = getattr(tunnel, "public_url", None)
    if not url:
        raise TunnelError(f"ngrok opened a tunnel without a public URL; {local}")
    if config.signin and url.rstrip("/") != config.signin:
        raise TunnelError(f"ngrok opened {url}, but sign-in sends users back to {config.signin}; reserve that domain "
                          f"in your ngrok account — {local}")
    return url


def close_tunnels(*, ngrok=None) -> None:
    """Stop the ngrok agent this process started (quietly: it may never have started)."""
    try:
        if ngrok is None:
            from pyngrok import ngrok
        ngrok.kill()
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass


# -- status file read by the app's sidebar ---------------------------------------------------

def status_path() -> Path:
    env = os.environ.get("CXR_SHARE_STATUS")
    return Path(env).expanduser() if env else REPO / "var" / "share.json"


def write_status(*, url: str | None, port: int, auth: bool, error: str | None = None,
                 path: Path | None = None, pid: int | None = None, signin: bool = False) -> Path:
    """Record what is being shared; written atomically so the app never reads half a file."""
    path = Path(path) if path is not None else status_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"url": url, "port": port, "auth": bool(auth), "signin": bool(signin), "error": error,
            "pid": pid or os.getpid(),
            "started": datetime.now(UTC).isoformat(timespec="seconds")}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".share-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)
    return path


def clear_status(*, path: Path | None = None) -> None:
    Path(path if path is not None else status_path()).unlink(missing_ok=True)


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def share_status(*, path: Path | None = None) -> dict[str, Any]:
    """For the sidebar: ``shared`` (a live public URL exists), ``url``, ``auth``, ``signin``, ``started``, ``error``.
    A status left by a share script that is no longer running counts as not shared."""
    path = Path(path) if path is not None else status_path()
    off = {"shared": False, "url": None, "auth": False, "started": None, "error": None}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return off
    if not isinstance(data, dict) or not _alive(data.get("pid")):
        return off
    return {**off, **{k: data.get(k) for k in ("url", "auth", "signin", "started", "error", "port")},
            "shared": bool(data.get("url"))}
