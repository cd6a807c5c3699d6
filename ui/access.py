"""This session's access (core.access.policy) from what Streamlit knows: the address the server
listens on (``server.address``), the secrets (``[auth]`` sign-in, ``[cxr]`` allow-lists) and ``st.user``."""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import streamlit as st
from streamlit import config

from core.access.policy import Access, State, decide
from core.access.settings import AccessConfigError, Settings, read_secrets, settings_from


def _read() -> Settings:
    try:
        if st.secrets.load_if_toml_exists():
            return settings_from(st.secrets.to_dict())
    except Exception:  # noqa: BLE001 — whatever Streamlit raises, the file is read again below
        pass
    files = [Path(p) for p in config.get_option("secrets.files") if Path(p).is_file()]
    try:
        return settings_from(read_secrets(files))  # none: {}, sign-in not configured
    except AccessConfigError as exc:
        return Settings(problem=f"{exc}; fix it and restart the app")


def settings() -> Settings:
    """The access settings from Streamlit's secrets. A secrets file Streamlit cannot load (not TOML), or
    sign-in configured without the packages st.login needs, closes the app with the reason in one line."""
    found = _read()
    missing = [name for name in ("authlib", "httpx") if importlib.util.find_spec(name) is None]
    if found.signin and missing:
        return dataclasses.replace(found, signin=False, problem=f"sign-in needs {' and '.join(missing)}, which "
                                   "are not installed; run pip install -r requirements.txt and restart the app")
    return found


def address() -> str | None:
    return config.get_option("server.address")  # looked up on the module at call time (tests patch it)


def current() -> Access:
    """Who this session is and what it may do (cheap: decided on every run, never cached across sessions)."""
    try:
        claims = st.user.to_dict()
    except Exception:  # noqa: BLE001 — no user information in this context: nobody signed in
        claims = {}
    return decide(address=address(), settings=settings(), claims=claims)


def serves_data() -> bool:
    """Whether this server shows anything but the closed page (checked at start: no model load otherwise)."""
    return decide(address=address(), settings=settings(), claims=None).state is not State.CLOSED
