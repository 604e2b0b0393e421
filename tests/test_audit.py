"""The audit log: one event per write, in the write's transaction; append-only by trigger; hash
chains that show tampering; the query, history and verify endpoints.

Runs on SQLite, and on PostgreSQL with TEST_DATABASE_URL (the parallel-writers test needs it).
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from app.audit.models import GENESIS_HASH, AuditEventRow
from app.audit.service import (
    AuditEvent,
    NotInWriteTransaction,
    event_hash,
    field_changes,
    record_event,
)
from app.db import db
from app.tasks.models import new_task_id
from tests.auth import TestUser as User  # aliased: pytest collects Test* names
from tests.auth import add_member, add_user
from tests.conftest import make_app
from tests.databases import POSTGRES_ADMIN_URL

WORKSPACES = "/api/v2/workspaces"


@pytest.fixture
def app() -> Flask:
    return make_app("testing")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """The test owner's client: owner of the default workspace and of those it creates."""
    return app.test_client()


def owner_of(app: Flask) -> User:
    return app.extensions["test_owner"]


def workspace_id_of(workspace: str) -> str:
    return workspace.rsplit("/", 1)[1]


def new_workspace(client: FlaskClient, name: str = "audited") -> str:
    response = client.post(WORKSPACES, json={"name": name})
    assert response.status_code == 201
    return f"{WORKSPACES}/{response.json['id']}"


def events(client: FlaskClient, workspace: str, query: str = "", **kwargs: Any) -> list[dict]:
    """Every event of the workspace (all pages), newest first."""
    found: list[dict] = []
    url: str | None = f"{workspace}/audit?limit=100{'&' + query if query else ''}"
    while url:
        response = client.get(url, **kwargs)
        assert response.status_code == 200, response.json
        found.extend(response.json["items"])
        url = response.json["next"]
    return found


def task_events(client: FlaskClient, workspace: str) -> list[dict]:
    return events(client, workspace, "entity_type=task")


def verify(client: FlaskClient, workspace: str, query: str = "") -> dict[str, Any]:
    """One call of the verify endpoint (the client's user: an owner or admin there)."""
    response = client.get(f"{workspace}/audit/verify{'?' + query if query else ''}")
    assert response.status_code == 200, response.json
    return response.json


def verify_in_pieces(client: FlaskClient, url: str) -> list[dict[str, Any]]:
    """Follow ``next`` from ``url`` until nothing is left: every call's answer."""
    pieces: list[dict[str, Any]] = []
    next_url: str | None = url
    while next_url:
        response = client.get(next_url)
        assert response.status_code == 200, response.json
        pieces.append(response.json)
        next_url = response.json["next"]
        if next_url:
            assert response.headers["Link"] == f'<{next_url}>; rel="next"'
        else:
            assert "Link" not in response.headers
    return pieces


def engines(app: Flask) -> dict[str | None, Engine]:
    return app.extensions["shards"].all_engines()


def raw_events(app: Flask) -> int:
    total = 0
    for engine in engines(app).values():
        with engine.connect() as connection:
            total += connection.execute(text("SELECT count(*) FROM audit_events")).scalar_one()
    return total


# --- One event per write -----------------------------------------------------------------------


def test_each_task_write_records_one_event_with_field_level_changes(
    app: Flask, client: FlaskClient
) -> None:
    workspace = new_workspace(client)
    tasks = f"{workspace}/tasks"
    created = client.post(
        tasks, json={"title": "Write", "tags": ["a"]}, headers={"X-Request-ID": "r-1"}
    )
    task = created.json
    url = f"{tasks}/{task['id']}"

    [event] = task_events(client, workspace)
    assert event["action"] == "task.created"
    assert event["entity_type"] == "task"
    assert event["entity_id"] == task["id"]
    assert event["workspace_id"] == workspace_id_of(workspace)
    assert event["actor"] == f"user:{owner_of(app).id}"
    assert event["request_id"] == "r-1"
    assert event["client_ip"] == "127.0.0.1"  # the reader is an owner: see test_who_...
    assert event["sequence"] == 1
    assert event["prev_hash"] == GENESIS_HASH
    # A create records the full snapshot.
    assert event["changes"]["title"] == {"before": None, "after": "Write"}
    assert event["changes"]["tags"] == {"before": None, "after": ["a"]}
    assert event["changes"]["description"] == {"before": None, "after": None}
    assert event["changes"]["created_at"]["after"] == task["created_at"]

    patched = client.patch(url, json={"status": "done"}).json
    latest = task_events(client, workspace)[0]
    assert latest["action"] == "task.updated"
    assert latest["changes"] == {
        "status": {"before": "todo", "after": "done"},
        "updated_at": {"before": task["updated_at"], "after": patched["updated_at"]},
    }
    assert latest["sequence"] == 2
    assert latest["prev_hash"] == event["hash"]

    client.put(url, json={"title": "Rewritten", "status": "done"})
    latest = task_events(client, workspace)[0]
    assert latest["action"] == "task.updated"
    assert set(latest["changes"]) == {"title", "tags", "updated_at"}  # tags reset by PUT
    assert latest["changes"]["tags"] == {"before": ["a"], "after": []}

    # Writes that change nothing write nothing, so they record nothing.
    client.patch(url, json={"status": "done"})
    client.put(url, json={"title": "Rewritten", "status": "done"})
    assert len(task_events(client, workspace)) == 3

    assert client.delete(url).status_code == 204
    deleted = task_events(client, workspace)[0]
    assert deleted["action"] == "task.deleted"
    assert deleted["changes"]["title"] == {"before": "Rewritten", "after": None}
    assert deleted["changes"]["status"] == {"before": "done", "after": None}
    assert [e["action"] for e in task_events(client, workspace)] == [
        "task.deleted",
        "task.updated",
        "task.updated",
        "task.created",
    ]


