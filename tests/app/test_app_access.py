"""The app's gate and attribution in-process (Streamlit AppTest): a network address without sign-in
serves nothing and loads no model; sign-in configured shows only the way in; a user not on the list is
refused; a reader may not review or delete; a reviewer's (or the local user's) changes and deletions
are recorded with who and when, and deleting asks first. The same against a real provider in Chromium:
tests/e2e/test_signin.py."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.errors import AppTestError

from core.data.labels import FINDINGS
from core.store import LogEntry, PredictionStore
from tests.app.test_app_history import _png
from tests.conftest import serve_on

APP = str(Path(__file__).resolve().parents[2] / "app.py")
ROOT = Path(APP).parent
PAGES = ("pages/predict.py", "pages/batch_review.py", "pages/pacs.py", "pages/model_card.py",
         "pages/training_monitor.py")
SECRETS = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "c" * 64,
                    "client_id": "cxr", "client_secret": "s",
                    "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"},
           "cxr": {"users": ["@site.org"], "reviewers": ["alice@site.org"]}}


def _app(*, secrets: dict | None = None, user: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if secrets is not None:
        at.secrets = secrets
    if user is not None:
        at.user = user
    return at


def _who(email: str) -> dict:
    return {"is_logged_in": True, "email": email, "email_verified": True, "name": email.split("@")[0]}


def _seed(path) -> int:
    p = {f: 0.2 for f in FINDINGS}
    return PredictionStore(path).log_prediction(LogEntry(
                 model_version="m", image_png=_png(), image_name="a.png", image_sha256=None, text="Heart size normal.",
                 text_mode="report", fusion=p, image=p, text_probs=p, thresholds=p))


def _history(at: AppTest) -> AppTest:
    at.session_state["batch_tab"] = "History and review"
    return at.switch_page("pages/batch_review.py").run()


def _texts(at: AppTest) -> str:
    """Every text on the page and in the sidebar."""
    kinds = ("title", "header", "markdown", "caption", "error", "info")
    return " ".join(e.value for where in (at, at.sidebar) for kind in kinds for e in getattr(where, kind))


def _on_page(monkeypatch, page: str, address: str | None) -> AppTest:
    """The app with ``page`` open (as the local user on loopback: the pages are registered), then served
    on ``address``, to be run again as a visitor who may not see it: what a session at that page's
    address gets."""
    serve_on(monkeypatch, "127.0.0.1")
    at = _app().run().switch_page(page)
    serve_on(monkeypatch, address)
    return at


def _nothing_but_the_gate(at: AppTest, heading: str) -> None:
    assert not at.exception
    assert [h.value for h in at.header] == [heading]
    assert len(at.sidebar.children) == 0  # no sidebar: no model, no sharing status
    assert len(at.dataframe) == 0 and len(at.get("file_uploader")) == 0 and len(at.tabs) == 0


@pytest.mark.parametrize("address", [None, "0.0.0.0", "192.168.1.20", "::"])
def test_a_network_address_without_sign_in_serves_nothing(app_env, monkeypatch, address):
    from ui import resources
    started = []
    monkeypatch.setattr(resources._LOADS, "start", lambda key: started.append(key))
    monkeypatch.setenv("CXR_WEIGHTS", str(ROOT / "weights"))  # weights are there: a model would load
    serve_on(monkeypatch, address)
    _seed(app_env["CXR_DB_PATH"])
    before = Path(app_env["CXR_DB_PATH"]).stat().st_mtime_ns
    at = _app().run()
    _nothing_but_the_gate(at, "Closed: sign-in is not configured")
    assert "no sign-in is configured" in at.error[0].value
    assert any("[auth]" in c.value for c in at.code) and any("scripts/share.py" in c.value for c in at.code)
    assert started == [], "the closed app started loading the model"
    for page in PAGES:  # no page's address gets past it
        at = _on_page(monkeypatch, page, address)
        started.clear()
        _nothing_but_the_gate(at.run(), "Closed: sign-in is not configured")
        assert started == []
    assert Path(app_env["CXR_DB_PATH"]).stat().st_mtime_ns == before


def test_a_sign_in_configuration_that_cannot_be_used_closes_it_even_on_loopback(app_env):
    broken = {"auth": {k: v for k, v in SECRETS["auth"].items() if k != "client_secret"}}
    at = _app(secrets=broken, user=_who("alice@site.org")).run()
    _nothing_but_the_gate(at, "Closed: the sign-in settings cannot be used")
    assert "lacks client_secret" in at.error[0].value


def test_a_secrets_file_that_is_not_toml_closes_it_in_one_line(app_env, monkeypatch, tmp_path):
    import streamlit as st
    from streamlit import config
    from streamlit.runtime.secrets import Secrets
    bad = tmp_path / "secrets.toml"
    bad.write_text('[auth]\nredirect_uri = "http://localhost:8501/oauth2callback\n')  # an unclosed string
    real = config.get_option
    monkeypatch.setattr(config, "get_option", lambda key: [str(bad)] if key == "secrets.files" else real(key))
    monkeypatch.setattr(st, "secrets", Secrets())  # Streamlit's own loading, from that file
    at = _app().run()
    _nothing_but_the_gate(at, "Closed: the sign-in settings cannot be used")
    assert "is not valid TOML" in at.error[0].value and "\n" not in at.error[0].value


def test_sign_in_without_authlib_installed_closes_it_in_one_line(app_env, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "authlib" else real(name, *a))
    at = _app(secrets=SECRETS, user={"is_logged_in": False}).run()
    _nothing_but_the_gate(at, "Closed: the sign-in settings cannot be used")
    assert "sign-in needs authlib" in at.error[0].value and "pip install -r requirements.txt" in at.error[0].value


def test_with_sign_in_configured_a_visitor_sees_only_the_way_in(app_env, monkeypatch):
    serve_on(monkeypatch, "0.0.0.0")
    at = _app(secrets=SECRETS, user={"is_logged_in": False}).run()
    _nothing_but_the_gate(at, "Sign in")
    assert [b.label for b in at.button] == ["Sign in"]
    at = _on_page(monkeypatch, "pages/batch_review.py", "0.0.0.0")
    at.secrets, at.user = SECRETS, {"is_logged_in": False}
    _nothing_but_the_gate(at.run(), "Sign in")
    assert not Path(app_env["CXR_DB_PATH"]).exists()  # the log was never opened


def test_a_user_not_on_the_list_is_refused_with_a_way_out(app_env, monkeypatch):
    serve_on(monkeypatch, "0.0.0.0")
    at = _app(secrets=SECRETS, user=_who("mallory@elsewhere.example")).run()
    _nothing_but_the_gate(at, "Not allowed")
    assert "mallory@elsewhere.example" in at.error[0].value and "not on the app's list" in at.error[0].value
    assert [b.label for b in at.button] == ["Sign out"]
    at = _on_page(monkeypatch, "pages/pacs.py", "0.0.0.0")
    at.secrets, at.user = SECRETS, _who("mallory@elsewhere.example")
    _nothing_but_the_gate(at.run(), "Not allowed")
    assert not Path(app_env["CXR_DB_PATH"]).exists()


def test_a_reader_reads_but_may_not_review_or_delete(app_env, monkeypatch):
    serve_on(monkeypatch, "0.0.0.0")
    pid = _seed(app_env["CXR_DB_PATH"])
    at = _app(secrets=SECRETS, user=_who("bob@site.org")).run()
    assert "Reader:" in _texts(at) and "bob@site.org" in _texts(at)  # AppTest keeps the first run's sidebar only
    at = _history(at)
    assert not at.exception and at.selectbox(key="hist_open").value == pid
    save = next(b for b in at.button if b.label == "Save review")
    assert save.disabled and at.selectbox(key=f"verdict_{pid}_Edema").disabled
    assert at.text_area(key=f"note_{pid}").disabled
    assert not any(c.key == f"delete_sure_{pid}" for c in at.checkbox)
    assert "Only reviewers may change verdicts and notes" in _texts(at)


def test_a_reviewer_changes_are_attributed_and_deleting_asks_first(app_env, monkeypatch):
    serve_on(monkeypatch, "0.0.0.0")
    pid = _seed(app_env["CXR_DB_PATH"])
    at = _app(secrets=SECRETS, user=_who("alice@site.org")).run()
    assert "Reviewer:" in _texts(at) and [b.label for b in at.sidebar.button] == ["Sign out"]
    at = _history(at)
    at.selectbox(key=f"verdict_{pid}_Cardiomegaly").set_value("present")
    at.text_area(key=f"note_{pid}").input("compare with prior")
    next(b for b in at.button if b.label == "Save review").click().run()
    assert not at.exception and not at.error
    assert any("2 changes, recorded as `alice@site.org`" in s.value for s in at.success)
    store = PredictionStore(app_env["CXR_DB_PATH"])
    assert store.verdicts(pid)["Cardiomegaly"]["reviewer"] == "alice@site.org"
    assert store.get(pid)["note_by"] == "alice@site.org"
    history = at.dataframe[0].value.set_index("id")
    assert history.loc[pid, "reviewed by"] == "alice@site.org" and history.loc[pid, "note by"] == "alice@site.org"
    activity = next(d.value for d in at.dataframe if "who" in d.value.columns)
    assert list(activity["who"]) == ["alice@site.org"] * 2 and list(activity["action"]) == ["verdict", "note"]
    # deleting asks first: the button stays disabled until the confirmation is ticked
    assert at.button(key=f"delete_{pid}").disabled
    with pytest.raises(AppTestError, match="disabled"):  # as in a browser, it cannot be pressed yet
        at.button(key=f"delete_{pid}").click()
    assert store.get(pid) is not None
    at.checkbox(key=f"delete_sure_{pid}").check().run()
    at.button(key=f"delete_{pid}").click().run()
    assert not at.exception and store.get(pid) is None
    assert [(d["prediction_id"], d["by_user"]) for d in store.deletions()] == [(pid, "alice@site.org")]
    gone = next(d.value for d in at.dataframe if "entry" in d.value.columns)
    assert list(gone["entry"]) == [pid] and list(gone["who"]) == ["alice@site.org"]


def test_on_loopback_without_sign_in_the_local_user_reviews(app_env):
    pid = _seed(app_env["CXR_DB_PATH"])
    at = _app().run()
    assert not at.exception and "Local user" in _texts(at)
    assert not any(b.label == "Sign out" for b in at.sidebar.button)
    at = _history(at)
    at.selectbox(key=f"verdict_{pid}_Edema").set_value("absent")
    next(b for b in at.button if b.label == "Save review").click().run()
    store = PredictionStore(app_env["CXR_DB_PATH"])
    assert store.verdicts(pid)["Edema"]["reviewer"] == "local"
    assert [(a["action"], a["by_user"]) for a in store.activity(pid)] == [("verdict", "local")]
