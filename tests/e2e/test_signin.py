"""Who may open the app, end to end: the real server, a real OpenID Connect provider on loopback
(tests/oidc_provider.py: Authlib's authorization server, code flow with PKCE, signed ID tokens) and
Chromium.

- sign in as a reviewer, set a verdict, see it attributed in the history and the log; sign out (the
  provider's session ends too: signing in again asks for the password);
- a reader (signed in, not a reviewer) sees the review form disabled and no delete;
- a user the provider knows but the app's list does not is refused, on every page, and can sign out;
- started on a network address with no sign-in configured, the app shows one page and no data, opens
  no prediction log and loads no model.

Screenshots go to $CXR_E2E_SHOTS (default: the test's tmp folder).

    CXR_E2E_SHOTS=/tmp/shots python -m pytest tests/e2e/test_signin.py -q
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from core.data.labels import FINDINGS
from core.store import LogEntry, PredictionStore

CHROMIUM = Path(os.environ.get("CXR_E2E_CHROMIUM", "/usr/bin/chromium"))
pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install playwright)")
pytest.importorskip("authlib", reason="Authlib is not installed (pip install -r requirements.txt)")
pytest.importorskip("flask", reason="Flask is not installed (pip install -r requirements.txt)")
if not CHROMIUM.is_file():
    pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set CXR_E2E_CHROMIUM)",
                allow_module_level=True)

from playwright.sync_api import Browser, Page, expect  # noqa: E402

from scripts._server import free_port  # noqa: E402
from tests.e2e.conftest import CHROMIUM_ARGS, _serve  # noqa: E402
from tests.e2e.test_browser import LOAD_MS, STEP_MS, _shot, _wait_idle  # noqa: E402
from tests.oidc_provider import USERS, OidcProvider, secrets_toml  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _png() -> bytes:
    from tests.app.test_app_history import _png as png
    return png()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def _context_page(browser: Browser) -> Page:
    """A fresh browser profile (its own cookies): one per user."""
    return browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True).new_page()


@pytest.fixture
def signin_app(app_env, tmp_path):
    """The app with sign-in against a provider on loopback: users @site.org, reviewer alice@site.org;
    the log holds one prediction. Opened at http://localhost:PORT, the redirect URI's origin."""
    port = free_port()
    provider = OidcProvider(redirect_uris=[f"http://localhost:{port}/oauth2callback"]).start()
    store = PredictionStore(app_env["CXR_DB_PATH"])
    p = {f: 0.2 for f in FINDINGS}
    pid = store.log_prediction(LogEntry(model_version="m", image_png=_png(), image_name="upload-3fa9c2d1e0b4.png",
                                        image_sha256=None, text="Heart size normal.", text_mode="report", fusion=p,
                                        image=p, text_probs=p, thresholds=p))
    secrets = secrets_toml(provider=provider, app_url=f"http://localhost:{port}", users=["@site.org"],
                           reviewers=["alice@site.org"])
    try:
        yield from ((url, env, log, provider, pid) for url, env, log in
                    _serve(app_env, tmp_path / "no-weights", tmp_path, secrets=secrets, port=port, host="localhost"))
    finally:
        provider.stop()


def _sign_in(page: Page, url: str, user: str) -> None:
    """From the app's sign-in page through the provider's login form and back."""
    page.goto(url, timeout=LOAD_MS)
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible(timeout=LOAD_MS)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Test identity provider")).to_be_visible(timeout=STEP_MS)
    page.locator("#username").fill(user)
    page.locator("#password").fill(USERS[user]["password"])
    page.locator("#submit").click()
    page.wait_for_url(re.compile(rf"^{re.escape(url)}/?$"), timeout=STEP_MS)


def _open_history(page: Page, pid: int) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Batch review").click()
    expect(page.get_by_role("heading", name="Batch review", exact=True)).to_be_visible(timeout=STEP_MS)
    _wait_idle(page)
    page.get_by_role("tab", name="History and review").click()
    expect(page.get_by_role("heading", name=re.compile(rf"^Entry #{pid} "))).to_be_visible(timeout=STEP_MS)
    _wait_idle(page)


