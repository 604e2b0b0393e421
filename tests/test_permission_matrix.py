"""Broken object-level authorisation cannot happen here: every operation of the spec, called as
every role of a workspace, as both kinds of API key, and as a member of another workspace, gets
exactly the answer the permission table (app/auth/permissions.py) says.

Generated from the spec: an operation added tomorrow is in the matrix without anyone editing
this file, and one that forgets to say what it needs (``x-permission``) fails it. Each case runs
in a workspace of its own (so a delete in one case cannot change the next), with fresh tasks,
members and keys for the path's ids, and the spec's examples as the body. Allowed means "not
refused": the answer may still be a 409 or a 422 for reasons of its own, never a 401, 403 or 404.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.auth.models import MembershipRow
from app.auth.permissions import ANY_CALLER, PERMISSIONS, PLATFORM_ADMIN, USERS_ONLY, Action, Role
from app.auth.service import AccountService
from app.db import db
from app.tasks.models import utc_now
from app.workspaces.models import DEFAULT_WORKSPACE_ID
from tests.conftest import make_app
from tests.spec_examples import example_body

PASSWORD = "matrix passphrase that is long enough"
ROLES = ("owner", "admin", "member", "viewer")
IDENTITIES = (*ROLES, "outsider", "read_key", "write_key")
# A key acts as a member (read and write) or as a viewer (read only).
KEY_ROLES = {"read_key": Role.VIEWER, "write_key": Role.MEMBER}


@dataclass
class Matrix:
    app: Flask
    spec: dict[str, Any]
    users: dict[str, uuid.UUID]  # identity -> user id (roles and the outsider)
    founder: FlaskClient


def _grant(app: Flask, workspace_id: uuid.UUID | str, user_id: uuid.UUID, role: str) -> None:
    now = utc_now()
    with app.app_context(), db.session.begin():
        db.session.add(
            MembershipRow(
                workspace_id=uuid.UUID(str(workspace_id)),
                user_id=user_id,
                role=role,
                created_at=now,
                updated_at=now,
            )
        )


def _token(app: Flask, user_id: uuid.UUID) -> str:
    """A fresh session's access token: a case may log it out or end the other sessions."""
    with app.app_context():
        return (
            AccountService(db.session(), app.config)
            .start_session(user_id, "test.login")
            .access.token
        )


@pytest.fixture(scope="module")
def matrix() -> Matrix:
    app = make_app("testing")
    users: dict[str, uuid.UUID] = {}
    with app.app_context():
        accounts = AccountService(db.session(), app.config)
        for identity in (*ROLES, "outsider", "target", "founder"):
            users[identity] = accounts.register(f"{identity}@matrix.example", PASSWORD).id
        accounts.register("grace@example.com", PASSWORD)  # the spec's example new member
    for role in ROLES:  # the v1 API's workspace
        _grant(app, DEFAULT_WORKSPACE_ID, users[role], role)
    _grant(app, DEFAULT_WORKSPACE_ID, users["founder"], "owner")
    outsider = app.test_client(token=_token(app, users["outsider"]))
    assert outsider.post("/api/v2/workspaces", json={"name": "elsewhere"}).status_code == 201
    # Makes each case's workspace and what is in it; never an identity under test (a case may
    # log an identity out everywhere).
    founder = app.test_client(token=_token(app, users["founder"]))
    spec = founder.get("/swagger.json").json
    return Matrix(app, spec, users, founder)


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method != "parameters" and operation.get("security", spec.get("security"))
    ]


def _spec_once() -> dict[str, Any]:
    return make_app("testing").test_client().get("/swagger.json").json


SPEC = _spec_once()
OPERATIONS = _operations(SPEC)


def test_every_protected_operation_says_what_it_needs() -> None:
    special = {ANY_CALLER, USERS_ONLY, PLATFORM_ADMIN}
    for method, path, operation in OPERATIONS:
        needed = operation.get("x-permission")
        assert needed in special or needed in {a.value for a in Action}, (method, path)


def test_public_operations_are_few_and_known() -> None:
    public = {
        (method, path)
        for path, item in SPEC["paths"].items()
        for method, operation in item.items()
        if method != "parameters" and operation.get("security", SPEC.get("security")) == []
    }
    assert public == {
        ("get", "/.well-known/jwks.json"),
        ("post", "/api/v2/auth/register"),
        ("post", "/api/v2/auth/login"),
        ("post", "/api/v2/auth/login/mfa"),
        ("post", "/api/v2/auth/refresh"),
        ("get", "/health/live"),
        ("get", "/health/ready"),
        ("get", "/problems"),
        ("get", "/problems/{slug}"),
    }


def expected(needed: str, identity: str) -> int | None:
    """The refusal ``identity`` gets (a status), or None when it is allowed."""
    if needed == PLATFORM_ADMIN:
        return 404  # nobody in the matrix is a platform administrator
    if needed == ANY_CALLER:
        return None
    if needed == USERS_ONLY:
        return 403 if identity in KEY_ROLES else None
    if identity == "outsider":
        return 404
    rule = PERMISSIONS[Action(needed)]
    if identity in KEY_ROLES:
        scopes = {"read"} if identity == "read_key" else {"read", "write"}
        if rule.scope is None or rule.scope.value not in scopes:
            return 403
        return None if KEY_ROLES[identity] in rule.roles else 403
    return None if Role(identity) in rule.roles else 403


