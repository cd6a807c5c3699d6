"""Batch review, part (b): the whole prediction log — filter, search, open, review, export, delete."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import streamlit as st

from core.access.policy import Access
from core.access.settings import REVIEWERS_ENV
from core.data.images import ImageDecodeError, decode_image
from core.data.labels import FINDINGS, TextMode
from core.errors import CxrError
from core.model.recalibration_maps import calibrated_flags
from core.store import SEARCH_HELP, VERDICTS, PredictionStore, StoreError
from ui import attribution_view, audit_view, decision_view, prediction_view
from ui.resources import metadata
from ui.sidebar import chosen_target
from ui.tables import history_frame


def calibration_of(entry: dict) -> tuple[dict | None, dict | None]:
    """(fused, per-head) calibration flags of a logged row: a finding too rare to calibrate shows no
    bare probability here either. The row's own flags for the fused number (logged since schema 4); the
    per-head flags, and the fused ones of an older row, from the loaded weights when they made the row
    (a row of other weights without flags shows its numbers as logged)."""
    own = entry.get("calibrated") or None
    desc = metadata()[0]
    if desc is None or str(entry["model_version"]).removesuffix("+int8") != desc.version:
        return own, None
    mode, findings = entry["text_mode"], list(entry["fusion"])
    heads = {h: calibrated_flags(desc.recalibration, mode, h, findings) for h in ("fusion", "image", "text")}
    return own or (heads["image"] if mode == TextMode.NONE else heads["fusion"]), heads

def decisions_of(entry: dict):
    """(decisions, decided now) of a logged row: those it was logged with, or, for a row from before
    decisions were recorded, the policy's now (the loaded weights' operating points at the sidebar's choice,
    ui.decision_view.from_row). A row needs the loaded weights' reliability verdicts when it has none."""
    desc = metadata()[0]
    row = entry
    if not entry.get("image_reliable") and desc is not None:
        row = {**entry, "image_reliable": desc.image_reliable}
    flags, _ = calibration_of(entry)
    return decision_view.from_row(row, desc, chosen_target(), flags)


PERIODS = ("All time", "Last 24 hours", "Last 7 days", "Last 30 days", "Custom range")
ANY = "Any finding"
NO_VERDICT = "—"
SHOWN = 500  # rows in the table; the export takes every row that matches
ORDERS_SHOWN = {"newest": "Newest first", "discordance": "Discordance score (report QA)"}


def filters(findings=FINDINGS) -> dict:
    """Draw the filter widgets; returns keyword arguments for PredictionStore.list_predictions.
    ``findings``: those the log has columns for (PredictionStore.findings)."""
    c1, c2, c3, c4 = st.columns([2, 2, 2, 3])
    period = c1.selectbox("Period (UTC)", PERIODS, key="hist_period")
    now = datetime.now(UTC)
    since = until = None
    if period == "Custom range":
        picked = c1.date_input("From – to", value=(now.date() - timedelta(days=7), now.date()), key="hist_dates")
        picked = list(picked) if isinstance(picked, (tuple, list)) else [picked]
        if picked and isinstance(picked[0], date):
            since = picked[0]
        if len(picked) == 2:
            until = picked[1] + timedelta(days=1)  # the end day is included
    elif period != "All time":
        since = now - {"Last 24 hours": timedelta(days=1), "Last 7 days": timedelta(days=7),
                       "Last 30 days": timedelta(days=30)}[period]
    finding = c2.selectbox("Finding", (ANY, *findings), key="hist_finding",
                           help="A finding alone keeps the studies flagged for it (as decided when logged; "
                                "rows from before decisions were recorded: above the threshold they stored).")
    min_prob = c2.slider("Min fused probability", 0.0, 1.0, 0.0, 0.05, key="hist_min_prob",
                         help="Above 0: studies whose fused probability (of the finding, or of any) reaches it.")
    discordant = c3.checkbox("Discordant only", key="hist_discordant")
    hide_ood = c3.checkbox("Hide out-of-distribution images", key="hist_hide_ood")
    reviewed = c3.radio("Review status", ("All", "Unreviewed", "Reviewed"), key="hist_reviewed", horizontal=True)
    search = c4.text_input("Search text and notes", key="hist_search", placeholder="e.g. cardiomegaly or pneumon*",
                           help=SEARCH_HELP)
    c4.caption("Every word must match; end a word with * for a prefix (pneumon* finds pneumonia).")
    order = c4.radio("Sort by", list(ORDERS_SHOWN), format_func=ORDERS_SHOWN.get, key="hist_order", horizontal=True)
    return {"since": since, "until": until,
            "finding": None if finding == ANY else finding,
            # a finding alone filters at its threshold (PredictionStore.list_predictions); 0 is no filter
            "min_prob": min_prob if min_prob > 0 else None,
            "discordant": True if discordant else None,
            "reviewed": {"All": None, "Unreviewed": False, "Reviewed": True}[reviewed],
            "search": search or None, "out_of_distribution": False if hide_ood else None, "order": order}


