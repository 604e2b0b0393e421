"""The OAuth 2 authorization server, end to end: Authlib's own client (``OAuth2Session`` over
requests) drives the live flows against the app served on a real socket, a "browser" (requests,
following no redirects) reads the consent page's form and posts it; then the tokens work on the
API with their scopes only. The refusals (PKCE, codes, redirect URIs, clients, secrets, scopes,
CSRF) are checked directly, in the testing and the production configuration."""

from __future__ import annotations

import base64
import hashlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from werkzeug.serving import make_server

from app.auth.models import MembershipRow
from app.auth.service import AccountService
from app.db import db
from app.oauth.models import OAuthAuthorizationCodeRow, OAuthClientRow
from app.oauth.server import PAGE_STYLE
from app.tasks.models import utc_now
from app.workspaces.models import DEFAULT_WORKSPACE_ID
from tests.auth import add_member
from tests.conftest import make_app
from tests.test_errors import assert_problem

PASSWORD = "correct horse battery staple oauth"
REDIRECT = "http://127.0.0.1:8765/callback"
OTHER_REDIRECT = "https://app.example/callback"
WORKSPACES = "/api/v2/workspaces"
CLIENTS = f"{WORKSPACES}/{DEFAULT_WORKSPACE_ID}/oauth-clients"
TASKS = f"{WORKSPACES}/{DEFAULT_WORKSPACE_ID}/tasks"


# --- helpers -------------------------------------------------------------------------------------


def add_account(app: Flask, email: str, role: str | None = "member") -> uuid.UUID:
    """A real account with a password (the consent page signs in with it)."""
    with app.app_context():
        user = AccountService(db.session(), app.config).register(email, PASSWORD)
        if role is not None:
            now = utc_now()
            with db.session.begin():
                db.session.add(
                    MembershipRow(
                        workspace_id=DEFAULT_WORKSPACE_ID,
                        user_id=user.id,
                        role=role,
                        created_at=now,
                        updated_at=now,
                    )
                )
    return user.id


def register_client(client: FlaskClient, path: str = CLIENTS, **fields: Any) -> dict[str, Any]:
    body = {
        "name": "Task board",
        "redirect_uris": [REDIRECT, OTHER_REDIRECT],
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        "scopes": ["read", "write"],
        **fields,
    }
    response = client.post(path, json=body)
    assert response.status_code == 201, response.get_json()
    return response.json


