"""Chest X-ray findings from image + text (research tool, not a medical device).

    streamlit run app.py                      # weights from $CXR_WEIGHTS or ./weights

Router only: the sidebar shows the loaded model and sharing status; each page lives in pages/.
The model loads once per server process, on a background thread from server start
(ui.resources), and never over the network.

The file plays two parts. ``streamlit run app.py`` finds the ``st.App`` below and imports this
file as a module (``__name__ == "app"``): the server, whose start-up hook begins loading the
model before any browser connects. Streamlit then runs the file as the page script
(``__name__ == "__main__"``) on every page view: the router.
"""
from contextlib import asynccontextmanager
from pathlib import Path

import streamlit as st

if __name__ != "__main__":
    @asynccontextmanager
    async def _server_start(_app):
        # the model's imports and file read take ~5 s: start them with the server, so they are
        # done (or nearly) by the time a user has opened the page and picked a file. Imported
        # here, once the runtime exists: its caches need it.
        from ui import resources
        resources.start_loading_model()
        yield

    app = st.App(__file__, lifespan=_server_start)
else:
    from ui import resources, router, sidebar

    resources.start_loading_model()  # cheap once started; starts it where no server hook ran (AppTest)

    # a local icon: a Material icon here would make every page fetch its SVG from a public CDN
    st.set_page_config(page_title="CXR findings — research tool",
                       page_icon=str(Path(__file__).parent / "ui" / "favicon.png"), layout="wide")

    page = st.navigation([
        st.Page("pages/predict.py", title="Predict", icon=":material/radiology:", default=True),
        st.Page("pages/batch_review.py", title="Batch review", icon=":material/fact_check:"),
        st.Page("pages/pacs.py", title="PACS", icon=":material/dns:"),
        st.Page("pages/site_validation.py", title="Site validation", icon=":material/verified:"),
        st.Page("pages/model_card.py", title="Model card", icon=":material/description:"),
        st.Page("pages/training_monitor.py", title="Training monitor", icon=":material/monitoring:"),
    ])
    router.mark_routed()
    sidebar.render()
    page.run()