def _label(row: dict) -> str:
    flag = " · ⚠ out of distribution" if row.get("out_of_distribution") else ""
    return f"#{row['id']} · {row['created_at'][:16].replace('T', ' ')} · {row['image_name'] or '(no name)'}{flag}"


def review_form(db: PredictionStore, entry: dict, who: Access) -> None:
    """Verdicts and the note; saving records ``who.user`` and the time (core.store's audit). Readers see
    the form disabled."""
    pid, current = entry["id"], entry["verdicts"]
    with st.form(f"review_{pid}"):
        st.markdown("**Your verdict per finding** (what the image shows, not whether the model agreed)")
        findings = list(entry["fusion"]) or FINDINGS  # those of the model that made this entry
        cols = st.columns(len(findings))
        options = (NO_VERDICT, *VERDICTS)
        chosen = {}
        for col, f in zip(cols, findings, strict=True):
            now = current.get(f, {}).get("verdict", NO_VERDICT)
            by = current.get(f, {})
            chosen[f] = col.selectbox(f, options, index=options.index(now), key=f"verdict_{pid}_{f}",
                                      disabled=not who.reviewer,
                                      help=(f"Set by {by.get('reviewer') or '(no name)'}, "
                                            f"{audit_view.when(by.get('updated_at'))}") if by else None)
        note = st.text_area("Note (searchable)", value=entry["note"], key=f"note_{pid}", max_chars=4000,
                            disabled=not who.reviewer)
        if entry.get("note_by"):
            st.caption(f"Note by `{entry['note_by']}`, {audit_view.when(entry.get('note_at'))}.")
        if who.reviewer:
            st.caption(f"Saving records you (`{who.user}`) and the time with each change.")
        else:
            st.caption(f"Only reviewers may change verdicts and notes (`[cxr] reviewers`, or `{REVIEWERS_ENV}`); "
                       f"you are signed in as `{who.user}`.")
        if st.form_submit_button("Save review", type="primary", disabled=not who.reviewer):
            try:
                changed = sum(db.set_verdict(pid, f, None if verdict == NO_VERDICT else verdict, reviewer=who.user)
                              for f, verdict in chosen.items())
                changed += db.set_note(pid, note, by=who.user)
            except StoreError as exc:
                st.error(str(exc))
            else:  # drawn again from the top, so the table above shows the change too
                st.session_state[f"review_saved_{pid}"] = (
                    f"Saved review of #{pid}: {changed} change{'s' if changed != 1 else ''}, recorded as "
                    f"`{who.user}`." if changed else f"Nothing changed in #{pid}.")
                st.rerun()
    saved = st.session_state.pop(f"review_saved_{pid}", None)
    if saved:
        st.success(saved)


def delete_control(db: PredictionStore, pid: int, who: Access) -> None:
    """Reviewers only, after a confirmation; who deleted it and when stays in the audit."""
    if not who.reviewer:
        return
    with st.expander("Delete this entry"):
        sure = st.checkbox(f"Yes, delete #{pid} with its image, text and verdicts permanently",
                           key=f"delete_sure_{pid}")
        st.caption(f"The log keeps that `{who.user}` deleted #{pid}, and when (nothing of its content).")
        if st.button("Delete", disabled=not sure, key=f"delete_{pid}", type="primary"):
            try:
                db.delete(pid, by=who.user)
            except StoreError as exc:
                st.error(str(exc))
                return
            st.session_state.pop("hist_open", None)
            st.session_state["hist_flash"] = f"Deleted entry #{pid} (recorded as `{who.user}`)."
            st.rerun()