class FormReader(HTMLParser):
    """The consent page's form: its action and every input's name and value."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self.action = attributes.get("action") or ""
        elif tag == "input" and attributes.get("name"):
            self.fields[str(attributes["name"])] = attributes.get("value") or ""
        elif tag == "script":
            self.scripts += 1


def read_form(html: str) -> FormReader:
    reader = FormReader()
    reader.feed(html)
    return reader


def pkce() -> tuple[str, str]:
    verifier = generate_token(48)
    return verifier, create_s256_code_challenge(verifier)


def authorize_query(client_id: str, challenge: str | None, **overrides: Any) -> dict[str, str]:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": "read write",
        "state": "xyz-state",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **overrides,
    }
    return {name: value for name, value in query.items() if value is not None}


def consent(
    web: FlaskClient, query: dict[str, str], email: str, *, decision: str = "allow", **extra: str
) -> Any:
    """Show the page, fill in the form, submit it: the answer (a redirect to the client)."""
    page = web.get(f"/oauth/authorize?{urlencode(query)}")
    assert page.status_code == 200, page.get_data(True)
    form = read_form(page.get_data(True))
    fields = {**form.fields, "email": email, "password": PASSWORD, "decision": decision, **extra}
    return web.post(form.action, data=fields)


def code_from(response: Any) -> str:
    assert response.status_code == 302, response.get_data(True)
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    params = parse_qs(location.query)
    assert params["state"] == ["xyz-state"]
    return params["code"][0]


def error_from(response: Any) -> str:
    assert response.status_code == 302, response.get_data(True)
    params = parse_qs(urlsplit(response.headers["Location"]).query)
    assert params["state"] == ["xyz-state"]
    return params["error"][0]


def exchange(web: FlaskClient, registered: dict[str, Any], code: str, verifier: str | None,
             **overrides: str) -> Any:  # fmt: skip
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    if verifier is not None:
        form["code_verifier"] = verifier
    form.update(overrides)
    return web.post(
        "/oauth/token", data=form, auth=(registered["client_id"], registered["client_secret"])
    )


def bearer(app: Flask, token: str) -> FlaskClient:
    return app.test_client(token=token)


@dataclass
class Setup:
    app: Flask
    owner: FlaskClient  # the default workspace's owner (tests/conftest.py)
    web: FlaskClient  # a browser or an OAuth client: no bearer token of its own
    registered: dict[str, Any]
    email: str
    user_id: uuid.UUID


def setup_for(app: Flask, **client_fields: Any) -> Setup:
    owner = app.test_client()
    registered = register_client(owner, **client_fields)
    email = "writer@example.com"
    user_id = add_account(app, email, role="member")
    return Setup(app, owner, app.test_client(token=""), registered, email, user_id)


@pytest.fixture
def s() -> Setup:
    return setup_for(make_app("testing"))


@pytest.fixture(params=["testing", "production"])
def any_s(request: pytest.FixtureRequest) -> Setup:
    return setup_for(make_app(request.param))


def tokens_for(s: Setup, scope: str = "read write") -> dict[str, Any]:
    verifier, challenge = pkce()
    query = authorize_query(s.registered["client_id"], challenge, scope=scope)
    code = code_from(consent(s.web, query, s.email))
    response = exchange(s.web, s.registered, code, verifier)
    assert response.status_code == 200, response.get_json()
    return response.json


# --- the live flows, with Authlib's client -------------------------------------------------------


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Setup, str]]:
    """The app on a real socket (werkzeug's threaded server), for real HTTP clients."""
    setup = setup_for(make_app("testing"))
    server = make_server("127.0.0.1", 0, setup.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield setup, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


def browser_consent(base: str, authorization_url: str, email: str, **extra: str) -> str:
    """What a person does in a browser: open the page, sign in, allow; the redirect's URL."""
    browser = requests.Session()
    page = browser.get(authorization_url, timeout=10)
    assert page.status_code == 200
    form = read_form(page.text)
    fields = {**form.fields, "email": email, "password": PASSWORD, "decision": "allow", **extra}
    answer = browser.post(
        base + form.action, data=fields, headers={"Origin": base}, allow_redirects=False,
        timeout=10,
    )  # fmt: skip
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def test_authorization_code_with_pkce_refresh_introspect_and_revoke_live(
    live: tuple[Setup, str],
) -> None:
    s, base = live
    registered = s.registered
    oauth = OAuth2Session(
        registered["client_id"],
        registered["client_secret"],
        scope="read write",
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    verifier = generate_token(48)
    url, state = oauth.create_authorization_url(f"{base}/oauth/authorize", code_verifier=verifier)
    callback = browser_consent(base, url, s.email)
    assert parse_qs(urlsplit(callback).query)["state"] == [state]
    token = oauth.fetch_token(
        f"{base}/oauth/token", authorization_response=callback, code_verifier=verifier
    )
    assert token["token_type"].lower() == "bearer"
    assert token["scope"] == "read write"
    assert token["expires_in"] == s.app.config["ACCESS_TOKEN_TTL"] == 900

    api = f"{base}{TASKS}"
    assert oauth.get(api, timeout=10).status_code == 200
    created = oauth.post(api, json={"title": "from an OAuth app"}, timeout=10)
    assert created.status_code == 201, created.text
    elsewhere = s.owner.post(WORKSPACES, json={"name": "not the client's"}).json["id"]
    assert oauth.get(f"{base}{WORKSPACES}/{elsewhere}/tasks", timeout=10).status_code == 404
    listed = oauth.get(f"{base}{WORKSPACES}", timeout=10).json()
    assert [item["id"] for item in listed["items"]] == [str(DEFAULT_WORKSPACE_ID)]
    # A user's OAuth token is not the user signed in: no management, no account operations.
    assert oauth.get(f"{base}{CLIENTS}", timeout=10).status_code == 403
    assert oauth.get(f"{base}/api/v2/auth/me", timeout=10).status_code == 403
    assert oauth.post(f"{base}/api/v2/auth/logout-everywhere", timeout=10).status_code == 403

    seen = oauth.introspect_token(f"{base}/oauth/introspect", token=token["access_token"]).json()
    assert seen["active"] is True
    assert seen["client_id"] == registered["client_id"]
    assert seen["sub"] == str(s.user_id)
    assert seen["scope"] == "read write"
    assert seen["token_type"] == "Bearer"
    assert seen["exp"] - seen["iat"] == 900

    first_refresh = token["refresh_token"]
    renewed = oauth.refresh_token(f"{base}/oauth/token")
    assert renewed["refresh_token"] != first_refresh
    assert renewed["access_token"] != token["access_token"]
    assert oauth.get(api, timeout=10).status_code == 200

    revoked = oauth.revoke_token(f"{base}/oauth/revoke", token=renewed["refresh_token"])
    assert revoked.status_code == 200
    assert oauth.get(api, timeout=10).status_code == 401  # the grant's session ended
    gone = oauth.introspect_token(f"{base}/oauth/introspect", token=renewed["access_token"])
    assert gone.json() == {"active": False}
    refused = requests.post(
        f"{base}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": renewed["refresh_token"]},
        auth=(registered["client_id"], registered["client_secret"]),
        timeout=10,
    )
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"


def test_public_client_uses_pkce_without_a_secret_live(live: tuple[Setup, str]) -> None:
    s, base = live
    public = register_client(
        s.owner,
        name="Native app",
        token_endpoint_auth_method="none",
        grant_types=["authorization_code", "refresh_token"],
        scopes=["read"],
    )
    assert public["client_secret"] is None
    oauth = OAuth2Session(
        public["client_id"],
        scope="read",
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )
    verifier = generate_token(64)
    url, _ = oauth.create_authorization_url(f"{base}/oauth/authorize", code_verifier=verifier)
    callback = browser_consent(base, url, s.email)
    token = oauth.fetch_token(
        f"{base}/oauth/token", authorization_response=callback, code_verifier=verifier
    )
    assert token["scope"] == "read"
    assert oauth.get(f"{base}{TASKS}", timeout=10).status_code == 200
    write = oauth.post(f"{base}{TASKS}", json={"title": "no"}, timeout=10)
    assert write.status_code == 403  # read scope only, though the user is a member
    oauth.refresh_token(f"{base}/oauth/token")
    assert oauth.get(f"{base}{TASKS}", timeout=10).status_code == 200
    # A public client may revoke its tokens, but introspection is for confidential ones.
    assert oauth.revoke_token(f"{base}/oauth/revoke", token=token["access_token"]).ok
    assert oauth.get(f"{base}{TASKS}", timeout=10).status_code == 401


def test_client_credentials_live(live: tuple[Setup, str]) -> None:
    s, base = live
    registered = register_client(
        s.owner, name="Nightly report", redirect_uris=[], grant_types=["client_credentials"],
        scopes=["read"], token_endpoint_auth_method="client_secret_post",
    )  # fmt: skip
    oauth = OAuth2Session(
        registered["client_id"],
        registered["client_secret"],
        scope="read",
        token_endpoint_auth_method="client_secret_post",
    )
    token = oauth.fetch_token(f"{base}/oauth/token", grant_type="client_credentials")
    assert token["scope"] == "read"
    assert "refresh_token" not in token
    assert oauth.get(f"{base}{TASKS}", timeout=10).status_code == 200
    assert oauth.post(f"{base}{TASKS}", json={"title": "no"}, timeout=10).status_code == 403
    elsewhere = s.owner.post(WORKSPACES, json={"name": "another tenant"}).json["id"]
    assert oauth.get(f"{base}{WORKSPACES}/{elsewhere}", timeout=10).status_code == 404
    assert oauth.post(f"{base}{WORKSPACES}", json={"name": "x"}, timeout=10).status_code == 403
    seen = oauth.introspect_token(f"{base}/oauth/introspect", token=token["access_token"]).json()
    assert seen["active"] is True
    assert seen["sub"] == registered["client_id"]
    assert oauth.revoke_token(f"{base}/oauth/revoke", token=token["access_token"]).ok
    assert oauth.get(f"{base}{TASKS}", timeout=10).status_code == 401
    again = oauth.fetch_token(f"{base}/oauth/token", grant_type="client_credentials")
    assert again["access_token"] != token["access_token"]


def test_write_scope_client_credentials_act_as_a_member(s: Setup) -> None:
    response = s.web.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "read write"},
        auth=(s.registered["client_id"], s.registered["client_secret"]),
    )
    assert response.status_code == 200, response.json
    assert response.headers["Cache-Control"] == "no-store"
    api = bearer(s.app, response.json["access_token"])
    assert api.post(TASKS, json={"title": "by a client"}).status_code == 201
    assert api.get(f"{WORKSPACES}/{DEFAULT_WORKSPACE_ID}/members").status_code == 200
    assert api.get(CLIENTS).status_code == 403  # managing: users only


