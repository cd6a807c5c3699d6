"""Who may open the app (core.access): loopback or network, the sign-in settings and what is wrong
with them, the allow-lists from the secrets or the environment, and the decision per session."""
from __future__ import annotations

import pytest

from core.access.policy import LOCAL_USER, State, decide, is_loopback, on_list
from core.access.settings import SIGNIN_KEYS, AccessConfigError, read_secrets, settings_from

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "c" * 64, "client_id": "cxr",
        "client_secret": "s", "server_metadata_url": "https://idp.site.org/.well-known/openid-configuration"}
LISTS = {"users": ["@site.org", "guest@partner.org"], "reviewers": ["Alice@Site.org"]}


def signed_in(email, **claims):
    return {"is_logged_in": True, "email": email, "name": email.split("@")[0].title(), **claims}


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    (None, False), ("", False), ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("10.0.0.5", False),
    ("cxr.site.org", False)])
def test_loopback_is_127_x_and_ipv6_one_only(address, loopback):
    assert is_loopback(address) is loopback


def test_no_sign_in_opens_on_loopback_and_closes_on_a_network():
    for address in ("127.0.0.1", "::1"):
        who = decide(address=address, settings=settings_from({}, {}), claims={})
        assert (who.state, who.user, who.reviewer, who.allowed) == (State.LOCAL, LOCAL_USER, True, True)
    for address in (None, "0.0.0.0", "192.168.1.20"):
        who = decide(address=address, settings=settings_from({}, {}), claims=signed_in("alice@site.org"))
        assert who.state is State.CLOSED and not who.allowed and who.user == "" and not who.reviewer
        assert "no sign-in is configured" in who.reason
    assert "every network interface (server.address is not set)" in decide(
        address=None, settings=settings_from({}, {}), claims={}).reason


def test_sign_in_decides_who_gets_in_and_who_reviews_on_any_address():
    settings = settings_from({"auth": AUTH, "cxr": LISTS}, {})
    assert settings.signin and settings.reviewers == ("alice@site.org",) and settings.problem is None
    for address in ("127.0.0.1", "0.0.0.0"):
        assert decide(address=address, settings=settings, claims={}).state is State.SIGN_IN
        assert decide(address=address, settings=settings, claims={"is_logged_in": False}).state is State.SIGN_IN
        alice = decide(address=address, settings=settings, claims=signed_in("ALICE@site.org"))
        assert (alice.state, alice.user, alice.reviewer) == (State.SIGNED_IN, "alice@site.org", True)
        bob = decide(address=address, settings=settings, claims=signed_in("bob@site.org"))
        assert (bob.state, bob.reviewer, bob.allowed) == (State.SIGNED_IN, False, True)
        guest = decide(address=address, settings=settings, claims=signed_in("guest@partner.org"))
        assert guest.allowed and not guest.reviewer
        eve = decide(address=address, settings=settings, claims=signed_in("eve@elsewhere.org"))
        assert (eve.state, eve.allowed, eve.user) == (State.REFUSED, False, "eve@elsewhere.org")
        assert "not on the app's list of users" in eve.reason
        # an address the provider has not verified matches no list
        unverified = decide(address=address, settings=settings,
                            claims=signed_in("alice@site.org", email_verified=False))
        assert unverified.state is State.REFUSED and "verified" in unverified.reason


def test_without_a_users_list_anyone_the_provider_signs_in_reads_and_predicts():
    settings = settings_from({"auth": AUTH, "cxr": {"reviewers": ["alice@site.org"]}}, {})
    who = decide(address="0.0.0.0", settings=settings, claims=signed_in("someone@anywhere.org"))
    assert who.state is State.SIGNED_IN and not who.reviewer
    no_email = decide(address="0.0.0.0", settings=settings, claims={"is_logged_in": True, "sub": "u-123"})
    assert no_email.state is State.SIGNED_IN and no_email.user == "u-123"


def test_the_environment_replaces_the_lists():
    env = {"CXR_REVIEWERS": "bob@site.org, carol@site.org", "CXR_USERS": "@site.org"}
    settings = settings_from({"auth": AUTH, "cxr": LISTS}, env)
    assert settings.reviewers == ("bob@site.org", "carol@site.org") and settings.users == ("@site.org",)
    assert decide(address="0.0.0.0", settings=settings, claims=signed_in("bob@site.org")).reviewer
    assert not decide(address="0.0.0.0", settings=settings, claims=signed_in("alice@site.org")).reviewer
    blank = settings_from({"auth": AUTH, "cxr": LISTS}, {"CXR_REVIEWERS": "  "})  # blank: not set
    assert blank.reviewers == ("alice@site.org",)


@pytest.mark.parametrize("auth, cxr, words", [
    ({k: v for k, v in AUTH.items() if k != "client_secret"}, {}, "lacks client_secret"),
    ({"redirect_uri": "http://localhost:8501/oauth2callback"}, {}, "lacks cookie_secret, client_id"),
    (dict(AUTH, redirect_uri="http://localhost:8501/"), {}, "ending in /oauth2callback"),
    (dict(AUTH, cookie_secret="short"), {}, "shorter than 32 characters"),
    (AUTH, {"reviewers": ["alice"]}, "[cxr] reviewers entry 'alice' is not an e-mail address"),
    (AUTH, {"users": "@site"}, "[cxr] users entry '@site'"),
    (AUTH, {"users": 3}, "[cxr] users must be a list"),
])
def test_a_configuration_that_cannot_be_used_closes_the_app_everywhere(auth, cxr, words):
    settings = settings_from({"auth": auth, "cxr": cxr}, {})
    assert words in settings.problem and "\n" not in settings.problem
    for address in ("127.0.0.1", "0.0.0.0"):  # fail closed: the site meant to restrict access
        who = decide(address=address, settings=settings, claims=signed_in("alice@site.org"))
        assert who.state is State.CLOSED and who.reason == settings.problem and who.misconfigured


def test_allow_list_entries():
    assert on_list("Alice@Site.org", ("alice@site.org",)) and on_list("x@site.org", ("@site.org",))
    assert not on_list("x@notsite.org", ("@site.org",)) and not on_list("x@sub.site.org", ("@site.org",))
    assert not on_list("", ("@site.org",)) and not on_list("alice@site.org", ())


def test_read_secrets_merges_like_streamlit(tmp_path):
    home, repo = tmp_path / "home.toml", tmp_path / "repo.toml"
    home.write_text('[auth]\nclient_id = "home"\n[cxr]\nreviewers = ["a@b.org"]\n')
    repo.write_text('[auth]\nclient_id = "repo"\n')
    merged = read_secrets([home, repo, tmp_path / "absent.toml"])
    assert merged["auth"] == {"client_id": "repo"} and merged["cxr"] == {"reviewers": ["a@b.org"]}
    (tmp_path / "bad.toml").write_text("[auth\n")
    with pytest.raises(AccessConfigError, match="not valid TOML"):
        read_secrets([tmp_path / "bad.toml"])
    assert set(SIGNIN_KEYS) == set(AUTH)
