"""Who did what, as the history shows it: one entry's activity, the deletions, the audit export."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import CxrError
from core.store import PredictionStore, export_audit_csv

ACTIONS = {"verdict": "verdict", "note": "note", "delete": "deleted"}


def when(at: str | None) -> str:
    """'2025-03-02 14:05 UTC' from a stored ISO time ('' when there is none)."""
    return f"{at[:16].replace('T', ' ')} UTC" if at else ""


def frame(rows: list[dict], *, with_entry: bool) -> pd.DataFrame:
    """Audit rows as the table a reader sees: when, who, what (and which entry, for the whole log)."""
    out = [{"when (UTC)": r["at"][:19].replace("T", " "), "who": r["by_user"] or "(not recorded)",
            **({"entry": r["prediction_id"]} if with_entry else {}),
            "action": ACTIONS.get(r["action"], r["action"]), "finding": r["finding"], "change": r["detail"]}
           for r in rows]
    columns = ["when (UTC)", "who", *(["entry"] if with_entry else []), "action", "finding", "change"]
    return pd.DataFrame(out, columns=columns)


def activity(db: PredictionStore, pid: int) -> None:
    """Every recorded change of one entry, oldest first."""
    rows = db.activity(pid)
    with st.expander(f"Who did what ({len(rows)} change{'s' if len(rows) != 1 else ''})", expanded=bool(rows)):
        if not rows:
            st.caption("No verdict or note has been recorded for this entry yet.")
            return
        st.dataframe(frame(rows, with_entry=False), hide_index=True, key=f"activity_{pid}")


def log_section(db: PredictionStore) -> None:
    """The deletions (their entries are gone; who deleted them and when stays) and the audit export."""
    try:
        gone = db.deletions(limit=200)
    except CxrError as exc:
        st.error(str(exc))
        return
    with st.expander(f"Deleted entries ({len(gone)}{'+' if len(gone) == 200 else ''})"):
        if gone:
            st.dataframe(frame(gone, with_entry=True), hide_index=True, key="hist_deletions")
        else:
            st.caption("No entry has been deleted.")
    st.download_button("Export who did what (CSV: every verdict, note and deletion)",
                       lambda: export_audit_csv(db.audit_log(limit=None)), file_name="audit.csv", mime="text/csv",
                       key="hist_audit_export", icon=":material/download:", on_click="ignore")
