"""A database down, unreachable or out of connections: a quick 503 problem with Retry-After, a
failing readiness check naming it, no secret in the answer or the log, and recovery on its own.

The "down" databases are PostgreSQL URLs on a port nothing listens on: no server needed. The
recovery and pool tests need a real one (TEST_DATABASE_URL) and skip without it.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from app import create_app
from app.auth.tokens import issue_access_token
from app.tasks.models import new_task_id
from tests.auth import BearerClient
from tests.conftest import CapturedLog, make_app
from tests.databases import POSTGRES_ADMIN_URL, fresh_databases

PASSWORD = "pw-Secret-42"
requires_postgres = pytest.mark.skipif(
    not POSTGRES_ADMIN_URL, reason="TEST_DATABASE_URL is not set: no PostgreSQL"
)


def _closed_port_url() -> str:
    with socket.socket() as s:  # bound, then closed: nothing listens there now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql+psycopg://taskapi:{PASSWORD}@127.0.0.1:{port}/gone?connect_timeout=1"


def _assert_unavailable(response: Any, started: float) -> None:
    assert time.monotonic() - started < 3, "a database that is down must not make clients wait"
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.json["type"] == "/problems/database-unavailable"
    assert response.json["request_id"]
    assert int(response.headers["Retry-After"]) > 0
    body = response.get_data(as_text=True)
    assert PASSWORD not in body
    assert "127.0.0.1" not in body


def _app_with_a_dead_shard() -> tuple[Flask, FlaskClient, str]:
    """shard-b unreachable; returns a workspace placed on it (the control database works)."""
    app = make_app()
    healthy = app.config["SHARD_URLS"].split(",")[0]
    app = make_app(SHARD_URLS=f"{healthy},shard-b={_closed_port_url()}")
    client = app.test_client()
    for _ in range(64):  # placement hashes the new id: about one in two lands on shard-b
        created = client.post("/api/v2/workspaces", json={"name": "w"})
        assert created.status_code == 201
        if created.json["shard"] == "shard-b":
            return app, client, created.json["id"]
    raise AssertionError("no workspace was placed on shard-b")


@pytest.mark.parametrize(
    "call",
    [
        lambda c, ws: c.get(f"/api/v2/workspaces/{ws}/tasks"),
        lambda c, ws: c.post(f"/api/v2/workspaces/{ws}/tasks", json={"title": "x"}),
        lambda c, ws: c.get(f"/api/v2/workspaces/{ws}/tasks/01a19b7b-0000-7000-8000-00000000abcd"),
    ],
    ids=["list", "create", "get"],
)
def test_a_shard_that_is_down_gives_a_quick_503_problem(
    call: Callable[[FlaskClient, str], Any], capture_log: Callable[[Flask], CapturedLog]
) -> None:
    app, client, workspace = _app_with_a_dead_shard()
    log = capture_log(app)
    started = time.monotonic()
    _assert_unavailable(call(client, workspace), started)
    assert "database unavailable" in log.text
    assert PASSWORD not in log.text
    # The control database is fine: the directory still answers.
    assert client.get(f"/api/v2/workspaces/{workspace}").status_code == 200


def test_readiness_names_the_shard_that_is_down() -> None:
    _app, client, _workspace = _app_with_a_dead_shard()
    started = time.monotonic()
    response = client.get("/health/ready")
    assert time.monotonic() - started < 3
    assert response.status_code == 503
    checks = response.json["checks"]
    assert checks["shard:shard-b"]["status"] == "fail"
    assert checks["shard:shard-a"]["status"] == "ok"
    assert checks["database:control"]["status"] == "ok"
    assert PASSWORD not in response.get_data(as_text=True)


def test_a_control_database_that_is_down_gives_503_and_not_ready() -> None:
    # Not make_app: it adds the test owner to the control database, which is down here. A
    # signed token needs no database; checking it (revoked?) reads the control database.
    app = create_app(
        {"APP_ENV": "testing", **fresh_databases(), "DATABASE_URL": _closed_port_url()}
    )
    try:
        app.test_client_class = BearerClient
        with app.app_context():
            token = issue_access_token(new_task_id(), str(uuid.uuid4())).token
        client = app.test_client(token=token)
        started = time.monotonic()
        # A 503, not a 401: a client must not take an outage for a revoked token.
        _assert_unavailable(client.get("/api/v2/workspaces"), started)
        _assert_unavailable(client.get("/api/v1/tasks"), time.monotonic())
        # Without credentials the answer needs no database: the 401 as ever.
        anonymous = app.test_client(token="").get("/api/v2/workspaces")
        assert anonymous.status_code == 401
        assert anonymous.json["type"] == "/problems/authentication-required"
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json["checks"]["database:control"]["status"] == "fail"
        assert client.get("/health/live").status_code == 200  # liveness touches no database
    finally:
        app.extensions["shards"].dispose()


def test_every_database_is_checked_when_all_are_up(app: Flask) -> None:
    response = app.test_client().get("/health/ready")
    assert response.status_code == 200
    assert {"database:control", "shard:shard-a", "shard:shard-b"} <= set(response.json["checks"])


def test_the_problem_type_is_documented(client: FlaskClient) -> None:
    described = client.get("/problems/database-unavailable")
    assert described.status_code == 200
    assert described.json["status"] == 503


def _named(url: str) -> str:
    """The URL with an application_name, so a test can find this app's server connections."""
    return f"{url}{'&' if '?' in url else '?'}application_name=taskapi-victim"