def _choose(page: Page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox ``label``; its list closes again when a rerun lands meanwhile
    (a busy machine), so open it again then."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(3):
        page.get_by_role("combobox", name=label).click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
            break
        except PlaywrightTimeout:
            _wait_idle(page)
    expect(page.get_by_role("combobox", name=label)).to_have_value(option, timeout=STEP_MS)


def test_sign_in_review_and_sign_out(signin_app, browser, shots_dir):
    url, env, log, provider, pid = signin_app
    page = _context_page(browser)
    page.goto(url, timeout=LOAD_MS)
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible(timeout=LOAD_MS)
    expect(page.get_by_test_id("stSidebar")).to_have_count(0)  # nothing but the way in
    _shot(page, shots_dir, "signin_01_sign_in_page")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Test identity provider")).to_be_visible(timeout=STEP_MS)
    page.locator("#username").fill("alice")
    page.locator("#password").fill(USERS["alice"]["password"])
    _shot(page, shots_dir, "signin_02_provider_login")
    page.locator("#submit").click()
    page.wait_for_url(re.compile(rf"^{re.escape(url)}/?$"), timeout=STEP_MS)
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("alice@site.org")).to_be_visible(timeout=LOAD_MS)
    expect(sidebar.get_by_text(re.compile(r"^Reviewer: "))).to_be_visible()
    _wait_idle(page)
    _shot(page, shots_dir, "signin_03_signed_in")

    # a verdict and a note, attributed to the signed-in user
    _open_history(page, pid)
    _choose(page, "Cardiomegaly", "present")
    note = page.get_by_role("textbox", name="Note (searchable)")
    note.fill("compare with the prior film")
    page.get_by_role("button", name="Save review").click()
    expect(page.get_by_text("recorded as alice@site.org")).to_be_visible(timeout=STEP_MS)
    _wait_idle(page)
    store = PredictionStore(env["CXR_DB_PATH"])
    assert store.verdicts(pid)["Cardiomegaly"]["reviewer"] == "alice@site.org"
    assert store.get(pid)["note_by"] == "alice@site.org"
    assert [(a["action"], a["by_user"]) for a in store.activity(pid)] == [("verdict", "alice@site.org"),
                                                                           ("note", "alice@site.org")]
    page.reload()  # the table and the activity as anyone opening the history now sees them
    _open_history(page, pid)
    expect(page.get_by_text("Note by alice@site.org")).to_be_visible(timeout=STEP_MS)
    expect(page.get_by_text(re.compile(r"^Who did what \(2 changes\)"))).to_be_visible()
    _shot(page, shots_dir, "signin_04_history_who_did_what")

    # sign out: the app's cookie and the provider's session both end
    page.get_by_test_id("stSidebar").get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible(timeout=STEP_MS)
    assert not [c for c in page.context.cookies() if c["name"].startswith("_streamlit_user")]
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Test identity provider")).to_be_visible(timeout=STEP_MS)
    expect(page.locator("#password")).to_be_visible()  # asked again: signed out of the provider too


