"""A real OpenID Connect provider on loopback, for the sign-in tests (Authlib's Flask authorization
server with the OpenID Connect code flow, PKCE and RS256-signed ID tokens).

    provider = OidcProvider(redirect_uris=["http://localhost:8501/oauth2callback"]).start()
    provider.metadata_url        # server_metadata_url for [auth] in .streamlit/secrets.toml
    provider.stop()

    python -m tests.oidc_provider --port 9400 --redirect-uri http://localhost:8501/oauth2callback

It does what a site's provider does for Streamlit's ``st.login``: discovery, a login form (users and
passwords from ``USERS``), authorization codes bound to the client, redirect URI, nonce and PKCE
challenge, a token endpoint that authenticates the client, a JWKS, a userinfo endpoint, and an
end-session endpoint that forgets the provider's own session (so a sign-out is a real one: the next
sign-in asks for the password again). Everything is in memory; nothing leaves 127.0.0.1.
"""
from __future__ import annotations

import argparse
import secrets
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector, current_token
from authlib.jose import JsonWebKey
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.models import AuthorizationCodeMixin
from flask import Flask, jsonify, redirect, request, session
from markupsafe import escape
from werkzeug.serving import make_server

CLIENT_ID = "cxr-findings"
CLIENT_SECRET = "test-client-secret-" + "x" * 24
# who the provider knows (any site would know more); the app's allow-lists decide who gets in
USERS = {
    "alice": {"password": "alice-password", "email": "alice@site.org", "name": "Alice Reviewer"},
    "bob": {"password": "bob-password", "email": "bob@site.org", "name": "Bob Reader"},
    "mallory": {"password": "mallory-password", "email": "mallory@elsewhere.example", "name": "Mallory"},
}


@dataclass
class User:
    id: str
    email: str
    name: str

    def get_user_id(self) -> str:
        return self.id


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope):
        return " ".join(s for s in (scope or "").split() if s in ("openid", "email", "profile"))

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post") if endpoint == "token" else True

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


@dataclass
class AuthorizationCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None


@dataclass
class Token:
    access_token: str
    scope: str
    user: User
    client_id: str
    issued_at: int
    expires_in: int

    def check_client(self, client):
        return client.get_client_id() == self.client_id

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return self.expires_in

    def is_expired(self):
        return time.time() > self.issued_at + self.expires_in

    def is_revoked(self):
        return False

    def get_user(self):
        return self.user


def _user_info(user: User, scope: str) -> UserInfo:
    info = UserInfo(sub=user.id)
    if "profile" in scope:
        info["name"] = user.name
    if "email" in scope:
        info["email"], info["email_verified"] = user.email, True
    return info


