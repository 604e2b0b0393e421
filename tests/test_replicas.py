"""Read/write splitting. The rules run on SQLite (configuration); the behaviour runs on a real
PostgreSQL primary with a streaming replica that ``scripts/pg-replica`` starts (marker
``replica``: ``./scripts/test -m replica``; skipped where PostgreSQL is missing, unless
``PG_REPLICA_REQUIRED=1`` as in CI)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import event, text

from app import create_app
from app.config import ConfigError
from app.db.shards import shard_session
from app.tasks import task_service
from tests.conftest import make_app
from tests.pg_replica import Pair, pair_fixture, psql, wait_for_replay

pg_pair = pair_fixture(scope="module")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- configuration (any database) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("replicas", "message"),
    [
        ("nowhere=postgresql+psycopg://u@127.0.0.1/x", "not a shard"),
        ("shard-a=sqlite:///replica.db", "PostgreSQL only"),
        ("shard-a=postgresql://u@127.0.0.1/x", "name the driver"),
        ("shard-a", "name=url"),
    ],
)
def test_bad_replica_settings_refuse_to_start(replicas: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_app("testing", REPLICA_URLS=replicas)


def test_a_down_replica_is_skipped_and_reported_but_not_fatal() -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/x?connect_timeout=1"
    app = make_app("testing", REPLICA_URLS=f"shard-a={url}")
    client = app.test_client()
    workspace = client.post("/api/v2/workspaces", json={"name": "r"}).json
    created = client.post(f"/api/v2/workspaces/{workspace['id']}/tasks", json={"title": "t"})
    assert created.status_code == 201
    if workspace["shard"] == "shard-a":
        assert client.get(created.headers["Location"]).status_code == 200  # from the primary
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json["checks"]["replica:shard-a"]["status"] == "fail"
    assert ready.json["checks"]["replica:shard-a"]["critical"] is False


# --- on a real primary and replica ----------------------------------------------------------------


@pytest.fixture(scope="module")
def migrated(pg_pair: Pair) -> Pair:
    app = create_app({"APP_ENV": "testing", "DATABASE_URL": pg_pair.primary_url})
    with app.app_context():
        upgrade()
    app.extensions["shards"].dispose()
    wait_for_replay(pg_pair)
    return pg_pair


@pytest.fixture
def replica_app(migrated: Pair) -> Iterator[Flask]:
    app = create_app(
        {
            "APP_ENV": "testing",
            "DATABASE_URL": migrated.primary_url,
            "REPLICA_URLS": f"main={migrated.replica_url}",
            "REPLICA_MAX_LAG_SECONDS": 0,  # any replay backlog at all: read the primary
        }
    )
    yield app
    app.extensions["shards"].dispose()
    psql(migrated, "replica", "SELECT pg_wal_replay_resume()")


def _statements_on(app: Flask, which: str) -> list[str]:
    """Every SQL statement sent to the replica's engine ("replica") or the shard's primary."""
    registry = app.extensions["shards"]
    engine = registry.replicas["main"].engine if which == "replica" else registry.engine("main")
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    return seen


@pytest.mark.replica
def test_reads_go_to_a_server_in_recovery_and_writes_to_the_primary(
    replica_app: Flask, migrated: Pair
) -> None:
    client = replica_app.test_client()
    workspace = client.post("/api/v2/workspaces", json={"name": "split"}).json
    tasks = f"/api/v2/workspaces/{workspace['id']}/tasks"
    on_replica = _statements_on(replica_app, "replica")
    on_primary = _statements_on(replica_app, "primary")
    created = client.post(tasks, json={"title": "written on the primary"})
    assert created.status_code == 201
    assert any(s.lstrip().upper().startswith("INSERT") for s in on_primary)
    assert not any(s.lstrip().upper().startswith("INSERT") for s in on_replica)
    wait_for_replay(migrated)

    on_replica.clear()
    listed = client.get(tasks)
    assert [t["title"] for t in listed.json["items"]] == ["written on the primary"]
    assert any("FROM tasks" in s for s in on_replica), "the list was read from the replica"
    with replica_app.app_context():
        in_recovery = shard_session("main", read=True).execute(text("SELECT pg_is_in_recovery()"))
        assert in_recovery.scalar() is True
        assert shard_session("main").execute(text("SELECT pg_is_in_recovery()")).scalar() is False


@pytest.mark.replica
def test_a_request_that_wrote_reads_its_write_back_from_the_primary(
    replica_app: Flask, migrated: Pair
) -> None:
    client = replica_app.test_client()
    workspace_id = uuid.UUID(client.post("/api/v2/workspaces", json={"name": "ryw"}).json["id"])
    wait_for_replay(migrated)
    psql(migrated, "replica", "SELECT pg_wal_replay_pause()")  # the replica falls behind
    with replica_app.test_request_context():
        service = task_service(workspace_id)
        created = service.create({"title": "mine"})
        # The same service, and a new one in the same request: both see the write.
        assert service.get(created.id) == created
        assert task_service(workspace_id).get(created.id) == created


@pytest.mark.replica
def test_a_lagging_replica_is_skipped(replica_app: Flask, migrated: Pair) -> None:
    client = replica_app.test_client()
    workspace = client.post("/api/v2/workspaces", json={"name": "lag"}).json
    wait_for_replay(migrated)
    psql(migrated, "replica", "SELECT pg_wal_replay_pause()")
    tasks = f"/api/v2/workspaces/{workspace['id']}/tasks"
    assert client.post(tasks, json={"title": "after the pause"}).status_code == 201
    # The next request measures the backlog (more than 0 s) and reads the primary instead.
    replica = replica_app.extensions["shards"].replicas["main"]
    replica._last.at = float("-inf")  # forget the state measured before the pause, now
    listed = client.get(tasks)
    assert [t["title"] for t in listed.json["items"]] == ["after the pause"]
    assert client.get("/health/ready").json["checks"]["replica:main"]["status"] == "fail"


@pytest.mark.replica
def test_a_primary_given_as_a_replica_is_never_used(migrated: Pair) -> None:
    app = make_app("testing", REPLICA_URLS=f"shard-a={migrated.primary_url}")
    assert not app.extensions["shards"].replicas["shard-a"].usable()
    app.extensions["shards"].dispose()
