"""Tenant isolation: a task id from another workspace is a 404 on every operation, whichever shard
either workspace lives on, and no statement on a shard's tasks runs without a workspace scope."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from app.tasks.models import new_task_id
from tests.auth import add_member
from tests.test_errors import assert_problem

WORKSPACES = "/api/v2/workspaces"


def _workspace_on(client: FlaskClient, shard: str, exclude: str | None = None) -> str:
    """A new workspace placed on ``shard`` (placement hashes the id, so create until one lands)."""
    for attempt in range(200):
        created = client.post(WORKSPACES, json={"name": f"tenant {attempt}"}).json
        if created["shard"] == shard and created["id"] != exclude:
            return created["id"]
    raise AssertionError(f"no workspace landed on {shard}")


@pytest.fixture(params=["same shard", "other shard"])
def tenants(any_app: Flask, request: pytest.FixtureRequest) -> tuple[FlaskClient, str, str, str]:
    """(client, URL of A's task, B's tasks URL, the task id) with A and B on the shards asked."""
    client = any_app.test_client()
    owner = _workspace_on(client, "shard-a")
    other_shard = "shard-a" if request.param == "same shard" else "shard-b"
    intruder = _workspace_on(client, other_shard, exclude=owner)
    task = client.post(f"{WORKSPACES}/{owner}/tasks", json={"title": "private"})
    task_id = task.json["id"]
    return client, task.headers["Location"], f"{WORKSPACES}/{intruder}/tasks", task_id


OPERATIONS: dict[str, Any] = {
    "get": lambda c, url: c.get(url),
    "head": lambda c, url: c.head(url),
    "put": lambda c, url: c.put(url, json={"title": "stolen"}),
    "patch": lambda c, url: c.patch(url, json={"title": "stolen"}),
    "delete": lambda c, url: c.delete(url),
    "put with If-Match *": lambda c, url: c.put(
        url, json={"title": "stolen"}, headers={"If-Match": "*"}
    ),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_another_workspaces_task_is_not_found(
    tenants: tuple[FlaskClient, str, str, str], operation: str
) -> None:
    client, own_url, intruder_tasks, task_id = tenants
    response = OPERATIONS[operation](client, f"{intruder_tasks}/{task_id}")
    assert response.status_code == 404
    if operation != "head":
        assert_problem(response, 404)
    untouched = client.get(own_url)
    assert untouched.status_code == 200
    assert untouched.json["title"] == "private"


@pytest.mark.parametrize("op", ["update", "delete"])
def test_bulk_cannot_reach_another_workspaces_task(
    tenants: tuple[FlaskClient, str, str, str], op: str
) -> None:
    client, own_url, intruder_tasks, task_id = tenants
    operation: dict[str, Any] = {"op": op, "id": task_id}
    if op == "update":
        operation["changes"] = {"title": "stolen"}
    response = client.post(f"{intruder_tasks}/bulk", json={"operations": [operation]})
    body = assert_problem(response, 422)
    assert body["errors"][0]["status"] == 404
    assert client.get(own_url).json["title"] == "private"


def test_lists_and_filters_show_only_the_workspaces_own_tasks(
    tenants: tuple[FlaskClient, str, str, str],
) -> None:
    client, _own_url, intruder_tasks, _task_id = tenants
    client.post(intruder_tasks, json={"title": "mine", "tags": ["x"]})
    for query in ("", "?q=private", "?status=todo", "?tag=x", "?sort=title"):
        titles = [t["title"] for t in client.get(f"{intruder_tasks}{query}").json["items"]]
        assert "private" not in titles, query


_TASK_TABLE = re.compile(r"\b(FROM|UPDATE|INTO|JOIN)\s+(tasks|task_tags)\b", re.IGNORECASE)


def test_every_statement_on_task_tables_is_scoped_to_a_workspace(any_app: Flask) -> None:
    client = any_app.test_client()
    workspace = _workspace_on(client, "shard-a")
    statements: list[str] = []
    engine = any_app.extensions["shards"].engine("shard-a")

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    tasks = f"{WORKSPACES}/{workspace}/tasks"
    created = client.post(tasks, json={"title": "a", "tags": ["t"]})
    url = created.headers["Location"]
    client.get(url)
    client.get(f"{tasks}?tag=t&q=a&status=todo&sort=-due_date")
    client.patch(url, json={"tags": ["u"]}, headers={"If-Match": client.get(url).headers["ETag"]})
    client.put(url, json={"title": "b"})
    client.post(f"{tasks}/bulk", json={"operations": [{"op": "create", "task": {"title": "c"}}]})
    client.delete(url)
    client.delete(f"{WORKSPACES}/{workspace}")

    on_tasks = [s for s in statements if _TASK_TABLE.search(s)]
    assert on_tasks, "the operations touched the task tables"
    unscoped = [
        s
        for s in on_tasks
        if "workspace_id" not in s and not s.lstrip().upper().startswith("INSERT")
    ]
    assert not unscoped, unscoped


# --- across users: a member of one workspace and another workspace ---------------------------

ROLES = ["owner", "admin", "member", "viewer"]


@pytest.mark.parametrize("role", ROLES)
def test_a_member_of_another_workspace_finds_nothing_of_this_one(any_app: Flask, role: str) -> None:
    """Whatever their role in their own workspace, on this one's URLs they get exactly what a
    workspace that does not exist answers: not even whether it exists shows."""
    owner = any_app.test_client()
    mine = _workspace_on(owner, "shard-a")
    theirs = _workspace_on(owner, "shard-b")
    task = owner.post(f"{WORKSPACES}/{mine}/tasks", json={"title": "private"}).json
    workspace_before = owner.get(f"{WORKSPACES}/{mine}").json
    stranger = any_app.test_client(
        token=add_member(any_app, theirs, role, f"{role}@elsewhere.example").token
    )
    assert [w["id"] for w in stranger.get(WORKSPACES).json["items"]] == [theirs]
    missing = str(new_task_id())
    for workspace, task_id in ((mine, task["id"]), (missing, task["id"])):
        base = f"{WORKSPACES}/{workspace}"
        answers = {
            "workspace": stranger.get(base),
            "rename": stranger.patch(base, json={"name": "mine now"}),
            "delete workspace": stranger.delete(base),
            "list": stranger.get(f"{base}/tasks"),
            "create": stranger.post(f"{base}/tasks", json={"title": "planted"}),
            "bulk": stranger.post(
                f"{base}/tasks/bulk", json={"operations": [{"op": "delete", "id": task_id}]}
            ),
            "members": stranger.get(f"{base}/members"),
            "audit": stranger.get(f"{base}/audit"),
            "history": stranger.get(f"{base}/tasks/{task_id}/history"),
            **{
                operation: call(stranger, f"{base}/tasks/{task_id}")
                for operation, call in OPERATIONS.items()
            },
        }
        for name, response in answers.items():
            assert response.status_code == 404, (workspace, name, response.status_code)
            if name != "head":
                body = assert_problem(response, 404)
                assert body["type"] == "/problems/workspace-not-found", name
    untouched = owner.get(f"{WORKSPACES}/{mine}/tasks").json
    assert [t["title"] for t in untouched["items"]] == ["private"]
    assert owner.get(f"{WORKSPACES}/{mine}").json == workspace_before
