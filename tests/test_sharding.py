"""Sharding: each workspace's rows live in its shard's database only, and a workspace moves
between shards (copy, verify, switch, clean up) without losing or duplicating a row, while its
writes answer 503 with Retry-After. Runs on SQLite and, with TEST_DATABASE_URL, PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, insert, select, update

from app.audit.models import AuditEventRow
from app.tasks import task_service
from app.tasks.models import TaskRow, TaskTagRow, new_task_id, utc_now
from app.workspaces import moves
from app.workspaces.models import DEFAULT_WORKSPACE_ID, WorkspaceRow
from app.workspaces.moves import (
    MoveError,
    MoveEvent,
    MoveFailed,
    WorkspaceMoving,
    fingerprint,
    move_workspace,
    shard_tables,
)
from app.workspaces.service import place
from tests.auth import add_member
from tests.conftest import make_app

WORKSPACES = "/api/v2/workspaces"


@pytest.fixture
def app() -> Flask:
    return make_app("testing")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """The test owner's: it owns the workspaces it creates (and may verify their audit log)."""
    return app.test_client()


def engines(app: Flask) -> tuple[Engine, dict[str, Engine]]:
    registry = app.extensions["shards"]
    return registry.control, {name: registry.engine(name) for name in registry.names}


def workspace_on(client: FlaskClient, shard: str, name: str = "w") -> str:
    """A new workspace that placement put on ``shard`` (ids are random: create until one is)."""
    for _ in range(64):
        created = client.post(WORKSPACES, json={"name": name})
        assert created.status_code == 201
        if created.json["shard"] == shard:
            return created.json["id"]
    raise AssertionError(f"no workspace landed on {shard}")


def fill(client: FlaskClient, workspace_id: str, count: int) -> list[dict[str, Any]]:
    tasks = f"{WORKSPACES}/{workspace_id}/tasks"
    for index in range(count):
        tags = [f"t{index % 3}", "all"]
        response = client.post(tasks, json={"title": f"task {index}", "tags": tags})
        assert response.status_code == 201
    return client.get(f"{tasks}?per_page=100&sort=created_at").json["items"]


def rows(engine: Engine, workspace_id: str | uuid.UUID) -> dict[str, int]:
    """How many rows of the workspace each shard table holds in this database."""
    wid = uuid.UUID(str(workspace_id))
    with engine.connect() as connection:
        return {
            table.name: connection.execute(
                select(func.count()).select_from(table).where(table.c.workspace_id == wid)
            ).scalar_one()
            for table in shard_tables()
        }


def prints(engine: Engine, workspace_id: str) -> dict[str, tuple[int, str]]:
    wid = uuid.UUID(workspace_id)
    with engine.connect() as connection:
        return {table.name: fingerprint(connection, table, wid) for table in shard_tables()}


def directory(app: Flask, workspace_id: str | uuid.UUID) -> tuple[str, str]:
    control, _ = engines(app)
    with control.connect() as connection:
        row = connection.execute(
            select(WorkspaceRow.shard, WorkspaceRow.state).where(
                WorkspaceRow.id == uuid.UUID(str(workspace_id))
            )
        ).one()
    return row.shard, row.state


def set_state(app: Flask, workspace_id: str | uuid.UUID, state: str) -> None:
    control, _ = engines(app)
    with control.begin() as connection:
        connection.execute(
            update(WorkspaceRow)
            .where(WorkspaceRow.id == uuid.UUID(str(workspace_id)))
            .values(state=state)
        )


def move(app: Flask, workspace_id: str, target: str, **kwargs: Any) -> moves.MoveReport:
    with app.app_context():
        return move_workspace(uuid.UUID(workspace_id), target, **kwargs)


# --- placement --------------------------------------------------------------------------


def test_placement_spreads_workspaces_over_every_shard() -> None:
    names = ["shard-a", "shard-b", "shard-c"]
    placed = [place(uuid.uuid4(), names) for _ in range(3000)]
    for name in names:
        assert 800 < placed.count(name) < 1200
    some_id = uuid.uuid4()
    assert place(some_id, names) == place(some_id, list(reversed(names)))  # order-independent


