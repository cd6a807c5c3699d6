"""Batch review: score many studies at once, and review the whole prediction log."""
import streamlit as st

from core.store import StoreError
from ui import access, batch_score, history_view, notices, router
from ui.resources import metadata, store

router.require_router("pages/batch_review.py")

st.title("Batch review")
st.caption(notices.INTENDED_USE)

meta, problem = metadata()
if meta is None:
    notices.no_weights(problem)
try:
    db = store()
except StoreError as exc:
    st.error(str(exc))
    st.stop()

# lazy tabs: only the open tab runs, so scoring never waits on the history's table and charts
score_tab, history_tab = st.tabs(["Score studies", "History and review"], key="batch_tab", on_change="rerun")
if score_tab.open:
    with score_tab:
        batch_score.render(model_ready=meta is not None)
        st.caption(notices.stored(bool(st.session_state.get("batch_keep_names"))))
if history_tab.open:
    with history_tab:
        history_view.render(db, model_ready=meta is not None, who=access.current())
