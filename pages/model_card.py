"""Model card: built from the weights' metadata and the evaluation files in <weights>/eval/."""
import json
from pathlib import Path

import pandas as pd
import streamlit as st

from core.data.findings import in_words
from core.data.labels import FINDINGS, TextMode
from core.evaluation import eval_files
from core.evaluation.evidence import MIN_CI_LOWER, MIN_POSITIVES, card_rows
from core.evaluation.model_card import RECALIBRATION_FILE, model_card
from core.model.description import read_int8_info
from ui import notices, router, tables
from ui.charts import reliability_figure, roc_figure
from ui.config import EVAL_COMMAND, weights_dir
from ui.resources import loaded_predictor, metadata

router.require_router("pages/model_card.py")

_NUMBERS = dict(enumerate(("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")))
CITATION = ("Demner-Fushman D, et al. Preparing a collection of radiology examinations for distribution "
            "and retrieval. J Am Med Inform Assoc. 2016;23(2):304-310. doi:10.1093/jamia/ocv080")

st.title("Model card")
meta, problem = metadata()
findings = meta.findings if meta is not None else FINDINGS  # the weights' own (core.model.description)
folder = weights_dir()
eval_dir = folder / "eval"
card = model_card(meta, eval_dir, findings)  # what the card says (core.evaluation.model_card); drawn below

if meta is None:
    notices.no_weights(problem)
else:
    st.caption(f"Version `{meta.version or '?'}` · created {meta.created_at or '?'} · "
               f"git {str(meta.git_commit or '?')[:12]} · weights `{folder}`")

@st.cache_data(show_spinner=False)
def _curves(path: str, mtime: float):
    """ROC and calibration points of one predictions CSV (recomputed only when the file changes)."""
    return eval_files.curves(Path(path))


def operating_points_section(meta, findings) -> None:
    """What a flag means at every operating point the weights carry (core.evaluation.operating_targets):
    the rule, how often a study without any finding is flagged, and per mode, finding and point the
    threshold, sensitivity and specificity with 95% CIs, the PPV and the test split's check."""
    block = meta.operating_points.to_dict() if meta.operating_points else {}  # drawn as the tables read it
    st.subheader("Operating points: what a flag means")
    if not block.get("points"):
        st.warning("These weights carry no operating points, so no finding is ever flagged (every finding is "
                   "*not assessed*). Choose them with `python scripts/choose_operating_points.py`.")
        return
    defaults = block.get("default") or {}
    normal = block.get("normal_flag_rate") or {}
    lines = []
    for mode in (TextMode.NONE, TextMode.INDICATION, TextMode.REPORT):
        r = normal.get(mode) or {}
        stated, test = r.get("stated"), r.get("test")
        if stated:
            lines.append(f"- **{tables.MODE_TITLES.get(mode, mode)}** at {defaults.get(mode, '?')}: "
                         f"{stated['rate']:.1%} [{stated['ci'][0]:.1%}, {stated['ci'][1]:.1%}] of {stated['n']:,} "
                         "studies with none of the five findings carry at least one flag "
                         + ("in cross-validation" if mode != TextMode.REPORT else
                            "on the shipped model's validation + test reports, cross-fitted")
                         + (f"; {test['rate']:.1%} of {test['n']} on the test split" if test else "") + ".")
    rule = block.get("rule") or "a probability at or above the operating point's threshold"
    st.markdown(
        f"**A flag** is {rule.removeprefix('a flag is ')}. "
        "Every flag the app, the CLI and the SR show names its operating point and states its sensitivity and "
        "specificity (95% CIs) and the PPV at the collection's prevalence. The sidebar picks another point; the "
        "default is specificity 0.90 (image only, indication) and 0.98 with the report, which reads the answer."
        + ("\n\n" + "\n".join(lines) if lines else ""))
    negations = (block.get("negations") or {}).get(defaults.get("report", ""), {}).get("overall")
    if negations:
        st.markdown(f"Report QA on test reports that **rule a finding out** (\"without overt pulmonary edema\"), at "
                    f"{defaults.get('report')}: **{negations['rate']:.1%}** [{negations['ci'][0]:.1%}, "
                    f"{negations['ci'][1]:.1%}] flagged for it ({negations['flagged']} of {negations['n']}).")
    modes = [m for m in ("none", "indication", "report") if m in block["points"]]
    for tab, mode in zip(st.tabs([tables.MODE_TITLES.get(m, m) for m in modes]), modes, strict=True):
        with tab:
            st.dataframe(tables.operating_points_table(block, mode, findings), hide_index=True)
    st.caption("Sensitivity and specificity: cross-validated out-of-fold where the source says so (each part "
               "flagged at the threshold its model's other parts give), with Wilson 95% CIs; PPV: the share of "
               "flags that are true at the collection's prevalence. Test split: the threshold the validation split "
               "alone gives, measured once on the test split (a check). A finding the image cannot support has no "
               "point in image-only and indication modes: it is never flagged there.")