# --- PKCE, codes, redirect URIs ------------------------------------------------------------------


def test_pkce_is_required_and_plain_is_refused(any_s: Setup) -> None:
    s = any_s
    client_id = s.registered["client_id"]
    missing = s.web.get(f"/oauth/authorize?{urlencode(authorize_query(client_id, None))}")
    assert error_from(missing) == "invalid_request"
    _, challenge = pkce()
    for method in ("plain", None):
        query = authorize_query(client_id, challenge, code_challenge_method=method)
        assert error_from(s.web.get(f"/oauth/authorize?{urlencode(query)}")) == "invalid_request"


def test_a_wrong_or_missing_verifier_is_refused_and_burns_the_code(any_s: Setup) -> None:
    s = any_s
    verifier, challenge = pkce()
    query = authorize_query(s.registered["client_id"], challenge)
    code = code_from(consent(s.web, query, s.email))
    wrong = exchange(s.web, s.registered, code, generate_token(48))
    assert wrong.status_code == 400
    assert wrong.json["error"] == "invalid_grant"
    assert exchange(s.web, s.registered, code, verifier).json["error"] == "invalid_grant"

    code = code_from(consent(s.web, query, s.email))
    missing = exchange(s.web, s.registered, code, None)
    assert missing.status_code == 400
    assert missing.json["error"] == "invalid_request"


