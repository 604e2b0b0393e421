"""Read/write splitting. The rules run on SQLite (configuration); the behaviour runs on a real
PostgreSQL primary with a streaming replica that ``scripts/pg-replica`` starts (marker
``replica``: ``./scripts/test -m replica``; skipped where PostgreSQL is missing, unless
``PG_REPLICA_REQUIRED=1`` as in CI)."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import OperationalError

from app import create_app
from app.auth.authentication import authenticate_access_token
from app.auth.principal import set_current_principal
from app.config import ConfigError
from app.db.replicas import Replica, ReplicaUnusable
from app.db.shards import note_write, shard_session
from app.tasks import task_service
from tests.auth import BearerClient, add_member, add_user
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


# --- the rules, on a fake clock and engine (no PostgreSQL) ----------------------------------------


class _FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _FakeEngine:
    """Answers the state query with ``row``, or raises ``error``."""

    def __init__(self, row: tuple[Any, ...] | None = None, error: Exception | None = None) -> None:
        self.row, self.error, self.connects = row or _row(), error, 0

    @contextmanager
    def connect(self) -> Iterator[Any]:
        self.connects += 1
        if self.error is not None:
            raise self.error
        yield SimpleNamespace(execute=lambda _query: SimpleNamespace(one=lambda: self.row))


def _row(
    in_recovery: bool = True,
    pid: int | None = 4242,
    status: str | None = "streaming",
    silent: float | None = 0.2,
    lag: float = 0.0,
) -> tuple[Any, ...]:
    """A row of the state query: a healthy replica unless told otherwise."""
    return in_recovery, pid, status, silent, lag


def test_a_replica_within_the_lag_limit_is_usable_and_reports_its_lag() -> None:
    replica = Replica("shard-a", _FakeEngine(_row(lag=0.5, silent=0.9)), 1.0, clock=_FakeClock())
    assert replica.check_usable() == 0.5
    assert replica.usable() is True


@pytest.mark.parametrize(
    ("engine", "reason"),
    [
        (_FakeEngine(_row(lag=2.5)), r"lagging 2\.5 s \(limit 1 s\)"),
        # What a primary answers: not in recovery, no WAL receiver.
        (_FakeEngine(_row(False, None, None, None, 0)), "not a replica"),
        (_FakeEngine(error=OperationalError("SELECT 1", {}, Exception("refused"))), "Operational"),
        # Cut off from the primary: nothing new arrives, so all it received is replayed (lag 0).
        (_FakeEngine(_row(pid=None, status=None, silent=None)), "WAL receiver not streaming"),
        (_FakeEngine(_row(status="waiting")), r"WAL receiver not streaming \(waiting\)"),
        (
            _FakeEngine(_row(silent=7.5)),
            r"no message from the primary for 7\.5 s \(limit 1 s\)",
        ),
        (_FakeEngine(_row(silent=None)), "not heard from the primary"),
        # Without pg_read_all_stats the receiver's pid shows, its status and times are NULL.
        (_FakeEngine(_row(status=None, silent=None)), "needs pg_read_all_stats"),
    ],
    ids=[
        "lagging",
        "a primary",
        "down",
        "no WAL receiver",
        "receiver not streaming",
        "primary silent",
        "no message yet",
        "no privilege",
    ],
)
def test_an_unusable_replica_says_why(engine: _FakeEngine, reason: str) -> None:
    replica = Replica("shard-a", engine, 1.0, clock=_FakeClock())
    with pytest.raises(ReplicaUnusable, match=reason):
        replica.check_usable()
    assert replica.usable() is False


def test_the_replica_is_measured_at_most_once_per_interval() -> None:
    clock, engine = _FakeClock(), _FakeEngine(error=OperationalError("SELECT 1", {}, None))
    replica = Replica("shard-a", engine, 1.0, clock=clock)
    assert [replica.usable() for _ in range(5)] == [False] * 5
    assert engine.connects == 1  # a down replica is not retried on every read
    engine.error = None
    clock.now += 0.5
    assert replica.usable() is False
    assert engine.connects == 1
    clock.now += 0.6
    assert replica.usable() is True  # tried again: back in service
    assert replica.usable() is True
    assert engine.connects == 2


class _StubReplica:
    def __init__(self, usable: bool) -> None:
        self.engine = create_engine("sqlite://")
        self._usable = usable

    def usable(self) -> bool:
        return self._usable


def test_reads_go_to_a_usable_replica_until_the_request_writes() -> None:
    app = make_app("testing")
    registry = app.extensions["shards"]
    replica = registry.replicas["shard-a"] = _StubReplica(usable=True)
    primary = registry.engine("shard-a")
    with app.test_request_context():
        assert shard_session("shard-a", read=True).get_bind() is replica.engine
        assert shard_session("shard-a").get_bind() is primary  # writes: always the primary
        assert shard_session("shard-b", read=True).get_bind() is registry.engine("shard-b")
        note_write("shard-a")
        assert shard_session("shard-a", read=True).get_bind() is primary  # read-your-writes
    with app.test_request_context():  # a new request starts afresh
        assert shard_session("shard-a", read=True).get_bind() is replica.engine


def test_reads_skip_an_unusable_replica() -> None:
    app = make_app("testing")
    registry = app.extensions["shards"]
    registry.replicas["shard-a"] = _StubReplica(usable=False)
    with app.test_request_context():
        assert shard_session("shard-a", read=True).get_bind() is registry.engine("shard-a")


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
def make_replica_app(migrated: Pair) -> Iterator[Callable[[float], Flask]]:
    """Apps reading from the pair's replica, with a given REPLICA_MAX_LAG_SECONDS. Their test
    clients send the token of a user of their own (the pair's databases outlive each app)."""
    apps: list[Flask] = []

    def make(max_lag: float) -> Flask:
        config = {"APP_ENV": "testing", "DATABASE_URL": migrated.primary_url}
        config |= {"REPLICA_URLS": f"main={migrated.replica_url}"}
        app = create_app(config | {"REPLICA_MAX_LAG_SECONDS": max_lag})
        apps.append(app)
        app.test_client_class = BearerClient
        app.extensions["test_owner"] = add_user(app, f"owner-{uuid.uuid4().hex}@example.com")
        return app

    yield make
    for app in apps:
        app.extensions["shards"].dispose()
    psql(migrated, "replica", "SELECT pg_wal_replay_resume()")


@pytest.fixture
def replica_app(make_replica_app: Callable[[float], Flask]) -> Flask:
    # The default limit: scripts/pg-replica makes an idle replica hear from its primary every 2 s.
    return make_replica_app(5)


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
    owner = replica_app.extensions["test_owner"]
    with replica_app.test_request_context(headers=owner.headers):
        set_current_principal(authenticate_access_token(owner.token))  # as the hook does
        service = task_service(workspace_id)
        created = service.create({"title": "mine"})
        # The same service, and a new one in the same request: both see the write.
        assert service.get(created.id) == created
        assert task_service(workspace_id).get(created.id) == created


@pytest.mark.replica
def test_who_may_read_is_decided_on_the_primary_while_reads_go_to_the_replica(
    replica_app: Flask, migrated: Pair
) -> None:
    """A replica a few seconds behind is fine for tasks, never for access: a member removed a
    moment ago is refused at once, though the replica still holds the membership."""
    client = replica_app.test_client()
    workspace = client.post("/api/v2/workspaces", json={"name": "access"}).json
    tasks = f"/api/v2/workspaces/{workspace['id']}/tasks"
    assert client.post(tasks, json={"title": "t"}).status_code == 201
    member = add_member(replica_app, workspace["id"], "member", f"m-{uuid.uuid4().hex}@example.com")
    as_member = replica_app.test_client(token=member.token)
    neighbour = add_user(replica_app, f"n-{uuid.uuid4().hex}@example.com")
    as_neighbour = replica_app.test_client(token=neighbour.token)
    wait_for_replay(migrated)
    assert as_member.get(tasks).status_code == 200
    assert as_neighbour.get(tasks).status_code == 404  # another tenant, replica or not
    psql(migrated, "replica", "SELECT pg_wal_replay_pause()")  # the replica keeps the member
    removed = client.delete(f"/api/v2/workspaces/{workspace['id']}/members/{member.id}")
    assert removed.status_code == 204
    refused = as_member.get(tasks)
    assert refused.status_code == 404
    assert refused.json["type"] == "/problems/workspace-not-found"
    # The owner's list still comes from the (paused, within the lag limit) replica.
    on_replica = _statements_on(replica_app, "replica")
    assert [t["title"] for t in client.get(tasks).json["items"]] == ["t"]
    assert any("FROM tasks" in s for s in on_replica), "the list was read from the replica"
    still = f"SELECT count(*) FROM memberships WHERE user_id = '{member.id}'"
    assert psql(migrated, "replica", still).strip() == "1"  # the replica still lists the member


@pytest.mark.replica
def test_a_lagging_replica_is_skipped(
    make_replica_app: Callable[[float], Flask], migrated: Pair
) -> None:
    replica_app = make_replica_app(0)  # any replay backlog at all: read the primary
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
    with pytest.raises(ReplicaUnusable, match="lagging"):
        replica.check_usable()
    assert client.get("/health/ready").json["checks"]["replica:main"]["status"] == "fail"


@pytest.mark.replica
def test_a_primary_given_as_a_replica_is_never_used(migrated: Pair) -> None:
    app = make_app("testing", REPLICA_URLS=f"shard-a={migrated.primary_url}")
    assert not app.extensions["shards"].replicas["shard-a"].usable()
    app.extensions["shards"].dispose()


def _reason_unusable(replica: Replica, timeout: float = 10.0) -> str:
    """Measure the replica until it is unusable; why. Fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            replica.check_usable_now()
        except ReplicaUnusable as exc:
            return str(exc)
        assert time.monotonic() < deadline, f"the replica stayed usable for {timeout:g} s"
        time.sleep(0.05)


def _wait_usable(replica: Replica, timeout: float = 10.0) -> None:
    """Measure the replica until it is usable. Fails after `timeout` seconds, saying why not."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            replica.check_usable_now()
            return
        except ReplicaUnusable:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _set_primary_conninfo(pair: Pair, conninfo: str) -> None:
    """Point the replica's WAL receiver elsewhere: PostgreSQL 13+ restarts it on reload."""
    psql(pair, "replica", f"ALTER SYSTEM SET primary_conninfo = {_sql_literal(conninfo)}")
    psql(pair, "replica", "SELECT pg_reload_conf()")


@pytest.mark.replica
def test_a_replica_cut_off_from_its_primary_is_skipped_until_it_streams_again(
    replica_app: Flask, migrated: Pair
) -> None:
    client = replica_app.test_client()
    workspace = client.post("/api/v2/workspaces", json={"name": "cut off"}).json
    tasks = f"/api/v2/workspaces/{workspace['id']}/tasks"
    replica = replica_app.extensions["shards"].replicas["main"]
    wait_for_replay(migrated)
    _wait_usable(replica)
    conninfo = psql(migrated, "replica", "SHOW primary_conninfo")
    try:
        # The replica loses its primary: nothing new arrives, so it has replayed all it received.
        _set_primary_conninfo(migrated, f"host=127.0.0.1 port={_closed_port()} user=postgres")
        assert "WAL receiver not streaming" in _reason_unusable(replica)
        assert client.post(tasks, json={"title": "not on the replica"}).status_code == 201
        on_replica = _statements_on(replica_app, "replica")
        listed = client.get(tasks)  # from the primary: the replica would miss the new task
        assert [t["title"] for t in listed.json["items"]] == ["not on the replica"]
        assert not any("FROM tasks" in s for s in on_replica)
        ready = client.get("/health/ready")
        assert ready.status_code == 200  # reads fall back to the primary: still ready
        assert ready.json["checks"]["replica:main"]["status"] == "fail"
        assert ready.json["checks"]["replica:main"]["critical"] is False
    finally:
        _set_primary_conninfo(migrated, conninfo)
        _wait_usable(replica)  # streaming again, for this test and the next ones
    wait_for_replay(migrated)
    listed = client.get(tasks)
    assert [t["title"] for t in listed.json["items"]] == ["not on the replica"]
    assert any("FROM tasks" in s for s in on_replica), "the list was read from the replica"
    assert client.get("/health/ready").json["checks"]["replica:main"]["status"] == "ok"


@pytest.mark.replica
def test_a_replica_that_stops_hearing_from_its_primary_is_skipped(
    make_replica_app: Callable[[float], Flask], migrated: Pair
) -> None:
    # A network partition, short of the receiver's own timeout (wal_receiver_timeout=4s): the
    # receiver still says "streaming" while it hears nothing. Freezing the primary's WAL sender
    # (SIGSTOP) does that; it holds no lock while idle, and is resumed within about a second.
    app = make_replica_app(1)
    replica = app.extensions["shards"].replicas["main"]
    (walsender,) = map(
        int, psql(migrated, "primary", "SELECT pid FROM pg_stat_replication").split()
    )
    psql(migrated, "primary", "SELECT pg_current_xact_id()")  # WAL: the replica hears it now
    wait_for_replay(migrated)
    _wait_usable(replica, timeout=3)
    os.kill(walsender, signal.SIGSTOP)
    try:
        reason = _reason_unusable(replica, timeout=3)
    finally:
        os.kill(walsender, signal.SIGCONT)
    assert reason.startswith("no message from the primary for "), reason
    _wait_usable(replica)


@pytest.mark.replica
def test_a_replica_user_without_pg_read_all_stats_is_not_trusted(migrated: Pair) -> None:
    role = f"reader_{uuid.uuid4().hex[:8]}"
    psql(migrated, "primary", f"CREATE ROLE {role} LOGIN")  # roles replicate to the replica
    wait_for_replay(migrated)
    engine = create_engine(migrated.replica_url.replace("//postgres@", f"//{role}@", 1))
    replica = Replica("main", engine, 5)
    try:
        # It could see the replay positions but not the WAL receiver: not assumed healthy.
        assert "needs pg_read_all_stats" in _reason_unusable(replica, timeout=0)
        psql(migrated, "primary", f"GRANT pg_read_all_stats TO {role}")
        wait_for_replay(migrated)
        _wait_usable(replica)
    finally:
        engine.dispose()
        psql(migrated, "primary", f"DROP ROLE {role}")