def test_each_workspaces_rows_are_only_in_its_shards_database(client: FlaskClient) -> None:
    app = client.application
    on_a = [workspace_on(client, "shard-a", f"a{i}") for i in range(2)]
    on_b = [workspace_on(client, "shard-b", f"b{i}") for i in range(2)]
    for workspace_id in on_a + on_b:
        fill(client, workspace_id, 3)
    control, shard_engines = engines(app)
    for home, mine in (("shard-a", on_a), ("shard-b", on_b)):
        for workspace_id in mine:
            mine = rows(shard_engines[home], workspace_id)
            assert (mine["tasks"], mine["task_tags"]) == (3, 6)
            for other in ("shard-a", "shard-b"):
                if other != home:
                    assert set(rows(shard_engines[other], workspace_id).values()) == {0}
            # The control database keeps the directory (and workspace events), never tasks.
            assert rows(control, workspace_id)["tasks"] == 0
            assert rows(control, workspace_id)["task_tags"] == 0
    # And each shard holds nothing but its own workspaces' tasks.
    for name, engine in shard_engines.items():
        with engine.connect() as connection:
            present = {
                str(w)
                for w in connection.execute(select(TaskRow.workspace_id).distinct()).scalars()
            }
        assert present == set(on_a if name == "shard-a" else on_b)


def test_the_default_shard_setup_keeps_everything_in_one_database() -> None:
    app = make_app("testing", SHARD_URLS="")
    client = app.test_client()
    assert app.extensions["shards"].names == ["main"]
    created = client.post(WORKSPACES, json={"name": "solo"}).json
    assert created["shard"] == "main"
    fill(client, created["id"], 2)
    assert rows(app.extensions["shards"].control, created["id"])["tasks"] == 2


# --- moving -----------------------------------------------------------------------------


def test_a_move_copies_verifies_switches_and_empties_the_source(client: FlaskClient) -> None:
    app = client.application
    workspace_id = workspace_on(client, "shard-a")
    other = workspace_on(client, "shard-a", "neighbour")
    before = fill(client, workspace_id, 7)
    fill(client, other, 2)
    _, shard_engines = engines(app)
    source_prints = prints(shard_engines["shard-a"], workspace_id)
    source_rows = rows(shard_engines["shard-a"], workspace_id)
    events: list[MoveEvent] = []
    member = add_member(app, workspace_id, "member", "member@example.com")
    neighbour = app.test_client(token=add_member(app, other, "owner", "other@example.com").token)

    report = move(app, workspace_id, "shard-b", progress=events.append, batch_size=3)

    assert report.moved
    assert (report.source, report.target) == ("shard-a", "shard-b")
    assert report.rows == source_rows
    assert (source_rows["tasks"], source_rows["task_tags"]) == (
        7,
        14,
    )
    assert report.removed == {"shard-a": sum(source_rows.values())}
    assert directory(app, workspace_id) == ("shard-b", "active")
    assert set(rows(shard_engines["shard-a"], workspace_id).values()) == {0}
    assert prints(shard_engines["shard-b"], workspace_id) == source_prints  # ids, hashes, all
    assert rows(shard_engines["shard-a"], other)["tasks"] == 2  # the neighbour stays
    control, _ = engines(app)
    with control.connect() as connection:  # the move is audited, with the directory change
        moved = connection.execute(
            select(AuditEventRow.action, AuditEventRow.actor, AuditEventRow.changes).where(
                AuditEventRow.workspace_id == uuid.UUID(workspace_id),
                AuditEventRow.action == "workspace.moved",
            )
        ).one()
    assert moved.actor == "system"
    assert moved.changes == {"shard": {"before": "shard-a", "after": "shard-b"}}
    # Progress: every step, with copy counts per batch.
    steps = [event.step for event in events]
    assert steps[:3] == ["start", "flip", "drain"]
    assert steps[-1] == "done"
    assert "switch" in steps
    assert "cleanup" in steps
    copies = [(e.table, e.done, e.total) for e in events if e.step == "copy"]
    assert ("tasks", 3, 7) in copies
    assert ("tasks", 7, 7) in copies
    assert ("task_tags", 14, 14) in copies
    assert {e.table for e in events if e.step == "verify"} == {t.name for t in shard_tables()}

    # The API finds everything where it was, on the new shard.
    tasks = f"{WORKSPACES}/{workspace_id}/tasks"
    assert client.get(f"{tasks}?per_page=100&sort=created_at").json["items"] == before
    assert client.get(f"{WORKSPACES}/{workspace_id}").json["shard"] == "shard-b"
    assert client.get(f"{tasks}/{before[0]['id']}").json == before[0]
    assert client.get(f"{tasks}?tag=t1").json["total"] == 2
    # The audit trail came along: a task's history, and chains that still verify.
    history = client.get(f"{tasks}/{before[0]['id']}/history").json["items"]
    assert [event["action"] for event in history] == ["task.created"]
    verification = client.get(f"{WORKSPACES}/{workspace_id}/audit/verify").json
    assert verification["ok"] is True, verification
    # Writes work again, and land on the new shard.
    assert client.post(tasks, json={"title": "after"}).status_code == 201
    assert rows(shard_engines["shard-b"], workspace_id)["tasks"] == 8
    assert client.patch(f"{tasks}/{before[1]['id']}", json={"title": "x"}).status_code == 200
    # Who may do what did not move (memberships live in the control database): the member
    # still writes, the other workspace's owner still finds nothing.
    member_client = app.test_client(token=member.token)
    assert member_client.post(tasks, json={"title": "by a member"}).status_code == 201
    assert rows(shard_engines["shard-b"], workspace_id)["tasks"] == 9
    for url in (tasks, f"{tasks}/{before[0]['id']}", f"{WORKSPACES}/{workspace_id}/audit"):
        assert neighbour.get(url).status_code == 404, url


