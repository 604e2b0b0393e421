"""The Postman collection generated from the spec: complete, importable, and its examples work."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.api.postman import POSTMAN_SCHEMA, app_spec, postman_collection

_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}

# The part of the Postman v2.1 collection schema an importer relies on (the full schema lives at
# POSTMAN_SCHEMA; the tests run offline).
_COLLECTION_SHAPE: dict[str, Any] = {
    "type": "object",
    "required": ["info", "item"],
    "properties": {
        "info": {
            "type": "object",
            "required": ["name", "schema"],
            "properties": {"name": {"type": "string"}, "schema": {"const": POSTMAN_SCHEMA}},
        },
        "variable": {"type": "array", "items": {"$ref": "#/definitions/keyValue"}},
        "item": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "item"],
                "properties": {"item": {"type": "array", "items": {"$ref": "#/definitions/item"}}},
            },
        },
    },
    "definitions": {
        "keyValue": {
            "type": "object",
            "required": ["key", "value"],
            "properties": {
                "key": {"type": "string"},
                "value": {"type": "string"},
                "disabled": {"type": "boolean"},
                "description": {"type": "string"},
            },
        },
        "item": {
            "type": "object",
            "required": ["name", "request", "response"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "response": {"type": "array"},
                "request": {
                    "type": "object",
                    "required": ["method", "url", "header"],
                    "properties": {
                        "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
                        "header": {"type": "array", "items": {"$ref": "#/definitions/keyValue"}},
                        "url": {
                            "type": "object",
                            "required": ["raw", "host", "path"],
                            "properties": {
                                "raw": {"type": "string", "pattern": "^\\{\\{baseUrl\\}\\}/"},
                                "host": {"const": ["{{baseUrl}}"]},
                                "path": {"type": "array", "items": {"type": "string"}},
                                "query": {
                                    "type": "array",
                                    "items": {"$ref": "#/definitions/keyValue"},
                                },
                                "variable": {
                                    "type": "array",
                                    "items": {"$ref": "#/definitions/keyValue"},
                                },
                            },
                        },
                        "body": {
                            "type": "object",
                            "required": ["mode", "raw"],
                            "properties": {"mode": {"const": "raw"}, "raw": {"type": "string"}},
                        },
                    },
                },
            },
        },
    },
}


@pytest.fixture
def spec(app: Flask) -> dict[str, Any]:
    return app_spec(app)


@pytest.fixture
def collection(spec: dict[str, Any]) -> dict[str, Any]:
    return postman_collection(spec, "http://127.0.0.1:5000")


def requests_of(collection: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every request of the collection by name (names are operation ids, so unique)."""
    items = [item for folder in collection["item"] for item in folder["item"]]
    named = {item["name"]: item["request"] for item in items}
    assert len(named) == len(items), "request names are unique"
    return named


def swagger_path(request: dict[str, Any]) -> str:
    """``/api/v1/tasks/:task_id`` back to the spec's ``/api/v1/tasks/{task_id}``."""
    segments = request["url"]["path"]
    return "/" + "/".join(f"{{{s[1:]}}}" if s.startswith(":") else s for s in segments)


def test_app_spec_is_what_swagger_json_serves(client: FlaskClient, spec: dict[str, Any]) -> None:
    assert client.get("/swagger.json").json == spec