st.header("Intended use")
st.markdown(
    "- **Research tool, not a medical device.** It must not be used for diagnosis, triage or any "
    "decision about a patient.\n"
    f"- Estimates the probability of {_NUMBERS.get(len(findings), len(findings))} findings — "
    + ", ".join(findings) + " — on a frontal chest "
    "X-ray, alone or with text.\n"
    "- **Before the read**: image + the clinical indication (why the study was ordered).\n"
    "- **Report QA**: image + the finished report; a study is flagged *discordant* when the image head "
    "disagrees strongly with what the report says, only for findings the image supports, ranked by how "
    "strongly (report mode only).\n"
    "- Not for: lateral views, children, other body parts, other modalities, or any population unlike "
    "a single US institution's outpatient chest films.")

if meta is not None:
    st.header("What the image can and cannot support")
    weak = card.weak
    ev = meta.evidence.to_dict() if meta.evidence else {}
    if not ev:
        st.warning("These weights carry no held-out evidence: treat every finding as unvalidated.")
    else:
        st.markdown(
            f"A finding is **reliable from the image** only if its image-only AUC on held-out studies has a 95% CI "
            f"lower bound of at least {MIN_CI_LOWER:.2f} on at least {MIN_POSITIVES} positives"
            + (" (the test split, and the cross-validation of the recipe)" if ev.get("cv") else " (the test split)")
            + ". " + (f"**Not reliable from the image: {', '.join(weak)}.** In image-only and image + indication "
                      "modes they are *not assessed* — no number, no flag — in the app, the CLI and the SR, and they "
                      "are never flagged as discordant." if weak else ""))
        for mode, head, title in (("none", "image", "Image only"), ("indication", "fusion", "Image + indication")):
            st.subheader(title)
            rows = pd.DataFrame(card_rows(meta, eval_dir, mode, head, findings))
            sources = sorted(set(rows.pop("evidence from"))) if "evidence from" in rows else []  # said below
            st.dataframe(rows, hide_index=True, column_config={
                "positives": st.column_config.NumberColumn(width="small"),
                "from the image": st.column_config.TextColumn(width="small"),
                "PPV": st.column_config.TextColumn(width="small")})
            if sources:
                st.caption("AUC [95% CI] from: " + "; ".join(str(s) for s in sources) + ".")
        recipe = ev["cv"].get("recipe") if ev.get("cv") else None
        recipe = recipe or "cheaper than the shipped model's: 15 image epochs, no text fine-tuning; docs/results.md"
        cv_words = (f"the training recipe ({recipe}) "
                    f"retrained on {ev['cv'].get('folds')} folds of train+val ({ev['cv'].get('folds_done')} done), "
                    "each fold scored by a model that never saw it; it estimates the recipe, not these exact weights"
                    if ev.get("cv") else "")
        st.caption(
            ("**AUC [95% CI]** and **positives** are the headline evidence everywhere in the app: cross-validated "
             f"out-of-fold: {cv_words}. **Test split AUC (positives)** is secondary: the shipped model on its own "
             "test split, never used for training, thresholds or calibration, but with as few as 5 positives a "
             "finding — **a test AUC on 5 positives is not evidence** (its CI spans most of the scale). "
             if ev.get("cv") else
             "**AUC [95% CI]**: the test split of the shipped model, never used for training, thresholds or "
             "calibration; a test AUC on 5–6 positives is not evidence: its CI spans most of the scale. ")
            + "The operating point columns: each mode's default (below).")
        operating_points_section(meta, findings)
    qa = meta.discordance.to_dict() if meta.discordance else {}
    if qa:
        st.subheader("Report QA: how often it flags, what it catches")
        text = (f"Operating points chosen on validation with a false-flag budget of {qa.get('budget', 0):.0%} of "
                f"unedited reports (validation: {qa.get('val_flag_rate', 0):.1%}); findings: "
                f"{', '.join(qa.get('supported', [])) or 'none'}.")
        if card.report_qa:
            q = card.report_qa
            u = q["unedited_any"]
            text += (f" On the {q['n_studies']} test studies: **{u['rate']:.1%}** of unedited reports flagged "
                     f"[{u['ci'][0]:.1%}, {u['ci'][1]:.1%}].")
            st.markdown(text)
            st.dataframe(pd.DataFrame([
                {"finding": f, **{f"{e} caught": (f"{c['rate']:.0%} ({c['flagged']}/{c['n']})" if c["n"] else "—")
                                  for e, c in q["edits"][f].items()}}
                for f in q["edits"]]), hide_index=True)
            st.caption("deny: every sentence about the finding replaced by a normal statement; delete: removed; "
                       "add: a false positive statement added to a negative report (scripts/report_qa.py).")
        else:
            st.markdown(text)

