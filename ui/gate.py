"""The pages a session sees instead of the app: closed (a network address without sign-in), sign in,
and refused (signed in, not on the list). Nothing here reads the log or the model."""
from __future__ import annotations

import streamlit as st

from core.access.policy import Access, State
from core.access.settings import REVIEWERS_ENV, SECRET_COMMAND, USERS_ENV
from ui.config import SHARE_COMMAND
from ui.notices import INTENDED_USE

SECRETS_EXAMPLE = """[auth]
redirect_uri = "https://cxr.your-site.org/oauth2callback"   # this app's address + /oauth2callback
cookie_secret = "..."                                        # 64 random hex digits (see below)
client_id = "..."                                            # from your identity provider
client_secret = "..."
server_metadata_url = "https://idp.your-site.org/.well-known/openid-configuration"

[cxr]
users = ["@your-site.org"]            # who may use the app (leave out: anyone the provider signs in)
reviewers = ["alice@your-site.org"]   # who may change verdicts and notes, and delete"""

TITLES = {State.CLOSED: "Closed: sign-in is not configured", State.SIGN_IN: "Sign in",
          State.REFUSED: "Not allowed"}
MISCONFIGURED = "Closed: the sign-in settings cannot be used"


def title(access: Access) -> str:
    return MISCONFIGURED if access.misconfigured else TITLES[access.state]


def _head(title: str) -> None:
    st.title("CXR findings — research tool")
    st.caption(INTENDED_USE)
    st.header(title)


def closed(access: Access) -> None:
    """A network address without sign-in (or a sign-in configuration that cannot be used): no data."""
    _head(title(access))
    st.error(f"This app shows no data: {access.reason}.", icon=":material/lock:")
    st.markdown("Anyone who can reach this address could otherwise read the prediction log, change verdicts "
                "and delete entries. Either **configure sign-in** with your site's identity provider (OpenID "
                "Connect) in `.streamlit/secrets.toml`, then restart the app:")
    st.code(SECRETS_EXAMPLE, language="toml")
    st.caption(f"Make the cookie secret with `{SECRET_COMMAND}`. Register the redirect URI with the provider. "
               f"`{USERS_ENV}` / `{REVIEWERS_ENV}` (comma-separated) replace the lists. Step by step: "
               "docs/access.md.")
    st.markdown("Or **keep it on this machine**: `streamlit run app.py` listens on 127.0.0.1 only (the "
                "project's `.streamlit/config.toml`), and to let someone else in, share it over a "
                "password-protected tunnel:")
    st.code(SHARE_COMMAND, language="bash")


def sign_in() -> None:
    """Sign-in is configured and nobody is signed in: the only thing on the page is the way in."""
    _head(TITLES[State.SIGN_IN])
    st.markdown("This app keeps a log of predictions and reviews: sign in with your site's account to use it.")
    if st.button("Sign in", type="primary", icon=":material/login:", key="gate_sign_in"):
        st.login()


def refused(access: Access) -> None:
    """Signed in, but not on the list of users: who they are, how to get in, and the way out."""
    _head(TITLES[State.REFUSED])
    st.error(f"You are signed in as `{access.user or access.name}`, but you may not use this app: {access.reason}.",
             icon=":material/block:")
    domain = "@" + access.user.rpartition("@")[2] if "@" in access.user else "@your-site.org"
    st.markdown(f"Ask the person who runs it to add your address (or your whole domain, `{domain}`) to "
                f"`[cxr] users` in `.streamlit/secrets.toml` (or `{USERS_ENV}`); then sign in again.")
    if st.button("Sign out", icon=":material/logout:", key="gate_sign_out"):
        st.logout()


def render(access: Access) -> None:
    """The one page a session that may not see the app gets."""
    {State.CLOSED: lambda: closed(access), State.SIGN_IN: sign_in,
     State.REFUSED: lambda: refused(access)}[access.state]()
