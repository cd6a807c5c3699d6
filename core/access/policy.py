"""Who a session is and what it may do, decided from where the server listens, the site's settings
(core.access.settings) and the signed-in user's claims (Streamlit's ``st.user``, as a mapping).

    loopback, no sign-in configured      -> LOCAL: the one local user, "local", a reviewer
    network, no sign-in configured       -> CLOSED: a page saying how to configure sign-in, no data
    a configuration that cannot be used  -> CLOSED, with the problem (any address: fail closed)
    sign-in configured, not signed in    -> SIGN_IN: the sign-in page only (any address)
    signed in, not on [cxr] users        -> REFUSED: who they are, how to be added, sign out
    signed in and allowed                -> SIGNED_IN: reads and predicts; reviews and deletes if a reviewer
"""
from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from core.access.settings import Settings

LOCAL_USER = "local"


class State(enum.Enum):
    LOCAL = "local"
    CLOSED = "closed"
    SIGN_IN = "sign in"
    REFUSED = "refused"
    SIGNED_IN = "signed in"


@dataclass(frozen=True)
class Access:
    """``user``: the name the log records for this session's changes ("local" on loopback, the
    signed-in e-mail otherwise, "" when nobody is in). ``reason``: one sentence for the gate pages."""
    state: State
    user: str = ""
    name: str = ""
    reviewer: bool = False
    reason: str = ""
    address: str | None = None
    misconfigured: bool = False  # CLOSED because the site's access settings cannot be used

    @property
    def allowed(self) -> bool:
        """The session may see the app (pages, model, log)."""
        return self.state in (State.LOCAL, State.SIGNED_IN)

    @property
    def signed_in(self) -> bool:
        return self.state in (State.SIGNED_IN, State.REFUSED)


def is_loopback(address: str | None) -> bool:
    """Whether the server listens on loopback only. Unset (Streamlit then listens on every interface),
    0.0.0.0, :: and any other address are a network."""
    value = (address or "").strip().strip("[]")
    if value.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(value).is_loopback
    except ValueError:
        return False  # unset, or a host name: it may resolve to anything


def listens_on(address: str | None) -> str:
    """The address in words, for the closed page."""
    value = (address or "").strip()
    if not value:
        return "every network interface (server.address is not set)"
    return f"{value} (every network interface)" if value in ("0.0.0.0", "::", "[::]") else value


def on_list(email: str | None, entries) -> bool:
    """``email`` is one of ``entries`` (e-mail addresses, or @domains for everyone there); case ignored."""
    email = (email or "").strip().lower()
    if "@" not in email or not entries:
        return False
    domain = "@" + email.rpartition("@")[2]
    return any(entry == email or entry == domain for entry in entries)


def _trusted_email(claims: Mapping) -> str:
    """The e-mail claim, lower case; "" when absent or when the provider says it is not verified."""
    if claims.get("email_verified") is False:
        return ""
    return str(claims.get("email") or "").strip().lower()


def decide(*, address: str | None, settings: Settings, claims: Mapping | None) -> Access:
    """The session's access (see the module docstring)."""
    claims = claims or {}
    if settings.problem:
        return Access(State.CLOSED, reason=settings.problem, address=address, misconfigured=True)
    if not settings.signin:
        if is_loopback(address):
            return Access(State.LOCAL, user=LOCAL_USER, name="local user", reviewer=True, address=address)
        return Access(State.CLOSED, address=address,
                      reason=f"it listens on {listens_on(address)} and no sign-in is configured")
    if claims.get("is_logged_in") is not True:
        return Access(State.SIGN_IN, address=address)
    email = _trusted_email(claims)
    user = email or str(claims.get("sub") or "").strip()
    name = str(claims.get("name") or user or "signed-in user")
    reviewer = on_list(email, settings.reviewers)
    if settings.users is not None and not (reviewer or on_list(email, settings.users)):
        why = ("your identity provider sent no verified e-mail address" if not email
               else "this address is not on the app's list of users")
        return Access(State.REFUSED, user=user, name=name, reason=why, address=address)
    if not user:
        return Access(State.REFUSED, name=name, reason="your identity provider sent neither an e-mail address nor "
                      "a subject identifier, so nothing could record who you are", address=address)
    return Access(State.SIGNED_IN, user=user, name=name, reviewer=reviewer, address=address)
