"""Sharing over ngrok (core/serving/sharing.py, scripts/share.py).

The ngrok service (and the CDN pyngrok downloads its agent from) cannot be reached from the
machines these tests run on, so pyngrok's ``ngrok`` module is replaced by a mock: the tests
check what we ask of it and how we report its failures, not ngrok itself. Streamlit is never
started; the script runs with --no-app or with a fake app process.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
from pyngrok.exception import PyngrokError, PyngrokNgrokError, PyngrokNgrokInstallError

from core.serving import sharing as share
from scripts import share as share_script
from scripts._cli import CliError

REPO = Path(__file__).resolve().parents[2]
AUTH = "alice:correct-horse"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real token or credentials from the developer's shell, nor their secrets (sign-in); status file
    in tmp_path."""
    monkeypatch.delenv(share.TOKEN_ENV, raising=False)
    monkeypatch.delenv(share.AUTH_ENV, raising=False)
    monkeypatch.setenv("CXR_SHARE_STATUS", str(tmp_path / "share.json"))
    monkeypatch.setattr(share, "close_tunnels", lambda **kw: None)
    monkeypatch.setattr(share_script, "secret_files", lambda repo: [tmp_path / "no-secrets.toml"])


def fake_pyngrok(*, config_version="3", raises=None, url="https://abc123.ngrok-free.app"):
    ngrok = mock.Mock()
    if raises is not None:
        ngrok.connect.side_effect = raises
    else:
        ngrok.connect.return_value = SimpleNamespace(public_url=url)
    config = SimpleNamespace(auth_token=None, config_version=config_version)
    conf = SimpleNamespace(get_default=lambda: config)
    return ngrok, conf, config


# -- configuration --------------------------------------------------------------------------

def test_refuses_without_auth():
    with pytest.raises(share.ShareConfigError, match="refusing to share without a password"):
        share.resolve_config(port=8501, environ={share.TOKEN_ENV: "tok"})


def test_refuses_without_token():
    with pytest.raises(share.ShareConfigError, match=share.TOKEN_ENV):
        share.resolve_config(port=8501, auth=AUTH, environ={})


@pytest.mark.parametrize("bad", ["alice", "alice:", ":password123", "alice:short", "al ice:password123",
                                 "alice:pass:word123", "alice:" + "x" * 129])
def test_bad_credentials(bad):
    with pytest.raises(share.ShareConfigError):
        share.resolve_config(port=8501, auth=bad, environ={share.TOKEN_ENV: "tok"})


def test_auth_from_env_and_secrets_not_in_repr():
    config = share.resolve_config(port=8502, environ={share.TOKEN_ENV: "s3cr3t", share.AUTH_ENV: AUTH})
    assert (config.port, config.token, config.auth) == (8502, "s3cr3t", AUTH)
    assert "s3cr3t" not in repr(config) and "horse" not in repr(config)
    assert share.resolve_config(port=1, allow_no_auth=True, environ={share.TOKEN_ENV: "t"}).auth is None


# -- opening the tunnel ---------------------------------------------------------------------

def test_connect_called_with_auth_as_traffic_policy():
    ngrok, conf, config = fake_pyngrok()
    url = share.open_tunnel(share.ShareConfig(port=8501, token="tok", auth=AUTH), ngrok=ngrok, conf=conf)
    assert url == "https://abc123.ngrok-free.app" and config.auth_token == "tok"
    args, kwargs = ngrok.connect.call_args
    assert args == ("8501", "http") and kwargs["pyngrok_config"] is config
    action = kwargs["traffic_policy"]["on_http_request"][0]["actions"][0]
    assert action == {"type": "basic-auth", "config": {"credentials": [AUTH]}}


def test_connect_called_with_auth_option_for_v2_tunnels():
    ngrok, conf, _ = fake_pyngrok(config_version="2")
    share.open_tunnel(share.ShareConfig(port=8501, token="tok", auth=AUTH), ngrok=ngrok, conf=conf)
    assert ngrok.connect.call_args.kwargs["auth"] == AUTH


