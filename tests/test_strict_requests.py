"""One rule everywhere: unknown query parameters are a 400, bodies are read only as their media
type says (a JSON Patch is not a merge patch), in testing and production alike."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient

from app.tasks.schemas import EXAMPLE_TASK_ID
from tests.test_errors import assert_problem

TASK = f"/api/v1/tasks/{EXAMPLE_TASK_ID}"


@pytest.fixture
def task_url(any_client: FlaskClient) -> str:
    created = any_client.post("/api/v1/tasks", json={"title": "strict"})
    return created.headers["Location"]


OPERATIONS = [
    ("GET", "/api/v1/hello"),
    ("POST", "/api/v1/hello"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/problems"),
    ("GET", "/problems/validation-error"),
    ("POST", "/api/v1/tasks"),
    ("POST", "/api/v1/tasks/bulk"),
    ("GET", "{task}"),
    ("HEAD", "{task}"),
    ("PUT", "{task}"),
    ("PATCH", "{task}"),
    ("DELETE", "{task}"),
]


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_an_unknown_query_parameter_is_400_on_every_operation(
    any_client: FlaskClient, task_url: str, method: str, path: str
) -> None:
    url = path.format(task=task_url) + "?verbose=1&pretty"
    response = any_client.open(url, method=method, json={"title": "x", "name": "x"})
    assert response.status_code == 400
    if method == "HEAD":
        return
    body = assert_problem(response, 400)
    assert body["errors"] == [
        {"parameter": "pretty", "detail": "is not a known parameter"},
        {"parameter": "verbose", "detail": "is not a known parameter"},
    ]
    # Nothing was written: the task is still as created.
    assert any_client.get(task_url).json["title"] == "strict"


def test_a_long_unknown_parameter_name_is_shortened(any_client: FlaskClient) -> None:
    response = any_client.get(f"{TASK}?{'p' * 3000}=1")
    body = assert_problem(response, 400)
    assert body["errors"][0]["parameter"].endswith("...")
    assert len(response.data) < 1000


def test_list_parameters_are_still_accepted(any_client: FlaskClient) -> None:
    response = any_client.get("/api/v1/tasks?page=1&per_page=5&status=todo&sort=-due_date")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "content_type"),
    [
        ("PATCH", "application/json-patch+json"),
        ("PATCH", "application/vnd.example+json"),
        ("PATCH", "text/plain"),
        ("PUT", "application/merge-patch+json"),
        ("PUT", "application/json-patch+json"),
        ("POST", "application/json-patch+json"),
    ],
)
def test_bodies_of_other_media_types_are_415(
    any_client: FlaskClient, task_url: str, method: str, content_type: str
) -> None:
    data = json.dumps([{"op": "replace", "path": "/title", "value": "patched"}])
    if method != "PATCH" or content_type != "application/json-patch+json":
        data = json.dumps({"title": "patched"})
    url = "/api/v1/tasks" if method == "POST" else task_url
    response = any_client.open(url, method=method, data=data, content_type=content_type)
    body = assert_problem(response, 415)
    assert "application/json" in body["detail"]
    assert any_client.get(task_url).json["title"] == "strict"


@pytest.mark.parametrize(
    "content_type",
    ["application/merge-patch+json", "application/json", "application/json; charset=utf-8"],
)
def test_patch_accepts_merge_patch_and_plain_json(
    any_client: FlaskClient, task_url: str, content_type: str
) -> None:
    response = any_client.patch(
        task_url, data=json.dumps({"title": "patched"}), content_type=content_type
    )
    assert response.status_code == 200
    assert response.json["title"] == "patched"


def test_the_spec_lists_what_patch_consumes(any_client: FlaskClient) -> None:
    spec = any_client.get("/swagger.json").json
    patch = spec["paths"]["/api/v1/tasks/{task_id}"]["patch"]
    assert patch["consumes"] == ["application/merge-patch+json", "application/json"]