def test_a_code_is_single_use_and_its_reuse_revokes_what_it_issued(s: Setup) -> None:
    verifier, challenge = pkce()
    code = code_from(consent(s.web, authorize_query(s.registered["client_id"], challenge), s.email))
    first = exchange(s.web, s.registered, code, verifier)
    assert first.status_code == 200
    api = bearer(s.app, first.json["access_token"])
    assert api.get(TASKS).status_code == 200
    second = exchange(s.web, s.registered, code, verifier)
    assert second.status_code == 400
    assert second.json["error"] == "invalid_grant"
    assert api.get(TASKS).status_code == 401
    refresh = s.web.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": first.json["refresh_token"]},
        auth=(s.registered["client_id"], s.registered["client_secret"]),
    )
    assert refresh.json["error"] == "invalid_grant"


def test_a_code_expires_after_a_minute(s: Setup) -> None:
    verifier, challenge = pkce()
    code = code_from(consent(s.web, authorize_query(s.registered["client_id"], challenge), s.email))
    with s.app.app_context(), db.session.begin():
        db.session.execute(
            update(OAuthAuthorizationCodeRow).values(expires_at=utc_now() - timedelta(seconds=1))
        )
    assert exchange(s.web, s.registered, code, verifier).json["error"] == "invalid_grant"