def test_no_auth_passes_no_auth_options():
    ngrok, conf, _ = fake_pyngrok()
    share.open_tunnel(share.ShareConfig(port=8501, token="tok", auth=None), ngrok=ngrok, conf=conf)
    assert set(ngrok.connect.call_args.kwargs) == {"pyngrok_config"}


@pytest.mark.parametrize("error, words", [
    (PyngrokNgrokInstallError("An error occurred while downloading ngrok: <urlopen error [Errno -2] Name or "
                              "service not known>"), "cannot install the ngrok agent"),
    (PyngrokNgrokError("The ngrok process errored on start: failed to dial\nngrok service"), "cannot open"),
    (PyngrokError("boom"), "cannot open an ngrok tunnel"),
    (ConnectionRefusedError(111, "Connection refused"), "cannot reach ngrok"),
])
def test_missing_binary_or_network_failure_is_one_clear_line(error, words):
    ngrok, conf, _ = fake_pyngrok(raises=error)
    with pytest.raises(share.TunnelError) as info:
        share.open_tunnel(share.ShareConfig(port=8501, token="tok", auth=AUTH), ngrok=ngrok, conf=conf)
    message = str(info.value)
    assert words in message and "reachable only at http://localhost:8501" in message and "\n" not in message


# -- status file for the sidebar ------------------------------------------------------------

def test_share_status(tmp_path):
    assert share.share_status() == {"shared": False, "url": None, "auth": False, "started": None, "error": None}
    share.write_status(url="https://x.ngrok.app", port=8501, auth=True)
    status = share.share_status()
    assert status["shared"] and status["url"] == "https://x.ngrok.app" and status["auth"] is True
    assert "horse" not in (tmp_path / "share.json").read_text()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    share.write_status(url="https://x.ngrok.app", port=8501, auth=True, pid=int(dead.stdout))
    assert share.share_status()["shared"] is False  # left behind by a script that has exited
    (tmp_path / "share.json").write_text("{not json")
    assert share.share_status()["shared"] is False
    share.clear_status()
    assert not (tmp_path / "share.json").exists()


# -- the script -----------------------------------------------------------------------------

def test_script_prints_url_and_writes_status(monkeypatch, capsys):
    monkeypatch.setenv(share.TOKEN_ENV, "tok")
    seen = {}

    def fake_open(config):
        seen["config"] = config
        return "https://abc.ngrok.app"

    def fake_block():
        seen["status"] = share.share_status()  # what the sidebar sees while the script runs
        return 0

    monkeypatch.setattr(share, "open_tunnel", fake_open)
    monkeypatch.setattr(share_script, "block", fake_block)
    assert share_script.main(["--no-app", "--auth", AUTH, "--port", "8600"]) == 0
    assert seen["config"].auth == AUTH and seen["config"].port == 8600
    assert seen["status"]["shared"] and seen["status"]["url"] == "https://abc.ngrok.app"
    assert "https://abc.ngrok.app" in capsys.readouterr().out
    assert share.share_status()["shared"] is False  # cleared on exit


