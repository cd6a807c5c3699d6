"""What a site configured about access, read from Streamlit's secrets (a plain mapping here).

    [auth]                              # Streamlit's own sign-in (st.login, OpenID Connect via Authlib)
    redirect_uri = "https://cxr.site.org/oauth2callback"
    cookie_secret = "<64 random hex digits>"
    client_id = "..."
    client_secret = "..."
    server_metadata_url = "https://idp.site.org/.well-known/openid-configuration"

    [cxr]
    users = ["@site.org"]               # who may sign in and use the app (absent: anyone the provider signs in)
    reviewers = ["alice@site.org"]      # who may change verdicts and notes, and delete

``$CXR_USERS`` / ``$CXR_REVIEWERS`` (comma-separated), when set, replace the lists. An entry is an
e-mail address or ``@domain`` (everyone at that domain); matching ignores case.
"""
from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from core.errors import CxrError

SIGNIN_KEYS = ("redirect_uri", "cookie_secret", "client_id", "client_secret", "server_metadata_url")
USERS_ENV = "CXR_USERS"
REVIEWERS_ENV = "CXR_REVIEWERS"
MIN_COOKIE_SECRET = 32  # characters; `python -c "import secrets; print(secrets.token_hex(32))"` gives 64
SECRET_COMMAND = 'python -c "import secrets; print(secrets.token_hex(32))"'


class AccessConfigError(CxrError, ValueError):
    """A secrets file cannot be read as TOML."""


@dataclass(frozen=True)
class Settings:
    """``signin``: [auth] has everything st.login needs. ``users``: who may use the app once signed in
    (None: anyone the provider signs in). ``problem``: one sentence when the configuration cannot be
    used (then the app serves no data, whatever the address)."""
    signin: bool = False
    redirect_uri: str | None = None
    users: tuple[str, ...] | None = None
    reviewers: tuple[str, ...] = ()
    problem: str | None = None


def _entries(name: str, value) -> tuple[tuple[str, ...], str | None]:
    """A list of e-mail addresses or @domains, lower case; or the sentence saying what is wrong."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)):
        return (), f"{name} must be a list of e-mail addresses or @domains, like [\"alice@site.org\", \"@site.org\"]"
    out = []
    for item in value:
        entry = str(item).strip().lower()
        if not entry:
            continue
        _, at, domain = entry.rpartition("@")
        if not at or not domain or "." not in domain or any(c.isspace() for c in entry):
            return (), (f"{name} entry {str(item)!r} is not an e-mail address or @domain "
                        "(like alice@site.org or @site.org)")
        out.append(entry)
    return tuple(out), None


def _signin(auth: Mapping) -> tuple[bool, str | None, str | None]:
    """(configured, redirect_uri, problem) from the [auth] section."""
    if not auth:
        return False, None, None
    missing = [k for k in SIGNIN_KEYS if not str(auth.get(k) or "").strip()]
    if missing:
        return False, None, (f"sign-in is configured in [auth] but lacks {', '.join(missing)}; add them to "
                             ".streamlit/secrets.toml (docs/access.md) and restart")
    redirect = str(auth["redirect_uri"]).strip()
    parsed = urlparse(redirect)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or not parsed.path.endswith("/oauth2callback"):
        return False, None, (f"[auth] redirect_uri {redirect!r} must be the app's own address ending in "
                             "/oauth2callback, like http://localhost:8501/oauth2callback")
    if len(str(auth["cookie_secret"])) < MIN_COOKIE_SECRET:
        return False, None, (f"[auth] cookie_secret is shorter than {MIN_COOKIE_SECRET} characters; make a new one "
                             f"with {SECRET_COMMAND}")
    return True, redirect, None


def settings_from(secrets: Mapping, environ: Mapping[str, str] | None = None) -> Settings:
    """The access settings from Streamlit's secrets (``[auth]``, ``[cxr]``) and the environment."""
    env = os.environ if environ is None else environ
    auth = secrets.get("auth") or {}
    cxr = secrets.get("cxr") or {}
    if not isinstance(auth, Mapping) or not isinstance(cxr, Mapping):
        return Settings(problem="[auth] and [cxr] in .streamlit/secrets.toml must be tables (sections)")
    signin, redirect, problem = _signin(auth)
    users = reviewers = None
    for name, key, environ_name in (("users", "users", USERS_ENV), ("reviewers", "reviewers", REVIEWERS_ENV)):
        raw = env.get(environ_name)
        source = f"${environ_name}" if raw is not None and raw.strip() else f"[cxr] {key}"
        value = raw if raw is not None and raw.strip() else cxr.get(key)
        if value is None:
            continue
        entries, wrong = _entries(source, value)
        problem = problem or wrong
        if name == "users":
            users = entries
        else:
            reviewers = entries
    return Settings(signin=signin, redirect_uri=redirect, users=users, reviewers=reviewers or (), problem=problem)


def secret_files(repo: Path) -> list[Path]:
    """Where ``streamlit run app.py`` (run from ``repo``) reads secrets by default, the later winning."""
    return [Path.home() / ".streamlit" / "secrets.toml", Path(repo) / ".streamlit" / "secrets.toml"]


def read_secrets(paths: Iterable[Path]) -> dict:
    """The secrets files merged as Streamlit merges them (top-level keys of later files win); a file
    that is absent is skipped, one that is not TOML raises ``AccessConfigError``."""
    merged: dict = {}
    for path in paths:
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise AccessConfigError(f"cannot read {path}: {exc.strerror}") from None
        try:
            merged.update(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise AccessConfigError(f"{path} is not valid TOML ({exc})") from None
    return merged