def _body(method: str, path: str, operation: dict[str, Any], spec: dict[str, Any]) -> Any:
    if path.endswith("/auth/password"):
        return {"current_password": PASSWORD, "new_password": PASSWORD}
    return example_body(operation, spec)


def _workspace(m: Matrix, path: str) -> str:
    """The case's workspace: the default one for v1, else a new one with every identity in it."""
    if path.startswith("/api/v1/"):
        return str(DEFAULT_WORKSPACE_ID)
    created = m.founder.post("/api/v2/workspaces", json={"name": "matrix case"})
    assert created.status_code == 201, created.json
    workspace_id = created.json["id"]
    for role in ROLES:
        _grant(m.app, workspace_id, m.users[role], role)
    return workspace_id


def _key(m: Matrix, workspace_id: str, scopes: list[str]) -> dict[str, Any]:
    created = m.founder.post(
        f"/api/v2/workspaces/{workspace_id}/api-keys", json={"name": "matrix", "scopes": scopes}
    )
    assert created.status_code == 201, created.json
    return created.json


def _ip_rule(m: Matrix, path: str, workspace_id: str) -> str:
    """A rule to remove. An allow rule admits the test client's address (127.0.0.1), so every
    identity can still reach the workspace; the deny list answers 404 to the whole matrix."""
    if "/ip-allow-list/" not in path:
        return str(uuid.uuid4())
    created = m.founder.post(
        f"/api/v2/workspaces/{workspace_id}/ip-allow-list", json={"network": "127.0.0.0/8"}
    )
    assert created.status_code == 201, created.json
    return created.json["id"]


def _url(m: Matrix, path: str, workspace_id: str) -> str:
    base = "/api/v2/workspaces/{workspace_id}"
    tasks = (
        "/api/v1/tasks"
        if path.startswith("/api/v1/")
        else f"/api/v2/workspaces/{workspace_id}/tasks"
    )
    url = path.replace("{workspace_id}", workspace_id)
    if "{task_id}" in url:
        created = m.founder.post(tasks, json={"title": "matrix task"})
        url = url.replace("{task_id}", created.json["id"])
    if "{user_id}" in url:  # someone to change or remove: a plain member
        target = m.users["target"]
        _grant(m.app, workspace_id, target, "member")
        url = url.replace("{user_id}", str(target))
    if "{key_id}" in url:
        url = url.replace("{key_id}", _key(m, workspace_id, ["read"])["id"])
    if "{client_id}" in url:
        registered = m.founder.post(
            f"/api/v2/workspaces/{workspace_id}/oauth-clients",
            json={"name": "matrix", "redirect_uris": ["https://app.example/cb"]},
        )
        assert registered.status_code == 201, registered.json
        url = url.replace("{client_id}", registered.json["client_id"])
    if "{rule_id}" in url:
        url = url.replace("{rule_id}", _ip_rule(m, path, workspace_id))
    assert base  # the template above documents the shapes handled
    return url.replace("{backup_id}", str(uuid.uuid4()))


def _caller(m: Matrix, identity: str, workspace_id: str) -> FlaskClient:
    if identity in KEY_ROLES:
        scopes = ["read"] if identity == "read_key" else ["read", "write"]
        return m.app.test_client(token=_key(m, workspace_id, scopes)["key"])
    return m.app.test_client(token=_token(m.app, m.users[identity]))


CASES = [(method, path, identity) for method, path, _ in OPERATIONS for identity in IDENTITIES]


@pytest.mark.parametrize(
    ("method", "path", "identity"), CASES, ids=[f"{m} {p} as {i}" for m, p, i in CASES]
)
def test_every_operation_answers_every_identity_as_the_table_says(
    matrix: Matrix, method: str, path: str, identity: str
) -> None:
    operation = matrix.spec["paths"][path][method]
    needed = operation["x-permission"]
    workspace_id = _workspace(matrix, path)
    url = _url(matrix, path, workspace_id)
    caller = _caller(matrix, identity, workspace_id)
    body = _body(method, path, operation, matrix.spec)
    response = caller.open(url, method=method.upper(), json=body)
    response.close()  # a download streams a file
    refusal = expected(needed, identity)
    if refusal is None:
        assert response.status_code not in {401, 403, 404}, response.get_json(silent=True)
        assert response.status_code < 500
    else:
        assert response.status_code == refusal, response.get_json(silent=True)
        if refusal == 403:
            assert response.json["type"] == "/problems/permission-denied"


def test_the_doc_prints_the_same_table() -> None:
    """docs/chapters/04-auth-security.md's permission table lists every action of the code
    with the same roles (a row: | `action` | owner | admin | member | viewer | needs |)."""
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs/chapters/04-auth-security.md").read_text()
    for action, rule in PERMISSIONS.items():
        cells = " | ".join("yes" if role in rule.roles else "-" for role in Role)
        assert f"| `{action.value}` | {cells} |" in doc, action.value