def test_codes_are_stored_as_hashes_with_a_one_minute_life(s: Setup) -> None:
    _, challenge = pkce()
    code = code_from(consent(s.web, authorize_query(s.registered["client_id"], challenge), s.email))
    with s.app.app_context():
        row = db.session.get(OAuthAuthorizationCodeRow, hashlib.sha256(code.encode()).hexdigest())
        assert row is not None
        assert row.code_challenge_method == "S256"
        lifetime = (row.expires_at - utc_now()).total_seconds()
        assert 55 < lifetime <= 60


def test_redirect_uris_must_match_exactly(any_s: Setup) -> None:
    s = any_s
    verifier, challenge = pkce()
    client_id = s.registered["client_id"]
    for unregistered in (REDIRECT + "/", REDIRECT + "?x=1", "https://evil.example/callback", ""):
        query = authorize_query(client_id, challenge, redirect_uri=unregistered)
        page = s.web.get(f"/oauth/authorize?{urlencode(query)}")
        assert page.status_code == 400  # a page here: never a redirect to an unknown URI
        assert "Location" not in page.headers
        assert "evil.example" not in page.headers["Content-Security-Policy"]
    code = code_from(consent(s.web, authorize_query(client_id, challenge), s.email))
    other = exchange(s.web, s.registered, code, verifier, redirect_uri=OTHER_REDIRECT)
    assert other.status_code == 400
    assert other.json["error"] == "invalid_grant"


def test_unknown_client_and_wrong_secret_are_refused(any_s: Setup) -> None:
    s = any_s
    _, challenge = pkce()
    for client_id in (str(uuid.uuid4()), "not-a-uuid"):
        page = s.web.get(f"/oauth/authorize?{urlencode(authorize_query(client_id, challenge))}")
        assert page.status_code == 400
        assert "Location" not in page.headers
    grant = {"grant_type": "client_credentials"}
    wrong = s.web.post("/oauth/token", data=grant, auth=(s.registered["client_id"], "wrong"))
    assert wrong.status_code == 401
    assert wrong.json["error"] == "invalid_client"
    assert "wrong" not in wrong.get_data(True)
    unknown = s.web.post("/oauth/token", data=grant, auth=(str(uuid.uuid4()), "x"))
    assert unknown.status_code == 401
    assert unknown.json["error"] == "invalid_client"


def test_scopes_cannot_grow(any_s: Setup) -> None:
    s = any_s
    reader = register_client(s.owner, name="Reader", scopes=["read"])
    _, challenge = pkce()
    query = authorize_query(reader["client_id"], challenge, scope="read write")
    assert error_from(s.web.get(f"/oauth/authorize?{urlencode(query)}")) == "invalid_scope"
    query = authorize_query(reader["client_id"], challenge, scope="admin")
    assert error_from(s.web.get(f"/oauth/authorize?{urlencode(query)}")) == "invalid_scope"
    wider = s.web.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "scope": "read write"},
        auth=(reader["client_id"], reader["client_secret"]),
    )
    assert wider.status_code == 400
    assert wider.json["error"] == "invalid_scope"
    tokens = tokens_for(s, scope="read")
    refreshed = s.web.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
              "scope": "read write"},
        auth=(s.registered["client_id"], s.registered["client_secret"]),
    )  # fmt: skip
    assert refreshed.json["error"] == "invalid_scope"