def make_app(issuer: str, redirect_uris: list[str], users: dict | None = None) -> Flask:
    """The provider as a Flask app serving at ``issuer`` (http://127.0.0.1:PORT)."""
    users = {name: User(name, u["email"], u["name"]) for name, u in (users or USERS).items()}
    passwords = {name: u["password"] for name, u in USERS.items()}
    client = Client(CLIENT_ID, CLIENT_SECRET, list(redirect_uris))
    key = JsonWebKey.generate_key("RSA", 2048, is_private=True, options={"kid": "test-key"})
    codes: dict[str, AuthorizationCode] = {}
    tokens: dict[str, Token] = {}
    nonces: set[str] = set()
    app = Flask(__name__)
    app.secret_key = secrets.token_hex(32)
    app.config["SESSION_COOKIE_NAME"] = "test_idp_session"

    class CodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

        def save_authorization_code(self, code, req):
            data = req.payload.data
            codes[code] = AuthorizationCode(code, req.client.client_id, req.payload.redirect_uri, req.payload.scope,
                                            req.user, data.get("nonce"), data.get("code_challenge"),
                                            data.get("code_challenge_method"))
            if data.get("nonce"):
                nonces.add(data["nonce"])

        def query_authorization_code(self, code, client_):
            item = codes.get(code)
            return item if item is not None and item.client_id == client_.client_id else None

        def delete_authorization_code(self, authorization_code):
            codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code):
            return authorization_code.user

    class OpenID(OpenIDCode):
        def exists_nonce(self, nonce, req):
            return nonce in nonces

        def get_jwt_config(self, grant):
            return {"key": key, "alg": "RS256", "iss": issuer, "exp": 3600, "kid": "test-key"}

        def generate_user_info(self, user, scope):
            return _user_info(user, scope)

    def save_token(token, req):
        tokens[token["access_token"]] = Token(token["access_token"], token.get("scope", ""), req.user,
                                              req.client.client_id, int(time.time()), token.get("expires_in", 3600))

    server = AuthorizationServer(app, query_client=lambda cid: client if cid == CLIENT_ID else None,
                                 save_token=save_token)
    server.register_grant(CodeGrant, [OpenID(require_nonce=True), CodeChallenge(required=True)])

    class Validator(BearerTokenValidator):
        def authenticate_token(self, token_string):
            return tokens.get(token_string)

    protect = ResourceProtector()
    protect.register_token_validator(Validator())

    @app.get("/.well-known/openid-configuration")
    def discovery():
        return jsonify({
            "issuer": issuer, "authorization_endpoint": f"{issuer}/authorize", "token_endpoint": f"{issuer}/token",
            "jwks_uri": f"{issuer}/jwks", "userinfo_endpoint": f"{issuer}/userinfo",
            "end_session_endpoint": f"{issuer}/logout", "response_types_supported": ["code"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"], "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": CodeGrant.TOKEN_ENDPOINT_AUTH_METHODS,
            "claims_supported": ["sub", "name", "email", "email_verified"]})

    @app.get("/jwks")
    def jwks():
        return jsonify({"keys": [key.as_dict(is_private=False)]})

    @app.route("/authorize", methods=["GET", "POST"])
    def authorize():
        user = users.get(session.get("user", ""))
        error = ""
        if request.method == "POST":
            name = request.form.get("username", "")
            if name in users and secrets.compare_digest(request.form.get("password", ""), passwords[name]):
                session["user"], user = name, users[name]
            else:
                error = "<p id='error'>Wrong user name or password.</p>"
        if user is None:
            return (f"<!doctype html><title>Test identity provider</title><h1>Test identity provider</h1>{error}"
                    f"<form method='post' action='/authorize?{escape(request.query_string.decode())}'>"
                    "<label>User <input name='username' id='username'></label> "
                    "<label>Password <input name='password' id='password' type='password'></label> "
                    "<button type='submit' id='submit'>Sign in</button></form>")
        grant = server.get_consent_grant(end_user=user)
        return server.create_authorization_response(grant_user=user, grant=grant)

    @app.post("/token")
    def issue_token():
        return server.create_token_response()

    @app.get("/userinfo")
    @protect("openid")
    def userinfo():
        return jsonify(_user_info(current_token.user, current_token.scope))

    @app.get("/logout")
    def logout():
        session.clear()
        target = request.args.get("post_logout_redirect_uri", "")
        if target and target in client.redirect_uris:  # only where the client said it may go
            return redirect(target)
        return "<!doctype html><title>Signed out</title><p>Signed out of the test identity provider.</p>"

    return app


class OidcProvider:
    """The provider on 127.0.0.1 in a thread of this process (a free port unless ``port``)."""

    def __init__(self, *, redirect_uris: list[str], port: int = 0):
        self._server = make_server("127.0.0.1", port, None, threaded=True)
        self.issuer = f"http://127.0.0.1:{self._server.server_port}"
        self._server.app = make_app(self.issuer, redirect_uris)
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-provider", daemon=True)

    @property
    def metadata_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def start(self) -> OidcProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def secrets_toml(*, provider: OidcProvider, app_url: str, users: list[str] | None, reviewers: list[str]) -> str:
    """The app's .streamlit/secrets.toml for this provider (``app_url``: where the browser opens the app)."""
    host = urlparse(app_url)
    lines = ["[auth]", f'redirect_uri = "{host.scheme}://{host.netloc}/oauth2callback"',
             f'cookie_secret = "{secrets.token_hex(32)}"', f'client_id = "{CLIENT_ID}"',
             f'client_secret = "{CLIENT_SECRET}"', f'server_metadata_url = "{provider.metadata_url}"', "", "[cxr]"]
    if users is not None:
        lines.append("users = [" + ", ".join(f'"{u}"' for u in users) + "]")
    lines.append("reviewers = [" + ", ".join(f'"{r}"' for r in reviewers) + "]")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="a test OpenID Connect provider on 127.0.0.1")
    parser.add_argument("--port", type=int, default=9400)
    parser.add_argument("--redirect-uri", action="append", required=True)
    args = parser.parse_args()
    provider = OidcProvider(redirect_uris=args.redirect_uri, port=args.port).start()
    print("# .streamlit/secrets.toml for this provider (users: "
          + ", ".join(f"{name} / {u['password']}" for name, u in USERS.items()) + "); Ctrl-C to stop\n"
          + secrets_toml(provider=provider, app_url=args.redirect_uri[0], users=["@site.org"],
                         reviewers=["alice@site.org"]), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        provider.stop()


if __name__ == "__main__":
    main()
