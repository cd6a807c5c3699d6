"""This session's access (core.access.policy) from what Streamlit knows: the address the server
listens on (``server.address``), the secrets (``[auth]`` sign-in, ``[cxr]`` allow-lists) and ``st.user``."""
from __future__ import annotations

import streamlit as st
from streamlit import config

from core.access.policy import Access, State, decide
from core.access.settings import Settings, settings_from


def _secrets() -> dict:
    """Streamlit's secrets as a plain dict; {} when there is no secrets file (or it cannot be parsed:
    Streamlit logs why, and the policy then treats sign-in as not configured)."""
    try:
        return st.secrets.to_dict() if st.secrets.load_if_toml_exists() else {}
    except Exception:  # noqa: BLE001 — a broken secrets file must not show a traceback instead of the gate
        return {}


def settings() -> Settings:
    return settings_from(_secrets())


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