def test_v1_writes_are_audited_in_the_default_workspace(client: FlaskClient) -> None:
    task = client.post("/api/v1/tasks", json={"title": "old client"}).json
    default = f"{WORKSPACES}/01a19b7b-0000-7000-8000-000000000001"
    [event] = task_events(client, default)
    assert (event["action"], event["entity_id"]) == ("task.created", task["id"])


def test_each_bulk_operation_records_its_event_with_the_same_request_id(
    client: FlaskClient,
) -> None:
    workspace = new_workspace(client)
    tasks = f"{workspace}/tasks"
    existing = client.post(tasks, json={"title": "old"}).json
    response = client.post(
        f"{tasks}/bulk",
        json={
            "operations": [
                {"op": "create", "task": {"title": "one"}},
                {"op": "update", "id": existing["id"], "changes": {"priority": "high"}},
                {"op": "delete", "id": existing["id"]},
            ]
        },
        headers={"X-Request-ID": "bulk-1"},
    )
    assert response.status_code == 200, response.json
    bulk = [e for e in task_events(client, workspace) if e["request_id"] == "bulk-1"]
    assert [e["action"] for e in reversed(bulk)] == ["task.created", "task.updated", "task.deleted"]
    assert bulk[1]["changes"]["priority"] == {"before": "medium", "after": "high"}


def test_workspace_changes_are_audited_and_deleting_keeps_the_events(
    app: Flask, client: FlaskClient
) -> None:
    workspace = new_workspace(client, "first")
    workspace_id = uuid.UUID(workspace.rsplit("/", 1)[1])
    client.post(f"{workspace}/tasks", json={"title": "t"})
    client.patch(workspace, json={"name": "second"})
    client.patch(workspace, json={"name": "second"})  # no change: no event
    found = events(client, workspace, "entity_type=workspace")
    assert [e["action"] for e in found] == ["workspace.renamed", "workspace.created"]
    assert found[0]["changes"]["name"] == {"before": "first", "after": "second"}
    assert found[0]["database"] == "control"
    assert found[1]["changes"]["shard"]["after"] in app.extensions["shards"].names

    assert client.delete(workspace).status_code == 204
    assert client.get(f"{workspace}/audit").status_code == 404  # the workspace is gone...
    with app.app_context():  # ...its events are not
        actions = set()
        for engine in engines(app).values():
            with engine.connect() as connection:
                actions |= set(
                    connection.execute(
                        text("SELECT action FROM audit_events WHERE workspace_id = :w"),
                        {
                            "w": workspace_id.hex
                            if engine.dialect.name == "sqlite"
                            else workspace_id
                        },
                    ).scalars()
                )
    assert {"workspace.deleted", "workspace.tasks_deleted", "task.created"} <= actions


# --- Who ---------------------------------------------------------------------------------------


def test_the_actor_is_the_authenticated_caller(app: Flask, client: FlaskClient) -> None:
    workspace = new_workspace(client)
    tasks = f"{workspace}/tasks"
    member = add_member(app, workspace_id_of(workspace), "member", "writer@example.com")
    client.post(tasks, json={"title": "by the owner"})
    app.test_client(token=member.token).post(tasks, json={"title": "by a member"})
    by_member, by_owner = task_events(client, workspace)
    assert by_owner["actor"] == f"user:{owner_of(app).id}"
    assert by_member["actor"] == f"user:{member.id}"
    assert by_owner["changes"]["title"]["after"] == "by the owner"
    assert by_member["changes"]["title"]["after"] == "by a member"


def test_a_write_without_valid_credentials_is_refused_and_records_nothing(
    app: Flask, client: FlaskClient
) -> None:
    """Before chapter 4 such writes were done as "anonymous"; now nobody writes anonymously."""
    workspace = new_workspace(client)
    tasks = f"{workspace}/tasks"
    before = raw_events(app)
    for header in ("", "Bearer ", "Bearer wrong", f"Bearer {owner_of(app).token}x"):
        response = app.test_client(token="").post(
            tasks, json={"title": "nobody"}, headers={"Authorization": header} if header else {}
        )
        assert response.status_code == 401, header
    assert raw_events(app) == before
    assert task_events(client, workspace) == []


