"""Accounts through the HTTP API: register, log in, log out, change password, the first
administrator (``flask users create-admin``), the audit trail of it all, and no secret in logs.

Tokens themselves (signatures, JWKS, refresh rotation, revocation, key rotation):
tests/test_auth_tokens.py, which imports the helpers below.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Iterable
from typing import Any

import argon2
import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select
from werkzeug.test import TestResponse

from app import create_app
from app.audit.models import AuditEventRow
from app.auth.models import MembershipRow, UserRow
from app.db import db
from app.workspaces.models import WorkspaceRow
from tests.auth import BearerClient
from tests.conftest import CapturedLog, make_app

PASSWORD = "correct horse battery staple"
EMAIL = "ada@example.com"
# The testing profile's Argon2id cost, for the production apps too: the suite creates many users.
CHEAP_HASH = {
    "PASSWORD_HASH_TIME_COST": 1,
    "PASSWORD_HASH_MEMORY_KIB": 256,
    "PASSWORD_HASH_PARALLELISM": 1,
}
# Settings a second "worker" (another process of the same deployment) shares with the first.
_SHARED_SETTINGS = (
    "APP_ENV",
    "DATABASE_URL",
    "SHARD_URLS",
    "JWT_KEYS_DIR",
    "SECRET_KEY",
    "BACKUP_DIR",
    "REDIS_URL",
    "REDIS_KEY_PREFIX",
    "RATE_LIMITS_ENABLED",
    "REFRESH_REUSE_GRACE",
    *CHEAP_HASH,
)
BEARER_CHALLENGE = 'Bearer realm="task-management-api"'
INVALID_TOKEN_CHALLENGE = f'{BEARER_CHALLENGE}, error="invalid_token"'


# --- Helpers (tests/test_auth_tokens.py uses them too) ------------------------------------------


def auth_app(env: str = "testing", **overrides: Any) -> Flask:
    """An app on fresh databases, cheap hashes whatever the profile, rate limits off: these tests
    make more auth calls a minute than RATE_LIMIT_AUTH_* allow (tests/test_rate_limits.py and
    tests/test_login_throttle.py test the limits)."""
    return make_app(env, **{"RATE_LIMITS_ENABLED": False, **CHEAP_HASH, **overrides})


def worker_app(first: Flask, request: pytest.FixtureRequest, **overrides: Any) -> Flask:
    """Another process of ``first``'s deployment: its databases, keys and Redis; ``overrides``
    on top (other hash parameters...)."""
    settings = {name: first.config[name] for name in _SHARED_SETTINGS if name in first.config}
    app = create_app({**settings, **overrides})
    app.test_client_class = BearerClient
    request.addfinalizer(app.extensions["shards"].dispose)
    return app


def anonymous(app: Flask) -> FlaskClient:
    return app.test_client(token="")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def register(client: FlaskClient, email: str = EMAIL, password: str = PASSWORD) -> dict[str, Any]:
    response = client.post("/api/v2/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def login(client: FlaskClient, email: str = EMAIL, password: str = PASSWORD) -> dict[str, Any]:
    response = client.post("/api/v2/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def me(client: FlaskClient, access_token: str) -> TestResponse:
    return client.get("/api/v2/auth/me", headers=bearer(access_token))


def refresh(client: FlaskClient, refresh_token: str) -> TestResponse:
    return client.post("/api/v2/auth/refresh", json={"refresh_token": refresh_token})


def works(client: FlaskClient, tokens: dict[str, Any]) -> tuple[bool, bool]:
    """(access token accepted, refresh token accepted); the refresh is spent if it was."""
    access = me(client, tokens["access_token"]).status_code
    renewed = refresh(client, tokens["refresh_token"]).status_code
    assert access in {200, 401}
    assert renewed in {200, 401}
    return access == 200, renewed == 200


def assert_invalid_token(response: TestResponse) -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == "/problems/invalid-token"
    assert response.headers["WWW-Authenticate"].startswith(INVALID_TOKEN_CHALLENGE)


def audit_rows(app: Flask, *, all_chains: bool = False) -> list[AuditEventRow]:
    """The control database's events, oldest first: the accounts chain (workspace_id NULL), or
    every chain there (workspaces' events: API keys, memberships...)."""
    with app.app_context():
        query = select(AuditEventRow).order_by(AuditEventRow.workspace_id, AuditEventRow.sequence)
        if not all_chains:
            query = query.where(AuditEventRow.workspace_id.is_(None))
        session = db.session()
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows


def stored_hash(app: Flask, email: str = EMAIL) -> str:
    with app.app_context():
        found = db.session().scalar(select(UserRow.password_hash).where(UserRow.email == email))
        assert found is not None
        return found


# --- Register ------------------------------------------------------------------------------------


def test_register_normalises_the_email_and_answers_no_store() -> None:
    client = anonymous(auth_app())
    response = client.post(
        "/api/v2/auth/register", json={"email": "  Ada@EXAMPLE.com\t", "password": PASSWORD}
    )
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["email"] == EMAIL
    assert body["platform_admin"] is False
    assert body["mfa_enabled"] is False
    assert uuid.UUID(body["id"])
    assert "password" not in json.dumps(body)
    # The account answers to every spelling of its email.
    assert login(client, "ADA@example.COM ")["token_type"] == "Bearer"


def test_an_email_registers_once_whatever_its_case() -> None:
    client = anonymous(auth_app())
    register(client)
    for spelling in (EMAIL, "ADA@EXAMPLE.COM", " Ada@Example.com "):
        response = client.post(
            "/api/v2/auth/register",
            json={"email": spelling, "password": "another fine passphrase"},
        )
        assert response.status_code == 409, spelling
        assert response.get_json()["type"] == "/problems/email-taken"
        assert response.headers["Cache-Control"] == "no-store"


def test_an_invalid_email_is_refused_with_a_pointer() -> None:
    client = anonymous(auth_app())
    for email in (
        "ada",
        "ada@",
        "@example.com",
        "ada@@example.com",
        "a b@x.org",
        "ada@[127.0.0.1]",
    ):
        response = client.post("/api/v2/auth/register", json={"email": email, "password": PASSWORD})
        assert response.status_code == 422, email
        assert [error["pointer"] for error in response.get_json()["errors"]] == ["#/email"]


# (email, password, a word of the complaint): each must be refused.
POLICY_FAILURES = [
    (EMAIL, "fourteen chars", "at least 15 characters"),
    (EMAIL, "1Q2W3E4R5T6Y7U8I", "common"),  # on the shipped list, in any case
    ("margaret.hamilton@example.com", "Margaret.Hamilton rocks forever", "email"),
    ("grace@example.com", "my address is grace@example.com", "email"),
]


def test_the_password_policy_applies_at_registration() -> None:
    client = anonymous(auth_app())
    for email, password, complaint in POLICY_FAILURES:
        response = client.post("/api/v2/auth/register", json={"email": email, "password": password})
        assert response.status_code == 422, password
        errors = response.get_json()["errors"]
        assert [error["pointer"] for error in errors] == ["#/password"]
        assert complaint in errors[0]["detail"]
        assert password not in response.get_data(as_text=True)  # never echoed back
        attempt = client.post("/api/v2/auth/login", json={"email": email, "password": password})
        assert attempt.status_code == 401  # no account was made


def test_register_refuses_unknown_fields() -> None:
    response = anonymous(auth_app()).post(
        "/api/v2/auth/register",
        json={"email": EMAIL, "password": PASSWORD, "platform_admin": True},
    )
    assert response.status_code == 422
    assert [error["pointer"] for error in response.get_json()["errors"]] == ["#/platform_admin"]


def test_register_needs_a_json_body() -> None:
    client = anonymous(auth_app())
    wrong_type = client.post(
        "/api/v2/auth/register",
        data=f"email={EMAIL}&password={PASSWORD}",
        content_type="application/x-www-form-urlencoded",
    )
    assert wrong_type.status_code == 415
    malformed = client.post(
        "/api/v2/auth/register",
        data='{"email": "ada@example.com",',
        content_type="application/json",
    )
    assert malformed.status_code == 400
    assert malformed.mimetype == "application/problem+json"
    not_an_object = client.post("/api/v2/auth/register", json=[EMAIL, PASSWORD])
    assert not_an_object.status_code in {400, 422}
    assert (
        client.post("/api/v2/auth/login", json={"email": EMAIL, "password": PASSWORD}).status_code
        == 401
    )


# --- Log in --------------------------------------------------------------------------------------


def test_login_answers_a_token_pair() -> None:
    app = auth_app()
    client = anonymous(app)
    user = register(client)
    response = client.post("/api/v2/auth/login", json={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_expires_in",
        "mfa_required",
    }
    assert body["token_type"] == "Bearer"
    assert body["mfa_required"] is False
    ttl, refresh_ttl = app.config["ACCESS_TOKEN_TTL"], app.config["REFRESH_TOKEN_TTL"]
    assert ttl - 2 <= body["expires_in"] <= ttl
    assert refresh_ttl - 2 <= body["refresh_expires_in"] <= refresh_ttl
    assert body["access_token"] != body["refresh_token"]
    answer = me(client, body["access_token"])
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.get_json() == user


def _without_request_id(response: TestResponse) -> bytes:
    request_id = response.get_json()["request_id"]
    return response.get_data().replace(request_id.encode(), b"<request id>")


def _headers_but_request_id(response: TestResponse) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name != "X-Request-ID"}


def test_a_wrong_password_and_an_unknown_email_answer_the_same() -> None:
    client = anonymous(auth_app())
    register(client)
    attempts = [
        {"email": EMAIL, "password": "not the right passphrase"},
        {"email": "nobody@example.com", "password": "not the right passphrase"},
        {"email": "not an email at all", "password": "not the right passphrase"},
        {"email": EMAIL.upper(), "password": PASSWORD.upper()},
    ]
    responses = [client.post("/api/v2/auth/login", json=attempt) for attempt in attempts]
    first = responses[0]
    assert first.status_code == 401
    assert first.headers["WWW-Authenticate"] == BEARER_CHALLENGE
    assert first.headers["Cache-Control"] == "no-store"
    for response in responses[1:]:
        assert response.status_code == 401
        assert _without_request_id(response) == _without_request_id(first)
        assert _headers_but_request_id(response) == _headers_but_request_id(first)


def test_a_wrong_password_and_an_unknown_email_take_about_the_same_time() -> None:
    # A hash that costs ~10 ms, so that hashing dominates a login: with the testing profile's
    # (~0.2 ms) the test could not tell whether an unknown email skips the hash.
    app = auth_app(
        PASSWORD_HASH_TIME_COST=2, PASSWORD_HASH_MEMORY_KIB=8192, PASSWORD_HASH_PARALLELISM=1
    )
    client = anonymous(app)
    register(client)

    def seconds(email: str) -> float:
        started = time.perf_counter()
        response = client.post(
            "/api/v2/auth/login", json={"email": email, "password": "not the right passphrase"}
        )
        elapsed = time.perf_counter() - started
        assert response.status_code == 401
        return elapsed

    seconds(EMAIL), seconds("nobody@example.com")  # warm up (the dummy hash is made once)
    known, unknown = [], []
    for _ in range(7):  # interleaved, so that a slow patch of the machine hits both
        known.append(seconds(EMAIL))
        unknown.append(seconds("nobody@example.com"))
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.5 < ratio < 2, f"unknown email / wrong password time: {ratio:.2f}"


def test_login_rehashes_when_the_hash_parameters_change(request: pytest.FixtureRequest) -> None:
    first = auth_app()
    register(anonymous(first))
    old_hash = stored_hash(first)
    assert "m=256,t=1,p=1" in old_hash
    stronger = {"PASSWORD_HASH_TIME_COST": 2, "PASSWORD_HASH_MEMORY_KIB": 512}
    second = worker_app(first, request, **stronger)
    client = anonymous(second)

    wrong = client.post("/api/v2/auth/login", json={"email": EMAIL, "password": "wrong " * 4})
    assert wrong.status_code == 401
    assert stored_hash(first) == old_hash  # only a verified password is rehashed

    login(client)  # the old hash still verifies: its parameters are in it
    new_hash = stored_hash(first)
    assert new_hash != old_hash
    assert "m=512,t=2,p=1" in new_hash
    assert argon2.PasswordHasher().verify(new_hash, PASSWORD)
    login(client)
    assert stored_hash(first) == new_hash  # up to date: not redone at every login
    login(anonymous(first))  # and the first app's parameters still read it


# --- Log out, everywhere, change password --------------------------------------------------------


@pytest.mark.parametrize("env", ["testing", "production"])
def test_logout_ends_that_session_only(env: str) -> None:
    client = anonymous(auth_app(env))
    register(client)
    here, elsewhere = login(client), login(client)
    response = client.post("/api/v2/auth/logout", headers=bearer(here["access_token"]))
    assert response.status_code == 204
    assert_invalid_token(me(client, here["access_token"]))
    assert_invalid_token(refresh(client, here["refresh_token"]))
    assert works(client, elsewhere) == (True, True)
    again = client.post("/api/v2/auth/logout", headers=bearer(here["access_token"]))
    assert_invalid_token(again)


def test_logout_needs_a_token() -> None:
    response = anonymous(auth_app()).post("/api/v2/auth/logout")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == BEARER_CHALLENGE


@pytest.mark.parametrize("env", ["testing", "production"])
def test_logout_everywhere_ends_every_session_of_the_user_only(env: str) -> None:
    app = auth_app(env)
    client = anonymous(app)
    register(client)
    register(client, "grace@example.com")
    sessions = [login(client) for _ in range(3)]
    other_user = login(client, "grace@example.com")
    response = client.post(
        "/api/v2/auth/logout-everywhere", headers=bearer(sessions[0]["access_token"])
    )
    assert response.status_code == 204
    for tokens in sessions:
        assert works(client, tokens) == (False, False)
    assert works(client, other_user) == (True, True)
    assert works(client, login(client)) == (True, True)  # logging in again works


def _change_password(client: FlaskClient, token: str, current: str, new: str) -> TestResponse:
    return client.post(
        "/api/v2/auth/password",
        headers=bearer(token),
        json={"current_password": current, "new_password": new},
    )


@pytest.mark.parametrize("env", ["testing", "production"])
def test_changing_the_password_ends_the_other_sessions_only(env: str) -> None:
    client = anonymous(auth_app(env))
    register(client)
    current, other = login(client), login(client)
    new_password = "an entirely new passphrase"
    response = _change_password(client, current["access_token"], PASSWORD, new_password)
    assert response.status_code == 204
    assert works(client, current) == (True, True)
    assert works(client, other) == (False, False)
    assert (
        client.post("/api/v2/auth/login", json={"email": EMAIL, "password": PASSWORD}).status_code
        == 401
    )
    login(client, password=new_password)


def test_changing_the_password_needs_the_current_one() -> None:
    client = anonymous(auth_app())
    register(client)
    current, other = login(client), login(client)
    response = _change_password(
        client, current["access_token"], "not the right passphrase", "an entirely new passphrase"
    )
    assert response.status_code == 401
    assert response.get_json()["type"] == "/problems/invalid-credentials"
    assert works(client, other) == (True, True)  # nothing ended
    login(client)  # nothing changed


def test_the_new_password_must_pass_the_policy() -> None:
    client = anonymous(auth_app())
    register(client)
    current = login(client)
    for new_password, complaint in [
        ("short", "at least 15 characters"),
        ("1q2w3e4r5t6y7u8i", "common"),
        ("ada@example.com is my password", "email"),
    ]:
        response = _change_password(client, current["access_token"], PASSWORD, new_password)
        assert response.status_code == 422, new_password
        errors = response.get_json()["errors"]
        assert [error["pointer"] for error in errors] == ["#/new_password"]
        assert complaint in errors[0]["detail"]
    login(client)  # the old password still works


def test_changing_the_password_needs_a_token() -> None:
    client = anonymous(auth_app())
    register(client)
    response = client.post(
        "/api/v2/auth/password",
        json={"current_password": PASSWORD, "new_password": "an entirely new passphrase"},
    )
    assert response.status_code == 401
    login(client)


# --- flask users create-admin --------------------------------------------------------------------


def _orphan_workspaces(app: Flask) -> list[str]:
    """Two workspaces without an owner (a chapter 3 database after its upgrade): the default
    one and a new one, both made by the test owner, whose memberships then go."""
    created = app.test_client().post("/api/v2/workspaces", json={"name": "chapter 3 era"})
    assert created.status_code == 201
    with app.app_context():
        session = db.session()
        with session.begin():
            owner = app.extensions["test_owner"].id
            session.execute(delete(MembershipRow).where(MembershipRow.user_id == owner))
        return [str(row) for row in session.scalars(select(WorkspaceRow.id))]


def _my_workspaces(client: FlaskClient, token: str) -> dict[str, str]:
    """{workspace id: my role} for every workspace the token's user belongs to."""
    response = client.get("/api/v2/workspaces", headers=bearer(token))
    assert response.status_code == 200
    roles = {}
    for item in response.get_json()["items"]:
        members = client.get(f"/api/v2/workspaces/{item['id']}/members", headers=bearer(token))
        assert members.status_code == 200
        mine = [m for m in members.get_json()["items"] if m["email"] == "root@example.com"]
        roles[item["id"]] = mine[0]["role"] if mine else "?"
    return roles


def test_create_admin_adopts_workspaces_without_owners() -> None:
    app = auth_app()
    orphans = _orphan_workspaces(app)
    owned = app.test_client(token=_someone_else(app)).post(
        "/api/v2/workspaces", json={"name": "has an owner"}
    )
    assert owned.status_code == 201
    runner = app.test_cli_runner()
    arguments = ["users", "create-admin", "--email", " Root@Example.com", "--password", PASSWORD]

    result = runner.invoke(args=arguments)
    assert result.exit_code == 0, result.output
    assert "2 workspace(s)" in result.output
    assert PASSWORD not in result.output
    client = anonymous(app)
    tokens = login(client, "root@example.com")
    assert me(client, tokens["access_token"]).get_json()["platform_admin"] is True
    expected = dict.fromkeys(orphans, "owner")
    assert _my_workspaces(client, tokens["access_token"]) == expected

    again = runner.invoke(args=arguments)  # harmless: nothing new to adopt, no second account
    assert again.exit_code == 0, again.output
    assert "0 workspace(s)" in again.output
    assert _my_workspaces(client, tokens["access_token"]) == expected
    with app.app_context():
        emails = db.session().scalars(select(UserRow.email).where(UserRow.is_platform_admin))
        assert list(emails) == ["root@example.com"]


def _someone_else(app: Flask) -> str:
    client = anonymous(app)
    register(client, "someone@example.com")
    return login(client, "someone@example.com")["access_token"]


def test_create_admin_promotes_an_existing_account() -> None:
    app = auth_app()
    client = anonymous(app)
    register(client, "root@example.com")
    tokens = login(client, "root@example.com")
    result = app.test_cli_runner().invoke(
        args=["users", "create-admin", "--email", "root@example.com", "--password", "ignored" * 3]
    )
    assert result.exit_code == 0, result.output
    assert me(client, tokens["access_token"]).get_json()["platform_admin"] is True
    login(client, "root@example.com")  # the password it gave is not the account's: unchanged


def test_create_admin_twice_with_an_internationalised_domain() -> None:
    app = auth_app()
    runner = app.test_cli_runner()
    arguments = ["users", "create-admin", "--email", "root@Bücher.example", "--password", PASSWORD]
    assert runner.invoke(args=arguments).exit_code == 0
    again = runner.invoke(args=arguments)
    assert again.exit_code == 0, again.output


def test_create_admin_says_why_a_password_is_refused() -> None:
    result = (
        auth_app()
        .test_cli_runner()
        .invoke(
            args=["users", "create-admin", "--email", "root@example.com", "--password", "short"]
        )
    )
    assert result.exit_code != 0
    assert "at least 15 characters" in result.output
    assert "short" not in result.output


# --- Audit (issue 9, item 12) --------------------------------------------------------------------


def _events(rows: Iterable[AuditEventRow]) -> list[tuple[str, str, str]]:
    """(action, actor, entity id) of each event."""
    return [(row.action, row.actor, row.entity_id) for row in rows]


def test_sign_up_logins_reuse_and_logout_are_audited() -> None:
    app = auth_app(REFRESH_REUSE_GRACE=0)
    client = anonymous(app)
    user_id = register(client)["id"]
    for attempt in (
        {"email": EMAIL, "password": "not the right passphrase"},
        {"email": "nobody@example.com", "password": "not the right passphrase"},
    ):
        assert client.post("/api/v2/auth/login", json=attempt).status_code == 401
    tokens = login(client)
    assert refresh(client, tokens["refresh_token"]).status_code == 200
    assert_invalid_token(refresh(client, tokens["refresh_token"]))  # reused
    other = login(client)
    logout = client.post("/api/v2/auth/logout", headers=bearer(other["access_token"]))
    assert logout.status_code == 204

    rows = audit_rows(app)
    assert [(row.action, row.entity_id) for row in rows] == [
        ("user.registered", user_id),
        ("user.login_failed", user_id),
        ("user.login_failed", "unknown"),  # not the email tried: it may be a password
        ("user.logged_in", user_id),
        ("user.refresh_token_reused", user_id),
        ("user.logged_in", user_id),
        ("user.logged_out", user_id),
    ]
    assert [row.actor for row in rows[1:3]] == ["anonymous", "anonymous"]
    assert rows[6].actor == f"user:{user_id}"
    assert all(row.request_id and row.client_ip == "127.0.0.1" for row in rows)
    assert rows[4].changes["session"]["after"] == _claims(tokens["refresh_token"])["sid"]
    assert rows[6].changes["session"]["after"] == _claims(other["access_token"])["sid"]


def test_sign_up_and_login_are_audited_as_the_user() -> None:
    app = auth_app()
    client = anonymous(app)
    user_id = register(client)["id"]
    login(client)
    assert _events(audit_rows(app))[-2:] == [
        ("user.registered", f"user:{user_id}", user_id),
        ("user.logged_in", f"user:{user_id}", user_id),
    ]


def test_refresh_token_reuse_is_audited_as_the_tokens_user() -> None:
    app = auth_app(REFRESH_REUSE_GRACE=0)
    client = anonymous(app)
    user_id = register(client)["id"]
    tokens = login(client)
    refresh(client, tokens["refresh_token"])
    refresh(client, tokens["refresh_token"])
    assert _events(audit_rows(app))[-1] == (
        "user.refresh_token_reused",
        f"user:{user_id}",
        user_id,
    )


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


# --- No secret in logs or audit entries ----------------------------------------------------------


def _secret_parts(token: str) -> list[str]:
    """What would give a JWT away: its payload and its signature (the header is shared)."""
    _header, payload, signature = token.split(".")
    return [payload, signature]


def test_no_secret_in_the_log_or_the_audit_log(capture_log: Any) -> None:
    app = auth_app(LOG_LEVEL="DEBUG", REFRESH_REUSE_GRACE=0)
    log: CapturedLog = capture_log(app)
    client = anonymous(app)
    new_password = "an entirely new passphrase"
    secrets = [PASSWORD, new_password, "not the right passphrase", "a short secret"]  # 14: refused

    refused = client.post("/api/v2/auth/register", json={"email": EMAIL, "password": secrets[3]})
    assert refused.status_code == 422
    register(client)
    client.post("/api/v2/auth/login", json={"email": EMAIL, "password": secrets[2]})
    first = login(client)
    renewed = refresh(client, first["refresh_token"]).get_json()
    assert me(client, renewed["access_token"]).status_code == 200
    assert (
        _change_password(client, renewed["access_token"], PASSWORD, new_password).status_code == 204
    )
    reused = refresh(client, first["refresh_token"])  # reuse: ends the session
    assert reused.status_code == 401
    session = login(client, password=new_password)
    token = session["access_token"]
    workspace = client.post("/api/v2/workspaces", headers=bearer(token), json={"name": "keys"})
    assert workspace.status_code == 201
    workspace_id = workspace.get_json()["id"]
    created = client.post(
        f"/api/v2/workspaces/{workspace_id}/api-keys",
        headers=bearer(token),
        json={"name": "CI", "scopes": ["read", "write"]},
    )
    assert created.status_code == 201
    api_key = created.get_json()["key"]
    key_secret = api_key.removeprefix(f"tm_{created.get_json()['prefix']}_")
    assert len(key_secret) >= 32
    used = client.get(f"/api/v2/workspaces/{workspace_id}/tasks", headers=bearer(api_key))
    assert used.status_code == 200
    wrong_key = client.get(
        f"/api/v2/workspaces/{workspace_id}/tasks", headers=bearer(api_key[:-4] + "AAAA")
    )
    assert wrong_key.status_code == 401
    assert client.post("/api/v2/auth/logout", headers=bearer(token)).status_code == 204
    assert_invalid_token(me(client, token))  # a revoked token presented: logged as a 401

    for tokens in (first, renewed, session):
        secrets += _secret_parts(tokens["access_token"]) + _secret_parts(tokens["refresh_token"])
    secrets += [api_key, key_secret, stored_hash(app)]
    logged = log.text
    assert "POST /api/v2/auth/login" in logged  # the capture works
    audited = json.dumps(
        [
            [row.actor, row.action, row.entity_id, row.changes]
            for row in audit_rows(app, all_chains=True)
        ]
    )
    assert "api_key.created" in audited
    for secret in secrets:
        assert secret not in logged, f"a secret is in the log: {secret[:6]}..."
        assert secret not in audited, f"a secret is in the audit log: {secret[:6]}..."
