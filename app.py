"""Chest X-ray findings from image + text (research tool, not a medical device).

    streamlit run app.py                      # weights from $CXR_WEIGHTS or ./weights

Router only: the sidebar shows the loaded model and sharing status; each page lives in pages/.
The model loads once per server process, in the background from the first page view
(ui.resources), and never over the network.
"""
from pathlib import Path

import streamlit as st

from ui import resources, router, sidebar

# the model's imports and file read take seconds: start them now, while the user picks a file
resources.start_loading_model()

# a local icon: a Material icon here would make every page fetch its SVG from a public CDN
st.set_page_config(page_title="CXR findings — research tool",
                   page_icon=str(Path(__file__).parent / "ui" / "favicon.png"), layout="wide")

page = st.navigation([
    st.Page("pages/predict.py", title="Predict", icon=":material/radiology:", default=True),
    st.Page("pages/batch_review.py", title="Batch review", icon=":material/fact_check:"),
    st.Page("pages/model_card.py", title="Model card", icon=":material/description:"),
    st.Page("pages/training_monitor.py", title="Training monitor", icon=":material/monitoring:"),
])
router.mark_routed()
sidebar.render()
page.run()
