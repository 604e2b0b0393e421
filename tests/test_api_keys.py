"""API keys through the HTTP API: created once and stored as a hash, scoped to one workspace and
to read or write, never a manager, revoked and rotated at once (or after an overlap), last use
written at most once a minute, and every change in the audit log with its real actor."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select, update
from sqlalchemy.engine import Engine, RowMapping

import app.api_keys.service as api_key_module
from app.auth.models import ApiKeyRow
from app.tasks.models import utc_now
from app.workspaces.models import DEFAULT_WORKSPACE_ID
from tests.auth import add_member, add_user
from tests.conftest import make_app
from tests.test_errors import assert_problem

WORKSPACES = "/api/v2/workspaces"
DEFAULT = f"{WORKSPACES}/{DEFAULT_WORKSPACE_ID}"
KEYS = f"{DEFAULT}/api-keys"
KEY_SHAPE = re.compile(r"tm_([a-z2-7]{8})_([A-Za-z0-9_-]{43})")
INVALID_KEY_DETAIL = "The API key is not valid."


# --- helpers -------------------------------------------------------------------------------------


def create_key(client: FlaskClient, workspace: str = DEFAULT, **fields: Any) -> dict[str, Any]:
    body = {"name": "CI pipeline", "scopes": ["read"], **fields}
    response = client.post(f"{workspace}/api-keys", json=body)
    assert response.status_code == 201, response.json
    return response.json


def key_client(app: Flask, created: dict[str, Any]) -> FlaskClient:
    return app.test_client(token=created["key"])


def control_engine(app: Flask) -> Engine:
    return app.extensions["shards"].control


def key_row(app: Flask, key_id: str) -> RowMapping:
    table = ApiKeyRow.__table__
    with control_engine(app).connect() as connection:
        return (
            connection.execute(select(table).where(table.c.id == uuid.UUID(key_id)))
            .mappings()
            .one()
        )


def set_key_expiry(app: Flask, key_id: str, expires_at: datetime) -> None:
    with control_engine(app).begin() as connection:
        connection.execute(
            update(ApiKeyRow).where(ApiKeyRow.id == uuid.UUID(key_id)).values(expires_at=expires_at)
        )


def audit_events(client: FlaskClient, action: str, workspace: str = DEFAULT) -> list[dict]:
    response = client.get(f"{workspace}/audit", query_string={"action": action, "limit": 100})
    assert response.status_code == 200, response.json
    return response.json["items"]


def new_workspace(client: FlaskClient, name: str = "other") -> str:
    response = client.post(WORKSPACES, json={"name": name})
    assert response.status_code == 201, response.json
    return f"{WORKSPACES}/{response.json['id']}"


def assert_invalid_token(response: Any) -> dict[str, Any]:
    body = assert_problem(response, 401)
    assert body["type"].endswith("/invalid-token")
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge
    return body


@contextmanager
def counted_key_updates(app: Flask) -> Iterator[list[str]]:
    """The UPDATE statements on api_keys that the control database runs inside the block."""
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if re.match(r"\s*UPDATE\s+\"?api_keys\"?", statement, re.IGNORECASE):
            statements.append(statement)

    engine = control_engine(app)
    event.listen(engine, "before_cursor_execute", note)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", note)


# --- create and list -----------------------------------------------------------------------------


def test_create_shows_the_key_once_with_its_prefix(app: Flask, client: FlaskClient) -> None:
    response = client.post(
        KEYS, json={"name": "CI pipeline", "scopes": ["read", "write"], "expires_in_days": 30}
    )
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    match = KEY_SHAPE.fullmatch(body["key"])
    assert match is not None, body["key"]
    assert match.group(1) == body["prefix"]
    assert response.headers["Location"] == f"{KEYS}/{body['id']}"
    assert body["name"] == "CI pipeline"
    assert body["scopes"] == ["read", "write"]
    assert body["created_by"] == str(app.extensions["test_owner"].id)
    assert body["revoked_at"] is None
    assert body["last_used_at"] is None
    expires = datetime.fromisoformat(body["expires_at"])
    assert abs(expires - (utc_now() + timedelta(days=30))) < timedelta(minutes=1)

    listed = client.get(KEYS)
    assert listed.status_code == 200
    (item,) = listed.json["items"]
    assert "key" not in item
    assert item == {name: value for name, value in body.items() if name != "key"}
    assert match.group(2) not in listed.get_data(as_text=True)


def test_the_database_holds_only_a_sha256_of_the_secret(app: Flask, client: FlaskClient) -> None:
    created = create_key(client)
    prefix, secret = KEY_SHAPE.fullmatch(created["key"]).groups()  # type: ignore[union-attr]
    row = key_row(app, created["id"])
    assert row["prefix"] == prefix
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    for column, value in row.items():
        assert secret not in str(value), column


def test_default_scope_is_read_and_the_name_is_trimmed(client: FlaskClient) -> None:
    response = client.post(KEYS, json={"name": "  nightly export  "})
    assert response.status_code == 201
    assert response.json["scopes"] == ["read"]
    assert response.json["name"] == "nightly export"
    assert response.json["expires_at"] is None


def test_every_key_is_new(client: FlaskClient) -> None:
    first, second = create_key(client), create_key(client)
    assert first["prefix"] != second["prefix"]
    assert first["key"] != second["key"]


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"scopes": ["read"]}, "#/name"),
        ({"name": ""}, "#/name"),
        ({"name": "   "}, "#/name"),
        ({"name": "x" * 101}, "#/name"),
        ({"name": 42}, "#/name"),
        ({"name": "tab\there"}, "#/name"),
        ({"name": "k", "scopes": []}, "#/scopes"),
        ({"name": "k", "scopes": "read"}, "#/scopes"),
        ({"name": "k", "scopes": ["admin"]}, "#/scopes"),
        ({"name": "k", "scopes": ["write"]}, "#/scopes"),
        ({"name": "k", "scopes": ["read", "write", "read"]}, "#/scopes"),
        ({"name": "k", "expires_in_days": 0}, "#/expires_in_days"),
        ({"name": "k", "expires_in_days": 3651}, "#/expires_in_days"),
        ({"name": "k", "expires_in_days": "30"}, "#/expires_in_days"),
        ({"name": "k", "expires_in_days": 1.5}, "#/expires_in_days"),
        ({"name": "k", "expires_in_days": True}, "#/expires_in_days"),
        ({"name": "k", "owner": "me"}, "#/owner"),
    ],
)
def test_invalid_key_fields_are_422(
    app: Flask, client: FlaskClient, body: dict[str, Any], pointer: str
) -> None:
    problem = assert_problem(client.post(KEYS, json=body), 422)
    assert pointer in [error["pointer"] for error in problem["errors"]]
    assert client.get(KEYS).json["items"] == []


def test_one_422_lists_every_invalid_field(client: FlaskClient) -> None:
    body = {"name": "", "scopes": ["root"], "expires_in_days": -1, "extra": 1}
    problem = assert_problem(client.post(KEYS, json=body), 422)
    pointers = {error["pointer"] for error in problem["errors"]}
    assert pointers == {"#/name", "#/scopes", "#/expires_in_days", "#/extra"}


def test_a_body_that_is_not_an_object_is_refused(client: FlaskClient) -> None:
    problem = assert_problem(client.post(KEYS, json=["read"]), 422)
    assert [error["pointer"] for error in problem["errors"]] == ["#"]
    assert client.get(KEYS).json["items"] == []


def test_too_many_active_keys_is_409(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_key_module, "MAX_ACTIVE_KEYS", 2)
    first = create_key(client)
    create_key(client)
    assert_problem(client.post(KEYS, json={"name": "third"}), 409)
    # A revoked key no longer counts.
    assert client.delete(f"{KEYS}/{first['id']}").status_code == 204
    create_key(client, name="third")


def test_expired_keys_do_not_count_against_the_limit(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_key_module, "MAX_ACTIVE_KEYS", 1)
    old = create_key(client)
    assert_problem(client.post(KEYS, json={"name": "second"}), 409)
    set_key_expiry(app, old["id"], utc_now() - timedelta(seconds=1))
    create_key(client, name="second")


# --- using a key ---------------------------------------------------------------------------------


def test_a_read_key_reads(app: Flask, client: FlaskClient) -> None:
    task = client.post(f"{DEFAULT}/tasks", json={"title": "visible"}).json
    reader = key_client(app, create_key(client))
    assert reader.get(DEFAULT).status_code == 200
    listed = reader.get(f"{DEFAULT}/tasks")
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json["items"]] == [task["id"]]
    assert reader.get(f"{DEFAULT}/tasks/{task['id']}").status_code == 200
    assert reader.get(f"{DEFAULT}/members").status_code == 200


def test_a_read_key_cannot_write_insufficient_scope(any_app: Flask) -> None:
    owner = any_app.test_client()
    task = owner.post(f"{DEFAULT}/tasks", json={"title": "mine"}).json
    reader = key_client(any_app, create_key(owner))
    attempts = [
        reader.post(f"{DEFAULT}/tasks", json={"title": "sneaky"}),
        reader.patch(f"{DEFAULT}/tasks/{task['id']}", json={"title": "changed"}),
        reader.delete(f"{DEFAULT}/tasks/{task['id']}"),
    ]
    for response in attempts:
        body = assert_problem(response, 403)
        assert body["required_scope"] == "write"
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer ")
        assert 'error="insufficient_scope"' in challenge
        assert 'scope="write"' in challenge
    assert owner.get(f"{DEFAULT}/tasks/{task['id']}").json["title"] == "mine"
    assert owner.get(f"{DEFAULT}/tasks").json["total"] == 1


def test_a_write_key_writes_tasks(app: Flask, client: FlaskClient) -> None:
    writer = key_client(app, create_key(client, scopes=["read", "write"]))
    created = writer.post(f"{DEFAULT}/tasks", json={"title": "from CI"})
    assert created.status_code == 201
    changed = writer.patch(created.headers["Location"], json={"title": "from CI, edited"})
    assert changed.status_code == 200
    assert client.get(created.headers["Location"]).json["title"] == "from CI, edited"
    assert writer.delete(created.headers["Location"]).status_code == 204


MANAGEMENT: dict[str, Any] = {
    "list keys": lambda c, ws, key_id, user: c.get(f"{ws}/api-keys"),
    "create key": lambda c, ws, key_id, user: c.post(f"{ws}/api-keys", json={"name": "more"}),
    "revoke key": lambda c, ws, key_id, user: c.delete(f"{ws}/api-keys/{key_id}"),
    "rotate key": lambda c, ws, key_id, user: c.post(f"{ws}/api-keys/{key_id}/rotate", json={}),
    "add member": lambda c, ws, key_id, user: c.post(
        f"{ws}/members", json={"email": "someone@example.com", "role": "owner"}
    ),
    "change role": lambda c, ws, key_id, user: c.patch(
        f"{ws}/members/{user}", json={"role": "viewer"}
    ),
    "remove member": lambda c, ws, key_id, user: c.delete(f"{ws}/members/{user}"),
    "rename workspace": lambda c, ws, key_id, user: c.patch(ws, json={"name": "taken"}),
    "delete workspace": lambda c, ws, key_id, user: c.delete(ws),
    "read audit": lambda c, ws, key_id, user: c.get(f"{ws}/audit"),
    "verify audit": lambda c, ws, key_id, user: c.get(f"{ws}/audit/verify"),
    "export workspace": lambda c, ws, key_id, user: c.get(f"{ws}/export"),
}


@pytest.mark.parametrize("operation", list(MANAGEMENT))
def test_keys_never_manage_the_workspace(any_app: Flask, operation: str) -> None:
    owner = any_app.test_client()
    workspace = new_workspace(owner, "managed")
    add_user(any_app, "someone@example.com")
    created = create_key(owner, workspace, scopes=["read", "write"])
    writer = key_client(any_app, created)
    owner_id = any_app.extensions["test_owner"].id

    response = MANAGEMENT[operation](writer, workspace, created["id"], owner_id)
    body = assert_problem(response, 403)
    assert "required_scope" not in body  # no scope would help: only a signed-in user may
    assert owner.get(workspace).json["name"] == "managed"
    assert [m["role"] for m in owner.get(f"{workspace}/members").json["items"]] == ["owner"]
    assert [k["revoked_at"] for k in owner.get(f"{workspace}/api-keys").json["items"]] == [None]


def test_keys_never_create_workspaces(any_app: Flask) -> None:
    owner = any_app.test_client()
    writer = key_client(any_app, create_key(owner, scopes=["read", "write"]))
    assert_problem(writer.post(WORKSPACES, json={"name": "by a key"}), 403)
    assert owner.get(WORKSPACES).json["total"] == 1


def test_a_key_sees_only_its_own_workspace(app: Flask, client: FlaskClient) -> None:
    other = new_workspace(client, "B")
    task = client.post(f"{other}/tasks", json={"title": "B's"}).json
    writer = key_client(app, create_key(client, scopes=["read", "write"]))

    listed = writer.get(WORKSPACES)
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json["items"]] == [str(DEFAULT_WORKSPACE_ID)]
    assert listed.json["total"] == 1
    for response in (
        writer.get(other),
        writer.get(f"{other}/tasks"),
        writer.get(f"{other}/tasks/{task['id']}"),
        writer.post(f"{other}/tasks", json={"title": "planted"}),
        writer.delete(f"{other}/tasks/{task['id']}"),
        writer.get(f"{other}/members"),
    ):
        assert_problem(response, 404)
    assert client.get(f"{other}/tasks").json["total"] == 1


def test_a_key_of_another_workspace_is_404_even_for_its_creator(
    app: Flask, client: FlaskClient
) -> None:
    """The owner of both A and B: a key of B still only opens B."""
    other = new_workspace(client, "B")
    reader_of_b = key_client(app, create_key(client, other))
    assert_problem(reader_of_b.get(f"{DEFAULT}/tasks"), 404)
    assert reader_of_b.get(f"{other}/tasks").status_code == 200


def test_a_key_of_another_workspace_cannot_use_api_v1(app: Flask, client: FlaskClient) -> None:
    """API v1 serves the default workspace: a key of another one gets nothing there."""
    writer_of_b = key_client(
        app, create_key(client, new_workspace(client, "B"), scopes=["read", "write"])
    )
    assert_problem(writer_of_b.get("/api/v1/tasks"), 404)
    assert_problem(writer_of_b.post("/api/v1/tasks", json={"title": "planted"}), 404)
    assert client.get(f"{DEFAULT}/tasks").json["total"] == 0


def test_deleting_a_workspace_ends_its_keys(app: Flask, client: FlaskClient) -> None:
    other = new_workspace(client, "B")
    reader = key_client(app, create_key(client, other))
    assert reader.get(f"{other}/tasks").status_code == 200
    assert client.delete(other).status_code == 204
    assert_invalid_token(reader.get(f"{other}/tasks"))
    assert_invalid_token(reader.get(WORKSPACES))


# --- revoke, expire, rotate ----------------------------------------------------------------------


def test_a_revoked_key_is_401_at_the_next_request(any_app: Flask) -> None:
    owner = any_app.test_client()
    created = create_key(owner)
    reader = key_client(any_app, created)
    assert reader.get(f"{DEFAULT}/tasks").status_code == 200

    assert owner.delete(f"{KEYS}/{created['id']}").status_code == 204
    assert_invalid_token(reader.get(f"{DEFAULT}/tasks"))
    (item,) = owner.get(KEYS).json["items"]
    assert item["revoked_at"] is not None


def test_revoking_twice_is_fine_and_recorded_once(client: FlaskClient) -> None:
    created = create_key(client)
    assert client.delete(f"{KEYS}/{created['id']}").status_code == 204
    assert client.delete(f"{KEYS}/{created['id']}").status_code == 204
    assert len(audit_events(client, "api_key.revoked")) == 1


def test_a_key_is_revoked_only_through_its_own_workspace(client: FlaskClient) -> None:
    other = new_workspace(client, "B")
    created = create_key(client)
    assert_problem(client.delete(f"{other}/api-keys/{created['id']}"), 404)
    assert_problem(client.post(f"{other}/api-keys/{created['id']}/rotate", json={}), 404)
    assert_problem(client.delete(f"{KEYS}/{uuid.uuid4()}"), 404)
    assert client.get(KEYS).json["items"][0]["revoked_at"] is None


def test_an_expired_key_is_401(any_app: Flask) -> None:
    owner = any_app.test_client()
    created = create_key(owner, expires_in_days=1)
    reader = key_client(any_app, created)
    assert reader.get(f"{DEFAULT}/tasks").status_code == 200
    set_key_expiry(any_app, created["id"], utc_now() - timedelta(seconds=1))
    assert_invalid_token(reader.get(f"{DEFAULT}/tasks"))


def test_rotate_without_overlap_revokes_the_old_key_at_once(
    app: Flask, client: FlaskClient
) -> None:
    old = create_key(client, name="deploy", scopes=["read", "write"], expires_in_days=90)
    response = client.post(f"{KEYS}/{old['id']}/rotate", json={})
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    new = response.json
    assert response.headers["Location"] == f"{KEYS}/{new['id']}"
    assert KEY_SHAPE.fullmatch(new["key"])
    assert new["id"] != old["id"]
    assert new["prefix"] != old["prefix"]
    assert (new["name"], new["scopes"], new["expires_at"]) == (
        old["name"],
        old["scopes"],
        old["expires_at"],
    )

    assert key_client(app, new).post(f"{DEFAULT}/tasks", json={"title": "new"}).status_code == 201
    assert_invalid_token(key_client(app, old).get(f"{DEFAULT}/tasks"))
    assert key_row(app, old["id"])["revoked_at"] is not None


def test_rotate_with_overlap_keeps_the_old_key_until_then(app: Flask, client: FlaskClient) -> None:
    old = create_key(client)
    response = client.post(f"{KEYS}/{old['id']}/rotate", json={"overlap_seconds": 3600})
    assert response.status_code == 201
    new = response.json
    old_client, new_client = key_client(app, old), key_client(app, new)

    assert old_client.get(f"{DEFAULT}/tasks").status_code == 200
    assert new_client.get(f"{DEFAULT}/tasks").status_code == 200
    row = key_row(app, old["id"])
    assert row["revoked_at"] is None
    assert abs(row["expires_at"] - (utc_now() + timedelta(hours=1))) < timedelta(minutes=1)
    assert new["expires_at"] is None  # the new key keeps the old one's expiry: none

    set_key_expiry(app, old["id"], utc_now() - timedelta(seconds=1))  # the hour has passed
    assert_invalid_token(old_client.get(f"{DEFAULT}/tasks"))
    assert new_client.get(f"{DEFAULT}/tasks").status_code == 200


def test_the_overlap_never_extends_an_earlier_expiry(app: Flask, client: FlaskClient) -> None:
    old = create_key(client, expires_in_days=1)
    soon = utc_now() + timedelta(minutes=5)
    set_key_expiry(app, old["id"], soon)
    response = client.post(f"{KEYS}/{old['id']}/rotate", json={"overlap_seconds": 86_400})
    assert response.status_code == 201
    assert abs(key_row(app, old["id"])["expires_at"] - soon) < timedelta(seconds=1)


def test_a_revoked_or_expired_key_cannot_be_rotated(app: Flask, client: FlaskClient) -> None:
    revoked, expired = create_key(client), create_key(client)
    client.delete(f"{KEYS}/{revoked['id']}")
    set_key_expiry(app, expired["id"], utc_now() - timedelta(seconds=1))
    assert_problem(client.post(f"{KEYS}/{revoked['id']}/rotate", json={}), 404)
    assert_problem(client.post(f"{KEYS}/{expired['id']}/rotate", json={}), 404)
    assert len(client.get(KEYS).json["items"]) == 2


def test_rotating_with_an_overlap_cannot_grow_the_keys_without_bound(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_key_module, "MAX_ACTIVE_KEYS", 2)
    rotated, _other = create_key(client), create_key(client)
    statuses = [
        client.post(f"{KEYS}/{rotated['id']}/rotate", json={"overlap_seconds": 3600}).status_code
        for _ in range(3)
    ]
    assert statuses[0] == 201  # rotating at the limit works: the old key is on its way out
    assert 409 in statuses[1:]
    live = [item for item in client.get(KEYS).json["items"] if item["revoked_at"] is None]
    assert len(live) <= 3  # the limit, plus one key in its overlap


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"overlap_seconds": -1}, id="negative"),
        pytest.param({"overlap_seconds": 7 * 24 * 3600 + 1}, id="week+1"),
        pytest.param({"overlap_seconds": 10**12}, id="huge"),
        {"overlap_seconds": "60"},
        {"overlap_seconds": 1.5},
        {"overlap": 60},
    ],
)
def test_invalid_rotation_is_422_and_changes_nothing(
    app: Flask, client: FlaskClient, body: dict[str, Any]
) -> None:
    created = create_key(client)
    assert_problem(client.post(f"{KEYS}/{created['id']}/rotate", json=body), 422)
    assert len(client.get(KEYS).json["items"]) == 1
    assert key_client(app, created).get(f"{DEFAULT}/tasks").status_code == 200


# --- last use ------------------------------------------------------------------------------------


def test_last_use_is_written_once_not_on_every_request(app: Flask, client: FlaskClient) -> None:
    created = create_key(client)
    reader = key_client(app, created)
    with counted_key_updates(app) as updates:
        for _ in range(5):
            assert reader.get(f"{DEFAULT}/tasks").status_code == 200
    assert len(updates) == 1
    used = key_row(app, created["id"])["last_used_at"]
    assert used is not None
    assert abs(used - utc_now()) < timedelta(minutes=1)
    (item,) = client.get(KEYS).json["items"]
    assert item["last_used_at"] is not None


def test_without_the_throttle_every_request_would_write(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counter above can fail: with no minute between writes, each request writes."""
    monkeypatch.setattr(api_key_module, "LAST_USED_EVERY", 0.0)
    reader = key_client(app, create_key(client))
    with counted_key_updates(app) as updates:
        for _ in range(3):
            assert reader.get(f"{DEFAULT}/tasks").status_code == 200
    assert len(updates) == 3