def test_anonymous_is_the_actor_only_where_nobody_authenticated(app: Flask) -> None:
    """A failed log-in is recorded (globally, in the control database) by nobody."""
    response = app.test_client(token="").post(
        "/api/v2/auth/login",
        json={"email": "nobody@example.com", "password": "not-the-password-1234"},
    )
    assert response.status_code == 401
    with engines(app)[None].connect() as connection:
        actors = connection.execute(
            text("SELECT actor, workspace_id FROM audit_events WHERE action = 'user.login_failed'")
        ).all()
    assert [tuple(row) for row in actors] == [("anonymous", None)]


@pytest.mark.parametrize("role", ["owner", "admin", "member", "viewer"])
def test_the_client_address_is_shown_to_those_who_may_read_the_audit_log(
    app: Flask, client: FlaskClient, role: str
) -> None:
    """The address is recorded for every event, and is personal data: the list (owners and
    admins only) shows it; a task's history, which any member may read, does not unless the
    reader is an owner or admin."""
    workspace = new_workspace(client)
    task = client.post(f"{workspace}/tasks", json={"title": "x"}).json
    reader = app.test_client(
        token=add_member(app, workspace_id_of(workspace), role, f"{role}-reader@example.com").token
    )
    may_read_the_log = role in {"owner", "admin"}
    listed = reader.get(f"{workspace}/audit?entity_type=task")
    assert listed.status_code == (200 if may_read_the_log else 403)
    if may_read_the_log:
        assert [e["client_ip"] for e in listed.json["items"]] == ["127.0.0.1"]
    else:
        assert listed.json["type"] == "/problems/permission-denied"
    history = reader.get(f"{workspace}/tasks/{task['id']}/history")
    assert history.status_code == 200
    [event] = history.json["items"]
    assert event["client_ip"] == ("127.0.0.1" if may_read_the_log else None)


def test_forwarded_for_is_not_trusted(client: FlaskClient) -> None:
    workspace = new_workspace(client)
    client.post(f"{workspace}/tasks", json={"title": "x"}, headers={"X-Forwarded-For": "6.6.6.6"})
    [event] = events(client, workspace, "entity_type=task")
    assert event["client_ip"] == "127.0.0.1"


# --- No write without its event, no event without its write --------------------------------------


def test_failed_writes_leave_no_event_and_no_change(app: Flask, client: FlaskClient) -> None:
    workspace = new_workspace(client)
    tasks = f"{workspace}/tasks"
    task = client.post(tasks, json={"title": "keep"}).json
    before = raw_events(app)
    assert (
        client.patch(
            f"{tasks}/{task['id']}", json={"title": "x"}, headers={"If-Match": '"stale"'}
        ).status_code
        == 412
    )
    assert client.patch(f"{tasks}/{task['id']}", json={"status": "nope"}).status_code == 422
    failing = client.post(
        f"{tasks}/bulk",
        json={
            "operations": [
                {"op": "create", "task": {"title": "would be created"}},
                {"op": "update", "id": task["id"], "changes": {"title": "would change"}},
                {"op": "delete", "id": str(new_task_id())},
            ]
        },
    )
    assert failing.status_code == 422
    assert (
        client.patch(workspace, json={"name": "x"}, headers={"If-Match": '"stale"'}).status_code
        == 412
    )
    assert raw_events(app) == before
    assert client.get(f"{tasks}/{task['id']}").json["title"] == "keep"
    assert client.get(tasks).json["total"] == 1