st.header("Data")
data = (meta.data if meta is not None else None) or {}
st.markdown(
    f"**{data.get('name', 'Indiana University Chest X-ray Collection (Open-I)')}** — licence "
    f"**{data.get('license', 'CC BY-NC-ND 4.0')}**: non-commercial use, no derivatives of the data. "
    f"Labels: the reports' MeSH *major* terms (manual coding), mapped to the findings by their records in "
    "`core/data/findings.py`."
    + (f" Reports used: {data['n_reports']}." if data.get("n_reports") else ""))
st.caption("Citation: " + data.get("citation", CITATION))
trained = (meta.trained_on if meta is not None else None) or {}
external = (meta.external_validation if meta is not None else None) or []
if meta is not None and (external or trained):
    seen = ", ".join(meta.image_encoder_datasets or []) or "?"
    st.markdown(f"**Trained on {trained.get('name', data.get('name', '?'))}** ({trained.get('n_reports', '?')} "
                f"studies; the image encoder has seen: {seen}).")
    for ext in external:
        st.markdown(f"**Validated on {ext.get('title', ext.get('validated_on', '?'))}** (split `{ext.get('split')}`, "
                    f"{ext.get('n_studies', '?')} studies, never used in training):")
        st.dataframe(pd.DataFrame([
            {"text mode / head": key, "macro AUC [95% CI]": tables.fmt_ci(r.get("macro_auc"), r.get("macro_auc_ci")),
             **r.get("auc", {})}
            for key, r in ext.get("results", {}).items()]), hide_index=True)

if meta is not None:
    st.header("Model")
    bb = meta.backbones or {}
    pre = meta.preprocessing.to_dict() if meta.preprocessing else {}
    image_init = bb.get("image_weights", "none")
    st.table(pd.DataFrame([
        {"part": "image encoder", "backbone": bb.get("image", "?"),
         "initialisation": "from scratch (no pretrained weights)" if image_init in (None, "none") else image_init},
        {"part": "text encoder", "backbone": bb.get("text", "?"), "initialisation": "pretrained"},
    ]).set_index("part"))
    st.caption(f"Input: {pre.get('image_size', '?')} px {pre.get('color', 'grayscale')}, {pre.get('resize', '')}; "
               f"text up to {meta.text_max_len or '?'} tokens; late fusion with per-branch heads "
               "(fusion, image, text).")
    st.markdown(notices.serving_precision_note(read_int8_info(folder), loaded_predictor()))
    with st.expander("Training configuration and decision thresholds"):
        st.json({"training_config": meta.training_config or {}, "thresholds": meta.thresholds or {}},
                expanded=False)

st.header("Test-split metrics")
results = card.results
table = tables.metrics_table(results)
if not table.empty:
    st.markdown("The shipped model on its own test split — secondary evidence: where the weights carry "
                "cross-validation, the out-of-fold AUC is the headline (above). "
                "AUC per finding with 95% bootstrap CI, per text mode and head, the honest tasks first: "
                "`none` (image only) and `indication` (image + the reason for the study). `report` mode is "
                "inflated (see below) and comes last.")
    st.dataframe(table, hide_index=True)
    positives = tables.positives_table(results)
    if positives is not None:
        st.caption("Positive studies per finding in the test split (few positives → wide CIs):")
        st.dataframe(positives, hide_index=True)