def test_collection_is_postman_v2_1(collection: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(_COLLECTION_SHAPE).validate(collection)
    assert collection["info"]["schema"] == POSTMAN_SCHEMA
    assert collection["info"]["name"] == "Task Management API"
    assert collection["info"]["description"]
    assert collection["variable"] == [
        {"key": "baseUrl", "value": "http://127.0.0.1:5000", "type": "string"}
    ]


def test_every_operation_appears_exactly_once(
    spec: dict[str, Any], collection: dict[str, Any]
) -> None:
    in_spec = Counter(
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in _METHODS
    )
    in_collection = Counter(
        (request["method"], swagger_path(request)) for request in requests_of(collection).values()
    )
    assert in_collection == in_spec
    assert max(in_collection.values()) == 1


def test_one_folder_per_tag_holding_its_operations(
    spec: dict[str, Any], collection: dict[str, Any]
) -> None:
    assert [folder["name"] for folder in collection["item"]] == [t["name"] for t in spec["tags"]]
    for folder in collection["item"]:
        for item in folder["item"]:
            path = spec["paths"][swagger_path(item["request"])]
            assert path[item["request"]["method"].lower()]["tags"] == [folder["name"]]


def test_path_parameters_become_postman_variables(collection: dict[str, Any]) -> None:
    get_task = requests_of(collection)["get_task"]
    assert get_task["url"]["raw"] == "{{baseUrl}}/api/v1/tasks/:task_id"
    assert get_task["url"]["path"] == ["api", "v1", "tasks", ":task_id"]
    assert get_task["url"]["variable"] == [
        {
            "key": "task_id",
            "value": "01a19b7d-90e0-7ced-8f5b-e2db23a6513e",
            "description": "The task id (a UUID)",
        }
    ]


def test_list_query_parameters_are_offered_disabled(collection: dict[str, Any]) -> None:
    query = {q["key"]: q for q in requests_of(collection)["list_tasks"]["url"]["query"]}
    assert list(query) == [
        "page",
        "per_page",
        "status",
        "priority",
        "tag",
        "due_after",
        "due_before",
        "q",
        "sort",
    ]
    assert all(q["disabled"] for q in query.values())
    assert query["per_page"]["value"] == "20"
    assert query["sort"]["value"] == "-created_at"
    assert query["status"]["value"] == "todo"
    assert query["status"]["description"]


def test_documented_header_parameters_are_offered_disabled(
    spec: dict[str, Any], collection: dict[str, Any]
) -> None:
    """If-Match (and any other header the spec documents) is there to tick, not sent blindly."""
    requests = requests_of(collection)
    documented = 0
    for operations in spec["paths"].values():
        for method, operation in operations.items():
            if method not in _METHODS:
                continue
            headers = {h["key"]: h for h in requests[operation["operationId"]]["header"]}
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "header":
                    documented += 1
                    required = parameter.get("required", False)
                    assert headers[parameter["name"]]["disabled"] == (not required)
    assert documented >= 1
    assert "If-Match" in {h["key"] for h in requests["patch_task"]["header"]}


def test_write_bodies_are_json_with_a_content_type(collection: dict[str, Any]) -> None:
    with_body = [r for r in requests_of(collection).values() if r["method"] in {"POST", "PUT"}]
    with_body += [r for r in requests_of(collection).values() if r["method"] == "PATCH"]
    assert with_body
    for request in with_body:
        assert isinstance(json.loads(request["body"]["raw"]), dict)
        assert {"key": "Content-Type", "value": "application/json", "type": "text"} in request[
            "header"
        ]


def test_create_example_body_is_accepted(client: FlaskClient, collection: dict[str, Any]) -> None:
    body = json.loads(requests_of(collection)["create_task"]["body"]["raw"])
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 201, response.json
    assert response.json["title"] == body["title"]


def send(client: FlaskClient, request: dict[str, Any], variables: dict[str, str]) -> Any:
    """Send a collection request the way Postman would, with some path variables overridden."""
    defaults = {v["key"]: v["value"] for v in request["url"].get("variable", [])}
    values = {**defaults, **variables}
    path = "/" + "/".join(values[s[1:]] if s.startswith(":") else s for s in request["url"]["path"])
    query = [(q["key"], q["value"]) for q in request["url"].get("query", []) if not q["disabled"]]
    headers = {h["key"]: h["value"] for h in request["header"] if not h.get("disabled")}
    return client.open(
        path,
        method=request["method"],
        query_string=query,
        headers=headers,
        data=request.get("body", {}).get("raw"),
    )


def test_every_request_succeeds_against_the_app(
    client: FlaskClient, collection: dict[str, Any]
) -> None:
    """Run the whole collection (like Newman would), pointing :task_id at a created task."""
    requests = requests_of(collection)
    created = send(client, requests.pop("create_task"), {})
    assert created.status_code == 201
    delete = requests.pop("delete_task")
    variables = {"task_id": created.json["id"]}
    for name, request in requests.items():
        response = send(client, request, variables)
        assert 200 <= response.status_code < 300, (name, response.status_code, response.json)
    assert send(client, delete, variables).status_code == 204


def test_a_synthetic_spec_covers_headers_refs_and_required_query() -> None:
    spec: dict[str, Any] = {
        "swagger": "2.0",
        "basePath": "/v2",
        "info": {"title": "Demo", "version": "9"},
        "tags": [{"name": "things", "description": "Things"}, {"name": "unused"}],
        "definitions": {
            "Thing": {
                "required": ["name", "size"],
                "properties": {
                    "id": {"type": "string", "readOnly": True, "example": "x"},
                    "name": {"type": "string", "example": "box"},
                    "size": {"type": "integer", "minimum": 1},
                    "note": {"type": "string"},  # optional, no example: left out
                    "labels": {"type": "array", "items": {"type": "string", "example": "red"}},
                    "parent": {"$ref": "#/definitions/Thing"},  # recursive
                },
            }
        },
        "paths": {
            "/things/{thing_id}": {
                "parameters": [
                    {"name": "thing_id", "in": "path", "required": True, "type": "string"}
                ],
                "put": {
                    "operationId": "put_thing",
                    "summary": "Replace a thing",
                    "tags": ["things"],
                    "consumes": ["application/merge-patch+json"],
                    "parameters": [
                        {"name": "thing_id", "in": "path", "type": "string", "x-example": "t1"},
                        {"name": "If-Match", "in": "header", "type": "string", "description": "E"},
                        {"name": "dry", "in": "query", "type": "boolean", "required": True},
                        {
                            "name": "payload",
                            "in": "body",
                            "schema": {"$ref": "#/definitions/Thing"},
                        },
                    ],
                },
            }
        },
    }
    collection = postman_collection(spec, "http://localhost:9/")
    assert collection["variable"][0]["value"] == "http://localhost:9"
    assert [folder["name"] for folder in collection["item"]] == ["things"]
    (item,) = collection["item"][0]["item"]
    assert item["name"] == "Replace a thing"
    request = item["request"]
    assert request["url"]["raw"] == "{{baseUrl}}/v2/things/:thing_id?dry=false"
    assert request["url"]["variable"] == [{"key": "thing_id", "value": "t1"}]
    assert request["url"]["query"] == [{"key": "dry", "value": "false", "disabled": False}]
    assert request["header"] == [
        {"key": "Content-Type", "value": "application/merge-patch+json", "type": "text"},
        {"key": "If-Match", "value": "", "disabled": True, "description": "E", "type": "text"},
    ]
    assert json.loads(request["body"]["raw"]) == {
        "name": "box",
        "size": 1,
        "labels": ["red"],
    }  # "parent" would recurse into Thing again, and it is optional: left out


def test_placeholders_for_parameters_without_examples() -> None:
    kinds: list[dict[str, Any]] = [
        {"name": "n", "type": "integer"},
        {"name": "low", "type": "integer", "minimum": 5},
        {"name": "ratio", "type": "number"},
        {"name": "flag", "type": "boolean"},
        {"name": "when", "type": "string", "format": "date-time"},
        {"name": "text", "type": "string"},
        {"name": "colour", "type": "string", "enum": ["red", "blue"]},
        {"name": "many", "type": "array", "items": {"type": "integer", "default": 3}},
        {"name": "none", "type": "array"},
        {"name": "odd", "type": "file"},
    ]
    spec = {
        "info": {"title": "Kinds"},
        "paths": {
            "/k": {
                "get": {
                    "operationId": "kinds",
                    "parameters": [{"in": "query", **kind} for kind in kinds],
                },
                "post": {
                    "parameters": [
                        {
                            "name": "payload",
                            "in": "body",
                            "schema": {
                                "allOf": [
                                    {"properties": {"a": {"type": "string", "example": "x"}}},
                                    {"$ref": "#/definitions/Missing"},
                                ]
                            },
                        }
                    ]
                },
            }
        },
    }
    collection = postman_collection(spec)
    (folder,) = collection["item"]
    assert folder["name"] == "default"  # operations without a tag
    get, post = folder["item"]
    values = {q["key"]: q["value"] for q in get["request"]["url"]["query"]}
    assert values == {
        "n": "0",
        "low": "5",
        "ratio": "0.0",
        "flag": "false",
        "when": "2026-01-01T00:00:00Z",
        "text": "",
        "colour": "red",
        "many": "3",
        "none": "",
        "odd": "",
    }
    assert post["name"] == "POST /k"  # no summary, no operationId
    assert json.loads(post["request"]["body"]["raw"]) == {"a": "x"}


def test_cli_writes_the_collection_to_a_file(app: Flask, tmp_path: Path) -> None:
    target = tmp_path / "collection.json"
    result = app.test_cli_runner().invoke(
        args=["export-postman", "-o", str(target), "--base-url", "http://api.test:8000/"]
    )
    assert result.exit_code == 0, result.output
    written = json.loads(target.read_text(encoding="utf-8"))
    assert written["info"]["schema"] == POSTMAN_SCHEMA
    assert written["variable"][0] == {
        "key": "baseUrl",
        "value": "http://api.test:8000",
        "type": "string",
    }
    assert written == postman_collection(app_spec(app), "http://api.test:8000")
    assert result.stdout == ""
    assert result.stderr.startswith("Wrote ")  # the summary goes to stderr


def test_cli_prints_to_stdout_by_default(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["export-postman"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["info"]["schema"] == POSTMAN_SCHEMA
    assert printed["variable"][0]["value"] == "http://127.0.0.1:5000"


def test_cli_reports_a_spec_that_cannot_be_built(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(app.extensions, "api", SimpleNamespace(__schema__={"error": "boom"}))
    result = app.test_cli_runner().invoke(args=["export-postman"])
    assert result.exit_code == 1
    assert "the API spec could not be built: boom" in result.output