def test_a_refresh_token_reused_ends_the_grant(s: Setup) -> None:
    tokens = tokens_for(s)
    auth = (s.registered["client_id"], s.registered["client_secret"])
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    renewed = s.web.post("/oauth/token", data=form, auth=auth)
    assert renewed.status_code == 200
    api = bearer(s.app, renewed.json["access_token"])
    assert api.get(TASKS).status_code == 200
    reused = s.web.post("/oauth/token", data=form, auth=auth)
    assert reused.json["error"] == "invalid_grant"
    assert api.get(TASKS).status_code == 401
    latest = {"grant_type": "refresh_token", "refresh_token": renewed.json["refresh_token"]}
    assert s.web.post("/oauth/token", data=latest, auth=auth).json["error"] == "invalid_grant"


def test_a_client_cannot_use_or_inspect_another_clients_tokens(s: Setup) -> None:
    tokens = tokens_for(s)
    other = register_client(s.owner, name="Other")
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    stolen = s.web.post(
        "/oauth/token", data=form, auth=(other["client_id"], other["client_secret"])
    )
    assert stolen.json["error"] == "invalid_grant"
    seen = s.web.post(
        "/oauth/introspect",
        data={"token": tokens["access_token"]},
        auth=(other["client_id"], other["client_secret"]),
    )
    assert seen.json == {"active": False}
    revoke = s.web.post(
        "/oauth/revoke",
        data={"token": tokens["refresh_token"]},
        auth=(other["client_id"], other["client_secret"]),
    )
    assert revoke.status_code == 400  # RFC 7009 2.1: not issued to this client
    assert bearer(s.app, tokens["access_token"]).get(TASKS).status_code == 200


def test_revocation_of_unknown_tokens_is_a_200(any_s: Setup) -> None:
    s = any_s
    auth = (s.registered["client_id"], s.registered["client_secret"])
    for token in ("nonsense", "a.b.c", s.app.extensions["test_owner"].token):
        response = s.web.post("/oauth/revoke", data={"token": token}, auth=auth)
        assert response.status_code == 200
    assert s.owner.get(TASKS).status_code == 200  # a login's token is not the client's business


def test_logging_out_everywhere_ends_oauth_grants(s: Setup) -> None:
    tokens = tokens_for(s)
    with s.app.app_context():
        login = AccountService(db.session(), s.app.config).login(s.email, PASSWORD)
    assert login.tokens is not None
    user = bearer(s.app, login.tokens.access.token)
    assert user.post("/api/v2/auth/logout-everywhere").status_code == 204
    assert bearer(s.app, tokens["access_token"]).get(TASKS).status_code == 401


# --- the sign-in and consent page ----------------------------------------------------------------


def test_the_page_is_plain_html_with_its_own_strict_headers(any_s: Setup) -> None:
    s = any_s
    evil = register_client(
        s.owner, name='<script>alert("x")</script>', redirect_uris=[OTHER_REDIRECT]
    )
    _, challenge = pkce()
    query = authorize_query(evil["client_id"], challenge, redirect_uri=OTHER_REDIRECT)
    page = s.web.get(f"/oauth/authorize?{urlencode(query)}")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    html = page.get_data(True)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert read_form(html).scripts == 0
    policy = page.headers["Content-Security-Policy"]
    style_hash = base64.b64encode(hashlib.sha256(PAGE_STYLE.encode()).digest()).decode()
    assert f"<style>{PAGE_STYLE}</style>" in html  # the exact text the hash is of
    assert "script-src" not in policy
    assert policy.startswith(f"default-src 'none'; style-src 'sha256-{style_hash}';")
    assert "form-action 'self' https://app.example;" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["Referrer-Policy"] == "same-origin"
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"


