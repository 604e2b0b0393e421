"""Task ETags derive from the stored version (and updated_at), not from the body: a conditional GET
reads two columns of one row, and the ETag still changes exactly when the representation does."""

from __future__ import annotations

from contextlib import ExitStack

from flask.testing import FlaskClient

from app.tasks.models import Task
from app.tasks.repository import InMemoryTaskRepository
from app.tasks.service import TaskService
from tests.conftest import make_app
from tests.query_plans import on_tasks, recorded_statements


def _tasks_url(client: FlaskClient) -> str:
    workspace = client.post("/api/v2/workspaces", json={"name": "etags"}).json["id"]
    return f"/api/v2/workspaces/{workspace}/tasks"


def test_a_matching_if_none_match_reads_the_version_only() -> None:
    app = make_app()
    client = app.test_client()
    tasks = _tasks_url(client)
    created = client.post(tasks, json={"title": "cached", "tags": ["a", "b"]})
    url, etag = f"{tasks}/{created.json['id']}", created.headers["ETag"]
    with ExitStack() as stack:
        recorded = [
            stack.enter_context(recorded_statements(engine))
            for engine in app.extensions["shards"].all_engines().values()
        ]
        response = client.get(url, headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.data == b""
    assert response.headers["ETag"] == etag
    assert response.headers["Cache-Control"] == "private, no-cache"
    assert "Content-Type" not in response.headers
    statements = on_tasks([s for found in recorded for s in found])
    assert len(statements) == 1, statements  # no tags, no full row
    assert "task_tags" not in statements[0][0]
    assert "tasks.version" in statements[0][0]


def test_every_change_changes_the_etag_and_each_response_carries_the_current_one(
    any_client: FlaskClient,
) -> None:
    tasks = _tasks_url(any_client)
    created = any_client.post(tasks, json={"title": "one", "tags": ["x"]})
    url, first = f"{tasks}/{created.json['id']}", created.headers["ETag"]
    assert any_client.get(url).headers["ETag"] == first

    patched = any_client.patch(url, json={"title": "two"}, headers={"If-Match": first})
    second = patched.headers["ETag"]
    assert patched.status_code == 200
    assert second != first
    stale = any_client.get(url, headers={"If-None-Match": first})
    assert stale.status_code == 200
    assert stale.json["title"] == "two"
    assert stale.headers["ETag"] == second
    assert any_client.get(url, headers={"If-None-Match": second}).status_code == 304
    assert any_client.head(url, headers={"If-None-Match": second}).status_code == 304

    # A write that changes nothing keeps the version, hence the ETag.
    same = any_client.patch(url, json={"title": "two"}, headers={"If-Match": second})
    assert same.status_code == 200
    assert same.headers["ETag"] == second

    replaced = any_client.put(url, json={"title": "three"}, headers={"If-Match": second})
    third = replaced.headers["ETag"]
    assert third not in {first, second}
    bulk = any_client.post(
        f"{tasks}/bulk",
        json={"operations": [{"op": "update", "id": created.json["id"], "changes": {"tags": ["y"]},
                              "if_match": third}]},
    )  # fmt: skip
    assert bulk.status_code == 200, bulk.json
    fourth = any_client.get(url).headers["ETag"]
    assert fourth not in {first, second, third}
    # The old ETag no longer guards a write; the current one does.
    assert any_client.delete(url, headers={"If-Match": third}).status_code == 412
    assert any_client.delete(url, headers={"If-Match": fourth}).status_code == 204


def test_etags_stay_strong_and_if_none_match_compares_weakly(any_client: FlaskClient) -> None:
    tasks = _tasks_url(any_client)
    created = any_client.post(tasks, json={"title": "strong"})
    url, etag = f"{tasks}/{created.json['id']}", created.headers["ETag"]
    assert not etag.startswith("W/")
    assert any_client.get(url, headers={"If-None-Match": f"W/{etag}"}).status_code == 304
    assert any_client.get(url, headers={"If-None-Match": "*"}).status_code == 304
    assert any_client.get(url, headers={"If-None-Match": '"other", ' + etag}).status_code == 304
    weak = any_client.patch(url, json={"title": "x"}, headers={"If-Match": f"W/{etag}"})
    assert weak.status_code == 412


def test_a_conditional_get_of_an_unknown_or_foreign_task_is_404(any_client: FlaskClient) -> None:
    mine, theirs = _tasks_url(any_client), _tasks_url(any_client)
    created = any_client.post(theirs, json={"title": "not yours"})
    task_id, etag = created.json["id"], created.headers["ETag"]
    for url in (f"{mine}/{task_id}", f"{mine}/01a19b7c-a680-79f1-9462-495399c0b8d0"):
        for headers in ({"If-None-Match": etag}, {"If-None-Match": "*"}):
            response = any_client.get(url, headers=headers)
            assert response.status_code == 404, (url, headers)
            assert response.json["type"].endswith("task-not-found")


def test_the_service_bumps_the_version_of_a_changed_task() -> None:
    service = TaskService(InMemoryTaskRepository())
    created = service.create({"title": "v"})
    assert created.version == 1
    changed = service.patch(created.id, {"title": "w"})
    assert changed.version == 2
    assert service.patch(created.id, {"title": "w"}).version == 2  # no change, no new version
    assert service.stamp(created.id) == (2, changed.updated_at)
    stored = service.get(created.id)
    assert isinstance(stored, Task)
    assert stored.version == 2
