"""Sidebar: who is using the app, which model is loaded and whether the app is shared."""
from __future__ import annotations

import streamlit as st

from core.access.policy import Access, State
from core.access.settings import REVIEWERS_ENV
from core.data.labels import TEXT_MODES, TextMode
from core.evaluation.operating_targets import NAMES, default_name
from core.serving.sharing import share_status
from ui.charts import finite
from ui.config import SHARE_COMMAND, weights_dir
from ui.resources import metadata

# The headline numbers: the honest tasks first (image only, indication), then report QA.
HEADLINE = (("none/image", "Image only"), ("indication/fusion", "Image + indication"),
            ("report/fusion", "Image + report"))


def _auc_text(entry: dict | None) -> str:
    """'0.81 (0.74–0.87)' from a macro AUC entry, or '' when there is none."""
    entry = entry or {}
    auc, ci = entry.get("macro_auc"), entry.get("macro_auc_ci") or [None, None]
    if not finite(auc):
        return ""
    return f"{auc:.2f}" + (f" ({ci[0]:.2f}–{ci[1]:.2f})" if len(ci) == 2 and all(finite(c) for c in ci) else "")


def model_status() -> dict | None:
    meta, problem = metadata()
    st.subheader("Model")
    if meta is None:
        st.warning("No model loaded.")
        st.caption(f"Weights folder: `{weights_dir()}` — see any page for how to train one.")
        return None
    backbones = (meta.backbones or {})
    image = backbones.get("image", "?")
    if backbones.get("image_weights") in (None, "none"):
        image += " (from scratch)"
    st.markdown(f"**Version** `{meta.version or '?'}`  \n**Created** {meta.created_at or '?'}  \n"
                f"**Image** {image}  \n**Text** {backbones.get('text', '?')}  \n"
                f"**Input** {meta.preprocessing.image_size if meta.preprocessing else '?'} px")
    site = meta.site_adaptation
    if site:  # weights adapted to a site (core.evaluation.site_adapt): say so before any number
        adapted = sorted({f for fs in (site.get("adapted") or {}).values() for f in fs})
        st.markdown(f"**Adapted to site** {site.get('site', '?')}: {site.get('studies', '?')} studies, "
                    f"{str(site.get('date', '?'))[:10]}, labels from {site.get('labels', '?')}")
        st.caption(f"Calibration and operating points refitted there for {', '.join(adapted) or 'no finding'}; "
                   f"the rest as shipped ({site.get('shipped_version', '?')}).")
    summary = meta.test_summary or {}
    cv = meta.evidence.cv_macro() if meta.evidence else {}
    lines = []
    for key, label in HEADLINE:  # the cross-validated estimate first where there is one (issue 26, item 6)
        test, folds = _auc_text(summary.get(key)), _auc_text(cv.get(key))
        if folds:
            lines.append(f"{label}: **{folds}**" + (f" · test split {test}" if test else ""))
        elif test:
            lines.append(f"{label}: **{test}**")
    if lines:
        st.markdown("Macro AUC (95% CI), " + ("cross-validated · test split" if cv else "test split") + "  \n"
                    + "  \n".join(lines))
        if cv:
            st.caption("Cross-validation: the training recipe retrained without each fold and scored on it, "
                       "so no report was used to train or tune the model that scored it; it is the headline "
                       "because the single test split has as few as 5 positives for some findings.")
        st.caption("Report-mode numbers are inflated: the labels were coded from the report text.")
    reliable = meta.evidence.image_reliable if meta.evidence else None
    if reliable:
        weak = [f for f, ok in reliable.items() if not ok]
        if weak:
            st.markdown("**Not reliable from the image:** " + ", ".join(weak))
            st.caption("Too few held-out positives or a CI reaching chance; see the Model card.")
    return meta


OPERATING_POINT = "operating_point"  # session key of the choice every page reads (kept apart from the widget's)
_WIDGET = "operating_point_select"   # the selectbox; its value is copied to OPERATING_POINT when it changes
DEFAULT_POINT = "default"