elif meta is not None and meta.test_summary:
    st.info(f"No evaluation files in `{eval_dir}`; showing the summary stored with the weights.")
    st.dataframe(tables.summary_table(meta.test_summary), hide_index=True)
else:
    st.info(f"No evaluation results in `{eval_dir}`. Make them with:")
    st.code(EVAL_COMMAND, language="bash", wrap_lines=True)

st.subheader("ROC and calibration")
files = eval_files.prediction_files(eval_dir)
if files:
    key = st.selectbox("Predictions file (text mode / head)", list(files), key="card_curves",
                       help="Opens on image only; report mode reads the answer from the report (see below).")
    roc, rel, skipped = _curves(str(files[key]), files[key].stat().st_mtime)
    if roc:
        c1, c2 = st.columns(2)
        c1.plotly_chart(roc_figure(roc), key="card_roc")
        c2.plotly_chart(reliability_figure(rel), key="card_rel")
    if skipped:
        st.caption("No curve for: " + "; ".join(skipped) + ".")
else:
    st.info(f"No per-study prediction files (`{eval_dir}/test_{{mode}}_{{head}}.csv`), so no ROC or "
            "calibration plots. Make one with:")
    st.code(EVAL_COMMAND, language="bash", wrap_lines=True)

st.header("Calibration")
recal = card.calibration.measurement if card.calibration else None
if recal is None:
    st.info("No calibration measurement next to these weights. Make it (fits nothing, writes one file) with:")
    st.code(f"python scripts/recalibrate.py --weights {folder} --dry-run --json {eval_dir / RECALIBRATION_FILE}",
            language="bash", wrap_lines=True)
else:
    shipped = meta.recalibration if meta is not None else None
    fitted = recal.get("fitted_on") or {}
    pooled_maps, split_words = card.calibration.pooled_maps, card.calibration.fitted_words
    uncal, partly = card.calibration.uncalibrated, card.calibration.partly
    st.markdown(
        "Is a probability of 0.6 right 60% of the time? Per finding: the **calibration slope** (logistic "
        "regression of the outcome on the logit of the prediction: 1 is calibrated, under 1 means too spread "
        "out — too confident) with its 95% bootstrap CI, the intercept (0 is calibrated), and the **top bin**: "
        "among predictions ≥ 0.3, how many, their mean, and the observed rate with its 95% Wilson CI. "
        "Target: slope 0.8–1.25 and the top bin's observed rate within 25% of its mean prediction. "
        "(A mean ECE is not shown: at 1–10% prevalence most studies sit in the lowest bin, so it stays small "
        "whatever the top bins do.)\n\n"
        + ("**These weights serve recalibrated probabilities**: " if shipped else
           "**These weights do not carry the maps measured below** (the measurement was a dry run): ")
        + f"a Platt map p' = sigmoid(a·logit(p) + b) per text mode, head and finding, fitted on the "
        f"{fitted.get('n_reports', '?')} {split_words} reports. "
        + (f"**Cannot be calibrated** (fewer than {recal.get('min_positives')} positives there): "
           f"{', '.join(uncal)} — the app shows \"not calibrated\" instead of their probability. " if uncal else "")
        + "".join(f"{f} is not calibrated in {', '.join(cells)} (not confirmed by cross-validation). "
                  for f, cells in partly.items()))
    tab_cv, tab_test, tab_across = st.tabs([
        "Cross-validation: the recipe", "The shipped model" if pooled_maps else "Test split: the shipped model",
        "Cross-validation: one map, other models"])
    cv = recal.get("cv") or {}
    n_cv = next(iter((cv.get("n_reports") or {}).values()), "?")
    n_test = next((r["before"]["n"] for block in (recal.get("test") or {}).values() for r in block.values()), "?")
    pooled = recal.get("pooled_top_bin") or {}
    for tab, block, pooled_block, caption in (
            (tab_cv, cv.get("within") or {}, pooled.get("cv_within"),
             f"Out-of-fold predictions of {len(cv.get('folds') or [])} models of the training recipe on "
             f"{n_cv} train+val reports (each scored by the model that did not train on it). Each model's "
             "predictions are recalibrated by a map fitted on its *other* held-out reports — as the shipped "
             f"map is fitted on the shipped model's {split_words} reports. It measures the recipe, on 4× the test "
             "split's reports."),
            (tab_test, recal.get("test") or {}, pooled.get("test"),
             (f"Measured on {recal['test_label']} ({n_test} reports), before and after the maps: it measures "
              "these exact weights, with wide CIs." if recal.get("test_label") else
              f"The shipped model on its {n_test} test reports, before and after the map fitted on validation: "
              "measured once, never used to choose anything. It measures these exact weights, with wide CIs.")),
            (tab_across, cv.get("across") or {}, pooled.get("cv_across"),
             "Fold k recalibrated by the map fitted on the other folds, i.e. on other training runs: it shows "
             "whether one map transfers between models. Where runs land at different offsets it does not, so "
             "each model gets its own map.")):
        with tab:
            for task, (mode, head) in (("Image only", ("none", "image")),
                                       ("Image + indication", ("indication", "fusion"))):
                st.markdown(f"**{task}** (`{mode}` / `{head}`)")
                st.dataframe(tables.calibration_table(block.get(f"{mode}/{head}")), hide_index=True)
            if pooled_block:
                pooled_names = in_words(card.calibration.pooled_findings)
                st.markdown(f"**Pooled top bin**: every prediction ≥ 0.3 of {pooled_names} "
                            "that a user reads a number for (after the maps: the calibrated findings only)")
                st.dataframe(tables.pooled_top_bin_table(pooled_block), hide_index=True)
            st.caption(caption + " Columns: slope with 95% CI; intercept before → after; "
                       + tables.CALIBRATION_TOP_HELP + ".")
    st.caption(f"Measured {recal.get('measured_at', '?')} by `{recal.get('command', 'scripts/recalibrate.py')}`; "
               "reproduce every number (writes nothing): `python scripts/recalibrate.py --dry-run` "
               "(docs/calibration.md).")

