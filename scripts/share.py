"""Share the app over an ngrok tunnel, behind HTTP basic auth, or behind the app's sign-in when it has one.

    export NGROK_AUTHTOKEN=...                                   # https://dashboard.ngrok.com
    python scripts/share.py --auth alice:long-password           # starts the app, opens the tunnel
    python scripts/share.py                                      # sign-in configured: no password needed
    CXR_SHARE_AUTH=alice:long-password python scripts/share.py --port 8502
    python scripts/share.py --no-app --auth alice:long-password  # tunnel to an app already running
    python scripts/share.py --allow-no-auth                      # anyone with the URL gets in (warns)
    python scripts/share.py --auth alice:long-password --allow-pacs   # required when $CXR_PACS_URL is set

With sign-in configured ([auth] in .streamlit/secrets.toml, docs/access.md), the tunnel needs no
password: every visitor signs in with the site's identity provider, which sends them back to the
redirect URI, so that must be the tunnel's address: reserve an ngrok domain, set
redirect_uri = "https://<domain>/oauth2callback", register it with the provider; the tunnel opens
at that domain. A password given anyway is not used (a note says so).

Prints the public URL and runs until Ctrl-C; the app's sidebar shows the URL while it runs.
Without network, or without the ngrok agent (pyngrok downloads it on first use), it says so
in one line on stderr and the app keeps serving locally. Bad usage (no token, no or malformed
credentials) exits 2 with one line on stderr.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from core.access.settings import AccessConfigError, read_secrets, secret_files, settings_from
from core.serving import sharing as share
from scripts._cli import Parser, fail, run_main
from scripts._server import stop

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8501, help="local port of the app (default 8501)")
    p.add_argument("--auth", metavar="USER:PASSWORD", default=None,
                   help=f"basic-auth credentials for the public URL (default ${share.AUTH_ENV})")
    p.add_argument("--allow-no-auth", action="store_true", help="share without a password (not recommended)")
    p.add_argument("--no-app", action="store_true", help="do not start the app; tunnel to one already running")
    p.add_argument("--allow-pacs", action="store_true",
                   help=f"share even though the app has a PACS connection (${share.PACS_URL_ENV} is set)")
    p.add_argument("--secrets", metavar="FILE", default=None,
                   help="the app's secrets file (sign-in, allow-lists), also handed to the app it starts "
                        "(default: ~/.streamlit/secrets.toml, then .streamlit/secrets.toml, as Streamlit reads them)")
    return p.parse_args(argv)


def start_app(port: int, secrets: str | None = None) -> subprocess.Popen:
    """``streamlit run app.py`` as a child process (same interpreter, repo root as cwd), on loopback as
    the project's config says: the tunnel's agent reaches it there."""
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
           "--server.headless", "true", *(["--secrets.files", str(Path(secrets).resolve())] if secrets else [])]
    return subprocess.Popen(cmd, cwd=REPO)


def block() -> int:
    """Wait for Ctrl-C or SIGTERM when there is no app process to wait on."""
    threading.Event().wait()
    return 0


def stop_app(app: subprocess.Popen | None) -> None:
    stop(app, timeout=10)


def _sigterm(signum, frame):
    raise KeyboardInterrupt  # same clean-up path as Ctrl-C


def signin_redirect(secrets: str | None = None) -> str | None:
    """The app's sign-in redirect URI when sign-in is configured in the secrets the app will read
    (``secrets``, else ~/.streamlit/secrets.toml then .streamlit/secrets.toml, as the app run from the
    repository reads them); a sign-in configuration the app could not use is refused here too."""
    if secrets and not Path(secrets).is_file():
        fail(f"--secrets {secrets}: no such file")
    try:
        settings = settings_from(read_secrets([Path(secrets)] if secrets else secret_files(REPO)))
    except AccessConfigError as exc:
        fail(str(exc))
    if settings.problem:
        fail(f"the app would not open: {settings.problem}")
    return settings.redirect_uri if settings.signin else None


def main(argv=None) -> int:
    args = parse_args(argv)
    # pyngrok logs through `logging`; without a handler its warnings would reach stderr as extra lines
    logging.getLogger("pyngrok").addHandler(logging.NullHandler())
    try:
        config = share.resolve_config(port=args.port, auth=args.auth, allow_no_auth=args.allow_no_auth,
                                      allow_pacs=args.allow_pacs,
                                      signin_redirect=signin_redirect(args.secrets))
    except share.ShareConfigError as exc:
        fail(str(exc))
    if not args.no_app and not (REPO / "app.py").is_file():
        fail(f"{REPO / 'app.py'} not found; run from a complete checkout or use --no-app")
    if args.allow_pacs and (os.environ.get(share.PACS_URL_ENV) or "").strip():
        print(f"warning: sharing an app with a PACS connection (${share.PACS_URL_ENV}): whoever gets in can list "
              "its studies and store reports into them", file=sys.stderr)
    if config.signin and config.dropped_auth:
        print("note: sign-in is configured, so the tunnel uses it and not the password", file=sys.stderr)
    elif config.auth is None and not config.signin:
        print("warning: sharing WITHOUT a password: anyone with the URL can use the app and read its "
              "prediction log", file=sys.stderr)
    signal.signal(signal.SIGTERM, _sigterm)
    app = None if args.no_app else start_app(config.port, args.secrets)
    try:
        try:
            url = share.open_tunnel(config)
        except share.TunnelError as exc:
            print(f"error: {exc}", file=sys.stderr)
            share.write_status(url=None, port=config.port, auth=config.auth is not None, error=str(exc),
                               signin=bool(config.signin))
            if app is None:
                return 1
        else:
            share.write_status(url=url, port=config.port, auth=config.auth is not None, signin=bool(config.signin))
            lock = "sign-in required" if config.signin else "basic auth on" if config.auth else "NO password"
            print(f"public URL: {url} ({lock}) -> http://localhost:{config.port}; Ctrl-C to stop", flush=True)
        return app.wait() if app is not None else block()
    finally:
        share.close_tunnels()
        share.clear_status()
        stop_app(app)


if __name__ == "__main__":
    run_main(main)