def test_a_rejected_key_writes_nothing(app: Flask, client: FlaskClient) -> None:
    created = create_key(client)
    client.delete(f"{KEYS}/{created['id']}")
    with counted_key_updates(app) as updates:
        assert_invalid_token(key_client(app, created).get(f"{DEFAULT}/tasks"))
    assert updates == []
    assert key_row(app, created["id"])["last_used_at"] is None


# --- malformed and unknown keys ------------------------------------------------------------------


def test_malformed_unknown_and_wrong_keys_are_401(any_app: Flask) -> None:
    owner = any_app.test_client()
    created = create_key(owner)
    prefix, secret = KEY_SHAPE.fullmatch(created["key"]).groups()  # type: ignore[union-attr]
    other_prefix = "a" * 8 if prefix != "a" * 8 else "b" * 8
    wrong_secret = ("A" if secret[0] != "A" else "B") + secret[1:]

    malformed = [
        "tm_",
        f"tm_{prefix}",
        f"tm_{prefix}_{secret[:-1]}",
        f"tm_{prefix}_{secret}x",
        f"tm_{prefix.upper()}_{secret}",
        f"tm_{prefix}-{secret}",
        f"tm_{prefix}_{secret[:-1]}!",
    ]
    for credential in malformed:
        assert_invalid_token(any_app.test_client(token=credential).get(f"{DEFAULT}/tasks"))

    unknown = any_app.test_client(token=f"tm_{other_prefix}_{secret}").get(f"{DEFAULT}/tasks")
    wrong = any_app.test_client(token=f"tm_{prefix}_{wrong_secret}").get(f"{DEFAULT}/tasks")
    # The same answer: a caller cannot tell which prefixes exist.
    assert assert_invalid_token(unknown)["detail"] == INVALID_KEY_DETAIL
    assert assert_invalid_token(wrong)["detail"] == INVALID_KEY_DETAIL
    assert unknown.headers["WWW-Authenticate"] == wrong.headers["WWW-Authenticate"]
    for response in (unknown, wrong):
        assert secret not in response.get_data(as_text=True)
        assert wrong_secret not in response.headers["WWW-Authenticate"]
    # The real key still works.
    assert key_client(any_app, created).get(f"{DEFAULT}/tasks").status_code == 200