def test_a_workspace_moves_back_and_forth(client: FlaskClient) -> None:
    app = client.application
    workspace_id = workspace_on(client, "shard-b")
    before = fill(client, workspace_id, 3)
    move(app, workspace_id, "shard-a")
    move(app, workspace_id, "shard-b")
    items = client.get(f"{WORKSPACES}/{workspace_id}/tasks?sort=created_at").json["items"]
    assert items == before
    _, shard_engines = engines(app)
    assert set(rows(shard_engines["shard-a"], workspace_id).values()) == {0}


def test_a_failure_mid_copy_leaves_the_source_intact_and_the_target_empty(
    client: FlaskClient,
) -> None:
    app = client.application
    workspace_id = workspace_on(client, "shard-a")
    fill(client, workspace_id, 5)
    _, shard_engines = engines(app)
    source_prints = prints(shard_engines["shard-a"], workspace_id)
    events: list[MoveEvent] = []

    with pytest.raises(MoveFailed, match="injected failure after copying 4 rows"):
        move(app, workspace_id, "shard-b", fail_after=4, batch_size=2, progress=events.append)

    assert any(e.step == "copy" and e.done == 4 for e in events)  # it did copy, midway
    assert events[-1].step == "failed"
    assert prints(shard_engines["shard-a"], workspace_id) == source_prints
    assert set(rows(shard_engines["shard-b"], workspace_id).values()) == {0}
    assert directory(app, workspace_id) == ("shard-a", "active")
    tasks = f"{WORKSPACES}/{workspace_id}/tasks"
    assert client.post(tasks, json={"title": "still writable"}).status_code == 201
    # Then the move succeeds, with everything, the late task included.
    assert move(app, workspace_id, "shard-b").rows["tasks"] == 6