def entry_view(db: PredictionStore, pid: int, model_ready: bool, who: Access) -> None:
    entry = db.get(pid)
    if entry is None:
        st.info(f"Entry #{pid} no longer exists.")
        return
    st.subheader(f"Entry #{pid} — {entry['image_name'] or '(no name)'}")
    st.caption(f"{entry['created_at'][:19].replace('T', ' ')} UTC · source {entry['source']} · "
               f"text mode **{entry['text_mode']}** · model {entry['model_version']}")
    stored = entry["thresholds"] or {}
    per_head = stored if "fusion" in stored else None  # older rows kept only the fused thresholds
    decisions, decided_now = decisions_of(entry)
    img_col, info_col = st.columns([1, 3])
    if entry["image_png"]:
        img_col.image(entry["image_png"], caption="Stored review copy (≤ 256 px)", width="stretch")
    with info_col:
        prediction_view.out_of_distribution(entry["out_of_distribution"], entry["ood_score"])
        if decisions is not None:
            if decided_now:
                st.caption(f"Logged before decisions were recorded: decided now at {decisions.operating_point}, "
                           "with the loaded weights' operating points.")
            prediction_view.decisions_headline(decisions)
        if entry["text_mode"] != "none" and not entry["out_of_distribution"]:
            prediction_view.discordance(entry["discordant"], entry["text_mode"], image=entry["image"],
                                        text=entry["text_probs"], head_thresholds=per_head)
            st.markdown("**Text the model read**")
            st.code(entry["text"], language=None, wrap_lines=True)  # verbatim: never rendered as markup
    if decisions is not None:
        _, head_flags = calibration_of(entry)
        text_probs = entry["text_probs"] if entry["text_mode"] != "none" and entry["text_probs"] else None
        prediction_view.show_decisions(decisions, key=f"hist_{pid}", evidence=entry.get("evidence"),
                                       image_evidence=None, image_reliable=entry.get("image_reliable"),
                                       heads={"image": entry["image"], **({"text": text_probs} if text_probs else {})},
                                       head_calibrated=head_flags)
    else:
        st.caption("No weights are loaded, so this entry's decisions cannot be shown.")
    if model_ready and entry["image_png"]:
        with st.expander("Heatmap and text attributions (computed on the stored review copy)"):
            try:
                gray = decode_image(entry["image_png"], filename="review.png").gray
            except ImageDecodeError as exc:
                st.error(str(exc))
            else:
                attribution_view.explain(
                    scope="history", prediction_id=pid, gray=gray, text=entry["text"], mode=entry["text_mode"],
                    default_finding=decision_view.why_default(decisions, entry["discordant"]) if decisions else None,
                    not_assessed=decisions.not_assessed() if decisions else None)
    review_form(db, entry, who)
    audit_view.activity(db, pid)
    delete_control(db, pid, who)


def export_matching(db: PredictionStore, filters: dict) -> str:
    """The CSV export of every matching entry, with its verdicts, reviewer and time (built on click)."""
    return db.export_csv(db.list_predictions(**filters, limit=None, with_verdicts=True))


def render(db: PredictionStore, model_ready: bool, who: Access) -> None:
    flash = st.session_state.pop("hist_flash", None)
    if flash:
        st.success(flash)
    try:
        findings = db.findings()
    except CxrError as exc:  # an unusable log
        st.error(str(exc))
        return
    kwargs = filters(findings)
    try:
        rows = db.list_predictions(**kwargs, limit=SHOWN, with_verdicts=True)
    except CxrError as exc:  # an unusable log, a filter it cannot apply
        st.error(str(exc))
        return
    capped = f" (newest {SHOWN} shown; the export has all)" if len(rows) == SHOWN else ""
    st.caption(f"{len(rows)} entries match{capped} · {db.count()} in the log.")
    decided = [decisions_of(row) for row in rows]
    frame = history_frame(rows, [d for d, _ in decided], [now for _, now in decided])
    numbers = [f for f in findings if f in frame]
    # a finding no row shows a number for has no column; a cell is a number or '—', never "absent" nor "None"
    shown = frame.copy()
    for f in numbers:
        shown[f] = [decision_view.number_text(v) for v in shown[f]]
    if "discordance score" in shown:  # report QA exists in report mode only
        shown["discordance score"] = ["—" if v is None or v != v else f"{v:.2f}" for v in shown["discordance score"]]
    st.dataframe(shown, hide_index=True, key="hist_table",
                 column_config={c: st.column_config.TextColumn(c, width="medium")
                                for c in ("flagged", "flags", "reviewed by")}
                 | {f: st.column_config.TextColumn(f, help="A number: the calibrated probability of an assessed "
                                                           "finding; '—': not assessed, or no calibrated number.")
                    for f in numbers})
    missing = [f for f in findings if f not in numbers]
    if rows:
        st.caption((f"No column for {', '.join(missing)}: no entry here has a number for it (not assessed, or not "
                    "calibrated). " if missing else "")
                   + "A number: the calibrated probability of an assessed finding; '—': not assessed, or no "
                   "calibrated number. **flagged** has every decision, at the entry's **operating point**."
                   + (" Entries marked *decided now* were logged before decisions were recorded: they are decided "
                      "with the loaded weights' operating points at the sidebar's choice." if any(
                          now for _, now in decided) else ""))
    st.download_button("Export CSV (all matching entries, with verdicts)", lambda: export_matching(db, kwargs),
                       file_name="predictions.csv", mime="text/csv", key="hist_export", icon=":material/download:",
                       on_click="ignore")
    audit_view.log_section(db)
    if not rows:
        return
    by_id = {r["id"]: r for r in rows}
    pid = st.selectbox("Open an entry", list(by_id), format_func=lambda i: _label(by_id[i]), key="hist_open")
    if pid is not None:
        st.divider()
        entry_view(db, pid, model_ready, who)
