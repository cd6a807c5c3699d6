"""Training monitor: follows scripts/train.py through its SQLite run log ($CXR_RUNLOG)."""
import pandas as pd
import streamlit as st

from core.data.labels import HEADS, TEXT_MODES
from core.training.monitor_frames import (
    as_float,
    auc_frame,
    eta_text,
    lrs_frame,
    macro_frame,
    process_alive,
    run_label,
    steps_frame,
)
from core.training.run_log import RunLogError, read_runs, read_table, runlog_path
from ui import notices, router, shipped_training
from ui.charts import lines_figure, loss_figure
from ui.config import TRAIN_COMMAND, weights_dir
from ui.resources import metadata

router.require_router("pages/training_monitor.py")

REFRESH_S = 10  # the trainer logs every few seconds to minutes; faster polling only costs CPU

st.title("Training monitor")
meta = metadata()[0]
if meta is None:
    notices.no_weights()
shipped_training.render(meta, weights_dir())
st.divider()
st.subheader("Training runs on this machine")

path = runlog_path()
try:
    runs = read_runs(path)
except RunLogError as exc:  # a damaged or locked file: say so, don't crash
    st.error(str(exc))  # names the file and the fix
    st.stop()
if not runs:
    st.info(f"No training runs logged in `{path}` yet. Start one in its own run folder (it logs here as it "
            "goes; `--out weights` would overwrite the shipped model):")
    st.code(TRAIN_COMMAND, language="bash")
    st.stop()

by_id = {r["id"]: r for r in runs}
st.caption(f"What `scripts/train.py` has logged in `{path}`. These runs are not the loaded model above unless one "
           "of them wrote its weights; the figures below are the chosen run's own.")
run_id = st.selectbox("Run", list(by_id), format_func=lambda i: run_label(by_id[i]), key="monitor_run")
c1, c2 = st.columns(2)
mode = c1.selectbox("Validation AUC for text mode (fusion phases)", TEXT_MODES, index=1, key="monitor_mode")
head = c2.selectbox("…and head", HEADS, key="monitor_head")

live = by_id[run_id].get("status") == "running" and process_alive(by_id[run_id].get("pid"))


@st.fragment(run_every=REFRESH_S if live else None)
def show_run(run_id: int) -> None:
    run = next((r for r in read_runs(path) if r["id"] == run_id), by_id[run_id])
    steps = steps_frame(read_table("steps", run_id, path))
    epochs = read_table("epochs", run_id, path)
    status = run.get("status")
    if status == "running" and not process_alive(run.get("pid")):
        status = "interrupted (process gone; rerun the same command to resume)"
    last = steps.iloc[-1] if len(steps) else None
    m = st.columns(5)
    m[0].metric("Status", status)
    m[1].metric("Phase", run.get("phase") or (last["phase"] if last is not None else "—"))
    speed = as_float(last["samples_per_s"]) if last is not None else None
    m[2].metric("Throughput", f"{speed:.1f} /s" if speed else "—")
    m[3].metric("ETA (phase)", eta_text(last["eta_s"]) if last is not None and status == "running" else "—")
    best = as_float(run.get("best_val_macro_auc"))
    if best is None:  # the trainer records its best at the end; until then, the best epoch so far
        best = max((v for v in (as_float(e.get("val_macro_auc")) for e in epochs) if v is not None), default=None)
    m[4].metric("Best val macro AUC (this run)", f"{best:.3f}" if best is not None else "—")
    if live:
        st.caption(f"Live: refreshes every {REFRESH_S} s.")
    if steps.empty:
        st.info("No steps logged yet.")
    else:
        a, b = st.columns(2)
        a.plotly_chart(loss_figure(steps), key="monitor_loss")
        lrs = lrs_frame(steps)
        if not lrs.empty:
            b.plotly_chart(lines_figure(lrs, x="index", y="lr", colour="group", title="Learning rates",
                                        y_title="lr", x_title="logged step", log_y=True), key="monitor_lr")
        st.plotly_chart(lines_figure(steps.dropna(subset=["samples_per_s"]), x="index", y="samples_per_s",
                                     colour="phase", title="Throughput", y_title="samples / s",
                                     x_title="logged step"), key="monitor_speed")
    aucs = auc_frame(epochs, mode=mode, head=head)
    if aucs.empty:
        st.info("No validation epoch finished yet.")
    else:
        st.plotly_chart(lines_figure(aucs, x="epoch #", y="auc", colour="finding", y_range=[0, 1], whole_x=True,
                                     title=f"Validation AUC per finding ('image' phase: image encoder; "
                                           f"later phases: {mode} / {head})", y_title="AUC"), key="monitor_auc")
        table = pd.DataFrame(epochs).reindex(columns=["phase", "epoch", "val_macro_auc", "train_loss", "seconds",
                                                       "samples_per_s"])
        st.dataframe(table, hide_index=True)


show_run(run_id)

st.subheader("Compare runs")
chosen = st.multiselect("Runs", list(by_id), default=[run_id], format_func=lambda i: run_label(by_id[i]),
                        key="monitor_compare")
frames = [macro_frame(read_table("epochs", i, path), run_label(by_id[i])) for i in chosen]
frames = [f for f in frames if not f.empty]
if frames:
    st.plotly_chart(lines_figure(pd.concat(frames), x="epoch #", y="val macro AUC", colour="run", y_range=[0, 1],
                                 whole_x=True, title="Validation macro AUC", y_title="macro AUC"),
                    key="monitor_compare_chart")
else:
    st.caption("The chosen runs have no finished validation epoch yet.")