def test_a_reader_may_not_review_and_an_unknown_user_is_refused(signin_app, browser, shots_dir):
    url, env, log, provider, pid = signin_app
    reader = _context_page(browser)
    _sign_in(reader, url, "bob")
    sidebar = reader.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("bob@site.org")).to_be_visible(timeout=LOAD_MS)
    expect(sidebar.get_by_text(re.compile(r"^Reader: "))).to_be_visible()
    _open_history(reader, pid)
    expect(reader.get_by_role("button", name="Save review")).to_be_disabled()
    expect(reader.get_by_text("Only reviewers may change verdicts and notes")).to_be_visible()
    expect(reader.get_by_text("Delete this entry")).to_have_count(0)
    _shot(reader, shots_dir, "signin_05_reader_history")

    refused = _context_page(browser)
    _sign_in(refused, url, "mallory")
    expect(refused.get_by_role("heading", name="Not allowed")).to_be_visible(timeout=LOAD_MS)
    expect(refused.get_by_text("mallory@elsewhere.example")).to_be_visible()
    expect(refused.get_by_test_id("stSidebar")).to_have_count(0)
    _wait_idle(refused)
    _shot(refused, shots_dir, "signin_06_refused")
    for path in ("batch_review", "pacs", "predict"):  # no page gets past the refusal
        refused.goto(f"{url}/{path}", timeout=LOAD_MS)
        expect(refused.get_by_role("heading", name="Not allowed")).to_be_visible(timeout=STEP_MS)
        expect(refused.get_by_test_id("stDataFrame")).to_have_count(0)
        expect(refused.get_by_test_id("stFileUploaderDropzoneInput")).to_have_count(0)
    refused.get_by_role("button", name="Sign out").click()
    expect(refused.get_by_role("heading", name="Sign in", exact=True)).to_be_visible(timeout=STEP_MS)
    store = PredictionStore(env["CXR_DB_PATH"])
    assert store.audit_log() == [] and store.verdicts(pid) == {}  # neither of them changed anything


def _mapped(pid: int, needle: str) -> bool:
    with open(f"/proc/{pid}/maps") as fh:
        return needle in fh.read()


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs /proc to see what the server loaded")
def test_a_network_address_without_sign_in_serves_no_data(app_env, tmp_path, browser, shots_dir):
    procs: list = []
    weights = ROOT / "weights"  # real weights: a server that may serve data starts loading them at once
    for url, env, _log in _serve(app_env, weights, tmp_path, address="0.0.0.0", procs=procs):
        page = _context_page(browser)
        for path in ("", "batch_review", "pacs", "model_card"):
            page.goto(f"{url}/{path}", timeout=LOAD_MS)
            expect(page.get_by_role("heading", name="Closed: sign-in is not configured")).to_be_visible(
                timeout=LOAD_MS)
            _wait_idle(page)
            for test_id in ("stSidebar", "stDataFrame", "stFileUploaderDropzoneInput", "stTabs"):
                expect(page.get_by_test_id(test_id)).to_have_count(0)
        closed = re.compile(r"listens on 0\.0\.0\.0 \(every network interface\) and no sign-in")
        expect(page.get_by_text(closed)).to_be_visible()
        expect(page.get_by_text("[auth]", exact=False).first).to_be_visible()
        expect(page.get_by_text("scripts/share.py", exact=False).first).to_be_visible()
        _shot(page, shots_dir, "signin_07_network_closed")
        time.sleep(3)  # a model load would have begun at server start; give it time to map torch
        assert not _mapped(procs[0].pid, "libtorch"), "the closed server loaded the model"
        assert not Path(env["CXR_DB_PATH"]).exists(), "the closed server opened the prediction log"


def _listening(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            host, _, hexport = local.partition(":")
            if state == "0A" and int(hexport, 16) == port:
                found.add(host)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="needs /proc/net to see where the server listens")
def test_streamlit_run_app_py_listens_on_loopback_only(app_env, tmp_path, browser):
    """`streamlit run app.py` as the README says (no address given): the project's config binds
    127.0.0.1 only, and the local user gets the app."""
    port = free_port()
    for url, _env, _log in _serve(app_env, tmp_path / "no-weights", tmp_path, address=None, port=port):
        assert _listening(port) == {"0100007F"}, _listening(port)  # 127.0.0.1, nothing on 0.0.0.0 or ::
        page = _context_page(browser)
        page.goto(url, timeout=LOAD_MS)
        expect(page.get_by_role("heading", name="Predict", exact=True)).to_be_visible(timeout=LOAD_MS)
        expect(page.get_by_test_id("stSidebar").get_by_text(re.compile(r"^Local user"))).to_be_visible()
