"""Keep every page behind app.py's router.

Until some session has run app.py (whose st.navigation switches the process to the new
multipage mode), Streamlit 1.67 runs a pages/*.py file *directly* in the old pages-folder
mode when a session opens that page's URL first — no sidebar, no wide layout. A page that
finds the router has not run yet in this process goes through app.py, which sends it back.
A page opened by a session that may not see the app goes to app.py and stays there (its gate).
"""
from __future__ import annotations

import streamlit as st

from ui import access

_PENDING = "_route_after_router"
_routed = False  # process-wide, like the multipage mode it mirrors


def mark_routed() -> None:
    """Called by app.py right after st.navigation; then resumes a page that asked for it."""
    global _routed
    _routed = True
    target = st.session_state.pop(_PENDING, None)
    if target:
        st.switch_page(target)


def require_router(page: str) -> None:
    """Called first thing by each page with its path relative to app.py ('pages/x.py'). A session that
    may not see the app (core.access.policy) goes to app.py too, which shows it the one page it gets."""
    if not _routed or not access.current().allowed:
        st.session_state[_PENDING] = page
        st.switch_page("app.py")
