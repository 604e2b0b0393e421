"""Deleting a workspace is safe against concurrent writes and partial failure: from the moment it
starts every write to the workspace is a 503, a stale precondition changes nothing, and a failure
puts the workspace back as it was. (Found by a hostile review: the old order could delete the
tasks and then answer 412, or leave a late task behind with no workspace.)"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

import app.workspaces as workspaces_module
import app.workspaces.service as service_module
from tests.auth import add_member

WORKSPACES = "/api/v2/workspaces"


def _workspace_with_a_task(client: FlaskClient) -> tuple[str, str]:
    workspace = client.post(WORKSPACES, json={"name": "doomed"}).json
    url = f"{WORKSPACES}/{workspace['id']}"
    client.post(f"{url}/tasks", json={"title": "inside"})
    return url, workspace["shard"]


def _rows_on(app: Flask, shard: str, workspace_url: str) -> int:
    workspace_id = workspace_url.rsplit("/", 1)[1].replace("-", "")
    with app.extensions["shards"].engine(shard).connect() as connection:
        rows = connection.execute(text("SELECT workspace_id FROM tasks")).scalars()
        return sum(1 for value in rows if str(value).replace("-", "") == workspace_id)


def test_writes_during_a_delete_are_503_and_leave_nothing_behind(
    any_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = any_app.test_client()
    url, shard = _workspace_with_a_task(client)
    # Another user of the workspace, who may write tasks and rename it.
    admin = add_member(any_app, url.rsplit("/", 1)[1], "admin", "admin@example.com")
    seen: dict[str, Any] = {}
    real = workspaces_module.shard_session

    def meanwhile(name: str, **kwargs: Any) -> Any:
        # Between the "deleting" mark and the shard's part: what other clients would get now.
        if not seen:
            other = any_app.test_client(token=admin.token)
            seen["create"] = other.post(f"{url}/tasks", json={"title": "late"})
            seen["rename"] = other.patch(url, json={"name": "renamed"})
            seen["state"] = other.get(url).json["state"]
        return real(name, **kwargs)

    monkeypatch.setattr(workspaces_module, "shard_session", meanwhile)
    assert client.delete(url).status_code == 204
    assert seen["state"] == "deleting"
    for response in (seen["create"], seen["rename"]):
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        assert response.json["detail"] == "The workspace is being deleted."
    assert client.get(url).status_code == 404
    assert _rows_on(any_app, shard, url) == 0


def test_a_stale_precondition_deletes_nothing(any_client: FlaskClient) -> None:
    url, _shard = _workspace_with_a_task(any_client)
    response = any_client.delete(url, headers={"If-Match": '"stale"'})
    assert response.status_code == 412
    assert any_client.get(url).json["state"] == "active"
    assert any_client.get(f"{url}/tasks").json["total"] == 1


def test_a_failed_delete_puts_the_workspace_back(
    any_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = any_app.test_client()
    url, shard = _workspace_with_a_task(client)

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the shard went away")

    monkeypatch.setattr(service_module, "take_write_lock", broken)
    assert client.delete(url).status_code == 500
    monkeypatch.undo()
    assert client.get(url).json["state"] == "active"
    assert client.get(f"{url}/tasks").json["total"] == 1
    assert _rows_on(any_app, shard, url) == 1
    assert client.delete(url).status_code == 204  # and a second try finishes the job


def _memberships_of(app: Flask, workspace_url: str) -> int:
    workspace_id = workspace_url.rsplit("/", 1)[1].replace("-", "")
    with app.extensions["shards"].control.connect() as connection:
        rows = connection.execute(text("SELECT workspace_id FROM memberships")).scalars()
        return sum(1 for value in rows if str(value).replace("-", "") == workspace_id)


def test_only_an_owner_deletes_and_the_memberships_go_with_the_workspace(any_app: Flask) -> None:
    client = any_app.test_client()
    url, shard = _workspace_with_a_task(client)
    workspace_id = url.rsplit("/", 1)[1]
    members = {
        role: any_app.test_client(
            token=add_member(any_app, workspace_id, role, f"{role}@example.com").token
        )
        for role in ("admin", "member", "viewer")
    }
    elsewhere = client.post(WORKSPACES, json={"name": "elsewhere"}).json["id"]
    stranger = add_member(any_app, elsewhere, "owner", "stranger@example.com")
    for role, member in members.items():
        refused = member.delete(url)
        assert refused.status_code == 403, role
        assert refused.json["type"] == "/problems/permission-denied"
    hidden = any_app.test_client(token=stranger.token).delete(url)
    assert hidden.status_code == 404
    assert hidden.json["type"] == "/problems/workspace-not-found"
    assert client.get(url).json["state"] == "active"  # nothing was even marked
    assert client.get(f"{url}/tasks").json["total"] == 1
    assert _memberships_of(any_app, url) == 4

    assert client.delete(url).status_code == 204
    assert _memberships_of(any_app, url) == 0
    assert _rows_on(any_app, shard, url) == 0
    for member in members.values():
        assert member.get(url).status_code == 404
        assert member.get(WORKSPACES).json["items"] == []
