"""Training monitor: how the loaded (shipped) model was trained — its exported run log when the
weights carry one (core.training.run_log_export), else the summary its metadata keeps (phase times, final
validation AUCs)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from core.model.description import ModelDescription
from core.training.monitor_frames import auc_frame, steps_frame
from core.training.run_log_export import FILE, load
from ui.charts import lines_figure, loss_figure

PHASES = ("image", "frozen", "unfrozen")


def summary_tables(meta: ModelDescription) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(phase, minutes, samples/s) and (text mode, head, validation AUC per finding) from metadata."""
    timings = meta.timings or {}
    phases = pd.DataFrame([{"phase": p, "minutes": round(timings[f"{p}_s"] / 60, 1),
                            "samples / s": round(timings.get(f"{p}_samples_per_s") or 0, 1)}
                           for p in PHASES if timings.get(f"{p}_s") is not None])
    rows, findings = [], meta.findings  # the loaded weights' own
    for mode, heads in ((meta.val or {}).get("auc") or {}).items():
        for head, values in heads.items():
            rows.append({"text mode": mode, "head": head,
                         **{f: round(v, 3) for f, v in zip(findings, values, strict=False) if v == v}})
    return phases, pd.DataFrame(rows)


def render(meta: ModelDescription | None, weights: Path) -> None:
    st.subheader("The loaded model")
    if meta is None:
        return
    log = load(weights)
    if log:
        run = log.get("run") or {}
        st.caption(f"Run '{run.get('name', '?')}' started {str(run.get('started_at', '?'))[:16]}, "
                   f"status {run.get('status', '?')}; exported with the weights ({FILE}).")
        steps = steps_frame(log.get("steps") or [])
        a, b = st.columns(2)
        if not steps.empty:
            a.plotly_chart(loss_figure(steps), key="shipped_loss")
        aucs = auc_frame(log.get("epochs") or [], mode="none", head="image")
        if not aucs.empty:
            b.plotly_chart(lines_figure(aucs, x="epoch #", y="auc", colour="finding", y_range=[0, 1], whole_x=True,
                                        title="Validation AUC per finding (image only)", y_title="AUC"),
                           key="shipped_auc")
        return
    phases, val = summary_tables(meta)
    st.caption(f"Model {meta.version or '?'}: its per-epoch curves were not exported with the weights "
               f"(`scripts/export_runlog.py` writes `{FILE}` next to them). What its metadata keeps:")
    a, b = st.columns([1, 2])
    if not phases.empty:
        a.dataframe(phases, hide_index=True)
        total = (meta.timings or {}).get("wall_s")
        if total:
            a.caption(f"Wall time {total / 3600:.1f} h in all.")
    if not val.empty:
        b.dataframe(val, hide_index=True)
        b.caption("Validation AUC of the kept state, per text mode and head.")