def test_a_key_hash_in_place_of_the_secret_is_refused(app: Flask, client: FlaskClient) -> None:
    created = create_key(client)
    row = key_row(app, created["id"])
    stolen = f"tm_{row['prefix']}_{row['secret_hash'][:43]}"
    assert_invalid_token(app.test_client(token=stolen).get(f"{DEFAULT}/tasks"))


# --- who manages keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_manage_keys(app: Flask, client: FlaskClient, role: str) -> None:
    created = create_key(client)
    user = add_member(app, DEFAULT_WORKSPACE_ID, role, f"{role}@example.com")
    them = app.test_client(token=user.token)
    for response in (
        them.get(KEYS),
        them.post(KEYS, json={"name": "mine"}),
        them.delete(f"{KEYS}/{created['id']}"),
        them.post(f"{KEYS}/{created['id']}/rotate", json={}),
    ):
        assert_problem(response, 403)
    assert [item["id"] for item in client.get(KEYS).json["items"]] == [created["id"]]
    assert client.get(KEYS).json["items"][0]["revoked_at"] is None


def test_an_admin_manages_keys(app: Flask, client: FlaskClient) -> None:
    admin = app.test_client(
        token=add_member(app, DEFAULT_WORKSPACE_ID, "admin", "a@example.com").token
    )
    mine = create_key(client)
    theirs = create_key(admin, name="admin's")
    assert theirs["created_by"] != mine["created_by"]
    assert len(admin.get(KEYS).json["items"]) == 2
    assert admin.delete(f"{KEYS}/{mine['id']}").status_code == 204
    assert admin.post(f"{KEYS}/{theirs['id']}/rotate", json={}).status_code == 201


