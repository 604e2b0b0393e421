"""/api/v1/tasks over HTTP: CRUD, validation, pagination, filters, sorting, bulk, ETags."""

from __future__ import annotations

import http.client
import re
import threading
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from app.tasks.models import new_task_id
from tests.auth import add_member, add_user
from tests.conftest import make_app

TASKS = "/api/v1/tasks"
JSON_HEADERS = {"Content-Type": "application/json"}
DATES = "must be an ISO 8601 date-time with a time zone, in the years 1900-9999"


def create(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    response = client.post(TASKS, json={"title": "A task", **fields})
    assert response.status_code == 201, response.json
    return response.json


def links(response: Any) -> dict[str, str]:
    return {
        rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', response.headers["Link"])
    }


# --- create ------------------------------------------------------------------------------------


def test_create_returns_201_location_etag_and_the_task(any_client: FlaskClient) -> None:
    response = any_client.post(
        TASKS, json={"title": " Write docs ", "tags": ["Docs"], "priority": "high"}
    )
    assert response.status_code == 201
    body = response.json
    assert response.headers["Location"] == f"{TASKS}/{body['id']}"
    assert response.headers["ETag"].startswith('"')
    assert response.headers["Cache-Control"] == "no-store"
    assert body["title"] == "Write docs"
    assert body["tags"] == ["docs"]
    assert body["status"] == "todo"
    assert body["created_at"] == body["updated_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["created_at"])
    fetched = any_client.get(response.headers["Location"])
    assert fetched.json == body
    assert fetched.headers["ETag"] == response.headers["ETag"]


def test_create_lists_every_invalid_field(any_client: FlaskClient) -> None:
    response = any_client.post(TASKS, json={"title": "", "status": "nope", "extra": 1})
    assert response.status_code == 422
    assert response.json["errors"] == [
        {"pointer": "#/extra", "detail": "is not an allowed field"},
        {
            "pointer": "#/status",
            "detail": "must be one of: todo, in_progress, blocked, done, cancelled",
        },
        {"pointer": "#/title", "detail": "must be at least 1 character long"},
    ]
    assert any_client.get(TASKS).json["total"] == 0


def test_create_ignores_read_only_fields(client: FlaskClient) -> None:
    forged = {"id": str(new_task_id()), "created_at": "2001-01-01T00:00:00.000Z", "updated_at": "x"}
    body = client.post(TASKS, json={"title": "t", **forged}).json
    assert body["id"] != forged["id"]
    assert body["created_at"] != forged["created_at"]


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        ('{"title": ', "application/json", 400),
        ("title=x", "application/x-www-form-urlencoded", 415),
        ("[]", "application/json", 422),
    ],
)
def test_create_bad_bodies(client: FlaskClient, data: str, content_type: str, status: int) -> None:
    response = client.post(TASKS, data=data, content_type=content_type)
    assert response.status_code == status
    assert response.content_type == "application/problem+json"


# --- read --------------------------------------------------------------------------------------


def test_get_unknown_id_is_task_not_found(any_client: FlaskClient) -> None:
    response = any_client.get(f"{TASKS}/{new_task_id()}")
    assert response.status_code == 404
    assert response.json["type"] == "/problems/task-not-found"


def test_a_malformed_id_matches_no_route(any_client: FlaskClient) -> None:
    response = any_client.get(f"{TASKS}/not-a-uuid")
    assert response.status_code == 404
    assert response.json["type"] == "about:blank"


def test_reading_the_bulk_endpoint_is_405_not_a_missing_task(any_client: FlaskClient) -> None:
    response = any_client.get(f"{TASKS}/bulk")
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]