st.header("Keyword baseline, and why report-mode numbers are inflated")
baseline = results.get(eval_files.BASELINE)
macro = tables.fmt_ci(baseline.get("macro_auc"), baseline.get("macro_auc_ci")) if baseline else None
st.markdown(
    "The labels of this collection were coded **from the report text**. A model that reads the report's "
    "FINDINGS and IMPRESSION therefore sees the answer, and a plain keyword rule with negation handling "
    + (f"scores macro AUC **{macro}** on the test split (below)" if macro else "already scores near-perfectly")
    + ". Report-mode AUCs measure agreement with the report, not with the image; that is why report mode is "
    "offered for **QA by discordance**, not as a diagnostic accuracy claim.")
if baseline:
    aucs, cis = baseline.get("auc") or {}, baseline.get("auc_ci") or {}
    st.dataframe(pd.DataFrame([{f: tables.fmt_ci(aucs.get(f), cis.get(f)) for f in aucs}]), hide_index=True)
else:
    st.caption(f"`{eval_dir}/{eval_files.BASELINE}.json` not found.")

st.header("Known limitations")
scratch = ((meta.backbones if meta is not None else None) or {}).get("image_weights", "none") in (None, "none")
n_reports = data.get("n_reports")
st.markdown(
    ("- **Image encoder trained from scratch**: no ImageNet or chest X-ray pretraining could be downloaded "
     "where it was built, so the image branch is weaker than published DenseNet-121 results.\n" if scratch else "")
    + f"- **Small data**: {f'{n_reports:,} reports' if n_reports else 'a few thousand studies'} from one "
    "collection; thresholds and calibration were tuned on a small validation split.\n"
    + (f"- **Few positives for {in_words(card.few_positives)}** → very wide confidence intervals (or none at all); "
       "treat those findings as unvalidated.\n" if card.few_positives else "")
    + "- **Resized copy**: trained on downscaled PNG exports, not original DICOM; fine detail is lost.\n"
    "- **Frontal views only**: the guard flags laterals and cut-off films and says what to upload.\n"
    "- **Single institution** (Indiana University): no evidence it transfers to other scanners or populations.\n"
    "- Labels come from report coding, not from image review: label noise is built in.")
if meta is not None:
    with st.expander("Raw metadata"):
        raw = {k: v for k, v in meta.to_metadata().items() if k != "split"}
        st.code(json.dumps(raw, indent=2, default=str), language="json")
