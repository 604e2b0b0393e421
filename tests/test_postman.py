"""The Postman collection generated from the spec: complete, importable, and its examples work."""

from __future__ import annotations

import io
import json
import re
import secrets
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.api.postman import (
    POSTMAN_SCHEMA,
    SETUP_PREFIX,
    TEARDOWN_PREFIX,
    WORKFLOW_FOLDER,
    Expect,
    Guard,
    Save,
    Step,
    Var,
    app_spec,
    collection_plan,
    postman_collection,
    postman_guard_script,
    postman_test_script,
)
from app.backups.schemas import EXAMPLE_BACKUP_ID
from app.tasks.schemas import EXAMPLE_TASK_ID
from app.workspaces.models import DEFAULT_WORKSPACE_ID
from tests.conftest import make_app

_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}
DEFAULT_WORKSPACE = str(DEFAULT_WORKSPACE_ID)
V2_TASKS = f"/api/v2/workspaces/{DEFAULT_WORKSPACE}/tasks"

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
            "required": ["name", "request", "response", "event"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "event": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["listen", "script"],
                        "properties": {
                            "listen": {"enum": ["test", "prerequest"]},
                            "script": {
                                "type": "object",
                                "required": ["exec"],
                                "properties": {
                                    "type": {"const": "text/javascript"},
                                    "exec": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
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
                            "oneOf": [
                                {
                                    "type": "object",
                                    "required": ["mode", "raw"],
                                    "properties": {
                                        "mode": {"const": "raw"},
                                        "raw": {"type": "string"},
                                    },
                                },
                                {
                                    "type": "object",
                                    "required": ["mode", "formdata"],
                                    "properties": {
                                        "mode": {"const": "formdata"},
                                        "formdata": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "required": ["key", "type"],
                                                "properties": {
                                                    "type": {"enum": ["text", "file"]},
                                                    "src": {"type": ["string", "array", "null"]},
                                                },
                                            },
                                        },
                                    },
                                },
                            ]
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


def items_of(collection: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for folder in collection["item"] for item in folder["item"]]


def is_fixture(item: dict[str, Any]) -> bool:
    """A folder's setup or teardown request (an operation of another tag, repeated)."""
    return item["name"].startswith((SETUP_PREFIX, TEARDOWN_PREFIX))


def folder_of(collection: dict[str, Any], name: str) -> list[dict[str, Any]]:
    (folder,) = [f for f in collection["item"] if f["name"] == name]
    return folder["item"]


def requests_of(collection: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One request per operation by name (names are operation ids, so unique): the tag folders,
    without their setup and teardown requests."""
    items = [
        item
        for folder in collection["item"]
        if folder["name"] != WORKFLOW_FOLDER
        for item in folder["item"]
        if not is_fixture(item)
    ]
    named = {item["name"]: item["request"] for item in items}
    assert len(named) == len(items), "request names are unique"
    return named


def items_by_name(collection: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tag folders' items (no setup or teardown) by name."""
    return {
        item["name"]: item
        for folder in collection["item"][1:]
        for item in folder["item"]
        if not is_fixture(item)
    }


def workflow_of(collection: dict[str, Any]) -> list[dict[str, Any]]:
    return folder_of(collection, WORKFLOW_FOLDER)


def script_of(item: dict[str, Any], listen: str = "test") -> str:
    """The item's test script (or its pre-request script: "" when it has none)."""
    scripts = [e["script"]["exec"] for e in item["event"] if e["listen"] == listen]
    assert [e["listen"] for e in item["event"]] in (["test"], ["prerequest", "test"])
    return "\n".join(scripts[0]) if scripts else ""


def swagger_path(request: dict[str, Any]) -> str:
    """``/api/v1/tasks/:task_id`` back to the spec's ``/api/v1/tasks/{task_id}``."""
    segments = request["url"]["path"]
    return "/" + "/".join(f"{{{s[1:]}}}" if s.startswith(":") else s for s in segments)


def operation_of(spec: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    return spec["paths"][swagger_path(request)][request["method"].lower()]


def secured(item: dict[str, Any]) -> bool:
    return any(h["key"] == "Authorization" for h in item["request"]["header"])


def test_app_spec_is_what_swagger_json_serves(client: FlaskClient, spec: dict[str, Any]) -> None:
    assert client.get("/swagger.json").json == spec


def test_collection_is_postman_v2_1(collection: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(_COLLECTION_SHAPE).validate(collection)
    assert collection["info"]["schema"] == POSTMAN_SCHEMA
    assert collection["info"]["name"] == "Task Management API"
    assert collection["info"]["description"]
    variables = [
        {k: v for k, v in var.items() if k != "description"} for var in collection["variable"]
    ]
    assert variables == [
        {"key": "baseUrl", "value": "http://127.0.0.1:5000", "type": "string"},
        {"key": "admin_token", "value": "", "type": "string"},
        {"key": "allow_restore", "value": "", "type": "string"},
        {"key": "v1_task_id", "value": EXAMPLE_TASK_ID, "type": "string"},
        {"key": "backup_id", "value": EXAMPLE_BACKUP_ID, "type": "string"},
        {"key": "workspace_id", "value": DEFAULT_WORKSPACE, "type": "string"},
        {"key": "task_id", "value": EXAMPLE_TASK_ID, "type": "string"},
        {"key": "workflow_workspace_id", "value": "", "type": "string"},
        {"key": "workflow_task_id", "value": "", "type": "string"},
        {"key": "workflow_task_etag", "value": "", "type": "string"},
        {"key": "workflow_task_etag_patched", "value": "", "type": "string"},
        {"key": "workflow_backup_id", "value": "", "type": "string"},
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


def test_the_workflow_folder_then_one_folder_per_tag(
    spec: dict[str, Any], collection: dict[str, Any]
) -> None:
    names = [folder["name"] for folder in collection["item"]]
    assert names == [WORKFLOW_FOLDER] + [t["name"] for t in spec["tags"]]
    for folder in collection["item"][1:]:
        for item in folder["item"]:
            if not is_fixture(item):
                assert operation_of(spec, item["request"])["tags"] == [folder["name"]]


def test_deletes_run_last_in_their_folder(collection: dict[str, Any]) -> None:
    for folder, create, delete in [
        ("workspaces", "create_workspace", "delete_workspace"),
        ("tasks", "create_task", "delete_task"),
        ("tasks (v1)", "v1_create_task", "v1_delete_task"),
    ]:
        names = [item["name"] for item in folder_of(collection, folder) if not is_fixture(item)]
        assert names.index(create) < names.index(delete.replace("delete", "get"))
        assert names[-1] == delete


def test_a_folder_under_a_resource_it_does_not_create_makes_its_own(
    collection: dict[str, Any],
) -> None:
    """The v2 tasks live in a workspace: their folder creates one first (so it runs alone, and on
    no seeded data) and deletes it last, with what the folder created in it (bulk_tasks too)."""
    tasks = folder_of(collection, "tasks")
    assert [item["name"] for item in tasks if is_fixture(item)] == [
        "setup: create_workspace",
        "teardown: delete_workspace",
    ]
    setup, teardown = tasks[0], tasks[-1]
    assert (setup["request"]["method"], swagger_path(setup["request"])) == (
        "POST",
        "/api/v2/workspaces",
    )
    assert 'pm.collectionVariables.set("workspace_id", pm.response.json()["id"]);' in script_of(
        setup
    )
    assert teardown["request"] == requests_of(collection)["delete_workspace"]
    assert f'pm.collectionVariables.set("workspace_id", "{DEFAULT_WORKSPACE}");' in script_of(
        teardown
    )
    # The folders that create what they work on, or work on nothing chained, are left alone.
    for name in ("workspaces", "tasks (v1)", "hello", "health", "problems"):
        assert not any(is_fixture(item) for item in folder_of(collection, name)), name


def test_path_parameters_become_postman_variables(collection: dict[str, Any]) -> None:
    get_task = requests_of(collection)["get_task"]
    assert get_task["url"]["raw"] == "{{baseUrl}}/api/v2/workspaces/:workspace_id/tasks/:task_id"
    assert get_task["url"]["path"] == [
        "api",
        "v2",
        "workspaces",
        ":workspace_id",
        "tasks",
        ":task_id",
    ]
    # A created resource's id is chained through a collection variable (see the next tests),
    # in every request under it: the task's and its workspace's ...
    assert get_task["url"]["variable"] == [
        {"key": "task_id", "value": "{{task_id}}", "description": "The task id (a UUID)"},
        {
            "key": "workspace_id",
            "value": "{{workspace_id}}",
            "description": "The workspace id (a UUID)",
        },
    ]
    for name in ("list_tasks", "create_task", "bulk_tasks", "get_workspace", "delete_workspace"):
        variables = requests_of(collection)[name]["url"]["variable"]
        assert [(v["key"], v["value"]) for v in variables] == [("workspace_id", "{{workspace_id}}")]
    # ... API v1 has the same path parameter on another resource: a variable of its own ...
    assert requests_of(collection)["v1_get_task"]["url"]["variable"] == [
        {"key": "task_id", "value": "{{v1_task_id}}", "description": "The task id (a UUID)"}
    ]
    # ... other path parameters keep the spec's example.
    get_problem_type = requests_of(collection)["get_problem_type"]
    assert get_problem_type["url"]["variable"][0]["value"] == "validation-error"


def test_the_example_task_id_finds_a_seeded_task(collection: dict[str, Any]) -> None:
    """Before any run, {{task_id}} and {{v1_task_id}} are the spec's example: a demo task of
    ./scripts/run, in {{workspace_id}}, the default workspace; so requests sent by hand work."""
    variables = {v["key"]: v["value"] for v in collection["variable"]}
    assert variables["task_id"] == variables["v1_task_id"] == EXAMPLE_TASK_ID
    assert variables["workspace_id"] == DEFAULT_WORKSPACE
    client = make_app("development", LOG_LEVEL="WARNING").test_client()
    for name in ("get_task", "replace_task", "patch_task", "get_workspace", "list_tasks"):
        for prefix in ("", "v1_") if "task" in name else ("",):
            response = send(client, requests_of(collection)[prefix + name], variables)
            assert response.status_code == 200, (prefix + name, response.json)


def test_create_stores_the_id_and_delete_restores_the_example(collection: dict[str, Any]) -> None:
    by_name = {item["name"]: item for f in collection["item"][1:] for item in f["item"]}
    for variable, create, delete, example in [
        ("workspace_id", "create_workspace", "delete_workspace", DEFAULT_WORKSPACE),
        ("task_id", "create_task", "delete_task", EXAMPLE_TASK_ID),
        ("v1_task_id", "v1_create_task", "v1_delete_task", EXAMPLE_TASK_ID),
    ]:
        stored = f'pm.collectionVariables.set("{variable}", pm.response.json()["id"]);'
        assert stored in script_of(by_name[create])
        restored = f'pm.collectionVariables.set("{variable}", "{example}");'
        assert restored in script_of(by_name[delete])


def test_deletes_never_target_what_the_run_did_not_create(collection: dict[str, Any]) -> None:
    """A pre-request script skips a DELETE while its variable is empty or the example: sent by
    hand before a create, delete_workspace would otherwise delete the default workspace."""
    deletes = [
        i for f in collection["item"] for i in f["item"] if i["request"]["method"] == "DELETE"
    ]
    assert {i["name"] for i in deletes} >= {"delete_workspace", "delete_task", "v1_delete_task"}
    for item in deletes:
        assert "pm.execution.skipRequest();" in script_of(item, "prerequest"), item["name"]
    guard = script_of(items_by_name(collection)["delete_workspace"], "prerequest")
    refused = f'["", "{DEFAULT_WORKSPACE}"].includes((pm.variables.get("workspace_id") || ""))'
    assert f"if (!skip && {refused}) {{" in guard
    for item in items_of(collection):
        secured = any(h["key"] == "Authorization" for h in item["request"]["header"])
        if item["request"]["method"] != "DELETE" and not secured:
            assert script_of(item, "prerequest") == "", item["name"]

    client = make_app("development", LOG_LEVEL="WARNING").test_client()
    variables = {v["key"]: v["value"] for v in collection["variable"]}
    plan = {
        s.name: s for f in collection_plan(app_spec(client.application)).folders for s in f.steps
    }
    for name in ("delete_workspace", "delete_task", "v1_delete_task"):
        assert skipped(plan[name], variables), name
    assert client.get(f"/api/v2/workspaces/{DEFAULT_WORKSPACE}").status_code == 200
    assert not skipped(plan["delete_workspace"], {**variables, "workspace_id": "x"})
    # A secured DELETE needs both: the token, and an id this run created.
    token = {**variables, "admin_token": "t"}
    assert skipped(plan["delete_backup"], {**variables, "backup_id": "x"})
    assert skipped(plan["delete_backup"], token)
    assert not skipped(plan["delete_backup"], {**token, "backup_id": "x"})


def test_every_request_has_a_test_script_asserting_its_status(
    spec: dict[str, Any], collection: dict[str, Any]
) -> None:
    for item in items_of(collection):
        script = script_of(item)
        assert re.search(r"pm\.response\.to\.have\.status\((\d{3})\)", script), item["name"]
    for item in collection["item"][1:]:
        for request in item["item"]:
            responses = operation_of(spec, request["request"])["responses"]
            success = min(code for code in responses if code.startswith("2"))
            assert f"pm.response.to.have.status({success});" in script_of(request)


def test_deprecated_operations_assert_the_deprecation_header(
    spec: dict[str, Any], collection: dict[str, Any]
) -> None:
    deprecated = 0
    for item in items_of(collection):
        operation = operation_of(spec, item["request"])
        asserted = 'pm.response.to.have.header("Deprecation");' in script_of(item)
        assert asserted == bool(operation.get("deprecated")), item["name"]
        deprecated += asserted
    assert deprecated == 9  # hello (v1) and tasks (v1)


def test_the_workflow_chains_collection_variables(collection: dict[str, Any]) -> None:
    """Through API v2: create a workspace; in it, create a task, get, 304, patch with If-Match,
    stale patch 412, delete, 404; delete the workspace, 404. Every {{variable}} a step uses was
    set by an earlier step's script (or is a declared collection variable)."""
    steps = workflow_of(collection)
    task = "/api/v2/workspaces/{workspace_id}/tasks/{task_id}"
    workspace = "/api/v2/workspaces/{workspace_id}"
    backup = "/api/v2/admin/backups/{backup_id}"
    assert [(step["request"]["method"], swagger_path(step["request"])) for step in steps] == [
        ("POST", "/api/v2/workspaces"),
        ("POST", "/api/v2/workspaces/{workspace_id}/tasks"),
        *[(m, task) for m in ("GET", "GET", "PATCH", "PATCH")],
        ("GET", f"{task}/history"),  # the item's other reads, before the delete
        *[(m, task) for m in ("DELETE", "GET")],
        *[("GET", f"{workspace}/{read}") for read in ("audit", "audit/verify", "export")],
        *[(m, workspace) for m in ("DELETE", "GET")],
        # Secured: last, so without admin_token the rest of the story still runs.
        ("POST", "/api/v2/admin/backups"),
        *[("GET", path) for path in (backup, f"{backup}/download")],
        *[(m, backup) for m in ("DELETE", "GET")],
    ]
    statuses = [int(re.search(r"to\.have\.status\((\d+)\)", script_of(step))[1]) for step in steps]
    assert statuses[:14] == [201, 201, 200, 304, 200, 412, 200, 204, 404, *[200] * 3, 204, 404]
    assert statuses[14:] == [201, 200, 200, 204, 404]
    for step in steps[1:14]:  # all in the workspace the first step created
        variables = {v["key"]: v["value"] for v in step["request"]["url"].get("variable", [])}
        assert variables["workspace_id"] == "{{workflow_workspace_id}}"
        assert variables.get("task_id", "{{workflow_task_id}}") == "{{workflow_task_id}}"
    declared = {v["key"] for v in collection["variable"]}
    set_so_far: set[str] = {"baseUrl", "admin_token"}  # what the user sets
    for step in steps:
        used = set(_VARIABLE.findall(json.dumps(step["request"])))
        assert used <= set_so_far, (step["name"], used - set_so_far)
        set_so_far |= set(re.findall(r'pm\.collectionVariables\.set\("([^"]+)"', script_of(step)))
    assert set_so_far - {"baseUrl"} <= declared
    headers = [
        {h["key"]: h["value"] for h in s["request"]["header"] if not h.get("disabled")}
        for s in steps
    ]
    assert headers[3]["If-None-Match"] == "{{workflow_task_etag}}"
    assert headers[4]["If-Match"] == "{{workflow_task_etag}}"
    assert headers[5]["If-Match"] == "{{workflow_task_etag}}"  # stale by then
    assert headers[7]["If-Match"] == "{{workflow_task_etag_patched}}"
    assert "If-Match" not in headers[13]
    for header, step in zip(headers, steps, strict=True):
        raw = step["request"]["url"]["raw"]
        admin = "/admin/" in raw or raw.endswith(("/export", "/audit/verify"))
        assert header.get("Authorization") == ("Bearer {{admin_token}}" if admin else None)
    assert json.loads(steps[4]["request"]["body"]["raw"]) == {"title": "Write chapter 2 (changed)"}


def test_no_request_sends_an_undocumented_parameter(
    spec: dict[str, Any], collection: dict[str, Any]
) -> None:
    """Unknown query parameters are rejected (400): only documented ones may be enabled."""
    for item in items_of(collection):
        request = item["request"]
        documented = {
            (p["in"], p["name"].lower())
            for p in operation_of(spec, request).get("parameters", [])
            + spec["paths"][swagger_path(request)].get("parameters", [])
        }
        for query in request["url"].get("query", []):
            assert ("query", query["key"].lower()) in documented
            assert query["disabled"] or query["key"] in request["url"]["raw"]
        if operation_of(spec, request).get("security"):
            documented.add(("header", "authorization"))  # the admin_token apiKey scheme
        for header in request["header"]:
            if header["key"] != "Content-Type" and not header.get("disabled"):
                assert ("header", header["key"].lower()) in documented, (item["name"], header)


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


def test_write_bodies_are_json_with_the_documented_content_type(
    spec: dict[str, Any], collection: dict[str, Any]
) -> None:
    raw = [r for r in requests_of(collection).values() if r.get("body", {}).get("mode") == "raw"]
    assert {r["method"] for r in raw} == {"POST", "PUT", "PATCH"}
    for request in raw:
        assert isinstance(json.loads(request["body"]["raw"]), dict)
        consumes = operation_of(spec, request).get("consumes") or spec.get("consumes")
        media_type = (consumes or ["application/json"])[0]
        assert {"key": "Content-Type", "value": media_type, "type": "text"} in request["header"]
    for request in requests_of(collection).values():  # a body exactly where the spec has one
        parameters = operation_of(spec, request).get("parameters", [])
        assert ("body" in request) == any(p["in"] in ("body", "formData") for p in parameters)


def test_an_upload_is_a_form_with_its_file_left_to_choose(collection: dict[str, Any]) -> None:
    """Postman cannot make an export archive: the import's file field is empty (choose one in
    the Body tab) and the request is skipped until one is chosen; multipart is Postman's to set."""
    item = items_by_name(collection)["import_workspace"]
    assert item["request"]["body"]["mode"] == "formdata"
    (field,) = item["request"]["body"]["formdata"]
    assert (field["key"], field["type"], field["src"]) == ("archive", "file", [])
    assert "Content-Type" not in {h["key"] for h in item["request"]["header"]}
    guard = script_of(item, "prerequest")
    assert 'var file = form && form.one("archive");' in guard
    assert "if (!skip && !(file && file.src && file.src.length)) {" in guard


def test_create_example_body_is_accepted(client: FlaskClient, collection: dict[str, Any]) -> None:
    body = json.loads(requests_of(collection)["create_task"]["body"]["raw"])
    response = client.post(V2_TASKS, json=body)
    assert response.status_code == 201, response.json
    assert response.json["title"] == body["title"]


# --- replaying the collection in-process, as Newman would ---------------------------------------

_VARIABLE = re.compile(r"\{\{([^{}]+)\}\}")


def resolve(text: str, variables: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: variables[m[1]], text)


def send(
    client: FlaskClient,
    request: dict[str, Any],
    variables: dict[str, str],
    files: Mapping[str, bytes] | None = None,
) -> Any:
    """Send a collection request the way Postman would, resolving {{variables}}; ``files``: the
    contents of the form's file fields (what someone would choose in Postman's Body tab)."""
    values = {v["key"]: resolve(v["value"], variables) for v in request["url"].get("variable", [])}
    path = "/" + "/".join(values[s[1:]] if s.startswith(":") else s for s in request["url"]["path"])
    query = [
        (q["key"], resolve(q["value"], variables))
        for q in request["url"].get("query", [])
        if not q["disabled"]
    ]
    headers = [
        (h["key"], resolve(h["value"], variables))
        for h in request["header"]
        if not h.get("disabled")
    ]
    body = request.get("body", {})
    data: Any = None if "raw" not in body else resolve(body["raw"], variables)
    if body.get("mode") == "formdata":
        data = {
            f["key"]: (io.BytesIO((files or {})[f["key"]]), f"{f['key']}.bin")
            if f["type"] == "file"
            else resolve(f["value"], variables)
            for f in body["formdata"]
            if not f.get("disabled")
        }
    return client.open(
        path, method=request["method"], query_string=query, headers=headers, data=data
    )


def verify(expect: Expect, response: Any, variables: dict[str, str]) -> None:
    """What the generated test script asserts, in Python; then its variable updates."""

    def value(v: Any) -> Any:
        return variables[v.name] if isinstance(v, Var) else v

    if expect.status is None:
        assert 200 <= response.status_code < 300
    else:
        assert response.status_code == expect.status, response.get_data(as_text=True)
    if expect.media_type:
        assert response.mimetype == expect.media_type
    if expect.empty:
        assert response.data == b""
    if expect.nonempty:
        assert response.data
    for name in expect.headers:
        assert name in response.headers
    body = response.get_json(force=True, silent=True)
    if expect.keys:
        assert set(expect.keys) <= set(body)
    if expect.array:
        assert isinstance(body, list)
    for member, expected in expect.equal:
        assert body[member] == value(expected), member
    for name, variable in expect.header_equal:
        assert response.headers.get(name) == value(variable)
    for name, variable in expect.header_differ:
        assert response.headers.get(name) != value(variable)
    for save in expect.save:
        source = {"body": lambda k: body[k], "header": response.headers.get, "value": str}
        variables[save.variable] = source[save.source](save.key)


def skipped(step: Step, variables: dict[str, str], files: Mapping[str, bytes] = {}) -> bool:  # noqa: B006
    """What the step's pre-request script decides (``files``: the file fields chosen)."""
    for guard in step.guards:
        value = variables.get(guard.variable, "")
        if (
            (guard.kind == "id" and value in ("", *guard.refused))
            or (guard.kind == "credential" and value == "")
            or (guard.kind == "opt-in" and value != "true")
            or (guard.kind == "file" and guard.variable not in files)
        ):
            return True
    return False


def replay(
    client: FlaskClient,
    spec: dict[str, Any],
    collection: dict[str, Any],
    variables: dict[str, str],
    folders: tuple[str, ...] = (),
) -> int:
    """Run every request in collection order (or those of ``folders``, like newman --folder),
    checking it against its plan; the number of requests sent (a skipped one is not)."""
    plan = collection_plan(spec)
    assert [f.name for f in plan.folders] == [f["name"] for f in collection["item"]]
    count = 0
    for folder, planned in zip(collection["item"], plan.folders, strict=True):
        if folders and folder["name"] not in folders:
            continue
        for item, step in zip(folder["item"], planned.steps, strict=True):
            assert item["name"] == step.name
            assert item["request"] == step.request
            assert script_of(item) == "\n".join(postman_test_script(step.expect))
            guard = postman_guard_script(step.guards) if step.guards else []
            assert script_of(item, "prerequest") == "\n".join(guard)
            if skipped(step, variables):
                continue
            response = send(client, item["request"], variables)
            try:
                verify(step.expect, response, variables)
            except AssertionError as exc:
                raise AssertionError(f"{folder['name']} / {item['name']}: {exc}") from exc
            finally:
                response.close()  # a download streams a file: close it
            count += 1
    return count


def test_the_whole_collection_passes_twice_against_the_development_server(
    spec: dict[str, Any], collection: dict[str, Any]
) -> None:
    """Like scripts/newman (./scripts/run is development: demo tasks seeded), then again against
    the same server with the variables the first run left, as the Postman app keeps them."""
    client = make_app("development", LOG_LEVEL="WARNING").test_client()
    seeded = client.get(f"{V2_TASKS}/{EXAMPLE_TASK_ID}")
    workspace = client.get(f"/api/v2/workspaces/{DEFAULT_WORKSPACE}")
    workspaces = client.get("/api/v2/workspaces").json["total"]
    initial = {v["key"]: v["value"] for v in collection["variable"]}
    variables = dict(initial)
    # Without admin_token, every secured request is skipped (the server has no ADMIN_TOKEN: 404).
    unsecured = [i for i in items_of(collection) if not secured(i)]
    assert replay(client, spec, collection, dict(variables)) == len(unsecured)
    assert replay(client, spec, collection, variables) == len(unsecured)
    # The deletes put the examples back; the Workflow's variables hold what it deleted.
    assert {k: v for k, v in variables.items() if not k.startswith("workflow_")} == {
        k: v for k, v in initial.items() if not k.startswith("workflow_")
    }
    after = client.get(f"{V2_TASKS}/{EXAMPLE_TASK_ID}")
    assert after.headers["ETag"] == seeded.headers["ETag"], "the demo task is untouched"
    again = client.get(f"/api/v2/workspaces/{DEFAULT_WORKSPACE}")
    assert again.headers["ETag"] == workspace.headers["ETag"], "the default workspace too"
    assert client.get("/api/v2/workspaces").json["total"] == workspaces, "none left behind"


@pytest.mark.parametrize(
    "folder",
    ["workspaces", "tasks", "audit", "hello", "tasks (v1)", "hello (v1)", "health", "problems"],
)
def test_each_folder_passes_alone_twice(
    spec: dict[str, Any], collection: dict[str, Any], folder: str
) -> None:
    """Like `scripts/newman --folder <tag>`, from the collection's initial variables."""
    client = make_app("development", LOG_LEVEL="WARNING").test_client()
    workspaces = client.get("/api/v2/workspaces").json["total"]
    variables = {v["key"]: v["value"] for v in collection["variable"]}
    # Without admin_token a secured request is skipped (the server has no ADMIN_TOKEN: 404).
    sent = len([item for item in folder_of(collection, folder) if not secured(item)])
    assert replay(client, spec, collection, variables, (folder,)) == sent
    assert replay(client, spec, collection, variables, (folder,)) == sent
    assert client.get(f"/api/v2/workspaces/{DEFAULT_WORKSPACE}").status_code == 200
    assert client.get(f"{V2_TASKS}/{EXAMPLE_TASK_ID}").status_code == 200
    assert client.get("/api/v2/workspaces").json["total"] == workspaces


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


def test_a_synthetic_spec_chains_what_it_documents() -> None:
    """No ETags, PUT instead of PATCH, no problem model: the workflow keeps only what applies."""
    thing = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "readOnly": True},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "name": {"type": "string", "example": "box", "maxLength": 8},
        },
        "required": ["name"],
    }
    body = [{"name": "payload", "in": "body", "schema": {"$ref": "#/definitions/Thing"}}]
    created = {"201": {"description": "made", "schema": {"$ref": "#/definitions/Thing"}}}
    item_param = [{"name": "thing_id", "in": "path", "type": "string", "x-example": "t1"}]
    spec: dict[str, Any] = {
        "info": {"title": "Things"},
        "definitions": {"Thing": thing, "Plain": {"properties": {"size": {"type": "integer"}}}},
        "paths": {
            "/things": {"post": {"operationId": "make", "parameters": body, "responses": created}},
            "/things/{thing_id}": {
                "parameters": item_param,
                "get": {
                    "operationId": "read",
                    "responses": {
                        "200": {"description": "it", "schema": {"$ref": "#/definitions/Thing"}},
                        "404": {"description": "gone"},
                    },
                },
                "put": {"operationId": "swap", "parameters": body, "responses": created},
                "delete": {"operationId": "drop", "responses": {"200": {"description": "ok"}}},
            },
            # Not chained: no id in the response, or no item path, or nothing to read.
            "/plain": {
                "post": {
                    "operationId": "plain",
                    "responses": {"201": {"schema": {"$ref": "#/definitions/Plain"}}},
                }
            },
            "/lonely": {"post": {"operationId": "lonely", "responses": created}},
            "/blobs": {"post": {"operationId": "blob", "responses": created}},
            "/blobs/{blob_id}": {
                "delete": {
                    "operationId": "unblob",
                    "parameters": [{"name": "blob_id", "in": "path", "type": "string"}],
                    "responses": {"default": {"description": "?"}},
                }
            },
        },
    }
    collection = postman_collection(spec)
    assert [f["name"] for f in collection["item"]] == [WORKFLOW_FOLDER, "default"]
    assert {v["key"]: v["value"] for v in collection["variable"]} == {
        "baseUrl": "http://127.0.0.1:5000",
        "thing_id": "t1",
        "blob_id": "",
        "workflow_thing_id": "",
    }
    steps = workflow_of(collection)
    assert [s["name"] for s in steps] == [
        "make: 201, store the id",
        "read: 200, the same thing",
        "swap: 201",
        "drop: 200",
        "read after the delete: 404",
    ]
    # PUT sends the whole example with the one change (cut to maxLength)
    assert json.loads(steps[2]["request"]["body"]["raw"]) == {"kind": "a", "name": "box (cha"}
    assert "If-Match" not in json.dumps(steps)
    assert script_of(steps[4]).count("pm.test(") == 1  # no problem model: the status only
    generic = {item["name"]: item for item in collection["item"][1]["item"]}
    assert list(generic)[-2:] == ["drop", "unblob"]  # deletes last
    assert "pm.response.to.be.success;" in script_of(generic["unblob"])
    assert '"blob_id", ""' in script_of(generic["unblob"])  # back to its (empty) example


def test_a_script_saving_after_any_success() -> None:
    lines = postman_test_script(Expect(status=None, save=(Save("x", "header", "Location"),)))
    assert "if (pm.response.code >= 200 && pm.response.code < 300) {" in lines
    assert '    pm.collectionVariables.set("x", pm.response.headers.get("Location"));' in lines


def test_a_synthetic_spec_nests_chains_and_names_their_variables() -> None:
    """Items nested under another chain's item, and a deprecated chain with the same parameter."""
    model = {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}
    created = {"201": {"description": "made", "schema": {"$ref": "#/definitions/M"}}}
    body = [{"name": "p", "in": "body", "schema": {"$ref": "#/definitions/M"}}]
    item = {"200": {"description": "it", "schema": {"$ref": "#/definitions/M"}}, "404": {}}

    def resource(tag: str, param: str, example: str, deprecated: bool = False) -> dict[str, Any]:
        extra = {"tags": [tag], "deprecated": True} if deprecated else {"tags": [tag]}
        return {
            "parameters": [{"name": param, "in": "path", "type": "string", "x-example": example}],
            "get": {"operationId": f"get_{tag}", "responses": item, **extra},
            "delete": {"operationId": f"delete_{tag}", "responses": {"204": {}}, **extra},
        }

    spec: dict[str, Any] = {
        "info": {"title": "Nested"},
        "definitions": {"M": model},
        "tags": [{"name": "boxes"}, {"name": "things"}, {"name": "old"}],
        "paths": {
            "/old/things": {
                "post": {
                    "operationId": "make_old",
                    "tags": ["old"],
                    "deprecated": True,
                    "parameters": body,
                    "responses": created,
                }
            },
            "/old/things/{thing_id}": resource("old", "thing_id", "t0", deprecated=True),
            "/new/boxes": {
                "post": {
                    "operationId": "make_box",
                    "tags": ["boxes"],
                    "parameters": body,
                    "responses": created,
                }
            },
            "/new/boxes/{box_id}": resource("boxes", "box_id", "b0"),
            "/new/boxes/{box_id}/things": {
                "post": {
                    "operationId": "make_thing",
                    "tags": ["things"],
                    "parameters": body,
                    "responses": created,
                }
            },
            "/new/boxes/{box_id}/things/{thing_id}": resource("things", "thing_id", "t1"),
        },
    }
    plan = collection_plan(spec)
    assert plan.variables == {
        "old_thing_id": "t0",
        "box_id": "b0",
        "thing_id": "t1",
        "workflow_box_id": "",
        "workflow_thing_id": "",
    }
    steps = {folder.name: [step.name for step in folder.steps] for folder in plan.folders}
    assert steps[WORKFLOW_FOLDER] == [  # the deprecated chain has no workflow
        "make_box: 201, store the id",
        "make_thing: 201, store the id",
        "get_things: 200, the same thing",
        "delete_things: 204",
        "get_things after the delete: 404",
        "delete_boxes: 204",
        "get_boxes after the delete: 404",
    ]
    assert steps["things"] == [
        "setup: make_box",
        "make_thing",
        "get_things",
        "delete_things",
        "teardown: delete_boxes",
    ]
    assert steps["boxes"] == ["make_box", "get_boxes", "delete_boxes"]
    assert steps["old"] == ["make_old", "get_old", "delete_old"]
    guards = {s.name: s.guards for f in plan.folders for s in f.steps if s.guards}
    assert guards["teardown: delete_boxes"] == (Guard("box_id", ("b0",)),)
    assert guards["delete_things"] == (Guard("thing_id", ("t1",)),)
    assert guards["delete_old"] == (Guard("old_thing_id", ("t0",)),)
    assert guards["delete_boxes: 204"] == (Guard("workflow_box_id"),)
    old = {s.name: s for f in plan.folders for s in f.steps}["get_old"]
    assert old.expect.headers == ("Deprecation",)
    assert old.request["url"]["variable"][0]["value"] == "{{old_thing_id}}"


# --- secured operations: the admin token -------------------------------------------------------


def test_secured_operations_send_the_admin_token_and_wait_for_it(
    spec: dict[str, Any], collection: dict[str, Any]
) -> None:
    """Operations with `security` send Authorization: Bearer {{admin_token}}, a collection
    variable empty by default (and documented), and are skipped while it is empty."""
    items = [i for f in collection["item"] for i in f["item"]]
    for item in items:
        is_secured = bool(operation_of(spec, item["request"]).get("security"))
        headers = {h["key"]: h["value"] for h in item["request"]["header"]}
        assert headers.get("Authorization") == ("Bearer {{admin_token}}" if is_secured else None), (
            item["name"]
        )
        guard = script_of(item, "prerequest")
        assert ('(pm.variables.get("admin_token") || "") === ""' in guard) == is_secured
    assert {"create_backup", "export_workspace", "import_workspace"} <= {
        i["name"] for i in items if secured(i)
    }
    (variable,) = [v for v in collection["variable"] if v["key"] == "admin_token"]
    assert variable["value"] == ""
    assert "Bearer {{admin_token}}" in variable["description"]
    assert "`admin_token`" in collection["info"]["description"]
    plan = {s.name: s for f in collection_plan(spec).folders for s in f.steps}
    assert not skipped(plan["list_backups"], {"admin_token": "t"})
    assert skipped(plan["list_backups"], {"admin_token": ""})


def test_restore_runs_only_when_allowed(spec: dict[str, Any], collection: dict[str, Any]) -> None:
    """restore_backup replaces the server's data: never by default, even with the token."""
    (variable,) = [v for v in collection["variable"] if v["key"] == "allow_restore"]
    assert variable["value"] == ""
    assert "restore_backup" in variable["description"]
    step = {s.name: s for f in collection_plan(spec).folders for s in f.steps}["restore_backup"]
    token = {"admin_token": "t", "backup_id": "b"}
    assert skipped(step, token)
    assert skipped(step, {**token, "allow_restore": "yes"})
    assert not skipped(step, {**token, "allow_restore": "true"})
    assert skipped(step, {"allow_restore": "true"})  # and never without the token


def admin_client(tmp_path: Path) -> tuple[FlaskClient, str]:
    token = secrets.token_urlsafe(32)
    app = make_app("development", LOG_LEVEL="WARNING", ADMIN_TOKEN=token, BACKUP_DIR=str(tmp_path))
    return app.test_client(), token


def test_the_whole_collection_passes_twice_with_an_admin_token(
    spec: dict[str, Any], collection: dict[str, Any], tmp_path: Path
) -> None:
    """Like scripts/newman: the server has an ADMIN_TOKEN and the run the same admin_token, so
    the admin requests run too, except restore (not allowed) and import (no file chosen); every
    backup the run made is deleted, and nothing else changes."""
    client, token = admin_client(tmp_path)
    auth = {"Authorization": f"Bearer {token}"}
    seeded = client.get(f"{V2_TASKS}/{EXAMPLE_TASK_ID}")
    workspaces = client.get("/api/v2/workspaces").json["total"]
    variables = {v["key"]: v["value"] for v in collection["variable"]} | {"admin_token": token}
    unsent = {"restore_backup", "import_workspace"}
    expected = len([i for i in items_of(collection) if i["name"] not in unsent])
    assert replay(client, spec, collection, variables) == expected
    assert replay(client, spec, collection, variables) == expected
    assert client.get("/api/v2/admin/backups", headers=auth).json["items"] == []
    after = client.get(f"{V2_TASKS}/{EXAMPLE_TASK_ID}")
    assert after.headers["ETag"] == seeded.headers["ETag"], "the demo task is untouched"
    assert client.get("/api/v2/workspaces").json["total"] == workspaces, "none left behind"
    # A wrong token: the admin requests would fail (401), not pass silently.
    wrong = {**variables, "admin_token": "wrong"}
    response = send(client, requests_of(collection)["list_backups"], wrong)
    assert response.status_code == 401


def test_the_admin_folder_restores_when_allowed(
    spec: dict[str, Any], collection: dict[str, Any], tmp_path: Path
) -> None:
    client, token = admin_client(tmp_path)
    workspaces = client.get("/api/v2/workspaces").json["total"]
    variables = {v["key"]: v["value"] for v in collection["variable"]}
    variables |= {"admin_token": token, "allow_restore": "true"}
    sent = len(folder_of(collection, "admin")) - 1  # all but the import
    assert replay(client, spec, collection, variables, ("admin",)) == sent
    assert client.get("/api/v2/workspaces").json["total"] == workspaces
    assert client.get(f"{V2_TASKS}/{EXAMPLE_TASK_ID}").status_code == 200


def test_the_import_request_works_once_a_file_is_chosen(
    spec: dict[str, Any], collection: dict[str, Any], tmp_path: Path
) -> None:
    """What Postman sends when someone picks an export in the Body tab."""
    client, token = admin_client(tmp_path)
    variables = {v["key"]: v["value"] for v in collection["variable"]} | {"admin_token": token}
    with send(client, requests_of(collection)["export_workspace"], variables) as exported:
        assert exported.status_code == 200
        archive = exported.get_data()
    step = {s.name: s for f in collection_plan(spec).folders for s in f.steps}["import_workspace"]
    files = {"archive": archive}
    assert skipped(step, variables)
    assert not skipped(step, variables, files)
    response = send(client, requests_of(collection)["import_workspace"], variables, files)
    verify(step.expect, response, variables)
    imported = response.json["workspace"]["id"]
    auth = {"Authorization": f"Bearer {token}"}
    assert client.delete(f"/api/v2/workspaces/{imported}", headers=auth).status_code == 204