def test_conditional_get_of_a_task(any_client: FlaskClient) -> None:
    task = create(any_client)
    first = any_client.get(f"{TASKS}/{task['id']}")
    assert first.headers["Cache-Control"] == "private, no-cache"
    etag = first.headers["ETag"]
    again = any_client.get(f"{TASKS}/{task['id']}", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.data == b""
    assert again.headers["ETag"] == etag
    weak = any_client.get(f"{TASKS}/{task['id']}", headers={"If-None-Match": f"W/{etag}"})
    assert weak.status_code == 304  # If-None-Match uses weak comparison
    any_client.patch(f"{TASKS}/{task['id']}", json={"title": "changed"})
    stale = any_client.get(f"{TASKS}/{task['id']}", headers={"If-None-Match": etag})
    assert stale.status_code == 200
    assert stale.headers["ETag"] != etag


# --- replace and patch -------------------------------------------------------------------------


def test_put_replaces_the_task(any_client: FlaskClient) -> None:
    task = create(any_client, description="old", tags=["a"])
    response = any_client.put(f"{TASKS}/{task['id']}", json={**task, "title": "New", "tags": []})
    assert response.status_code == 200
    body = response.json
    assert (body["title"], body["description"], body["tags"]) == ("New", "old", [])
    assert body["id"] == task["id"]
    assert body["created_at"] == task["created_at"]
    omitted = any_client.put(f"{TASKS}/{task['id']}", json={"title": "Only title"}).json
    assert omitted["description"] is None  # PUT resets what it does not send


def test_patch_with_merge_patch_media_type(any_client: FlaskClient) -> None:
    task = create(any_client, description="d", due_date="2026-12-24T18:00:00+01:00")
    assert task["due_date"] == "2026-12-24T17:00:00.000Z"
    response = any_client.patch(
        f"{TASKS}/{task['id']}",
        data='{"description": null, "status": "in_progress"}',
        content_type="application/merge-patch+json",
    )
    assert response.status_code == 200
    assert response.json["description"] is None
    assert response.json["status"] == "in_progress"
    assert response.json["due_date"] == task["due_date"]


def test_invalid_patch_changes_nothing(any_client: FlaskClient) -> None:
    task = create(any_client)
    response = any_client.patch(f"{TASKS}/{task['id']}", json={"title": None, "tags": ["bad tag"]})
    assert response.status_code == 422
    assert [e["pointer"] for e in response.json["errors"]] == ["#/tags/0", "#/title"]
    assert any_client.get(f"{TASKS}/{task['id']}").json == task


def test_status_lifecycle_is_enforced(any_client: FlaskClient) -> None:
    task = create(any_client, status="done")
    response = any_client.patch(f"{TASKS}/{task['id']}", json={"status": "in_progress"})
    assert response.status_code == 409
    assert response.json["allowed"] == ["todo"]


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_if_match_guards_writes(any_client: FlaskClient, method: str) -> None:
    task = create(any_client)
    url = f"{TASKS}/{task['id']}"
    etag = any_client.get(url).headers["ETag"]
    any_client.patch(url, json={"title": "someone else"})
    stale = getattr(any_client, method)(url, json={"title": "mine"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert stale.json["type"] == "/problems/precondition-failed"
    assert any_client.get(url).json["title"] == "someone else"

    fresh = any_client.get(url).headers["ETag"]
    ok = getattr(any_client, method)(url, json={"title": "mine"}, headers={"If-Match": fresh})
    assert ok.status_code in {200, 204}


def test_if_match_star_and_weak_tags(client: FlaskClient) -> None:
    task = create(client)
    url = f"{TASKS}/{task['id']}"
    etag = client.get(url).headers["ETag"]
    assert client.patch(url, json={"title": "b"}, headers={"If-Match": "*"}).status_code == 200
    etag = client.get(url).headers["ETag"]
    weak = client.patch(url, json={"title": "c"}, headers={"If-Match": f"W/{etag}"})
    assert weak.status_code == 412  # If-Match uses strong comparison


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_writes_to_unknown_ids_are_404(any_client: FlaskClient, method: str) -> None:
    response = getattr(any_client, method)(f"{TASKS}/{new_task_id()}", json={"title": "x"})
    assert response.status_code == 404


def test_delete_then_gone(any_client: FlaskClient) -> None:
    task = create(any_client)
    response = any_client.delete(f"{TASKS}/{task['id']}")
    assert response.status_code == 204
    assert response.data == b""
    assert any_client.get(f"{TASKS}/{task['id']}").status_code == 404
    assert any_client.delete(f"{TASKS}/{task['id']}").status_code == 404


# --- list: pagination, filters, sorting --------------------------------------------------------


def test_empty_list(any_client: FlaskClient) -> None:
    response = any_client.get(TASKS)
    assert response.status_code == 200
    assert response.json == {"items": [], "page": 1, "per_page": 20, "total": 0, "pages": 1}
    assert links(response) == {"first": f"{TASKS}?page=1", "last": f"{TASKS}?page=1"}


def test_pagination_envelope_and_links(any_client: FlaskClient) -> None:
    for index in range(5):
        create(any_client, title=f"t{index}", priority="high" if index % 2 else "low")
    response = any_client.get(f"{TASKS}?per_page=2&page=2&priority=high,low&sort=title")
    body = response.json
    assert [t["title"] for t in body["items"]] == ["t2", "t3"]
    assert (body["page"], body["per_page"], body["total"], body["pages"]) == (2, 2, 5, 3)
    base = f"{TASKS}?per_page=2&priority=high%2Clow&sort=title"
    assert links(response) == {
        "first": f"{base}&page=1",
        "prev": f"{base}&page=1",
        "next": f"{base}&page=3",
        "last": f"{base}&page=3",
    }
    last = any_client.get(links(response)["last"])
    assert [t["title"] for t in last.json["items"]] == ["t4"]
    assert "next" not in links(last)


@pytest.mark.parametrize(
    ("query", "parameter", "detail"),
    [
        ("page=0", "page", "must be at least 1"),
        ("page=abc", "page", "must be an integer (ASCII digits)"),
        ("per_page=0", "per_page", "must be between 1 and 100"),
        ("per_page=101", "per_page", "must be between 1 and 100"),
        ("per_page=1.5", "per_page", "must be an integer (ASCII digits)"),
        ("page=1_0", "page", "must be an integer (ASCII digits)"),
        ("page=%D9%A1", "page", "must be an integer (ASCII digits)"),  # ARABIC-INDIC DIGIT ONE
        ("page=%EF%BC%92", "page", "must be an integer (ASCII digits)"),  # FULLWIDTH DIGIT TWO
        ("page=%202", "page", "must be an integer (ASCII digits)"),
        ("page=2%20", "page", "must be an integer (ASCII digits)"),
        ("page=%2B2", "page", "must be an integer (ASCII digits)"),
        ("page=", "page", "must be an integer (ASCII digits)"),
        ("per_page=" + "9" * 5000, "per_page", "must be between 1 and 100"),
        ("per_page=-" + "9" * 30, "per_page", "must be between 1 and 100"),
        ("page=2", "page", "must be at most 1 (the last page)"),
        ("status=started", "status", "must be one of: todo, in_progress, blocked, done, cancelled"),
        ("priority=asap", "priority", "must be one of: low, medium, high, urgent"),
        (
            "due_after=tomorrow",
            "due_after",
            "must be an ISO 8601 date-time with a time zone, in the years 1900-9999",
        ),
        (
            "due_before=2026-12-01T00:00:00",
            "due_before",
            "must be an ISO 8601 date-time with a time zone, in the years 1900-9999",
        ),
        ("q=" + "x" * 201, "q", "must be at most 200 characters"),
        ("due_before=0001-01-01T00:00:00%2B01:00", "due_before", DATES),
        ("due_after=9999-12-31T23:59:59-23:59", "due_after", DATES),
        ("due_after=1899-12-31T23:59:59Z", "due_after", DATES),
        (
            "sort=-colour",
            "sort",
            "can only use: title, status, priority, due_date, created_at, updated_at "
            "('-' to reverse)",
        ),
        ("sort=title,-title", "sort", "names a field twice"),
        ("stauts=todo", "stauts", "is not a known parameter"),
        ("page=1&page=abc", "page", "must be given once"),
        ("sort=title&sort=-colour", "sort", "must be given once"),
    ],
)
def test_bad_query_parameters_are_400(
    any_client: FlaskClient, query: str, parameter: str, detail: str
) -> None:
    response = any_client.get(f"{TASKS}?{query}")
    assert response.status_code == 400
    assert response.json["type"] == "/problems/validation-error"
    assert response.json["errors"] == [{"parameter": parameter, "detail": detail}]


def test_several_bad_parameters_are_reported_together(client: FlaskClient) -> None:
    response = client.get(f"{TASKS}?page=0&per_page=500&sort=nope")
    assert [e["parameter"] for e in response.json["errors"]] == ["page", "per_page", "sort"]


def test_filters_sort_and_pagination_compose(any_client: FlaskClient) -> None:
    create(
        any_client,
        title="Report A",
        status="todo",
        priority="low",
        tags=["work"],
        due_date="2026-12-05T00:00:00Z",
    )
    create(
        any_client,
        title="Report B",
        status="in_progress",
        priority="urgent",
        tags=["work"],
        due_date="2026-12-02T00:00:00Z",
    )
    create(
        any_client,
        title="Report C",
        status="done",
        priority="urgent",
        tags=["work"],
        due_date="2026-12-03T00:00:00Z",
    )
    create(
        any_client,
        title="Other",
        status="todo",
        priority="urgent",
        tags=["home"],
        due_date="2026-12-01T00:00:00Z",
    )
    create(any_client, title="Report D", status="todo", priority="high", tags=["work"])
    query = (
        "status=todo&status=in_progress&tag=work&q=report&due_after=2026-12-01T00:00:00Z"
        "&due_before=2026-12-31T00:00:00%2B01:00&sort=-priority,due_date&per_page=1"
    )
    first = any_client.get(f"{TASKS}?{query}")
    assert first.json["total"] == 2
    assert [t["title"] for t in first.json["items"]] == ["Report B"]
    second = any_client.get(links(first)["next"])
    assert [t["title"] for t in second.json["items"]] == ["Report A"]


def test_list_etag_and_conditional_get(any_client: FlaskClient) -> None:
    create(any_client)
    first = any_client.get(f"{TASKS}?per_page=5")
    etag = first.headers["ETag"]
    assert any_client.get(f"{TASKS}?per_page=5", headers={"If-None-Match": etag}).status_code == 304
    create(any_client, title="another")
    assert any_client.get(f"{TASKS}?per_page=5", headers={"If-None-Match": etag}).status_code == 200


def test_unversioned_path_with_header_reaches_tasks(client: FlaskClient) -> None:
    response = client.post(
        "/api/tasks", json={"title": "via header"}, headers={"Accept-Version": "1"}
    )
    assert response.status_code == 201
    assert response.headers["Location"].startswith("/api/v1/tasks/")


# --- bulk --------------------------------------------------------------------------------------


def test_bulk_success(any_client: FlaskClient) -> None:
    existing = create(any_client, title="existing")
    doomed = create(any_client, title="doomed")
    etag = any_client.get(f"{TASKS}/{doomed['id']}").headers["ETag"]
    response = any_client.post(
        f"{TASKS}/bulk",
        json={
            "operations": [
                {"op": "create", "task": {"title": "new one"}},
                {"op": "update", "id": existing["id"], "changes": {"status": "in_progress"}},
                {"op": "delete", "id": doomed["id"], "if_match": etag},
            ]
        },
    )
    assert response.status_code == 200
    results = response.json["results"]
    assert [(r["index"], r["op"], r["status"]) for r in results] == [
        (0, "create", 201),
        (1, "update", 200),
        (2, "delete", 204),
    ]
    assert results[0]["task"]["title"] == "new one"
    assert results[1]["task"]["status"] == "in_progress"
    assert results[2]["task"] is None
    titles = sorted(t["title"] for t in any_client.get(TASKS).json["items"])
    assert titles == ["existing", "new one"]


def test_bulk_is_atomic(any_client: FlaskClient) -> None:
    existing = create(any_client, title="existing")
    before = any_client.get(TASKS).json
    response = any_client.post(
        f"{TASKS}/bulk",
        json={
            "operations": [
                {"op": "create", "task": {"title": "would be created"}},
                {"op": "update", "id": existing["id"], "changes": {"title": "would change"}},
                {"op": "delete", "id": str(new_task_id())},
                {"op": "update", "id": existing["id"], "changes": {"status": "nope"}},
                {"op": "delete", "id": existing["id"], "if_match": '"stale"'},
            ]
        },
    )
    assert response.status_code == 422
    problem = response.json
    assert problem["type"] == "/problems/bulk-operation-failed"
    assert [(e["index"], e["status"]) for e in problem["errors"]] == [(2, 404), (3, 422), (4, 412)]
    assert problem["errors"][1]["errors"][0]["pointer"] == "#/operations/3/changes/status"
    assert any_client.get(TASKS).json == before


@pytest.mark.parametrize(
    ("body", "pointer", "detail"),
    [
        ({}, "#/operations", "is required"),
        ({"operations": []}, "#/operations", "must have at least 1 item"),
        (
            {"operations": [{"op": "create", "task": {"title": "x"}}] * 101},
            "#/operations",
            "must have at most 100 items",
        ),
        (
            {"operations": [{"op": "rename"}]},
            "#/operations/0/op",
            "must be one of: create, update, delete",
        ),
        ({"operations": [{"op": "create"}]}, "#/operations/0/task", "is required"),
        ({"operations": [{"op": "delete", "id": "nope"}]}, "#/operations/0/id", "must be a UUID"),
        (
            {"operations": [{"op": "create", "task": {"title": "x"}, "id": "x"}]},
            "#/operations/0/id",
            "is not allowed for create",
        ),
        (
            {"operations": [{"op": "update", "id": str(new_task_id())}]},
            "#/operations/0/changes",
            "is required",
        ),
    ],
)
def test_bulk_rejects_malformed_requests(
    any_client: FlaskClient, body: dict[str, Any], pointer: str, detail: str
) -> None:
    response = any_client.post(f"{TASKS}/bulk", json=body)
    assert response.status_code == 422
    assert response.json["type"] == "/problems/validation-error"
    assert {"pointer": pointer, "detail": detail} in response.json["errors"]
    assert any_client.get(TASKS).json["total"] == 0


def test_bulk_accepts_one_hundred_operations(client: FlaskClient) -> None:
    operations = [{"op": "create", "task": {"title": f"t{i}"}} for i in range(100)]
    response = client.post(f"{TASKS}/bulk", json={"operations": operations})
    assert response.status_code == 200
    assert client.get(TASKS).json["total"] == 100


# --- development seed --------------------------------------------------------------------------


def test_development_seeds_demo_tasks_and_testing_does_not() -> None:
    from tests.conftest import make_app

    assert make_app("development").test_client().get(TASKS).json["total"] == 5
    assert make_app("testing").test_client().get(TASKS).json["total"] == 0
    assert make_app("production").test_client().get(TASKS).json["total"] == 0


def test_no_content_has_no_body_type(client: FlaskClient) -> None:
    task = create(client)
    response = client.delete(f"{TASKS}/{task['id']}")
    assert response.status_code == 204
    assert "Content-Type" not in response.headers


def test_bulk_result_is_not_cacheable(client: FlaskClient) -> None:
    response = client.post(
        f"{TASKS}/bulk", json={"operations": [{"op": "create", "task": {"title": "x"}}]}
    )
    assert response.headers["Cache-Control"] == "no-store"
    assert "ETag" not in response.headers


@pytest.mark.parametrize("value", ["", " ", ",", " , "])
def test_an_if_match_that_names_no_etag_is_refused(any_client: FlaskClient, value: str) -> None:
    task = create(any_client)
    response = any_client.patch(
        f"{TASKS}/{task['id']}", json={"title": "x"}, headers={"If-Match": value}
    )
    assert response.status_code == 400
    assert "If-Match" in response.json["detail"]
    assert any_client.get(f"{TASKS}/{task['id']}").json["title"] == task["title"]


def test_bulk_if_match_that_names_no_etag_is_refused(client: FlaskClient) -> None:
    task = create(client)
    operations = [{"op": "delete", "id": task["id"], "if_match": ""}]
    response = client.post(f"{TASKS}/bulk", json={"operations": operations})
    assert response.status_code == 422
    assert response.json["errors"] == [
        {
            "pointer": "#/operations/0/if_match",
            "detail": "must be a quoted entity tag (from an ETag header) or *",
        }
    ]
    assert client.get(f"{TASKS}/{task['id']}").status_code == 200


def test_null_cannot_remove_required_fields_but_clears_optional_ones(
    any_client: FlaskClient,
) -> None:
    task = create(any_client, status="done", tags=["a"], description="d")
    url = f"{TASKS}/{task['id']}"
    refused = any_client.patch(url, json={"status": None, "priority": None})
    assert refused.status_code == 422
    assert refused.json["errors"] == [
        {"pointer": "#/priority", "detail": "cannot be null: it is required"},
        {"pointer": "#/status", "detail": "cannot be null: it is required"},
    ]
    cleared = any_client.patch(url, json={"tags": None, "description": None}).json
    assert (cleared["tags"], cleared["description"], cleared["status"]) == ([], None, "done")


@pytest.mark.parametrize(
    ("fields", "pointer"),
    [
        ({"title": "bad\u0000title"}, "#/title"),
        ({"title": "two\nlines"}, "#/title"),
        ({"description": "nul\u0000byte"}, "#/description"),
    ],
)
def test_control_characters_are_refused(
    any_client: FlaskClient, fields: dict[str, str], pointer: str
) -> None:
    response = any_client.post(TASKS, json={"title": "ok", **fields})
    assert response.status_code == 422
    assert [e["pointer"] for e in response.json["errors"]] == [pointer]


def test_descriptions_keep_tabs_and_line_breaks(client: FlaskClient) -> None:
    body = create(client, description="line one\n\tline two\r\n")
    assert body["description"] == "line one\n\tline two\r\n"


def test_a_huge_invalid_bulk_is_refused_quickly_with_a_bounded_answer(app: Flask) -> None:
    client = app.test_client()
    operations = [{"op": "create", "task": {"title": "t", "tags": [1] * 2500}} for _ in range(100)]
    reader_waited: list[float] = []

    def read() -> None:
        started = time.perf_counter()
        app.test_client().get(TASKS)
        reader_waited.append(time.perf_counter() - started)

    started = time.perf_counter()
    reader = threading.Thread(target=read)
    reader.start()
    response = client.post(f"{TASKS}/bulk", json={"operations": operations})
    reader.join()
    assert response.status_code == 422
    assert len(response.data) < 200_000
    assert time.perf_counter() - started < 2
    assert reader_waited[0] < 0.5  # validation never held the store
    first = response.json["errors"][0]
    assert first["errors"][0] == {
        "pointer": "#/operations/0/task/tags",
        "detail": "must have at most 20 items",
    }
    assert client.get(TASKS).json["total"] == 0


@pytest.mark.parametrize("env", ["development", "production"])
def test_a_304_from_the_real_dev_server_has_one_date_header(env: str) -> None:
    app = make_app(env)
    auth = app.extensions["test_owner"].headers  # a real server: no test client to add it
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=5)
        connection.request(
            "POST", TASKS, body=b'{"title": "dated"}', headers={**JSON_HEADERS, **auth}
        )
        created = connection.getresponse()
        created.read()
        assert created.status == 201
        location, etag = created.getheader("Location"), created.getheader("ETag")
        connection.request("GET", location, headers={"If-None-Match": etag, **auth})
        reply = connection.getresponse()
        reply.read()
        assert reply.status == 304
        assert len(reply.headers.get_all("Date")) == 1
        connection.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- who may ----------------------------------------------------------------------------------


def _every_operation(task_id: str) -> list[tuple[str, str, Any]]:
    return [
        ("GET", TASKS, None),
        ("GET", f"{TASKS}/{task_id}", None),
        ("POST", TASKS, {"title": "intruder"}),
        ("PUT", f"{TASKS}/{task_id}", {"title": "intruder"}),
        ("PATCH", f"{TASKS}/{task_id}", {"title": "intruder"}),
        ("DELETE", f"{TASKS}/{task_id}", None),
        ("POST", f"{TASKS}/bulk", {"operations": [{"op": "delete", "id": task_id}]}),
    ]


def test_every_operation_needs_credentials(app: Flask, client: FlaskClient) -> None:
    task = create(client, title="kept")
    anonymous = app.test_client(token="")
    for method, url, body in _every_operation(task["id"]):
        response = anonymous.open(url, method=method, json=body)
        assert response.status_code == 401, (method, url)
        assert response.json["type"] == "/problems/authentication-required"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get(TASKS).json["items"] == [task]


def test_a_viewer_reads_and_may_not_write(app: Flask, client: FlaskClient) -> None:
    task = create(client, title="kept")
    viewer = app.test_client(token=add_user(app, "viewer@example.com", role="viewer").token)
    assert viewer.get(TASKS).json["items"] == [task]
    assert viewer.get(f"{TASKS}/{task['id']}").json == task
    for method, url, body in _every_operation(task["id"])[2:]:
        response = viewer.open(url, method=method, json=body)
        assert response.status_code == 403, (method, url)
        assert response.json["type"] == "/problems/permission-denied"
    assert client.get(TASKS).json["items"] == [task]


def test_another_workspaces_member_gets_404_for_everything(app: Flask, client: FlaskClient) -> None:
    """API v1 serves the default workspace: to a member of another workspace (its owner, here)
    none of it is there, an existing task included."""
    task = create(client, title="kept")
    neighbour = add_user(app, "neighbour@example.com")
    stranger = app.test_client(token=neighbour.token)
    theirs = stranger.post("/api/v2/workspaces", json={"name": "theirs"}).json["id"]
    their_admin = add_member(app, theirs, "admin", "their-admin@example.com")
    for other in (stranger, app.test_client(token=their_admin.token)):
        for method, url, body in _every_operation(task["id"]):
            response = other.open(url, method=method, json=body)
            assert response.status_code == 404, (method, url)
            assert response.json["type"] == "/problems/workspace-not-found"
        missing = other.get(f"{TASKS}/{new_task_id()}")
        assert missing.json["type"] == "/problems/workspace-not-found"  # no hint it exists
    assert client.get(TASKS).json["items"] == [task]