def default_words() -> str:
    """"specificity 0.90 (image only, indication), specificity 0.98 (report)": each mode's default."""
    by_name: dict[str, list[str]] = {}
    for mode in (TextMode.NONE, *[m for m in TEXT_MODES if m != TextMode.NONE]):
        by_name.setdefault(default_name(mode), []).append({"none": "image only"}.get(mode, mode))
    return ", ".join(f"{name} ({', '.join(modes)})" for name, modes in by_name.items())


def chosen_target() -> str | None:
    """The operating point the user picked in the sidebar, or None: each mode's default. Pass it as
    ``target=`` to predict_and_log (core.serving.decision names it in every output)."""
    value = st.session_state.get(OPERATING_POINT)
    return None if value in (None, DEFAULT_POINT) else value


def _keep_choice() -> None:
    """The choice outlives the widget: a page run without the sidebar must not forget it."""
    st.session_state[OPERATING_POINT] = st.session_state[_WIDGET]


def operating_point_control(meta) -> None:
    """The operating point every page decides at: each mode's default, or a target specificity or
    sensitivity the weights carry (core.evaluation.operating_targets)."""
    st.subheader("Operating point")
    block = meta.operating_points
    if not (block and block.points):
        st.caption("These weights carry no operating points: no finding can be flagged (every finding is "
                   "*not assessed*). `scripts/choose_operating_points.py` chooses them.")
        return
    options = [DEFAULT_POINT, *[n for n in (block.choices or NAMES) if n in NAMES]]
    current = st.session_state.get(OPERATING_POINT, DEFAULT_POINT)
    st.selectbox("Flag a finding at", options, index=options.index(current) if current in options else 0,
                 key=_WIDGET, on_change=_keep_choice,
                 format_func=lambda n: "Each mode's default" if n == DEFAULT_POINT else n,
                 help="A flag means the probability is at or above the threshold that gives this specificity "
                      "(or sensitivity) on held-out reports. Higher specificity: fewer flags, more findings "
                      "missed. Predict and batch scoring decide and log at it; every result names it.")
    st.caption(f"Each mode's default: {default_words()}. Each flag states its sensitivity and specificity "
               "(95% CIs) and the PPV at this collection's prevalence, measured on cross-validated predictions.")


def sharing_status(who: Access) -> dict:
    st.subheader("Sharing")
    status = share_status()
    if status.get("shared"):
        st.success(f"Shared at {status['url']}")
        st.caption("Sign-in required." if status.get("signin") else "Password-protected." if status.get("auth")
                   else "No password: anyone with the URL gets in.")
    elif who.state is State.LOCAL:
        st.caption("Local only. To share over ngrok:")
        st.code(SHARE_COMMAND, language="bash", wrap_lines=True)
    else:
        st.caption("Sign-in required: only signed-in users get in. Over an ngrok tunnel, the tunnel "
                   "uses the sign-in too (`python scripts/share.py`, docs/access.md).")
        if status.get("error"):
            st.caption(f"Last attempt failed: {status['error']}")
    return status


def who_status(who: Access) -> None:
    """Who the log names for this session's changes, whether they may review, and the way out."""
    if who.state is State.LOCAL:
        st.caption("**Local user** (this machine, no sign-in): reviews and deletions are recorded as "
                   "“local”.")
        return
    st.markdown(f"Signed in as `{who.user}`")  # a code span: not turned into a mailto link
    if who.reviewer:
        st.caption("Reviewer: may change verdicts and notes, and delete entries; each change records you.")
    else:
        st.caption("Reader: may read the log and predict; only reviewers change verdicts or delete "
                   f"(`[cxr] reviewers`, or `{REVIEWERS_ENV}`).")
    if st.button("Sign out", icon=":material/logout:", key="sidebar_sign_out"):
        st.logout()


def render(who: Access) -> None:
    with st.sidebar:
        who_status(who)
        st.divider()
        meta = model_status()
        if meta is not None:
            st.divider()
            operating_point_control(meta)
        st.divider()
        sharing_status(who)