def test_a_failed_verification_undoes_the_copy(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = client.application
    workspace_id = workspace_on(client, "shard-a")
    fill(client, workspace_id, 2)
    real = moves.fingerprint
    monkeypatch.setattr(
        moves,
        "fingerprint",
        lambda connection, table, wid: (
            (0, "x")
            if connection.engine.url.database.endswith(("shard-b.db", "_shard_b"))
            else real(connection, table, wid)
        ),
    )
    with pytest.raises(MoveFailed, match="verification failed for "):
        move(app, workspace_id, "shard-b")
    _, shard_engines = engines(app)
    assert set(rows(shard_engines["shard-b"], workspace_id).values()) == {0}
    assert rows(shard_engines["shard-a"], workspace_id)["tasks"] == 2
    assert directory(app, workspace_id) == ("shard-a", "active")


def test_a_failure_after_the_switch_is_finished_by_running_the_command_again(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = client.application
    workspace_id = workspace_on(client, "shard-a")
    before = fill(client, workspace_id, 3)
    real_cleanup = moves._cleanup

    def broken(*args: Any) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(moves, "_cleanup", broken)
    with pytest.raises(MoveFailed, match="run the command again"):
        move(app, workspace_id, "shard-b")
    # The data is complete on the target, and the directory says so: nothing is lost, and the
    # leftovers on the source are unreachable.
    assert directory(app, workspace_id) == ("shard-b", "active")
    items = client.get(f"{WORKSPACES}/{workspace_id}/tasks?sort=created_at").json["items"]
    assert items == before
    _, shard_engines = engines(app)
    leftovers = rows(shard_engines["shard-a"], workspace_id)
    assert leftovers["tasks"] == 3

    monkeypatch.setattr(moves, "_cleanup", real_cleanup)
    events: list[MoveEvent] = []
    report = move(app, workspace_id, "shard-b", progress=events.append)
    assert not report.moved
    assert report.removed == {"shard-a": sum(leftovers.values())}
    assert set(rows(shard_engines["shard-a"], workspace_id).values()) == {0}
    assert rows(shard_engines["shard-b"], workspace_id)["tasks"] == 3
    assert directory(app, workspace_id) == ("shard-b", "active")
    with pytest.raises(MoveError, match="already on shard-b"):
        move(app, workspace_id, "shard-b")


def test_force_takes_over_a_crashed_move(client: FlaskClient) -> None:
    app = client.application
    workspace_id = workspace_on(client, "shard-a")
    fill(client, workspace_id, 2)
    _, shard_engines = engines(app)
    # A crash after the target's commit, before the switch: a full copy on the target that the
    # directory does not point to, and the entry left moving.
    with shard_engines["shard-a"].connect() as source, shard_engines["shard-b"].begin() as target:
        for table in shard_tables():
            copied = source.execute(
                select(table).where(table.c.workspace_id == uuid.UUID(workspace_id))
            ).all()
            if copied:  # some shard tables hold nothing of this workspace (its API keys...)
                target.execute(insert(table), [row._asdict() for row in copied])
    set_state(app, workspace_id, "moving")

    with pytest.raises(MoveError, match="--force"):
        move(app, workspace_id, "shard-b")
    report = move(app, workspace_id, "shard-b", force=True)
    assert report.rows["tasks"] == 2  # cleared first, so no duplicate key
    assert directory(app, workspace_id) == ("shard-b", "active")
    assert set(rows(shard_engines["shard-a"], workspace_id).values()) == {0}


def test_force_to_the_current_shard_calls_a_crashed_move_off(client: FlaskClient) -> None:
    app = client.application
    workspace_id = workspace_on(client, "shard-a")
    fill(client, workspace_id, 2)
    set_state(app, workspace_id, "moving")
    report = move(app, workspace_id, "shard-a", force=True)
    assert not report.moved
    assert directory(app, workspace_id) == ("shard-a", "active")
    assert (
        client.post(f"{WORKSPACES}/{workspace_id}/tasks", json={"title": "ok"}).status_code == 201
    )


def test_refusals_change_nothing(client: FlaskClient) -> None:
    app = client.application
    workspace_id = workspace_on(client, "shard-a")
    with pytest.raises(MoveError, match="Unknown shard 'shard-z'; configured: shard-a, shard-b"):
        move(app, workspace_id, "shard-z")
    with pytest.raises(MoveError, match="There is no workspace"):
        move(app, str(uuid.uuid4()), "shard-b")
    with pytest.raises(MoveError, match="already on shard-a"):
        move(app, workspace_id, "shard-a")
    set_state(app, workspace_id, "moving")
    with pytest.raises(MoveError, match="already moving"):
        move(app, workspace_id, "shard-b")
    assert directory(app, workspace_id) == ("shard-a", "moving")


# --- writes during a move -----------------------------------------------------------------


def test_writes_to_a_moving_workspace_get_503_with_retry_after_and_reads_work(
    client: FlaskClient,
) -> None:
    app = client.application
    workspace_id = workspace_on(client, "shard-a")
    other = workspace_on(client, "shard-a", "neighbour")
    (task,) = fill(client, workspace_id, 1)
    set_state(app, workspace_id, "moving")
    workspace = f"{WORKSPACES}/{workspace_id}"
    tasks = f"{workspace}/tasks"
    item = f"{tasks}/{task['id']}"
    writes = [
        client.post(tasks, json={"title": "new"}),
        client.put(item, json={"title": "replaced"}),
        client.patch(item, json={"title": "patched"}),
        client.delete(item),
        client.post(f"{tasks}/bulk", json={"operations": [{"op": "delete", "id": task["id"]}]}),
        client.patch(workspace, json={"name": "renamed"}),
        client.delete(workspace),
    ]
    for response in writes:
        assert response.status_code == 503, response.request.method
        assert response.headers["Retry-After"] == str(moves.RETRY_AFTER_SECONDS)
        assert response.content_type == "application/problem+json"
        assert response.json["type"] == "/problems/workspace-moving"
    # Nothing was written, reads work, other workspaces are unaffected.
    assert client.get(item).json == task
    assert client.get(tasks).json["total"] == 1
    assert client.get(workspace).json["state"] == "moving"
    assert client.post(f"{WORKSPACES}/{other}/tasks", json={"title": "x"}).status_code == 201
    assert client.get("/problems/workspace-moving").status_code == 200


def test_v1_writes_get_503_while_the_default_workspace_moves(client: FlaskClient) -> None:
    set_state(client.application, DEFAULT_WORKSPACE_ID, "moving")
    response = client.post("/api/v1/tasks", json={"title": "x"})
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    assert client.get("/api/v1/tasks").status_code == 200


def test_a_writer_that_looked_the_workspace_up_before_a_move_cannot_write_to_the_old_shard(
    app: Flask,
) -> None:
    client = app.test_client()
    workspace_id = workspace_on(client, "shard-a")
    fill(client, workspace_id, 1)
    with app.app_context():
        stale = task_service(uuid.UUID(workspace_id))  # the directory said shard-a, active
        move_workspace(uuid.UUID(workspace_id), "shard-b")
        with pytest.raises(WorkspaceMoving, match="moved to another shard"):
            stale.create({"title": "lost?"})
    _, shard_engines = engines(app)
    assert set(rows(shard_engines["shard-a"], workspace_id).values()) == {0}
    assert rows(shard_engines["shard-b"], workspace_id)["tasks"] == 1


def test_a_write_in_flight_when_the_move_starts_is_waited_for_and_copied(app: Flask) -> None:
    """The race the drain closes: a write that passed its check before the flip commits after
    it; the move must wait for it and copy its row."""
    client = app.test_client()
    workspace_id = workspace_on(client, "shard-a")
    (task,) = fill(client, workspace_id, 1)
    inside, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}
    events: list[MoveEvent] = []

    def slow_write() -> None:
        def precondition(_current: Any) -> None:  # runs inside the write's transaction
            inside.set()
            release.wait(10)

        with app.app_context():
            service = task_service(uuid.UUID(workspace_id))
            outcome["task"] = service.patch(
                uuid.UUID(task["id"]), {"title": "late"}, precondition=precondition
            )

    def mover() -> None:
        with app.app_context():
            outcome["report"] = move_workspace(
                uuid.UUID(workspace_id), "shard-b", progress=events.append
            )

    writer = threading.Thread(target=slow_write)
    writer.start()
    assert inside.wait(10)
    moving = threading.Thread(target=mover)
    moving.start()
    for _ in range(100):  # the flip happens; the drain then waits for the writer
        if any(e.step == "flip" for e in events):
            break
        time.sleep(0.02)
    time.sleep(0.2)  # long enough for a drain that did not wait to finish
    assert [e.step for e in events] == ["start", "flip"]
    release.set()
    writer.join(10)
    moving.join(10)
    assert outcome["task"].title == "late"
    assert outcome["report"].rows["tasks"] == 1
    moved = client.get(f"{WORKSPACES}/{workspace_id}/tasks/{task['id']}").json
    assert moved["title"] == "late"


# --- the command --------------------------------------------------------------------------


def test_the_cli_moves_a_workspace_and_shows_its_progress(client: FlaskClient) -> None:
    app = client.application
    workspace_id = workspace_on(client, "shard-a")
    fill(client, workspace_id, 3)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["move-workspace", workspace_id, "shard-b", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    out = result.output
    for line in (
        f"Moving workspace {workspace_id}: shard-a -> shard-b",
        "state=moving",
        "copy tasks: 0/3",
        "copy tasks: 2/3",
        "copy tasks: 3/3",
        "copy task_tags: 6/6",
        "verify tasks: 3 rows, sha256",
        f"Directory: {workspace_id} now on shard-b",
        "Cleanup: removed ",
        "Done in",
    ):
        assert line in out, out
    assert directory(app, workspace_id) == ("shard-b", "active")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["shard-z"], "Unknown shard 'shard-z'"),
        (["shard-a"], "already on shard-a"),
    ],
)
def test_the_cli_refuses_clearly(client: FlaskClient, args: list[str], message: str) -> None:
    workspace_id = workspace_on(client, "shard-a")
    runner = client.application.test_cli_runner()
    result = runner.invoke(args=["move-workspace", workspace_id, *args])
    assert result.exit_code == 1
    assert message in result.output


