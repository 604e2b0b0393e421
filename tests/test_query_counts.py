"""SQL per request: a constant number of statements whatever the page size (no N+1), and, on
PostgreSQL, plans that use the composite indexes for the main list queries.

Statements are counted with a ``before_cursor_execute`` listener on every engine of the app (the
control database and each shard), so a lazy load added anywhere shows up as a difference.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from tests.auth import add_member
from tests.conftest import make_app
from tests.databases import POSTGRES_ADMIN_URL
from tests.query_plans import analyze, list_plans, on_tasks, recorded_statements, seed_postgres

TASKS = 100
# Statements on the task tables per read: PostgreSQL reads a page (its total and each task's tags
# included) or a task (its tags included) in one; SQLite reads the tags with a second statement.
TASK_READS = 1 if POSTGRES_ADMIN_URL else 2


@contextmanager
def counted(app: Flask) -> Iterator[list[tuple[str, Any]]]:
    """Every statement any of the app's databases receives meanwhile."""
    found: list[tuple[str, Any]] = []
    with ExitStack() as stack:
        recorders = [
            stack.enter_context(recorded_statements(engine))
            for engine in app.extensions["shards"].all_engines().values()
        ]
        yield found
        for recorded in recorders:
            found.extend(recorded)


@pytest.fixture(scope="module")
def tagged_app() -> Iterator[tuple[Flask, str]]:
    """An app with a workspace of 100 tasks, each with three tags. Read-only tests share it."""
    app = make_app()
    client = app.test_client()
    workspace = client.post("/api/v2/workspaces", json={"name": "counted"}).json["id"]
    tasks = f"/api/v2/workspaces/{workspace}/tasks"
    operations = [
        {"op": "create", "task": {"title": f"task {i}", "tags": ["a", f"t{i % 7}", f"u{i}"]}}
        for i in range(TASKS)
    ]
    assert client.post(f"{tasks}/bulk", json={"operations": operations}).status_code == 200
    yield app, tasks
    for engine in app.extensions["shards"].all_engines().values():
        engine.dispose()


def _statements(app: Flask, url: str) -> list[tuple[str, Any]]:
    client = app.test_client()
    with counted(app) as statements:
        response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    return statements


@pytest.mark.parametrize("query", ["", "&tag=a", "&status=todo&sort=-title", "&q=task"])
def test_a_list_costs_the_same_statements_whatever_the_page_size(
    tagged_app: tuple[Flask, str], query: str
) -> None:
    app, tasks = tagged_app
    counts = {}
    for per_page in (1, 20, 100):
        statements = _statements(app, f"{tasks}?per_page={per_page}{query}")
        counts[per_page] = len(statements)
        assert len(on_tasks(statements)) == TASK_READS, [s for s, _ in on_tasks(statements)]
    assert counts[1] == counts[20] == counts[100], counts


def test_the_list_really_returned_the_tags_and_the_total(tagged_app: tuple[Flask, str]) -> None:
    app, tasks = tagged_app
    page = app.test_client().get(f"{tasks}?per_page=100&sort=created_at").json
    assert len(page["items"]) == page["total"] == TASKS
    # each task's own tags, in the order the client gave them
    assert [item["tags"] for item in page["items"][:2]] == [["a", "t0", "u0"], ["a", "t1", "u1"]]
    tagged = app.test_client().get(f"{tasks}?per_page=7&page=2&tag=t3").json
    assert tagged["total"] == 14  # i % 7 == 3 for i < 100


def test_an_empty_page_still_knows_the_total(tagged_app: tuple[Flask, str]) -> None:
    app, tasks = tagged_app
    client = app.test_client()
    nothing = client.get(f"{tasks}?q=no-such-task").json
    assert (nothing["items"], nothing["total"], nothing["pages"]) == ([], 0, 1)
    past = client.get(f"{tasks}?per_page=50&page=3")  # two pages of 50
    assert past.status_code == 400
    assert "at most 2" in past.get_data(as_text=True)


def test_getting_one_task_costs_the_same_with_or_without_tags(
    tagged_app: tuple[Flask, str],
) -> None:
    app, tasks = tagged_app
    client = app.test_client()
    tagged = client.get(f"{tasks}?per_page=1").json["items"][0]["id"]
    bare = client.post(tasks, json={"title": "no tags"}).json["id"]
    try:
        with_tags = _statements(app, f"{tasks}/{tagged}")
        without = _statements(app, f"{tasks}/{bare}")
        assert len(with_tags) == len(without)
        assert len(on_tasks(with_tags)) == TASK_READS
    finally:
        client.delete(f"{tasks}/{bare}")


_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@pytest.mark.parametrize("role", ["owner", "viewer"])
def test_who_the_caller_is_and_may_do_costs_two_statements_whatever_the_role(
    tagged_app: tuple[Flask, str], role: str
) -> None:
    """On the control database per request: the token's session (revoked?) and the directory
    entry with the caller's role in one join; the rest is the shard's. (With REDIS_URL the
    session check goes to Redis instead.)"""
    app, tasks = tagged_app
    workspace_id = tasks.split("/")[-2]
    user = app.extensions["test_owner"]
    if role != "owner":
        user = add_member(app, workspace_id, role, f"{role}-{uuid.uuid4().hex[:8]}@example.com")
    client = app.test_client(token=user.token)
    control = app.extensions["shards"].control
    task_id = client.get(f"{tasks}?per_page=1").json["items"][0]["id"]
    for url in (f"{tasks}?per_page=100", f"{tasks}/{task_id}"):
        with recorded_statements(control) as statements:
            assert client.get(url).status_code == 200
        work = [s for s, _ in statements if not s.lstrip().upper().startswith(_TRANSACTION_CONTROL)]
        if app.config.get("REDIS_URL"):  # the session check is Redis's: one EXISTS
            assert len(work) == 1, work
            access = work[0]
        else:
            assert len(work) == 2, work
            session_check, access = work
            assert "auth_sessions" in session_check
        assert "workspaces" in access
        assert "memberships" in access


