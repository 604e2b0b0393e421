"""Extend it (ch-03): DELETE keeps the row as a soft-deleted task, and a restore brings it back."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import literal_column, select

from app.tasks.models import TaskRow

WORKSPACES = "/api/v2/workspaces"


@pytest.fixture
def workspace(client: FlaskClient) -> dict[str, Any]:
    created = client.post(WORKSPACES, json={"name": "soft"})
    assert created.status_code == 201
    return created.json


def tasks_url(workspace: dict[str, Any]) -> str:
    return f"{WORKSPACES}/{workspace['id']}/tasks"


def add(client: FlaskClient, workspace: dict[str, Any], title: str, **fields: Any) -> str:
    response = client.post(tasks_url(workspace), json={"title": title, **fields})
    assert response.status_code == 201
    return response.json["id"]


def titles(client: FlaskClient, workspace: dict[str, Any], query: str = "") -> list[str]:
    response = client.get(f"{tasks_url(workspace)}?sort=title{query}")
    assert response.status_code == 200, response.json
    return [task["title"] for task in response.json["items"]]


def deleted_at(app: Flask, workspace: dict[str, Any], task_id: str) -> Any:
    """The stored row's deleted_at (KeyError if the row itself is gone)."""
    engine = app.extensions["shards"].engine(workspace["shard"])
    with engine.connect() as connection:
        rows = connection.execute(
            select(literal_column("deleted_at"))
            .select_from(TaskRow.__table__)
            .where(TaskRow.id == uuid.UUID(task_id))
        ).all()
    if not rows:
        raise KeyError(task_id)
    return rows[0][0]


def test_a_deleted_task_leaves_the_api_but_its_row_stays(
    app: Flask, client: FlaskClient, workspace: dict[str, Any]
) -> None:
    kept = add(client, workspace, "kept", tags=["x"])
    gone = add(client, workspace, "gone", tags=["x"])
    assert deleted_at(app, workspace, gone) is None

    assert client.delete(f"{tasks_url(workspace)}/{gone}").status_code == 204

    assert deleted_at(app, workspace, gone) is not None  # soft: still in the table
    assert deleted_at(app, workspace, kept) is None
    for method in ("get", "head", "delete"):
        assert getattr(client, method)(f"{tasks_url(workspace)}/{gone}").status_code == 404
    assert client.patch(f"{tasks_url(workspace)}/{gone}", json={"title": "x"}).status_code == 404
    assert titles(client, workspace) == ["kept"]
    assert titles(client, workspace, "&tag=x&q=e") == ["kept"]
    assert client.get(tasks_url(workspace)).json["total"] == 1


def test_restore_brings_a_deleted_task_back_unchanged(
    client: FlaskClient, workspace: dict[str, Any]
) -> None:
    task_id = add(client, workspace, "back again", tags=["a", "b"], priority="high")
    url = f"{tasks_url(workspace)}/{task_id}"
    original = client.get(url).json
    assert client.delete(url).status_code == 204

    restored = client.post(f"{url}/restore")

    assert restored.status_code == 200, restored.json
    assert restored.headers["ETag"]
    for field in ("id", "title", "tags", "priority", "status", "created_at"):
        assert restored.json[field] == original[field]
    assert client.get(url).json == restored.json
    assert titles(client, workspace) == ["back again"]
    assert client.patch(url, json={"title": "edited"}).status_code == 200  # writable again


def test_restore_is_only_for_a_deleted_task_of_this_workspace(
    client: FlaskClient, workspace: dict[str, Any]
) -> None:
    url = f"{tasks_url(workspace)}/{add(client, workspace, 'once')}"
    assert client.delete(url).status_code == 204
    assert client.post(f"{url}/restore").status_code == 200
    assert client.post(f"{url}/restore").status_code == 404  # live now: nothing to restore
    response = client.post(f"{tasks_url(workspace)}/{uuid.uuid4()}/restore")
    assert response.status_code == 404
    assert response.json["type"] == "/problems/task-not-found"
    other = client.post(WORKSPACES, json={"name": "other"}).json
    foreign = add(client, other, "not yours")
    assert client.delete(f"{tasks_url(other)}/{foreign}").status_code == 204
    assert client.post(f"{tasks_url(workspace)}/{foreign}/restore").status_code == 404
    assert titles(client, other) == []  # still deleted in its own workspace


def test_delete_and_restore_are_audited(client: FlaskClient, workspace: dict[str, Any]) -> None:
    task_id = add(client, workspace, "audited")
    url = f"{tasks_url(workspace)}/{task_id}"
    assert client.delete(url).status_code == 204
    assert client.post(f"{url}/restore").status_code == 200
    history = client.get(f"{url}/history").json["items"]
    assert [event["action"] for event in history] == [
        "task.created",
        "task.deleted",
        "task.restored",
    ]
    assert client.get(f"{WORKSPACES}/{workspace['id']}/audit/verify").json["ok"] is True