@requires_postgres
@pytest.mark.parametrize(
    "pool",
    [
        {},  # the default: a socket check on reuse, a ping after 10 s idle
        {"DATABASE_POOL_PING_IDLE": 0},  # a ping on every reuse as well
        {"DATABASE_POOL_PRE_PING": True},  # SQLAlchemy's pre-ping instead
    ],
    ids=["socket-check", "ping-when-idle", "pre-ping"],
)
def test_the_app_recovers_by_itself_when_its_connections_are_killed(pool: dict[str, Any]) -> None:
    settings = make_app().config
    shards = ",".join(_named(item) for item in settings["SHARD_URLS"].split(","))
    app = make_app(DATABASE_URL=_named(settings["DATABASE_URL"]), SHARD_URLS=shards, **pool)
    client = app.test_client()
    workspace = client.post("/api/v2/workspaces", json={"name": "w"}).json["id"]
    tasks = f"/api/v2/workspaces/{workspace}/tasks"
    assert client.post(tasks, json={"title": "before"}).status_code == 201
    assert client.get(tasks).status_code == 200  # the pools now hold open connections
    admin = create_engine(POSTGRES_ADMIN_URL or "", isolation_level="AUTOCOMMIT", poolclass=None)
    try:
        with admin.connect() as connection:
            killed = connection.execute(  # waits (up to 5 s) until each backend has exited
                text(
                    "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                    "WHERE application_name = 'taskapi-victim'"
                )
            ).scalar()
    finally:
        admin.dispose()
    assert killed, "the app had no connection open to kill"
    for _ in range(3):  # every request succeeds: each dead connection is replaced at checkout
        assert client.get(tasks).status_code == 200
        assert client.post(tasks, json={"title": "after"}).status_code == 201
    assert client.get("/health/ready").status_code == 200
    assert client.get(tasks).json["total"] == 4


@requires_postgres
@pytest.mark.parametrize(("ping_idle", "pings"), [(0, True), (3600, False)])
def test_a_reused_connection_is_pinged_only_after_sitting_idle(
    monkeypatch: pytest.MonkeyPatch, ping_idle: int, pings: bool
) -> None:
    app = make_app(DATABASE_POOL_PING_IDLE=ping_idle)
    client = app.test_client()
    workspace = client.post("/api/v2/workspaces", json={"name": "w"}).json["id"]
    assert client.get(f"/api/v2/workspaces/{workspace}").status_code == 200
    pinged: list[object] = []
    dialect = app.extensions["shards"].control.dialect
    real_ping = dialect.do_ping
    monkeypatch.setattr(dialect, "do_ping", lambda dbapi: pinged.append(dbapi) or real_ping(dbapi))
    assert client.get(f"/api/v2/workspaces/{workspace}").status_code == 200
    assert bool(pinged) is pings


@requires_postgres
def test_an_exhausted_pool_gives_503_within_the_pool_timeout() -> None:
    app = make_app(DATABASE_POOL_SIZE=1, DATABASE_MAX_OVERFLOW=0, DATABASE_POOL_TIMEOUT=1)
    client = app.test_client()
    workspace = client.post("/api/v2/workspaces", json={"name": "w"}).json["id"]
    shard = client.get(f"/api/v2/workspaces/{workspace}").json["shard"]
    tasks = f"/api/v2/workspaces/{workspace}/tasks"
    engine = app.extensions["shards"].engine(shard)
    held = engine.connect()  # the pool's only connection, busy elsewhere (a slow request)
    try:
        started = time.monotonic()
        response = client.get(tasks)
        elapsed = time.monotonic() - started
        _assert_unavailable(response, started)
        assert elapsed >= 0.9, "it waited the pool timeout for a connection"
    finally:
        held.close()
    assert client.get(tasks).status_code == 200  # and serves again once one is free