def test_the_form_is_bound_to_its_request_and_refuses_cross_site_posts(any_s: Setup) -> None:
    s = any_s
    _, challenge = pkce()
    query = authorize_query(s.registered["client_id"], challenge, scope="read")
    page = s.web.get(f"/oauth/authorize?{urlencode(query)}")
    form = read_form(page.get_data(True))
    signed_in = {**form.fields, "email": s.email, "password": PASSWORD, "decision": "allow"}
    for forged in (
        {**signed_in, "csrf_token": ""},
        {**signed_in, "csrf_token": "1." + "0" * 64},
        {**signed_in, "scope": "read write"},  # the token was made for "read"
    ):
        refused = s.web.post(form.action, data=forged)
        assert refused.status_code == 403
        assert "Location" not in refused.headers
    cross_site = s.web.post(form.action, data=signed_in, headers={"Origin": "https://evil.example"})
    assert cross_site.status_code == 403
    assert code_from(
        s.web.post(form.action, data=signed_in, headers={"Origin": "http://localhost"})
    )


def test_wrong_password_non_member_and_deny(any_s: Setup) -> None:
    s = any_s
    _, challenge = pkce()
    query = authorize_query(s.registered["client_id"], challenge)
    wrong = consent(s.web, query, s.email, password="not the password at all")
    assert wrong.status_code == 401
    assert "Wrong email or password" in wrong.get_data(True)
    add_account(s.app, "stranger@example.com", role=None)
    stranger = consent(s.web, query, "stranger@example.com")
    assert stranger.status_code == 401
    assert "not a member" in stranger.get_data(True)
    assert error_from(consent(s.web, query, s.email, decision="deny")) == "access_denied"


def test_an_account_with_a_second_factor_needs_its_code(s: Setup) -> None:
    login = AccountService
    with s.app.app_context():
        tokens = login(db.session(), s.app.config).login(s.email, PASSWORD).tokens
    assert tokens is not None
    user = bearer(s.app, tokens.access.token)
    secret = user.post("/api/v2/auth/mfa/totp").json["secret"]
    confirmed = user.post("/api/v2/auth/mfa/totp/confirm", json={"code": pyotp.TOTP(secret).now()})
    assert confirmed.status_code == 200
    _, challenge = pkce()
    query = authorize_query(s.registered["client_id"], challenge)
    asks = consent(s.web, query, s.email)
    assert asks.status_code == 401
    assert "one-time code" in asks.get_data(True)
    wrong = consent(s.web, query, s.email, code="000000")
    assert wrong.status_code == 401
    totp = pyotp.TOTP(secret)
    fresh = totp.at(utc_now() + timedelta(seconds=30))  # the current step was used above
    assert code_from(consent(s.web, query, s.email, code=fresh))


# --- metadata ------------------------------------------------------------------------------------


def test_the_metadata_document(any_s: Setup) -> None:
    response = any_s.web.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    document = response.json
    issuer = "http://localhost"
    assert document["issuer"] == issuer
    for name, path in (
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        ("revocation_endpoint", "/oauth/revoke"),
        ("introspection_endpoint", "/oauth/introspect"),
        ("jwks_uri", "/.well-known/jwks.json"),
    ):
        assert document[name] == issuer + path
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["response_types_supported"] == ["code"]
    assert set(document["grant_types_supported"]) == {
        "authorization_code", "refresh_token", "client_credentials",
    }  # fmt: skip
    assert document["scopes_supported"] == ["read", "write"]
    assert "none" in document["token_endpoint_auth_methods_supported"]
    assert "none" not in document["introspection_endpoint_auth_methods_supported"]


# --- registration through the API ----------------------------------------------------------------


def test_registration_shows_the_secret_once_and_stores_a_hash(s: Setup) -> None:
    registered = s.registered
    assert registered["client_secret"]
    listed = s.owner.get(CLIENTS)
    assert listed.status_code == 200
    assert "client_secret" not in listed.json["items"][0]
    one = s.owner.get(f"{CLIENTS}/{registered['client_id']}")
    assert one.json["name"] == "Task board"
    assert "client_secret" not in one.json
    with s.app.app_context():
        row = db.session.get(OAuthClientRow, uuid.UUID(registered["client_id"]))
        assert row is not None
        assert row.secret_hash == hashlib.sha256(registered["client_secret"].encode()).hexdigest()