def test_the_cli_rejects_a_bad_id_and_reports_a_failed_move(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = client.application.test_cli_runner()
    result = runner.invoke(args=["move-workspace", "not-a-uuid", "shard-b"])
    assert result.exit_code == 2
    assert "not-a-uuid" in result.output
    result = runner.invoke(args=["move-workspace", str(uuid.uuid4()), "shard-b"])
    assert result.exit_code == 1
    assert "There is no workspace" in result.output

    workspace_id = workspace_on(client, "shard-a")
    fill(client, workspace_id, 1)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(moves, "_copy_and_verify", broken)
    result = runner.invoke(args=["move-workspace", workspace_id, "shard-b"])
    assert result.exit_code == 1
    assert "Move failed: disk full. shard-a still has everything." in result.output
    assert "move failed: OSError: disk full" in result.output
    assert directory(client.application, workspace_id) == ("shard-a", "active")


def add_audit_events(engine: Engine, workspace_id: str, count: int) -> None:
    """Events as the audit log writes them (whether or not it records task writes yet)."""
    wid = uuid.UUID(workspace_id)
    with engine.begin() as connection:
        start = connection.execute(
            select(func.count()).where(AuditEventRow.workspace_id == wid)
        ).scalar_one()
        for sequence in range(start + 1, start + count + 1):
            connection.execute(
                insert(AuditEventRow).values(
                    id=new_task_id(),
                    workspace_id=wid,
                    sequence=sequence,
                    occurred_at=utc_now(),
                    actor="anonymous",
                    action="task.update",
                    entity_type="task",
                    entity_id=f"t{sequence}",
                    changes={"title": {"before": "a", "after": "b"}, "n": sequence},
                    prev_hash=f"{sequence - 1:064x}",
                    hash=f"{sequence:064x}",
                )
            )


def test_audit_events_move_with_their_ids_and_hashes(client: FlaskClient) -> None:
    app = client.application
    workspace_id = workspace_on(client, "shard-a")
    fill(client, workspace_id, 2)
    _, shard_engines = engines(app)
    add_audit_events(shard_engines["shard-a"], workspace_id, 2)

    def chain(engine: Engine) -> list[tuple[Any, ...]]:
        with engine.connect() as connection:
            return [
                tuple(row)
                for row in connection.execute(
                    select(AuditEventRow.id, AuditEventRow.sequence, AuditEventRow.hash)
                    .where(AuditEventRow.workspace_id == uuid.UUID(workspace_id))
                    .order_by(AuditEventRow.sequence)
                )
            ]

    before = chain(shard_engines["shard-a"])
    assert len(before) >= 2
    move(app, workspace_id, "shard-b")
    assert chain(shard_engines["shard-b"]) == before
    assert chain(shard_engines["shard-a"]) == []
    # The append-only triggers are back on both shards.
    for engine in shard_engines.values():
        add_audit_events(engine, workspace_id, 1)
        with pytest.raises(Exception, match="append-only"), engine.begin() as connection:
            connection.execute(update(AuditEventRow).values(actor="me"))
    assert TaskTagRow.__tablename__ in {t.name for t in shard_tables()}