def test_an_event_that_cannot_be_written_undoes_its_write(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = new_workspace(client)
    tasks = f"{workspace}/tasks"

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("audit storage failed")

    monkeypatch.setattr("app.audit.tasks.record_event", broken)
    assert client.post(tasks, json={"title": "x"}).status_code == 500
    monkeypatch.undo()
    assert client.get(tasks).json["total"] == 0


def test_record_event_refuses_to_run_outside_a_write_transaction(app: Flask) -> None:
    with app.app_context():
        session = db.session()
        with pytest.raises(NotInWriteTransaction):
            record_event(session, action="x.y", entity_type="x", entity_id="1", workspace_id=None)
        if session.get_bind().dialect.name == "sqlite":
            with session.begin(), pytest.raises(NotInWriteTransaction, match="BEGIN IMMEDIATE"):
                record_event(
                    session, action="x.y", entity_type="x", entity_id="1", workspace_id=None
                )


def test_record_event_for_other_features_chains_global_events(app: Flask) -> None:
    """The public function other features (backups, restores, moves) call."""
    with app.app_context():
        session = db.session()
        for name in ("one", "two"):
            with session.begin():
                session.connection(execution_options={"write_transaction": True})
                event = record_event(
                    session,
                    action="backup.created",
                    entity_type="backup",
                    entity_id=name,
                    workspace_id=None,
                    after={"name": name, "size": 10},
                )
        assert event.actor == "system"
        assert event.request_id is None
        assert event.sequence == 2
        assert event.changes == {
            "name": {"before": None, "after": "two"},
            "size": {"before": None, "after": 10},
        }
        assert event.hash == event_hash(event)


def test_field_changes_lists_only_what_changed() -> None:
    assert field_changes({"a": 1, "b": 2}, {"a": 1, "b": 3}) == {"b": {"before": 2, "after": 3}}
    assert field_changes(None, {"a": None}) == {"a": {"before": None, "after": None}}
    when = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    assert field_changes({"at": when}, None) == {
        "at": {"before": "2026-01-02T03:04:05.006Z", "after": None}
    }


# --- Append-only, tamper evidence ----------------------------------------------------------------


def test_the_database_refuses_to_update_or_delete_an_event(app: Flask, client: FlaskClient) -> None:
    workspace = new_workspace(client)
    client.post(f"{workspace}/tasks", json={"title": "x"})
    checked = 0
    for engine in engines(app).values():
        with engine.connect() as connection:
            if not connection.execute(text("SELECT count(*) FROM audit_events")).scalar_one():
                continue  # row triggers need a row to refuse
        checked += 1
        for statement in ("UPDATE audit_events SET actor = 'admin'", "DELETE FROM audit_events"):
            with engine.connect() as connection, pytest.raises(DBAPIError, match="append-only"):
                connection.execute(text(statement))
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM audit_events")).scalar_one() >= 1
    assert checked == 2  # the control database (workspace events) and the task's shard


def test_replacing_an_event_is_refused_too(app: Flask, client: FlaskClient) -> None:
    """SQLite's INSERT OR REPLACE deletes the old row: the DELETE trigger must fire for it."""
    workspace = new_workspace(client)
    client.post(f"{workspace}/tasks", json={"title": "x"})
    for engine in engines(app).values():
        if engine.dialect.name != "sqlite":
            pytest.skip("INSERT OR REPLACE is SQLite's")
        with engine.connect() as connection:
            row = connection.execute(text("SELECT * FROM audit_events LIMIT 1")).mappings().first()
        if row is None:
            continue
        columns = list(row)
        forged = {**row, "actor": "forged"}
        statement = (
            f"INSERT OR REPLACE INTO audit_events ({', '.join(columns)}) "
            f"VALUES ({', '.join(':' + c for c in columns)})"
        )
        with engine.connect() as connection, pytest.raises(DBAPIError, match="append-only"):
            connection.execute(text(statement), forged)


def _bypassing_the_trigger(engine: Engine, statement: str, **params: Any) -> None:
    """What an attacker with DDL rights could do; the chain must still show it."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
            connection.execute(text(statement), params)
            connection.execute(text("ALTER TABLE audit_events ENABLE TRIGGER USER"))
        else:
            connection.execute(text("DROP TRIGGER audit_events_no_update"))
            connection.execute(text("DROP TRIGGER audit_events_no_delete"))
            connection.execute(text(statement), params)


def _id_param(engine: Engine, event_id: str) -> Any:
    value = uuid.UUID(event_id)
    return value.hex if engine.dialect.name == "sqlite" else value


@pytest.mark.parametrize("tampering", ["edit", "delete", "rehash"])
def test_verify_finds_a_tampered_event(app: Flask, client: FlaskClient, tampering: str) -> None:
    workspace = new_workspace(client)
    tasks = f"{workspace}/tasks"
    task = client.post(tasks, json={"title": "x"}).json
    client.patch(f"{tasks}/{task['id']}", json={"title": "y"})
    client.patch(f"{tasks}/{task['id']}", json={"title": "z"})
    verified = verify(client, workspace)
    assert verified["ok"] is True
    assert verified["events"] == 4

    # As the owner: client_ip (shown to owners and admins) is part of what the hash covers.
    first, second, third = reversed(events(client, workspace, "entity_type=task"))
    engine = app.extensions["shards"].engine(client.get(workspace).json["shard"])
    if tampering == "edit":  # the content changes, its hash does not
        _bypassing_the_trigger(
            engine,
            "UPDATE audit_events SET actor = 'system' WHERE id = :id",
            id=_id_param(engine, second["id"]),
        )
        broken, reason = second["id"], "no longer matches its hash"
    elif tampering == "delete":
        _bypassing_the_trigger(
            engine, "DELETE FROM audit_events WHERE id = :id", id=_id_param(engine, second["id"])
        )
        broken, reason = third["id"], "events are missing"
    else:  # a forger recomputes the edited event's hash: the next link breaks
        forged = dict(second, actor="system")
        event = AuditEvent(
            **{
                **{
                    k: v
                    for k, v in forged.items()
                    if k not in {"id", "workspace_id", "occurred_at", "database"}
                },
                "id": uuid.UUID(forged["id"]),
                "workspace_id": uuid.UUID(forged["workspace_id"]),
                "occurred_at": datetime.fromisoformat(forged["occurred_at"]),
            }
        )
        _bypassing_the_trigger(
            engine,
            "UPDATE audit_events SET actor = 'system', hash = :hash WHERE id = :id",
            hash=event_hash(event),
            id=_id_param(engine, second["id"]),
        )
        broken, reason = third["id"], "prev_hash"
    report = verify(client, workspace)
    assert report["ok"] is False
    [chain] = [c for c in report["chains"] if not c["ok"]]
    assert chain["broken_event_id"] == broken
    assert reason in chain["reason"]
    assert first["id"] != broken
    # Checked one event per call, the chain breaks at the same event: a piece links its first
    # event to the stored hash of the one before it.
    pieces = verify_in_pieces(client, f"{workspace}/audit/verify?limit=1")
    assert [piece["events"] for piece in pieces] == [1] * len(pieces)
    [failed] = [c for piece in pieces for c in piece["chains"] if not c["ok"]]
    assert (failed["broken_event_id"], failed["reason"]) == (broken, chain["reason"])
    assert pieces[-1]["chains"] == [failed]  # nothing is offered past a broken event
    # Starting at the broken event finds it too (for a deleted one: its successor's gap).
    started_there = verify(client, workspace, f"since={broken}")["chains"]
    assert [c["broken_event_id"] for c in started_there] == [broken]
    assert reason in started_there[0]["reason"]
    if tampering == "edit":  # a piece trusts the stored hash before it: the piece before checks
        assert verify(client, workspace, f"since={third['id']}")["ok"] is True  # its content


@pytest.mark.skipif(not POSTGRES_ADMIN_URL, reason="parallel writers need PostgreSQL")
def test_parallel_writers_never_fork_the_chain() -> None:
    app = make_app("testing")
    client = app.test_client()
    workspace = new_workspace(client)
    tasks = f"{workspace}/tasks"
    seed = client.post(tasks, json={"title": "shared"}).json
    statuses: list[int] = []
    start = threading.Barrier(8)

    def writer(number: int) -> None:
        own = app.test_client()  # the same owner, from its own client
        start.wait()
        for round_ in range(4):
            if number % 2:
                response = own.post(tasks, json={"title": f"w{number}-{round_}"})
            else:  # bulk and single writes to the same row: lock order must hold
                response = own.post(
                    f"{tasks}/bulk",
                    json={
                        "operations": [
                            {"op": "create", "task": {"title": f"b{number}-{round_}"}},
                            {
                                "op": "update",
                                "id": seed["id"],
                                "changes": {"title": f"{number}{round_}"},
                            },
                        ]
                    },
                )
            statuses.append(response.status_code)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(statuses) == {200, 201}, statuses
    found = task_events(client, workspace)
    assert len(found) == 1 + 4 * 4 + 4 * 4 * 2
    assert sorted(e["sequence"] for e in found) == list(range(1, len(found) + 1))
    assert len({e["prev_hash"] for e in found}) == len(found)  # no two events share a parent
    assert verify(client, workspace)["ok"] is True


# --- Verify: the workspace's owners and admins, a bounded piece per call ------------------------


def test_verify_is_for_the_workspaces_owners_and_admins(app: Flask, client: FlaskClient) -> None:
    workspace = new_workspace(client)
    url = f"{workspace}/audit/verify"
    anonymous = app.test_client(token="")
    attempts = {
        "": "authentication-required",
        f"Bearer {owner_of(app).token}x": "invalid-token",
        "Bearer not-a-token": "invalid-token",
    }
    for header, slug in attempts.items():
        for query in ("", "?limit=0", "?unknown=1"):  # credentials first: strangers learn nothing
            response = anonymous.get(url + query, headers={"Authorization": header})
            assert response.status_code == 401, (header, query)
            assert response.json["type"] == f"/problems/{slug}"
            assert "WWW-Authenticate" in response.headers
    workspace_id = workspace_id_of(workspace)
    for role in ("member", "viewer"):
        user = add_member(app, workspace_id, role, f"{role}@example.com")
        response = app.test_client(token=user.token).get(url)
        assert response.status_code == 403, role
        assert response.json["type"] == "/problems/permission-denied"
    admin = add_member(app, workspace_id, "admin", "admin@example.com")
    assert verify(app.test_client(token=admin.token), workspace)["ok"] is True
    # Not a member (of this workspace; of another one): the very answer of a missing workspace.
    missing = client.get(f"{WORKSPACES}/{new_task_id()}/audit/verify")
    for user in (
        add_user(app, "outsider@example.com"),
        add_user(app, "elsewhere@example.com", role="owner"),  # owner of the default workspace
    ):
        hidden = app.test_client(token=user.token).get(url)
        assert hidden.status_code == missing.status_code == 404
        assert {k: hidden.json[k] for k in ("type", "title", "detail")} == {
            k: missing.json[k] for k in ("type", "title", "detail")
        }


def test_verify_checks_at_most_limit_events_per_call_and_the_pieces_link_up(
    client: FlaskClient,
) -> None:
    workspace = new_workspace(client)
    for number in range(6):
        client.post(f"{workspace}/tasks", json={"title": f"t{number}"})
    whole = verify(client, workspace)
    assert (whole["ok"], whole["events"], whole["next_cursor"], whole["next"]) == (
        True,
        7,
        None,
        None,
    )
    assert [c["events"] for c in whole["chains"]] == [1, 6]  # the control database's, the shard's
    pieces = verify_in_pieces(client, f"{workspace}/audit/verify?limit=2")
    assert [piece["events"] for piece in pieces] == [2, 2, 2, 1]
    assert all(piece["ok"] for piece in pieces)
    # The first call took the control chain's event and the shard chain's first; each next one
    # went on where the previous stopped, to the same last events as one pass.
    assert [[c["events"] for c in piece["chains"]] for piece in pieces] == [[1, 1], [2], [2], [1]]
    last = {c["database"]: c["last_event_id"] for piece in pieces for c in piece["chains"]}
    assert last == {c["database"]: c["last_event_id"] for c in whole["chains"]}
    assert all("limit=2" in piece["next"] for piece in pieces[:-1])


def test_since_and_until_check_part_of_one_chain(client: FlaskClient) -> None:
    workspace = new_workspace(client)
    for number in range(5):
        client.post(f"{workspace}/tasks", json={"title": f"t{number}"})
    chain = list(reversed(task_events(client, workspace)))  # sequences 1 to 5
    ids = [event["id"] for event in chain]

    def checked(query: str) -> tuple[int, str, str | None]:
        report = verify(client, workspace, query)
        assert report["ok"] is True
        [only] = report["chains"]
        assert only["database"] == chain[0]["database"]
        return only["events"], only["last_event_id"], report["next"]

    assert checked(f"since={ids[2]}") == (3, ids[4], None)
    assert checked(f"until={ids[1]}") == (2, ids[1], None)
    assert checked(f"since={ids[1]}&until={ids[3]}") == (3, ids[3], None)
    assert checked(f"since={ids[3]}&until={ids[3]}") == (1, ids[3], None)
    assert checked(f"since={ids[0]}&until={ids[2]}&limit=3") == (3, ids[2], None)
    # A range in pieces: the cursor keeps the range's end.
    count, last, next_url = checked(f"since={ids[0]}&until={ids[3]}&limit=3")
    assert (count, last) == (3, ids[2])
    assert next_url is not None
    assert "since=" not in next_url
    assert "until=" not in next_url
    rest = client.get(next_url).json
    assert [(c["events"], c["last_event_id"]) for c in rest["chains"]] == [(1, ids[3])]
    assert rest["next"] is None
    # The workspace's own events are in the control database's chain.
    [created] = events(client, workspace, "entity_type=workspace")
    assert verify(client, workspace, f"until={created['id']}")["chains"][0]["database"] == "control"


def _verify_cursor(position: Any) -> str:
    raw = json.dumps({"k": "verify", "p": position}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_bad_verify_parameters_are_a_400(client: FlaskClient) -> None:
    workspace = new_workspace(client)
    client.post(f"{workspace}/tasks", json={"title": "x"})
    client.post(f"{workspace}/tasks", json={"title": "y"})
    second_task, first_task, created = events(client, workspace)
    other = events(client, new_workspace(client, "other"))[0]["id"]
    piece_cursor = verify(client, workspace, "limit=1")["next_cursor"]
    list_cursor = client.get(f"{workspace}/audit?limit=1").json["next_cursor"]
    cases = {
        "since=x": "since",
        f"since={first_task['id'].upper()}": "since",  # not the canonical form
        f"until={uuid.uuid4()}": "until",  # a UUIDv4: not an event id
        f"until={new_task_id()}": "until",  # no such event
        f"since={other}": "since",  # another workspace's event
        f"since={second_task['id']}&until={first_task['id']}": "until",  # out of order
        f"since={created['id']}&until={second_task['id']}": "until",  # two chains
        f"since={created['id']}&since={created['id']}": "since",
        f"cursor={piece_cursor}&since={created['id']}": "cursor",
        "cursor=garbage": "cursor",
        f"cursor={list_cursor}": "cursor",  # another endpoint's
        f"cursor={_verify_cursor([['nowhere', 1, None]])}": "cursor",
        f"cursor={_verify_cursor([['control', 0, None]])}": "cursor",
        f"cursor={_verify_cursor([['control', 1, 2**63]])}": "cursor",
        f"cursor={_verify_cursor([['control', 1, None], ['control', 1, None]])}": "cursor",
        f"cursor={_verify_cursor([])}": "cursor",
        f"cursor={_verify_cursor('control')}": "cursor",
        "limit=0": "limit",
        "limit=10001": "limit",
        "unknown=1": "unknown",
    }
    for query, parameter in cases.items():
        response = client.get(f"{workspace}/audit/verify?{query}")
        assert response.status_code == 400, (query, response.json)
        assert response.json["type"] == "/problems/validation-error"
        assert parameter in {error["parameter"] for error in response.json["errors"]}, query
    assert verify(client, workspace, "limit=10000")["events"] == 3
    assert verify(client, workspace, f"cursor={piece_cursor}")["events"] == 2


# --- Query API ------------------------------------------------------------------------------------


def test_filters_select_events(client: FlaskClient) -> None:
    workspace = new_workspace(client)
    tasks = f"{workspace}/tasks"
    one = client.post(tasks, json={"title": "one"}).json
    two = client.post(tasks, json={"title": "two"}).json
    client.delete(f"{tasks}/{one['id']}")

    def ids(query: str) -> list[str]:
        return [e["entity_id"] for e in events(client, workspace, query)]

    assert ids(f"entity_type=task&entity_id={one['id']}") == [one["id"], one["id"]]
    assert ids("action=task.deleted") == [one["id"]]
    assert ids("action=task.created") == [two["id"], one["id"]]
    assert ids("action=nothing.like.this") == []
    assert ids("actor=anonymous") == ids("actor=system") == []  # every write here had a user
    everything = events(client, workspace)
    middle = everything[1]["occurred_at"]
    later = datetime.fromisoformat(everything[0]["occurred_at"]) + timedelta(milliseconds=1)
    assert all(
        e["occurred_at"] >= middle
        for e in events(client, workspace, f"since={middle}".replace("+", "%2B"))
    )
    assert events(client, workspace, f"since={later.isoformat().replace('+', '%2B')}") == []
    assert len(events(client, workspace, f"until={later.isoformat().replace('+', '%2B')}")) == 4


def test_the_actor_filter_takes_the_actors_events_show(app: Flask, client: FlaskClient) -> None:
    workspace = new_workspace(client)
    tasks = f"{workspace}/tasks"
    member = add_member(app, workspace_id_of(workspace), "member", "writer@example.com")
    one = client.post(tasks, json={"title": "one"}).json
    two = app.test_client(token=member.token).post(tasks, json={"title": "two"}).json
    client.delete(f"{tasks}/{one['id']}")
    owner = owner_of(app)

    def ids(query: str) -> list[str]:
        return [e["entity_id"] for e in events(client, workspace, query)]

    assert ids(f"actor=user:{member.id}") == [two["id"]]
    assert ids(f"action=task.created&actor=user:{owner.id}") == [one["id"]]
    assert ids(f"entity_type=task&actor=user:{owner.id}") == [one["id"], one["id"]]


def test_cursor_pagination_walks_every_event_once_newest_first(client: FlaskClient) -> None:
    workspace = new_workspace(client)
    for number in range(5):
        client.post(f"{workspace}/tasks", json={"title": f"t{number}"})
    seen: list[str] = []
    url: str | None = f"{workspace}/audit?limit=2&entity_type=task"
    pages = 0
    while url:
        response = client.get(url)
        pages += 1
        assert len(response.json["items"]) <= 2
        if response.json["next"]:
            assert response.headers["Link"] == f'<{response.json["next"]}>; rel="next"'
            assert "entity_type=task" in response.json["next"]
        else:
            assert "Link" not in response.headers
        seen.extend(e["id"] for e in response.json["items"])
        url = response.json["next"]
    assert pages == 3
    assert len(seen) == len(set(seen)) == 5
    assert seen == sorted(seen, reverse=True)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        ("limit=1&limit=2", "limit"),
        ("cursor=garbage", "cursor"),
        ("cursor=eyJrIjoiaGlzdG9yeSIsInAiOjF9", "cursor"),  # another endpoint's cursor
        ("since=2026-01-01T00:00:00", "since"),  # no zone
        ("until=yesterday", "until"),
        ("since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
        ("action=Task.Created", "action"),
        ("actor=" + "a" * 51, "actor"),
        ("entity_id=%00", "entity_id"),
        ("entity_type=task&entity_type=workspace", "entity_type"),
        ("page=2", "page"),
    ],
)
def test_bad_query_parameters_are_a_400(client: FlaskClient, query: str, parameter: str) -> None:
    workspace = new_workspace(client)
    response = client.get(f"{workspace}/audit?{query}")
    assert response.status_code == 400, response.json
    assert parameter in {error["parameter"] for error in response.json["errors"]}


AUDIT_ROUTES = ("/audit", "/audit/verify", "/tasks/{task_id}/history")


def test_unknown_workspace_is_a_404_on_every_audit_route(client: FlaskClient) -> None:
    missing = f"{WORKSPACES}/{new_task_id()}"
    for path in AUDIT_ROUTES:
        response = client.get(missing + path.format(task_id=new_task_id()))
        assert response.status_code == 404
        assert response.json["type"] == "/problems/workspace-not-found"


def test_another_workspaces_members_get_a_404_on_every_audit_route(
    app: Flask, client: FlaskClient
) -> None:
    """Tenants see nothing of each other: not the events, not that the workspace exists."""
    mine = new_workspace(client, "mine")
    task = client.post(f"{mine}/tasks", json={"title": "mine"}).json
    neighbour = add_user(app, "neighbour@example.com")
    neighbours_client = app.test_client(token=neighbour.token)
    theirs = new_workspace(neighbours_client, "theirs")  # the neighbour owns it
    their_admin = add_member(app, workspace_id_of(theirs), "admin", "their-admin@example.com")
    missing = f"{WORKSPACES}/{new_task_id()}"
    for stranger in (neighbours_client, app.test_client(token=their_admin.token)):
        for path in AUDIT_ROUTES:
            hidden = stranger.get(mine + path.format(task_id=task["id"]))
            expected = stranger.get(missing + path.format(task_id=task["id"]))
            assert hidden.status_code == expected.status_code == 404, path
            assert {k: hidden.json[k] for k in ("type", "title", "detail")} == {
                k: expected.json[k] for k in ("type", "title", "detail")
            }
    # And the other way round: the owner of mine is nobody in theirs.
    for path in AUDIT_ROUTES:
        assert client.get(theirs + path.format(task_id=new_task_id())).status_code == 404
    assert events(neighbours_client, theirs, "entity_type=workspace")[0]["actor"] == (
        f"user:{neighbour.id}"
    )


def test_a_workspace_never_shows_another_workspaces_events(client: FlaskClient) -> None:
    mine, theirs = new_workspace(client, "mine"), new_workspace(client, "theirs")
    secret = client.post(f"{theirs}/tasks", json={"title": "secret"}).json
    client.patch(f"{theirs}/tasks/{secret['id']}", json={"title": "still secret"})
    assert events(client, mine, "entity_type=task") == []
    assert events(client, mine, f"entity_id={secret['id']}") == []
    assert client.get(f"{mine}/tasks/{secret['id']}/history").status_code == 404
    assert verify(client, mine)["events"] == 1  # its own creation only
    # Their event ids are not events of mine.
    secret_event = events(client, theirs, "entity_type=task")[0]["id"]
    errors = client.get(f"{mine}/audit/verify?since={secret_event}").json["errors"]
    assert errors == [{"parameter": "since", "detail": "is not an event of this workspace"}]
    # Another workspace's cursor is just a position: it reveals nothing of the other one.
    page = client.get(f"{theirs}/audit?limit=1").json
    assert client.get(f"{mine}/audit?cursor={page['next_cursor']}").json["items"] in (
        [],
        events(client, mine)[:1],
    )


def test_task_history_is_oldest_first_and_survives_the_delete(client: FlaskClient) -> None:
    workspace = new_workspace(client)
    tasks = f"{workspace}/tasks"
    task = client.post(tasks, json={"title": "a"}).json
    other = client.post(tasks, json={"title": "other"}).json
    client.patch(f"{tasks}/{task['id']}", json={"title": "b"})
    client.delete(f"{tasks}/{task['id']}")
    history = f"{tasks}/{task['id']}/history"
    response = client.get(history)
    assert response.status_code == 200
    assert [e["action"] for e in response.json["items"]] == [
        "task.created",
        "task.updated",
        "task.deleted",
    ]
    assert all(e["entity_id"] == task["id"] for e in response.json["items"])
    first = client.get(f"{history}?limit=2").json
    assert len(first["items"]) == 2
    rest = client.get(first["next"]).json
    assert [e["action"] for e in rest["items"]] == ["task.deleted"]
    assert rest["next"] is None
    assert len(client.get(f"{tasks}/{other['id']}/history").json["items"]) == 1
    assert client.get(f"{history}?cursor=eyJrIjoiYXVkaXQiLCJwIjoxfQ").status_code == 400
    for position in (2**63, -1):  # beyond any 64-bit sequence: a 400, not a database error
        forged = base64.urlsafe_b64encode(json.dumps({"k": "history", "p": position}).encode())
        assert client.get(f"{history}?cursor={forged.decode().rstrip('=')}").status_code == 400
    assert client.get(f"{history}?unknown=1").status_code == 400
    missing = client.get(f"{tasks}/{new_task_id()}/history")
    assert missing.status_code == 404
    assert missing.json["type"] == "/problems/task-not-found"


def test_the_audit_log_has_no_write_routes(client: FlaskClient) -> None:
    workspace = new_workspace(client)
    event = events(client, workspace)[0]
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert client.open(f"{workspace}/audit", method=method).status_code == 405
    assert client.delete(f"{workspace}/audit/{event['id']}").status_code == 404


def test_events_are_rows_of_one_schema_in_every_database(app: Flask) -> None:
    for engine in engines(app).values():
        with engine.connect() as connection:
            columns = connection.execute(text("SELECT * FROM audit_events LIMIT 0")).keys()
        assert set(columns) == {c.name for c in AuditEventRow.__table__.columns}
