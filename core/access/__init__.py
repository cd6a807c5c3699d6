"""Who may open the app and what they may change: loopback or network, sign-in, the allow-lists.

``settings`` reads what a site configured (Streamlit's ``[auth]`` sign-in section and the tool's
``[cxr]`` allow-lists, as plain mappings, or ``$CXR_USERS`` / ``$CXR_REVIEWERS``); ``policy`` decides,
from the address the server listens on, those settings and the signed-in user's claims, whether a
session sees the app, a sign-in page, a refusal or the page that says the app is closed, and
whether the user may change verdicts and delete. Pure: imports nothing but ``core.errors`` (the
Streamlit side that reads ``st.user`` and ``st.secrets`` is ``ui.access``).
"""