def test_script_allow_no_auth_warns(monkeypatch, capsys):
    monkeypatch.setenv(share.TOKEN_ENV, "tok")
    monkeypatch.setattr(share, "open_tunnel", lambda config: "https://open.ngrok.app")
    monkeypatch.setattr(share_script, "block", lambda: 0)
    assert share_script.main(["--no-app", "--allow-no-auth"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err and "WITHOUT a password" in err


def test_script_keeps_app_serving_when_tunnel_fails(monkeypatch, capsys):
    monkeypatch.setenv(share.TOKEN_ENV, "tok")

    def offline(config):
        raise share.TunnelError("cannot install the ngrok agent (offline); the app stays reachable only at "
                                "http://localhost:8501")

    app = mock.Mock()
    app.wait.return_value = 0
    app.poll.return_value = 0
    monkeypatch.setattr(share, "open_tunnel", offline)
    monkeypatch.setattr(share_script, "start_app", lambda port, secrets=None: app)
    monkeypatch.setattr(share_script.Path, "is_file", lambda self: True)
    assert share_script.main(["--auth", AUTH]) == 0
    app.wait.assert_called_once_with()  # waited on the local app instead of exiting
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "reachable only at" in err


def test_script_no_app_tunnel_failure_exits_1(monkeypatch, capsys):
    monkeypatch.setenv(share.TOKEN_ENV, "tok")
    ngrok, conf, _ = fake_pyngrok(raises=PyngrokNgrokInstallError("download failed"))
    real_open = share.open_tunnel
    monkeypatch.setattr(share, "open_tunnel", lambda config: real_open(config, ngrok=ngrok, conf=conf))
    assert share_script.main(["--no-app", "--auth", AUTH]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ngrok agent" in err


@pytest.mark.parametrize("argv, env, words", [
    (["--no-app", "--auth", AUTH], {}, "NGROK_AUTHTOKEN"),
    (["--no-app"], {"NGROK_AUTHTOKEN": "tok"}, "refusing to share without a password"),
    (["--no-app", "--auth", "nocolon"], {"NGROK_AUTHTOKEN": "tok"}, "user:password"),
    (["--no-app", "--auth", "a:short"], {"NGROK_AUTHTOKEN": "tok"}, "8 to 128"),
    (["--port", "notaport"], {"NGROK_AUTHTOKEN": "tok"}, "invalid int value"),
    (["--no-app", "--auth", AUTH, "--port", "70000"], {"NGROK_AUTHTOKEN": "tok"}, "between 1 and 65535"),
])
def test_cli_bad_input_exits_2_with_one_line(argv, env, words, tmp_path):
    clean = {k: v for k, v in os.environ.items() if k not in (share.TOKEN_ENV, share.AUTH_ENV)}
    (tmp_path / "secrets.toml").write_text("")  # not the developer's own (sign-in would change the rules)
    argv = [*argv, "--secrets", str(tmp_path / "secrets.toml")]
    proc = subprocess.run([sys.executable, "scripts/share.py", *argv], cwd=REPO, capture_output=True, text=True,
                          env={**clean, **env, "CXR_SHARE_STATUS": str(tmp_path / "s.json")}, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and words in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "s.json").exists()


# -- with sign-in configured (issue 29) --------------------------------------------------------

SIGNIN = ("[auth]\nredirect_uri = \"{redirect}\"\ncookie_secret = \"" + "c" * 64 + "\"\nclient_id = \"cxr\"\n"
          "client_secret = \"s\"\nserver_metadata_url = \"https://idp.site.org/.well-known/openid-configuration\"\n")


def test_with_sign_in_the_tunnel_needs_no_password_and_opens_at_the_redirect_domain():
    config = share.resolve_config(port=8501, environ={share.TOKEN_ENV: "tok"},
                                  signin_redirect="https://cxr-site.ngrok.app/oauth2callback")
    assert config.auth is None and config.signin == "https://cxr-site.ngrok.app" and not config.dropped_auth
    assert config.domain == "cxr-site.ngrok.app"
    for version, option in (("3", {"url": "https://cxr-site.ngrok.app"}), ("2", {"domain": "cxr-site.ngrok.app"})):
        ngrok, conf, _ = fake_pyngrok(config_version=version, url="https://cxr-site.ngrok.app")
        assert share.open_tunnel(config, ngrok=ngrok, conf=conf) == "https://cxr-site.ngrok.app"
        kwargs = ngrok.connect.call_args.kwargs
        assert {k: v for k, v in kwargs.items() if k != "pyngrok_config"} == option  # no basic auth
    # a password given too is not used, and it says so
    assert share.resolve_config(port=8501, auth=AUTH, environ={share.TOKEN_ENV: "tok"},
                                signin_redirect="https://cxr-site.ngrok.app/oauth2callback").dropped_auth


def test_with_sign_in_a_tunnel_at_another_address_is_refused_in_one_line():
    config = share.resolve_config(port=8501, environ={share.TOKEN_ENV: "tok"},
                                  signin_redirect="https://cxr-site.ngrok.app/oauth2callback")
    ngrok, conf, _ = fake_pyngrok(url="https://random-words.ngrok-free.app")
    with pytest.raises(share.TunnelError, match="sign-in sends users back to https://cxr-site.ngrok.app") as info:
        share.open_tunnel(config, ngrok=ngrok, conf=conf)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("redirect, words", [
    ("http://localhost:8501/oauth2callback", "sends users back to their own machine"),
    ("http://127.0.0.1:8501/oauth2callback", "sends users back to their own machine"),
    ("http://cxr.site.org/oauth2callback", "must be https://<your ngrok domain>/oauth2callback"),
])
def test_with_sign_in_on_a_redirect_a_tunnel_cannot_serve_it_refuses(redirect, words):
    with pytest.raises(share.ShareConfigError, match=re.escape(words)):
        share.resolve_config(port=8501, environ={share.TOKEN_ENV: "tok"}, signin_redirect=redirect)


def test_script_with_sign_in_shares_without_a_password(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(share.TOKEN_ENV, "tok")
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(SIGNIN.format(redirect="https://cxr-site.ngrok.app/oauth2callback"))
    seen = {}

    def fake_open(config):
        seen["config"] = config
        return "https://cxr-site.ngrok.app"

    def fake_block():
        seen["status"] = share.share_status()
        return 0

    monkeypatch.setattr(share, "open_tunnel", fake_open)
    monkeypatch.setattr(share_script, "block", fake_block)
    assert share_script.main(["--no-app", "--secrets", str(secrets), "--auth", AUTH]) == 0
    assert seen["config"].auth is None and seen["config"].signin == "https://cxr-site.ngrok.app"
    assert seen["status"]["signin"] is True and seen["status"]["auth"] is False
    out, err = capsys.readouterr()
    assert "sign-in required" in out and err.count("\n") == 1 and "uses it and not the password" in err


def test_script_reads_the_secrets_the_app_reads(monkeypatch, capsys, tmp_path):
    """Without --secrets: ~/.streamlit/secrets.toml then the repository's .streamlit/secrets.toml, as
    `streamlit run app.py` from the repository reads them; the app it starts gets the same file."""
    home, repo = tmp_path / "home.toml", tmp_path / "repo.toml"
    home.write_text(SIGNIN.format(redirect="https://cxr-site.ngrok.app/oauth2callback"))
    repo.write_text("[cxr]\nreviewers = [\"alice@site.org\"]\n")
    monkeypatch.setattr(share_script, "secret_files", lambda root: [home, repo])
    assert share_script.signin_redirect() == "https://cxr-site.ngrok.app/oauth2callback"
    repo.write_text("[cxr]\nreviewers = [\"alice\"]\n")  # a list the app would refuse: so does the script
    with pytest.raises(CliError, match="the app would not open: \\[cxr\\] reviewers entry 'alice'"):
        share_script.signin_redirect()
    started = {}
    monkeypatch.setattr(share_script.subprocess, "Popen", lambda cmd, cwd: started.setdefault("cmd", cmd))
    share_script.start_app(8600, str(home))
    assert started["cmd"][-2:] == ["--secrets.files", str(home.resolve())]


@pytest.mark.parametrize("secrets, words", [
    ("[auth]\nredirect_uri = \"http://localhost:8501/oauth2callback\"\n", "lacks cookie_secret"),
    (SIGNIN.format(redirect="http://localhost:8501/oauth2callback"), "sends users back to their own machine"),
    ("[auth\n", "is not valid TOML"),
])
def test_cli_sign_in_misconfigured_exits_2_with_one_line(tmp_path, secrets, words):
    (tmp_path / "secrets.toml").write_text(secrets)
    clean = {k: v for k, v in os.environ.items() if k not in (share.TOKEN_ENV, share.AUTH_ENV)}
    proc = subprocess.run([sys.executable, "scripts/share.py", "--no-app", "--secrets", str(tmp_path / "secrets.toml")],
                          cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**clean, share.TOKEN_ENV: "tok", "CXR_SHARE_STATUS": str(tmp_path / "s.json")})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and words in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "s.json").exists()