# --- PostgreSQL plans --------------------------------------------------------------------------

# Per list request (scripts/explain-list prints the same ones): indexes the page's query must
# use, each one of a few the planner may rightly choose. A tag filter probes the tags either by
# tag (ix_task_tags_...) or, walking tasks newest first, by task (pk_task_tags): both are indexes.
_TAG_INDEXES = ("ix_task_tags_workspace_id_tag_task_id", "pk_task_tags")
EXPECTED_PAGE_INDEXES: dict[str, list[tuple[str, ...]]] = {
    "default sort (newest first), page 1 of 20": [("ix_tasks_workspace_id_created_at_id",)],
    "status filter": [("ix_tasks_workspace_id_status_created_at",)],
    "tag filter": [_TAG_INDEXES],
    "status and tag filters, sorted by due date": [_TAG_INDEXES],
}


@pytest.mark.skipif(not POSTGRES_ADMIN_URL, reason="TEST_DATABASE_URL is not set: no PostgreSQL")
def test_postgresql_plans_use_the_composite_indexes() -> None:
    app = make_app()
    client = app.test_client()
    workspace = uuid.UUID(client.post("/api/v2/workspaces", json={"name": "big"}).json["id"])
    other = uuid.UUID(client.post("/api/v2/workspaces", json={"name": "other"}).json["id"])
    shard = client.get(f"/api/v2/workspaces/{workspace}").json["shard"]
    registry = app.extensions["shards"]
    engine = registry.engine(shard)
    with engine.begin() as connection:  # enough rows that a sequential scan would cost more
        seed_postgres(connection, workspace, 20_000)
        if client.get(f"/api/v2/workspaces/{other}").json["shard"] == shard:
            seed_postgres(connection, other, 5_000)
    analyze(engine)

    plans = dict(list_plans(app, engine, workspace))
    assert set(plans) == set(EXPECTED_PAGE_INDEXES)
    for label, statements in plans.items():
        page = [plan for statement, plan in statements if "LIMIT" in statement]
        assert len(page) == 1, label
        assert len(statements) == 1, label  # the total and the tags ride along with the page
        assert "InitPlan" in page[0], f"{label}: the total:\n{page[0]}"
        rows = _without_the_total(page[0])
        assert "Seq Scan" not in rows, f"{label}:\n{page[0]}"
        for choices in EXPECTED_PAGE_INDEXES[label]:
            assert any(index in rows for index in choices), f"{label}:\n{page[0]}"
        # The page's tags: a subplan per row on the tags' primary key.
        assert "SubPlan" in rows, f"{label}:\n{page[0]}"
        assert "pk_task_tags" in rows, f"{label}: the page's tags:\n{page[0]}"


def _without_the_total(plan: str) -> str:
    """The plan minus its InitPlan (the total's count): a count over a large share of the
    workspace may rightly read the table; the page itself must not."""
    kept, skip_deeper_than = [], None
    for line in plan.splitlines():
        depth = len(line) - len(line.lstrip())
        if skip_deeper_than is not None and depth > skip_deeper_than:
            continue
        skip_deeper_than = depth if line.strip().startswith("InitPlan") else None
        if skip_deeper_than is None:
            kept.append(line)
    return "\n".join(kept)


@pytest.mark.skipif(not POSTGRES_ADMIN_URL, reason="TEST_DATABASE_URL is not set: no PostgreSQL")
def test_postgresql_reads_run_in_autocommit_and_writes_in_a_transaction() -> None:
    """No BEGIN/ROLLBACK round trips around a read; a write still gets its transaction."""
    app = make_app()
    client = app.test_client()
    modes: list[tuple[str, bool]] = []

    def record(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        modes.append((statement.split()[0], conn.connection.dbapi_connection.autocommit))

    workspace = client.post("/api/v2/workspaces", json={"name": "w"}).json["id"]
    tasks = f"/api/v2/workspaces/{workspace}/tasks"
    with ExitStack() as stack:
        for engine in app.extensions["shards"].all_engines().values():
            stack.callback(event.remove, engine, "before_cursor_execute", record)
            event.listen(engine, "before_cursor_execute", record)
        created = client.post(tasks, json={"title": "t"})
        writes, modes[:] = list(modes), []
        assert client.get(tasks).status_code == 200
        assert client.get(f"{tasks}/{created.json['id']}").status_code == 200
        reads = list(modes)
    assert created.status_code == 201
    assert {"INSERT"} <= {verb for verb, _ in writes}
    # The token's session check (the database's unless Redis has it) and the directory lookup
    # (with the caller's role) before the write are reads; everything after is the transaction.
    reads_first = 1 if app.config.get("REDIS_URL") else 2
    assert writes[:reads_first] == [("SELECT", True)] * reads_first, writes
    assert not any(autocommit for _, autocommit in writes[reads_first:]), writes
    assert reads
    assert all(autocommit for _, autocommit in reads), reads