def test_non_members_get_404_on_every_key_endpoint(app: Flask, client: FlaskClient) -> None:
    created = create_key(client)
    stranger_user = add_user(app, "stranger@example.com")
    stranger = app.test_client(token=stranger_user.token)
    new_workspace(stranger, "stranger's own")  # a member elsewhere, not here
    for response in (
        stranger.get(KEYS),
        stranger.post(KEYS, json={"name": "mine"}),
        stranger.post(KEYS, json={"name": ""}),  # 404 before any 422: nothing is revealed
        stranger.delete(f"{KEYS}/{created['id']}"),
        stranger.post(f"{KEYS}/{created['id']}/rotate", json={}),
    ):
        assert_problem(response, 404)
    assert client.get(KEYS).json["items"][0]["revoked_at"] is None


def test_keys_need_a_token(app: Flask) -> None:
    anonymous = app.test_client(token="")
    response = anonymous.get(KEYS)
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


# --- audit ---------------------------------------------------------------------------------------


def test_key_changes_are_audited_with_the_user_as_actor(app: Flask, client: FlaskClient) -> None:
    actor = f"user:{app.extensions['test_owner'].id}"
    created = create_key(client, scopes=["read", "write"])
    rotated = client.post(f"{KEYS}/{created['id']}/rotate", json={"overlap_seconds": 60}).json
    assert client.delete(f"{KEYS}/{rotated['id']}").status_code == 204

    (made,) = audit_events(client, "api_key.created")
    assert made["actor"] == actor
    assert made["entity_type"] == "api_key"
    assert made["entity_id"] == created["id"]
    assert made["changes"]["prefix"]["after"] == created["prefix"]
    (rotation,) = audit_events(client, "api_key.rotated")
    assert rotation["actor"] == actor
    assert rotation["entity_id"] == created["id"]
    assert rotation["changes"]["successor"]["after"] == rotated["prefix"]
    (revocation,) = audit_events(client, "api_key.revoked")
    assert revocation["actor"] == actor
    assert revocation["entity_id"] == rotated["id"]

    # No secret in any event.
    everything = client.get(f"{DEFAULT}/audit", query_string={"limit": 100}).get_data(as_text=True)
    for key in (created["key"], rotated["key"]):
        assert key.split("_", 2)[2] not in everything  # tm_<prefix>_<secret: may hold _>


def test_task_events_made_with_a_key_name_the_key(app: Flask, client: FlaskClient) -> None:
    created = create_key(client, scopes=["read", "write"])
    task = key_client(app, created).post(f"{DEFAULT}/tasks", json={"title": "by key"}).json
    client.patch(f"{DEFAULT}/tasks/{task['id']}", json={"title": "by owner"})

    (made,) = audit_events(client, "task.created")
    assert made["actor"] == f"key:{created['prefix']}"
    assert made["entity_id"] == task["id"]
    (changed,) = audit_events(client, "task.updated")
    assert changed["actor"] == f"user:{app.extensions['test_owner'].id}"


def test_the_production_app_serves_keys_like_the_testing_one() -> None:
    """Create, use and revoke in production (TESTING and DEBUG off): no 500 anywhere."""
    app = make_app("production")
    owner = app.test_client()
    created = create_key(owner, scopes=["read", "write"])
    writer = key_client(app, created)
    assert writer.post(f"{DEFAULT}/tasks", json={"title": "prod"}).status_code == 201
    assert owner.delete(f"{KEYS}/{created['id']}").status_code == 204
    assert_invalid_token(writer.get(f"{DEFAULT}/tasks"))
