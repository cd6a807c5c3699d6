"""Chest X-ray findings from image + text (research tool, not a medical device).

    streamlit run app.py                      # weights from $CXR_WEIGHTS or ./weights

Router only: the sidebar shows who is signed in, the loaded model and sharing status; each page
lives in pages/. The model loads once per server process, on a background worker from server start
(core.serving.loader, through ui.resources), and never over the network.

Who gets in (core.access.policy, ui.access): on loopback without sign-in, the local user; with
sign-in configured ([auth] in .streamlit/secrets.toml), signed-in users on the allow-list; on a
network address without sign-in, nobody: one page says how to configure it, and no model loads.

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
        from ui import access, resources
        if access.serves_data():  # a network address without sign-in serves no data: no model either
            resources.start_loading_model()
        yield

    app = st.App(__file__, lifespan=_server_start)
else:
    from ui import access, gate, resources, router, sidebar

    # a local icon: a Material icon here would make every page fetch its SVG from a public CDN
    st.set_page_config(page_title="CXR findings — research tool",
                       page_icon=str(Path(__file__).parent / "ui" / "favicon.png"), layout="wide")

    pages = [
        st.Page("pages/predict.py", title="Predict", icon=":material/radiology:", default=True),
        st.Page("pages/batch_review.py", title="Batch review", icon=":material/fact_check:"),
        st.Page("pages/pacs.py", title="PACS", icon=":material/dns:"),
        st.Page("pages/site_validation.py", title="Site validation", icon=":material/verified:"),
        st.Page("pages/model_card.py", title="Model card", icon=":material/description:"),
        st.Page("pages/training_monitor.py", title="Training monitor", icon=":material/monitoring:"),
    ]
    who = access.current()
    if not who.allowed:  # closed, sign in, or refused: that one page, no other, no sidebar, nothing from the log
        def _gate():
            gate.render(who)
        title = gate.title(who)  # the gate answers at every page's address too (no "page not found");
        paths = [p.url_path or "predict" for p in pages]  # the default page's address is / and /predict
        st.navigation([st.Page(_gate, title=title, default=True),
                       *[st.Page(_gate, title=title, url_path=path) for path in paths]], position="hidden").run()
        st.stop()

    resources.start_loading_model()  # cheap once started; starts it where no server hook ran (AppTest)

    page = st.navigation(pages)
    router.mark_routed()
    sidebar.render(who)
    page.run()