def test_only_owners_and_admins_signed_in_manage_clients(s: Setup) -> None:
    for role, status in (("admin", 201), ("member", 403), ("viewer", 403)):
        caller = bearer(
            s.app, add_member(s.app, DEFAULT_WORKSPACE_ID, role, f"{role}@x.example").token
        )
        assert (
            caller.post(CLIENTS, json={"name": "x", "redirect_uris": [REDIRECT]}).status_code
            == status
        )
        assert caller.get(CLIENTS).status_code == (200 if status == 201 else 403)
    key = s.owner.post(
        f"{WORKSPACES}/{DEFAULT_WORKSPACE_ID}/api-keys",
        json={"name": "k", "scopes": ["read", "write"]},
    ).json["key"]
    assert_problem(bearer(s.app, key).get(CLIENTS), 403)
    oauth_token = tokens_for(s)["access_token"]
    assert_problem(bearer(s.app, oauth_token).post(CLIENTS, json={"name": "x"}), 403)


def test_clients_of_another_workspace_are_404(s: Setup) -> None:
    other = s.owner.post(WORKSPACES, json={"name": "Other tenant"}).json["id"]
    foreign = register_client(s.owner, f"{WORKSPACES}/{other}/oauth-clients")
    assert_problem(s.owner.get(f"{CLIENTS}/{foreign['client_id']}"), 404)
    assert_problem(s.owner.delete(f"{CLIENTS}/{foreign['client_id']}"), 404)
    outsider = bearer(s.app, add_member(s.app, other, "owner", "outsider@x.example").token)
    assert_problem(outsider.get(CLIENTS), 404)
    assert_problem(outsider.get(f"{CLIENTS}/{s.registered['client_id']}"), 404)


def test_registration_validates_every_field(any_s: Setup) -> None:
    s = any_s
    response = s.owner.post(
        CLIENTS,
        json={
            "name": "",
            "redirect_uris": ["http://app.example/cb", "https://app.example/cb#frag", 7],
            "grant_types": ["client_credentials", "password"],
            "scopes": ["admin"],
            "token_endpoint_auth_method": "none",
            "extra": 1,
        },
    )
    body = assert_problem(response, 422)
    pointers = {error["pointer"] for error in body["errors"]}
    assert {"#/name", "#/redirect_uris/0", "#/redirect_uris/1", "#/redirect_uris/2",
            "#/grant_types", "#/scopes", "#/extra"} <= pointers  # fmt: skip
    public_cc = s.owner.post(
        CLIENTS,
        json={
            "name": "x",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "none",
        },
    )
    assert_problem(public_cc, 422)
    no_uri = s.owner.post(CLIENTS, json={"name": "x", "grant_types": ["authorization_code"]})
    assert_problem(no_uri, 422)


def test_revoking_a_client_ends_its_tokens_and_codes(s: Setup) -> None:
    tokens = tokens_for(s)
    cc = s.web.post(
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(s.registered["client_id"], s.registered["client_secret"]),
    ).json
    assert s.owner.delete(f"{CLIENTS}/{s.registered['client_id']}").status_code == 204
    assert bearer(s.app, tokens["access_token"]).get(TASKS).status_code == 401
    assert bearer(s.app, cc["access_token"]).get(TASKS).status_code == 401
    form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    auth = (s.registered["client_id"], s.registered["client_secret"])
    assert s.web.post("/oauth/token", data=form, auth=auth).json["error"] == "invalid_client"
    _, challenge = pkce()
    page = s.web.get(
        f"/oauth/authorize?{urlencode(authorize_query(s.registered['client_id'], challenge))}"
    )
    assert page.status_code == 400
    assert s.owner.get(f"{CLIENTS}/{s.registered['client_id']}").json["revoked_at"]
