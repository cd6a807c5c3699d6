"""Site validation: does this model work at my hospital? Measure it on the site's own studies.

Upload the site's CSV (``image,report[,indication,id]`` and optional ``label_<Finding>`` columns; core.data.site_table)
with its images (files or a .zip), or open a result written by ``scripts/validate_site.py --json``. The page
draws the same tables, verdicts and plots as the printable report and offers both downloads. Thousands of
studies, a PACS and the adaptation of the weights: the command line (the page says how).
"""
import json
import tempfile
from pathlib import Path

import streamlit as st

from core.errors import CxrError
from ui import notices, router, site_validation_view
from ui.resources import metadata, predictor
from ui.sidebar import chosen_target

router.require_router("pages/site_validation.py")

RESULT = "site_result"
CLI = "python scripts/validate_site.py --data site.csv --json site.json --adapt weights-site"

st.title("Site validation")
st.caption(notices.INTENDED_USE)
st.markdown("Does this model work at your hospital? Score your own studies and see, per finding, its AUC, "
            "calibration and flag rates **beside the shipped model's cross-validated numbers**, with a verdict "
            "by confidence interval (consistent, worse, better, or too few positives to say) and how many images "
            "the guard calls out of distribution. Labels come from `label_<Finding>` columns (1, 0 or empty) or, "
            "without them, from the report text through the project's negation-aware report reader.")

meta, problem = metadata()
if meta is None:
    notices.no_weights(problem)

source = st.radio("Source", ["Upload studies", "Open a result (JSON)"], horizontal=True, key="site_source")
if source == "Upload studies":
    left, right = st.columns([1, 2])
    with left:
        site_name = st.text_input("Site name", value="my site", key="site_name")
        table_file = st.file_uploader("Site table (CSV)", type=["csv"], key="site_csv",
                                      help="image,report[,indication,id] and optionally label_<Finding> columns; "
                                           "image names the uploaded file")
    with right:
        images = st.file_uploader("Images (PNG, JPEG, DICOM) or a .zip of them", accept_multiple_files=True,
                                  type=["png", "jpg", "jpeg", "dcm", "dicom", "zip"], key="site_images")
    go = st.button("Validate", type="primary", icon=":material/play_arrow:", key="site_go",
                   disabled=meta is None or table_file is None or not images)
    st.caption(f"For thousands of studies, a PACS or to adapt the weights to the site, use the command line "
               f"(resumable, with a progress bar): `{CLI}`")
    if go:
        from core.data.site_table import bytes_loader, read_site_bytes
        from core.evaluation.site_validation import validate
        from core.serving.batch_uploads import expand_uploads
        from core.serving.site_run import predict_site
        try:
            items, skipped = expand_uploads([(f.name, f.getvalue()) for f in images])
            files = {i.name: i.data for i in items}
            table = read_site_bytes(table_file.getvalue(), table_file.name, meta.findings, files)
            bar = st.progress(0.0, text=f"Scoring {table.n_images} images…")
            model = predictor()
            work = Path(tempfile.gettempdir()) / "cxr-site-validation" / f"{table.fingerprint()[:16]}.json"
            preds = predict_site(model, table, load_image=bytes_loader(files), out=work, target=chosen_target(),
                                 lock=model.exclusive(), on_progress=lambda d, n: bar.progress(
                                     d / max(n, 1), text=f"{d} of {n} images"))
            result, _ = validate(meta, table, preds.probs, preds.ood, preds.ood_per_study, site=site_name,
                                 target=chosen_target())
            st.session_state[RESULT] = result
        except CxrError as exc:
            st.error(str(exc))
else:
    opened = st.file_uploader("A result of scripts/validate_site.py --json", type=["json"], key="site_open")
    if opened is not None:
        try:
            loaded = json.loads(opened.getvalue())
            if not isinstance(loaded, dict) or "tasks" not in loaded:
                raise ValueError("not a site validation result")
            st.session_state[RESULT] = loaded
        except ValueError as exc:
            st.error(f"{opened.name}: {exc}")

if st.session_state.get(RESULT):
    site_validation_view.render(st.session_state[RESULT])
