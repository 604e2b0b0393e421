"""The Postman collection generated from the spec: complete, importable, and its examples work."""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app.api.postman import (
    EXPIRY_SUFFIX,
    LOGIN_FOLDER,
    LOGIN_STEP,
    POSTMAN_SCHEMA,
    RELOGIN_STEP,
    RENEW_MARGIN_SECONDS,
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
from app.auth.accounts import DEMO_EMAIL, DEMO_PASSWORD
from app.auth.models import UserRow
from app.backups.schemas import EXAMPLE_BACKUP_ID
from app.config import TestingConfig
from app.db import db
from app.tasks.schemas import EXAMPLE_TASK_ID
from app.workspaces.models import DEFAULT_WORKSPACE_ID
from tests.conftest import make_app

_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}
DEFAULT_WORKSPACE = str(DEFAULT_WORKSPACE_ID)
V2_TASKS = f"/api/v2/workspaces/{DEFAULT_WORKSPACE}/tasks"
SETUP_LOGIN = SETUP_PREFIX + LOGIN_STEP
SETUP_SIGNUP = SETUP_PREFIX + "register"  # a folder adding a member signs an account up first
BEARER = "bearer"  # the spec's security scheme, so the variable secured requests send
ACCOUNT_VARIABLES = ["email", "password", BEARER, BEARER + EXPIRY_SUFFIX, "refresh_token"]
# Requests a run never sends by itself: restore replaces the server's data (allow_restore), an
# upload needs a chosen file, and these need a code from an authenticator app or the ticket of a
# log-in with a second factor (totp_code, mfa_token).
UNSENT = {"restore_backup", "import_workspace", "confirm_totp", "login_mfa", "disable_totp"}

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
    """A folder's setup or teardown request (an operation of another tag, repeated), or a log-in
    after a request that ended the session."""
    return item["name"].startswith((SETUP_PREFIX, TEARDOWN_PREFIX)) or item["name"] == RELOGIN_STEP


def tag_folders(collection: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in collection["item"] if f["name"] not in (LOGIN_FOLDER, WORKFLOW_FOLDER)]


def folder_of(collection: dict[str, Any], name: str) -> list[dict[str, Any]]:
    (folder,) = [f for f in collection["item"] if f["name"] == name]
    return folder["item"]


def items_by_name(collection: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One item per operation by name (names are operation ids, so unique): the tag folders,
    without their setup and teardown requests."""
    items = [item for f in tag_folders(collection) for item in f["item"] if not is_fixture(item)]
    named = {item["name"]: item for item in items}
    assert len(named) == len(items), "request names are unique"
    return named


def requests_of(collection: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: item["request"] for name, item in items_by_name(collection).items()}


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


def is_secured(spec: dict[str, Any], request: dict[str, Any]) -> bool:
    """The operation's own ``security``, or the spec's default; ``[]``: public."""
    return bool(operation_of(spec, request).get("security", spec.get("security", [])))


def secured(item: dict[str, Any]) -> bool:
    return any(h["key"] == "Authorization" for h in item["request"]["header"])


def initial_variables(collection: dict[str, Any]) -> dict[str, str]:
    return {v["key"]: v["value"] for v in collection["variable"]}


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
    # The server, the account and its tokens first; then the guards' and the chains' variables.
    assert variables[:6] == [
        {"key": "baseUrl", "value": "http://127.0.0.1:5000", "type": "string"},
        {"key": "email", "value": DEMO_EMAIL, "type": "string"},
        {"key": "password", "value": DEMO_PASSWORD, "type": "string"},
        {"key": BEARER, "value": "", "type": "string"},
        {"key": BEARER + EXPIRY_SUFFIX, "value": "", "type": "string"},
        {"key": "refresh_token", "value": "", "type": "string"},
    ]
    assert {
        "allow_restore": "",
        "v1_task_id": EXAMPLE_TASK_ID,
        "backup_id": EXAMPLE_BACKUP_ID,
        "workspace_id": DEFAULT_WORKSPACE,
        "task_id": EXAMPLE_TASK_ID,
        "workflow_workspace_id": "",
        "workflow_task_id": "",
        "workflow_task_etag": "",
        "workflow_task_etag_patched": "",
        "workflow_backup_id": "",
    }.items() <= initial_variables(collection).items()
    assert "admin_token" not in initial_variables(collection)


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


def test_log_in_then_the_workflow_then_one_folder_per_tag(
    spec: dict[str, Any], collection: dict[str, Any]
) -> None:
    names = [folder["name"] for folder in collection["item"]]
    assert names == [LOGIN_FOLDER, WORKFLOW_FOLDER] + [t["name"] for t in spec["tags"]]
    for folder in tag_folders(collection):
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
        SETUP_LOGIN,
        "setup: create_workspace",
        "teardown: delete_workspace",
    ]
    setup, teardown = tasks[1], tasks[-1]
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
    # The folders that create what they work on, or work on nothing chained, only log in.
    for name in ("workspaces", "tasks (v1)", "hello", "health", "problems"):
        fixtures = [item["name"] for item in folder_of(collection, name) if is_fixture(item)]
        assert fixtures in ([], [SETUP_LOGIN]), name


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
    ./scripts/run, in {{workspace_id}}, the default workspace; so requests sent by hand work,
    once Log in has run."""
    variables = initial_variables(collection)
    assert variables["task_id"] == variables["v1_task_id"] == EXAMPLE_TASK_ID
    assert variables["workspace_id"] == DEFAULT_WORKSPACE
    client = anonymous(demo_app())
    spec = app_spec(client.application)
    assert replay(client, spec, collection, variables, (LOGIN_FOLDER,)) == 1
    for name in ("get_task", "replace_task", "patch_task", "get_workspace", "list_tasks"):
        for prefix in ("", "v1_") if "task" in name else ("",):
            response = send(client, requests_of(collection)[prefix + name], variables)
            assert response.status_code == 200, (prefix + name, response.json)


def test_create_stores_the_id_and_delete_restores_the_example(collection: dict[str, Any]) -> None:
    by_name = items_by_name(collection)
    for variable, create, delete, example in [
        ("workspace_id", "create_workspace", "delete_workspace", DEFAULT_WORKSPACE),
        ("task_id", "create_task", "delete_task", EXAMPLE_TASK_ID),
        ("v1_task_id", "v1_create_task", "v1_delete_task", EXAMPLE_TASK_ID),
    ]:
        stored = f'pm.collectionVariables.set("{variable}", pm.response.json()["id"]);'
        assert stored in script_of(by_name[create])
        restored = f'pm.collectionVariables.set("{variable}", "{example}");'
        assert restored in script_of(by_name[delete])


def test_deletes_never_target_what_the_run_did_not_create(
    spec: dict[str, Any], collection: dict[str, Any]
) -> None:
    """A pre-request script skips a DELETE while its variable is empty or the example: sent by
    hand before a create, delete_workspace would otherwise delete the default workspace."""
    deletes = [i for i in items_of(collection) if i["request"]["method"] == "DELETE"]
    assert {i["name"] for i in deletes} >= {"delete_workspace", "delete_task", "v1_delete_task"}
    for item in deletes:
        assert "pm.execution.skipRequest();" in script_of(item, "prerequest"), item["name"]
    guard = script_of(items_by_name(collection)["delete_workspace"], "prerequest")
    refused = f'["", "{DEFAULT_WORKSPACE}"].includes((pm.variables.get("workspace_id") || ""))'
    assert f"if (!skip && {refused}) {{" in guard
    # Public requests that need nothing are sent as they are.
    for name in ("login", "register", "liveness", "list_problem_types", "get_jwks"):
        assert script_of(items_by_name(collection)[name], "prerequest") == "", name

    variables = initial_variables(collection)
    plan = {s.name: s for f in collection_plan(spec).folders for s in f.steps}
    token = {**variables, BEARER: "t"}
    for name in ("delete_workspace", "delete_task", "v1_delete_task"):
        assert skipped(plan[name], token), name
    assert not skipped(plan["delete_workspace"], {**token, "workspace_id": "x"})
    # A secured DELETE needs both: the token, and an id this run created.
    assert skipped(plan["delete_backup"], {**variables, "backup_id": "x"})
    assert skipped(plan["delete_backup"], token)
    assert not skipped(plan["delete_backup"], {**token, "backup_id": "x"})


def test_every_request_has_a_test_script_asserting_its_status(
    spec: dict[str, Any], collection: dict[str, Any]
) -> None:
    for item in items_of(collection):
        script = script_of(item)
        assert re.search(r"pm\.response\.to\.have\.status\((\d{3})\)", script), item["name"]
    for folder in [
        folder_of(collection, LOGIN_FOLDER),
        *(f["item"] for f in tag_folders(collection)),
    ]:
        for item in folder:
            responses = operation_of(spec, item["request"])["responses"]
            success = min(code for code in responses if code.startswith("2"))
            assert f"pm.response.to.have.status({success});" in script_of(item)


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
    """Through API v2, logged in: create a workspace; in it, the stories of what nests under it
    (a task: create, get, 304, patch with If-Match, stale patch 412, history, delete, 404); the
    workspace's other reads; delete it, 404; then the admin's backup. Every {{variable}} a step
    uses is set by the user (the account) or by an earlier step's script."""
    steps = workflow_of(collection)
    names = [step["name"] for step in steps]
    task = "/api/v2/workspaces/{workspace_id}/tasks/{task_id}"
    workspace = "/api/v2/workspaces/{workspace_id}"
    backup = "/api/v2/admin/backups/{backup_id}"
    route = [(step["request"]["method"], swagger_path(step["request"])) for step in steps]
    setups = [name for name in names if name.startswith(SETUP_PREFIX)]
    assert names[: len(setups)] == setups
    assert setups[0] == SETUP_LOGIN
    assert set(setups) <= {SETUP_LOGIN, SETUP_SIGNUP}  # a sign-up when a story adds a member
    story = route[len(setups) :]
    assert story[0] == ("POST", "/api/v2/workspaces")
    start = names.index("create_task: 201, store the id and ETag")
    assert route[start : start + 9] == [
        ("POST", "/api/v2/workspaces/{workspace_id}/tasks"),
        *[(m, task) for m in ("GET", "GET", "PATCH", "PATCH")],
        ("GET", f"{task}/history"),  # the item's other reads, before the delete
        *[(m, task) for m in ("DELETE", "GET")],
        ("GET", f"{workspace}/audit"),  # then the workspace's own reads
    ]
    # The workspace's other reads (audit, export, ...), then its delete; the backup last.
    reads = route[start + 8 : -7]
    assert {("GET", f"{workspace}/{read}") for read in ("audit", "audit/verify", "export")} <= set(
        reads
    )
    assert all(method == "GET" and path.startswith(f"{workspace}/") for method, path in reads)
    assert route[-7:] == [
        *[(m, workspace) for m in ("DELETE", "GET")],
        ("POST", "/api/v2/admin/backups"),
        *[("GET", path) for path in (backup, f"{backup}/download")],
        *[(m, backup) for m in ("DELETE", "GET")],
    ]
    statuses = [int(re.search(r"to\.have\.status\((\d+)\)", script_of(step))[1]) for step in steps]
    assert statuses[start : start + 8] == [201, 200, 304, 200, 412, 200, 204, 404]
    assert statuses[-7:] == [204, 404, 201, 200, 200, 204, 404]
    for step in steps[len(setups) + 1 : -7]:  # all in the workspace the Workflow created
        variables = {v["key"]: v["value"] for v in step["request"]["url"].get("variable", [])}
        assert variables["workspace_id"] == "{{workflow_workspace_id}}"
        assert variables.get("task_id", "{{workflow_task_id}}") == "{{workflow_task_id}}"
    declared = {v["key"] for v in collection["variable"]}
    set_so_far: set[str] = {"baseUrl", "email", "password", "$guid"}  # the user's, Postman's
    for step in steps:
        used = set(_VARIABLE.findall(json.dumps(step["request"])))
        assert used <= set_so_far, (step["name"], used - set_so_far)
        set_so_far |= set(re.findall(r'pm\.collectionVariables\.set\("([^"]+)"', script_of(step)))
    assert set_so_far - {"baseUrl", "$guid"} <= declared
    headers = [
        {h["key"]: h["value"] for h in s["request"]["header"] if not h.get("disabled")}
        for s in steps
    ]
    assert headers[start + 2]["If-None-Match"] == "{{workflow_task_etag}}"
    assert headers[start + 3]["If-Match"] == "{{workflow_task_etag}}"
    assert headers[start + 4]["If-Match"] == "{{workflow_task_etag}}"  # stale by then
    assert headers[start + 6]["If-Match"] == "{{workflow_task_etag_patched}}"
    assert "If-Match" not in headers[-7]
    secured_steps = [name for name, h in zip(names, headers, strict=True) if "Authorization" in h]
    assert secured_steps == names[len(setups) :]
    assert {h["Authorization"] for h in headers if "Authorization" in h} == {"Bearer {{bearer}}"}
    body = json.loads(steps[start + 3]["request"]["body"]["raw"])
    assert body == {"title": "Write chapter 2 (changed)"}


def test_a_soft_delete_reads_again_as_before() -> None:
    """A DELETE marked x-soft-delete keeps the item (revoked), and so does one whose item
    records when it was revoked: the Workflow reads it again and expects it, not a 404."""
    model = {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}
    item = {"200": {"description": "it", "schema": {"$ref": "#/definitions/K"}}, "404": {}}
    param = [{"name": "key_id", "in": "path", "type": "string", "x-example": "k0"}]
    spec: dict[str, Any] = {
        "info": {"title": "Keys"},
        "definitions": {"K": model},
        "paths": {
            "/keys": {
                "post": {
                    "operationId": "make_key",
                    "parameters": [
                        {"name": "p", "in": "body", "schema": {"$ref": "#/definitions/K"}}
                    ],
                    "responses": {"201": {"description": "made", "schema": model}},
                }
            },
            "/keys/{key_id}": {
                "parameters": param,
                "get": {"operationId": "get_key", "responses": item},
                "delete": {
                    "operationId": "revoke_key",
                    "responses": {"204": {}},
                    "x-soft-delete": True,
                },
            },
        },
    }
    (workflow, _) = collection_plan(spec).folders
    assert [step.name for step in workflow.steps] == [
        "make_key: 201, store the id",
        "get_key: 200, the same key",
        "revoke_key: 204",
        "get_key after the delete: 200, still there",
    ]
    assert workflow.steps[-1].expect.equal == (("id", Var("workflow_key_id")),)
    del spec["paths"]["/keys/{key_id}"]["delete"]["x-soft-delete"]
    (workflow, _) = collection_plan(spec).folders
    assert workflow.steps[-1].name == "get_key after the delete: 404"
    model["properties"]["revoked_at"] = {"type": "string"}
    (workflow, _) = collection_plan(spec).folders
    assert workflow.steps[-1].name == "get_key after the delete: 200, still there"


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
        if is_secured(spec, request):
            documented.add(("header", "authorization"))  # the bearer apiKey scheme
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
    assert {r["method"] for r in raw} >= {"POST", "PUT", "PATCH"}
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


# --- logging in ---------------------------------------------------------------------------------


def test_log_in_stores_the_token_that_secured_requests_send(
    spec: dict[str, Any], collection: dict[str, Any]
) -> None:
    """The first folder logs in with {{email}} and {{password}} and stores the access token in
    the variable named after the spec's security scheme; every secured operation (its own
    `security`, or the spec's default) sends it and waits for it; `security: []` is public."""
    assert spec["security"] == [{BEARER: []}]
    (login,) = folder_of(collection, LOGIN_FOLDER)
    assert login["name"] == LOGIN_STEP
    assert (login["request"]["method"], swagger_path(login["request"])) == (
        "POST",
        "/api/v2/auth/login",
    )
    assert json.loads(login["request"]["body"]["raw"]) == {
        "email": "{{email}}",
        "password": "{{password}}",
    }
    assert login["request"] == requests_of(collection)["login"]
    assert script_of(login, "prerequest") == ""  # by hand or first in a run: always sent
    script = script_of(login)
    for line in (
        "pm.response.to.have.status(200);",
        'pm.expect(pm.response.json()).to.include.all.keys(["access_token", "token_type", '
        '"expires_in", "refresh_token"]);',
        'pm.expect(pm.response.json()["mfa_required"]).to.eql(false);',
        "if (pm.response.code === 200) {",
        f'    pm.collectionVariables.set("{BEARER}", pm.response.json()["access_token"]);',
        f'    pm.collectionVariables.set("{BEARER}{EXPIRY_SUFFIX}", '
        'String(Date.now() + 1000 * pm.response.json()["expires_in"]));',
        '    pm.collectionVariables.set("refresh_token", pm.response.json()["refresh_token"]);',
    ):
        assert line in script, line
    public = set()
    for item in items_of(collection):
        is_public = not is_secured(spec, item["request"])
        headers = {h["key"]: h["value"] for h in item["request"]["header"]}
        assert headers.get("Authorization") == (None if is_public else "Bearer {{bearer}}"), item[
            "name"
        ]
        waits = '(pm.variables.get("bearer") || "") === ""' in script_of(item, "prerequest")
        assert waits != is_public, item["name"]
        if is_public:
            public.add(item["name"])
    assert {"login", "register", "refresh_tokens", "liveness", "get_problem_type", "get_jwks"} <= (
        public
    )
    assert not {"get_me", "list_workspaces", "say_hello", "list_backups"} & public
    descriptions = {v["key"]: v.get("description", "") for v in collection["variable"]}
    assert "development only" in descriptions["email"]
    assert "Bearer {{bearer}}" in descriptions[BEARER]
    assert "`bearer`" in collection["info"]["description"]


def test_every_folder_with_secured_requests_logs_in_when_its_token_is_missing_or_expiring(
    collection: dict[str, Any],
) -> None:
    """`newman --folder X` starts without a token: each folder's first request logs in, and is
    skipped in a whole run (the token is there). Folders with public requests only don't."""
    (login,) = folder_of(collection, LOGIN_FOLDER)
    for folder in collection["item"][1:]:
        first = folder["item"][0]
        if any(secured(item) for item in folder["item"]):
            assert first["name"] == SETUP_LOGIN, folder["name"]
            assert first["request"] == login["request"]
            assert script_of(first) == script_of(login)
            guard = script_of(first, "prerequest")
            assert 'var expiresAt = Number(pm.variables.get("bearer_expires_at") || 0);' in guard
            assert (
                'if (!skip && (pm.variables.get("bearer") || "") !== "" && '
                f"(!expiresAt || Date.now() < expiresAt - {RENEW_MARGIN_SECONDS * 1000})) {{"
            ) in guard
        else:
            assert first["name"] != SETUP_LOGIN
    assert {f["name"] for f in collection["item"] if f["item"][0]["name"] != SETUP_LOGIN} == {
        LOGIN_FOLDER,
        "health",
        "problems",
        "well-known",
    }


def test_the_login_guard_renews_a_missing_or_expiring_token_only() -> None:
    step = Step(SETUP_LOGIN, {}, Expect(status=200), (Guard(BEARER, kind="login"),))
    now = 1_800_000_000_000
    expiry = BEARER + EXPIRY_SUFFIX
    margin = RENEW_MARGIN_SECONDS * 1000
    assert not skipped(step, {}, now_ms=now)
    assert not skipped(step, {BEARER: "", expiry: str(now + 10 * margin)}, now_ms=now)
    assert skipped(step, {BEARER: "t", expiry: str(now + margin + 1)}, now_ms=now)
    assert not skipped(step, {BEARER: "t", expiry: str(now + margin)}, now_ms=now)
    assert not skipped(step, {BEARER: "t", expiry: str(now - 1)}, now_ms=now)  # expired
    assert skipped(step, {BEARER: "tm_key-set-by-hand"}, now_ms=now)  # no expiry: kept


def test_account_requests_use_the_runs_account(
    spec: dict[str, Any], collection: dict[str, Any]
) -> None:
    """Bodies that carry credentials send the run's: a sign-up a new address each run (the
    account stays: nothing deletes accounts); a password change the same password again; a
    refresh the stored refresh token, waiting for one; a one-time code, waiting for someone;
    another account's address the sign-up's."""
    requests = requests_of(collection)

    def body(name: str) -> dict[str, Any]:
        return json.loads(requests[name]["body"]["raw"])

    assert body("register") == {
        "email": "postman-{{$guid}}@example.com",
        "password": "{{password}}",
    }
    assert body("change_password") == {
        "current_password": "{{password}}",
        "new_password": "{{password}}",
    }
    assert body("refresh_tokens") == {"refresh_token": "{{refresh_token}}"}
    # Adding a member names another account: the one a sign-up made (its answer stores it).
    assert body("add_member")["email"] == "{{signup_email}}"
    assert (
        '    pm.collectionVariables.set("signup_email", pm.response.json()["email"]);'
        in script_of(items_by_name(collection)["register"])
    )
    # A chain keyed by the member named like its path parameter: add, change, remove the same.
    assert '    pm.collectionVariables.set("user_id", pm.response.json()["user_id"]);' in script_of(
        items_by_name(collection)["add_member"]
    )
    assert {"key": "user_id", "value": "{{user_id}}"}.items() <= next(
        v for v in requests["remove_member"]["url"]["variable"] if v["key"] == "user_id"
    ).items()
    members = folder_of(collection, "members")
    assert [item["name"] for item in members[:2]] == [SETUP_LOGIN, SETUP_SIGNUP]
    assert members[1]["request"] == requests["register"]
    assert '(pm.variables.get("signup_email") || "") !== ""' in script_of(members[1], "prerequest")
    plan = {s.name: s for f in collection_plan(spec).folders for s in f.steps}
    assert plan["refresh_tokens"].guards == (Guard("refresh_token", kind="credential"),)
    assert skipped(plan["refresh_tokens"], {"refresh_token": ""})
    assert "code" in body("confirm_totp")
    assert body("confirm_totp")["code"] == "{{totp_code}}"
    assert Guard("totp_code", kind="credential") in plan["confirm_totp"].guards
    assert Guard("mfa_token", kind="credential") in plan["login_mfa"].guards
    variables = initial_variables(collection)
    assert variables["totp_code"] == variables["mfa_token"] == ""


def test_requests_ending_the_session_run_last_and_log_in_again(collection: dict[str, Any]) -> None:
    """Log out ends the session, a restore every session: they run after everything but the
    deletes, clear the tokens, and the folder logs in again."""
    auth = folder_of(collection, "auth")
    names = [item["name"] for item in auth]
    assert names[0] == SETUP_LOGIN
    start = names.index("logout")
    assert names[start : start + 4] == ["logout", RELOGIN_STEP, "logout_everywhere", RELOGIN_STEP]
    assert all(item["request"]["method"] == "DELETE" for item in auth[start + 4 :])
    assert names.index("refresh_tokens") < start
    (login,) = folder_of(collection, LOGIN_FOLDER)
    for item in auth[start + 1], auth[start + 3]:
        assert item["request"] == login["request"]
        assert script_of(item, "prerequest") == script_of(auth[0], "prerequest")
    for item in auth[start], auth[start + 2]:  # the session ended: its tokens are of no use
        script = script_of(item)
        assert "if (pm.response.code === 204) {" in script
        for variable in (BEARER, BEARER + EXPIRY_SUFFIX, "refresh_token"):
            assert f'    pm.collectionVariables.set("{variable}", "");' in script
    admin = [item["name"] for item in folder_of(collection, "admin")]
    restore = admin.index("restore_backup")
    assert admin[restore + 1] == RELOGIN_STEP
    assert admin[restore + 2 :] == ["delete_backup", "teardown: delete_workspace"]
    restore_script = script_of(folder_of(collection, "admin")[restore])
    assert f'    pm.collectionVariables.set("{BEARER}", "");' in restore_script


# --- replaying the collection in-process, as Newman would ---------------------------------------

_VARIABLE = re.compile(r"\{\{([^{}]+)\}\}")


def demo_app(**overrides: Any) -> Flask:
    """What ./scripts/run serves: the development profile with its demo tasks and the demo
    account, a platform administrator and owner of the default workspace (make_app seeds them
    as `flask db-prepare` does)."""
    # Testing's cheap password hashes: a replay logs in a dozen times, and what it checks does
    # not depend on what a hash costs.
    cheap = {k: v for k, v in vars(TestingConfig).items() if k.startswith("PASSWORD_HASH_")}
    app = make_app("development", LOG_LEVEL="WARNING", **cheap, **overrides)
    with app.app_context():
        demo = db.session().scalar(select(UserRow).where(UserRow.email == DEMO_EMAIL))
        assert demo is not None
        assert demo.is_platform_admin
    return app


def anonymous(app: Flask) -> FlaskClient:
    """A client that sends only what the collection's requests say (no token of its own)."""
    return app.test_client(token="")


def account_count(app: Flask) -> int:
    with app.app_context():
        return int(db.session().scalar(select(func.count()).select_from(UserRow)) or 0)


def resolve(text: str, variables: dict[str, str]) -> str:
    """{{name}} -> its value; {{$guid}} -> a new UUID (Postman's dynamic variable)."""

    def value(match: re.Match[str]) -> str:
        return str(uuid.uuid4()) if match[1] == "$guid" else variables[match[1]]

    return _VARIABLE.sub(value, text)


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


def now_in_ms() -> int:
    return int(time.time() * 1000)


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
        source = {
            "body": lambda k: body[k],
            "header": response.headers.get,
            "value": str,
            "expiry": lambda k: str(now_in_ms() + 1000 * int(body[k])),
        }
        variables[save.variable] = source[save.source](save.key)


def skipped(
    step: Step,
    variables: dict[str, str],
    files: Mapping[str, bytes] = {},  # noqa: B006
    now_ms: int | None = None,
) -> bool:
    """What the step's pre-request script decides (``files``: the file fields chosen)."""
    now = now_in_ms() if now_ms is None else now_ms
    for guard in step.guards:
        value = variables.get(guard.variable, "")
        expires = int(variables.get(guard.variable + EXPIRY_SUFFIX) or 0)
        if (
            (guard.kind == "id" and value in ("", *guard.refused))
            or (guard.kind == "credential" and value == "")
            or (guard.kind == "opt-in" and value != "true")
            or (guard.kind == "unset" and value != "")
            or (guard.kind == "file" and guard.variable not in files)
            or (
                guard.kind == "login"
                and value != ""
                and (not expires or now < expires - RENEW_MARGIN_SECONDS * 1000)
            )
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


def sends(
    items: list[dict[str, Any]],
    *,
    token: bool = False,
    signed_up: bool = False,
    unsent: set[str] = UNSENT,
) -> int:
    """How many of ``items`` a run sends, in order, by the collection's rules: never ``unsent``;
    a folder's log-in only without a token, its sign-up only when none was made; "Log in again"
    only after a request that was sent (and so ended the session)."""
    count, previous = 0, True
    for item in items:
        name = item["name"]
        sent = {
            SETUP_LOGIN: not token,
            SETUP_SIGNUP: not signed_up,
            RELOGIN_STEP: previous,
        }.get(name, name not in unsent)
        token = token or (sent and name in (LOGIN_STEP, SETUP_LOGIN, RELOGIN_STEP))
        signed_up = signed_up or (sent and name in ("register", SETUP_SIGNUP))
        count += sent
        previous = sent
    return count


def test_the_whole_collection_passes_twice_against_the_development_server(
    spec: dict[str, Any], collection: dict[str, Any], tmp_path: Path
) -> None:
    """Like scripts/newman: ./scripts/run (development: demo tasks and the demo account, a
    platform admin, seeded) and the collection's own variables, so it logs in as the demo
    account and the admin requests run too, except restore (not allowed) and import (no file
    chosen). Then again against the same server with the variables the first run left, as the
    Postman app keeps them. The demo data is untouched, and nothing is left behind but the
    accounts that register made, one a run."""
    app = demo_app(BACKUP_DIR=str(tmp_path))
    client = anonymous(app)
    initial = initial_variables(collection)
    variables = dict(initial)
    assert replay(client, spec, collection, variables, (LOGIN_FOLDER,)) == 1
    auth = {"Authorization": f"Bearer {variables[BEARER]}"}
    seeded = client.get(f"{V2_TASKS}/{EXAMPLE_TASK_ID}", headers=auth)
    workspace = client.get(f"/api/v2/workspaces/{DEFAULT_WORKSPACE}", headers=auth)
    workspaces = client.get("/api/v2/workspaces", headers=auth).json["total"]
    accounts = account_count(app)
    # In a whole run the token is there at each folder's start: their own log-ins are skipped;
    # their sign-ups too once one was made (the first run's first, the second run's none).
    items = items_of(collection)
    signups = sends(items, token=True) - sends(items, token=True, signed_up=True)
    assert replay(client, spec, collection, variables) == sends(items)
    assert replay(client, spec, collection, variables) == sends(items, signed_up=True)
    # The deletes put the examples back; the Workflow's variables hold what it deleted; the
    # tokens are the last log-in's, the address the last sign-up's.
    kept = {*ACCOUNT_VARIABLES[2:], "signup_email"}
    fixed = {k for k in initial if not k.startswith("workflow_")} - kept
    assert {k: variables[k] for k in fixed} == {k: initial[k] for k in fixed}
    assert re.fullmatch(r"postman-[0-9a-f-]{36}@example\.com", variables["signup_email"])
    auth = {"Authorization": f"Bearer {variables[BEARER]}"}
    after = client.get(f"{V2_TASKS}/{EXAMPLE_TASK_ID}", headers=auth)
    assert after.headers["ETag"] == seeded.headers["ETag"], "the demo task is untouched"
    again = client.get(f"/api/v2/workspaces/{DEFAULT_WORKSPACE}", headers=auth)
    assert again.headers["ETag"] == workspace.headers["ETag"], "the default workspace too"
    assert client.get("/api/v2/workspaces", headers=auth).json["total"] == workspaces
    assert client.get("/api/v2/admin/backups", headers=auth).json["items"] == []
    assert account_count(app) == accounts + 2 + signups  # register, once a run
    # A wrong token: the secured requests fail (401), they do not pass silently.
    response = send(client, requests_of(collection)["list_backups"], {**variables, BEARER: "x"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "folder",
    [
        LOGIN_FOLDER,
        WORKFLOW_FOLDER,
        "auth",
        "workspaces",
        "api-keys",
        "members",
        "tasks",
        "audit",
        "hello",
        "admin",
        "tasks (v1)",
        "hello (v1)",
        "health",
        "problems",
        "well-known",
    ],
)
def test_each_folder_passes_alone_twice(
    spec: dict[str, Any], collection: dict[str, Any], folder: str, tmp_path: Path
) -> None:
    """Like `scripts/newman --folder <name>`, from the collection's initial variables: a folder
    with secured requests logs in first, the second time not (the token is still valid); one
    adding a member signs an account up first, the second time not."""
    app = demo_app(BACKUP_DIR=str(tmp_path))
    client = anonymous(app)
    variables = initial_variables(collection)
    items = folder_of(collection, folder)
    assert replay(client, spec, collection, variables, (folder,)) == sends(items)
    again = sends(items, token=True, signed_up=True)
    assert replay(client, spec, collection, variables, (folder,)) == again
    auth = {"Authorization": f"Bearer {variables[BEARER]}"} if variables[BEARER] else {}
    if folder == "auth":  # it ended its sessions and logged in again
        assert variables[BEARER]
    if auth:
        assert client.get(f"{V2_TASKS}/{EXAMPLE_TASK_ID}", headers=auth).status_code == 200
        assert client.get("/api/v2/workspaces", headers=auth).json["total"] == 1  # the default


def test_an_expired_token_makes_a_folder_log_in_again(
    spec: dict[str, Any], collection: dict[str, Any]
) -> None:
    """The Postman app keeps variables between runs: a folder run after the token expired (or
    is about to) logs in again instead of failing with 401."""
    client = anonymous(demo_app())
    variables = initial_variables(collection)
    sent = len(folder_of(collection, "hello"))
    assert replay(client, spec, collection, variables, (LOGIN_FOLDER,)) == 1
    assert replay(client, spec, collection, variables, ("hello",)) == sent - 1
    variables[BEARER + EXPIRY_SUFFIX] = str(now_in_ms() + RENEW_MARGIN_SECONDS * 1000 - 1)
    token = variables[BEARER]
    assert replay(client, spec, collection, variables, ("hello",)) == sent
    assert variables[BEARER] != token


def test_your_own_account_logs_in_and_the_admin_surface_stays_hidden(
    spec: dict[str, Any], collection: dict[str, Any]
) -> None:
    """An account registered through the API instead of the demo one: set email and password,
    and the collection logs in as it; it owns what it creates, but it is no platform
    administrator, so the admin requests find nothing (404), as for any stranger."""
    client = anonymous(demo_app())
    email, password = "learner@example.com", "a passphrase of my very own"
    registered = client.post("/api/v2/auth/register", json={"email": email, "password": password})
    assert registered.status_code == 201, registered.json
    variables = {**initial_variables(collection), "email": email, "password": password}
    assert replay(client, spec, collection, variables, (LOGIN_FOLDER,)) == 1
    requests = requests_of(collection)
    me = send(client, requests["get_me"], variables)
    assert (me.status_code, me.json["email"], me.json["platform_admin"]) == (200, email, False)
    assert (
        replay(client, spec, collection, variables, ("workspaces",))
        == len(folder_of(collection, "workspaces")) - 1
    )  # logged in already
    assert send(client, requests["list_backups"], variables).status_code == 404
    # The demo tasks are the demo account's: a stranger's token does not find them.
    assert send(client, requests["get_task"], variables).status_code == 404


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


# --- the admin requests, as the demo account (a platform administrator) ------------------------


def test_restore_runs_only_when_allowed(spec: dict[str, Any], collection: dict[str, Any]) -> None:
    """restore_backup replaces the server's data: never by default, even with a token."""
    (variable,) = [v for v in collection["variable"] if v["key"] == "allow_restore"]
    assert variable["value"] == ""
    assert "restore_backup" in variable["description"]
    step = {s.name: s for f in collection_plan(spec).folders for s in f.steps}["restore_backup"]
    token = {BEARER: "t", "backup_id": "b"}
    assert skipped(step, token)
    assert skipped(step, {**token, "allow_restore": "yes"})
    assert not skipped(step, {**token, "allow_restore": "true"})
    assert skipped(step, {"allow_restore": "true"})  # and never without the token


def test_the_admin_folder_restores_when_allowed(
    spec: dict[str, Any], collection: dict[str, Any], tmp_path: Path
) -> None:
    app = demo_app(BACKUP_DIR=str(tmp_path))
    client = anonymous(app)
    variables = {**initial_variables(collection), "allow_restore": "true"}
    assert replay(client, spec, collection, variables, (LOGIN_FOLDER,)) == 1
    auth = {"Authorization": f"Bearer {variables[BEARER]}"}
    workspaces = client.get("/api/v2/workspaces", headers=auth).json["total"]
    # All but the log-in (the token is there) and the import (no file chosen); the restore
    # ended every session, so the folder logs in again after it.
    items = folder_of(collection, "admin")
    names = [item["name"] for item in items]
    assert names[names.index("restore_backup") + 1] == RELOGIN_STEP
    sent = sends(items, token=True, unsent=UNSENT - {"restore_backup"})
    assert replay(client, spec, collection, variables, ("admin",)) == sent
    # The restore rewound the server to the backup the folder had just made, and ended every
    # session: the old token is refused, the new one works.
    assert client.get("/api/v2/workspaces", headers=auth).status_code == 401
    auth = {"Authorization": f"Bearer {variables[BEARER]}"}
    assert client.get("/api/v2/workspaces", headers=auth).json["total"] == workspaces
    assert client.get(f"{V2_TASKS}/{EXAMPLE_TASK_ID}", headers=auth).status_code == 200


def test_the_import_request_works_once_a_file_is_chosen(
    spec: dict[str, Any], collection: dict[str, Any], tmp_path: Path
) -> None:
    """What Postman sends when someone picks an export in the Body tab."""
    client = anonymous(demo_app(BACKUP_DIR=str(tmp_path)))
    variables = initial_variables(collection)
    assert replay(client, spec, collection, variables, (LOGIN_FOLDER,)) == 1
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
    auth = {"Authorization": f"Bearer {variables[BEARER]}"}
    assert client.delete(f"/api/v2/workspaces/{imported}", headers=auth).status_code == 204


# --- a log-in in a synthetic spec ----------------------------------------------------------------


TOKEN_MEMBER_NAMES = ("access_token", "token_type", "expires_in", "refresh_token")


def _account_spec(*, login_security: list[Any] | None = None) -> dict[str, Any]:
    """A small secured API: sign up, log in, refresh, log out, one secured resource."""
    credentials = {"$ref": "#/definitions/Credentials"}
    tokens = {"$ref": "#/definitions/Tokens"}
    login: dict[str, Any] = {
        "operationId": "sign_in",
        "tags": ["account"],
        "parameters": [{"name": "p", "in": "body", "schema": credentials}],
        "responses": {"200": {"description": "tokens", "schema": tokens}},
        "security": [] if login_security is None else login_security,
    }
    return {
        "info": {"title": "Accounts"},
        "securityDefinitions": {
            "jwt": {"type": "apiKey", "in": "header", "name": "Authorization"},
            "key": {"type": "apiKey", "in": "query", "name": "key"},
        },
        "security": [{"jwt": []}],
        "definitions": {
            "Credentials": {
                "required": ["email", "password"],
                "properties": {
                    "email": {"type": "string", "example": "a@example.com"},
                    "password": {"type": "string", "example": "pass"},
                },
            },
            "Tokens": {
                "properties": {
                    name: {"type": "integer" if name.endswith("_in") else "string"}
                    for name in (*TOKEN_MEMBER_NAMES, "scope")
                }
            },
            "Refresh": {
                "required": ["refresh_token"],
                "properties": {"refresh_token": {"type": "string"}},
            },
            "Note": {"properties": {"text": {"type": "string", "example": "hi"}}},
        },
        "tags": [{"name": "account"}, {"name": "notes"}],
        "paths": {
            "/login": {"post": login},
            "/signup": {
                "post": {
                    "operationId": "sign_up",
                    "tags": ["account"],
                    "parameters": [{"name": "p", "in": "body", "schema": credentials}],
                    "responses": {"201": {"description": "made"}},
                    "security": [],
                }
            },
            "/refresh": {
                "post": {
                    "operationId": "renew",
                    "tags": ["account"],
                    "parameters": [
                        {"name": "p", "in": "body", "schema": {"$ref": "#/definitions/Refresh"}}
                    ],
                    "responses": {"200": {"description": "tokens", "schema": tokens}},
                    "security": [],
                }
            },
            "/logout": {
                "post": {
                    "operationId": "sign_out",
                    "tags": ["account"],
                    "responses": {"204": {"description": "out"}},
                }
            },
            "/notes": {
                "get": {
                    "operationId": "notes",
                    "tags": ["notes"],
                    "responses": {"200": {"description": "the notes"}},
                },
                "post": {
                    "operationId": "note_by_key",
                    "tags": ["notes"],
                    "parameters": [
                        {"name": "p", "in": "body", "schema": {"$ref": "#/definitions/Note"}}
                    ],
                    "responses": {"200": {"description": "noted"}},
                    "security": [{"key": []}],
                },
            },
        },
    }


def test_a_synthetic_spec_logs_in_before_its_secured_requests() -> None:
    plan = collection_plan(_account_spec(), email="me@example.com", password="secret words")
    steps = {folder.name: [step.name for step in folder.steps] for folder in plan.folders}
    assert steps == {
        LOGIN_FOLDER: [LOGIN_STEP],
        "account": [SETUP_LOGIN, "sign_in", "sign_up", "renew", "sign_out", RELOGIN_STEP],
        "notes": [SETUP_LOGIN, "notes", "note_by_key"],
    }
    assert list(plan.variables.items())[:5] == [
        ("email", "me@example.com"),
        ("password", "secret words"),
        ("jwt", ""),
        ("jwt_expires_at", ""),
        ("refresh_token", ""),
    ]
    assert plan.variables["key"] == ""  # another scheme: a variable to set, as before
    by_name = {step.name: step for folder in plan.folders for step in folder.steps}
    assert by_name["sign_in"].expect.save == (
        Save("jwt", "body", "access_token"),
        Save("jwt_expires_at", "expiry", "expires_in"),
        Save("refresh_token", "body", "refresh_token"),
    )
    assert by_name["sign_in"].expect.keys == TOKEN_MEMBER_NAMES  # not "scope": not RFC 6749's
    assert by_name["renew"].expect.save == by_name["sign_in"].expect.save
    assert "scope" in by_name["renew"].expect.keys  # a refresh asserts its whole model
    assert by_name[SETUP_LOGIN].guards == (Guard("jwt", kind="login"),)
    assert by_name["notes"].guards == (Guard("jwt", kind="credential"),)
    assert by_name["note_by_key"].guards == (Guard("key", kind="credential"),)
    assert by_name["note_by_key"].request["url"]["raw"] == "{{baseUrl}}/notes?key={{key}}"
    assert json.loads(by_name["sign_up"].request["body"]["raw"]) == {
        "email": "postman-{{$guid}}@example.com",
        "password": "{{password}}",
    }
    assert [s.variable for s in by_name["sign_out"].expect.save] == [
        "jwt",
        "jwt_expires_at",
        "refresh_token",
    ]
    lines = postman_test_script(by_name["sign_in"].expect)
    stores_expiry = (
        '    pm.collectionVariables.set("jwt_expires_at", '
        'String(Date.now() + 1000 * pm.response.json()["expires_in"]));'
    )
    assert stores_expiry in lines


def test_without_a_public_log_in_nothing_logs_in() -> None:
    """A log-in that needs a token itself is no way in: the token is the user's to set."""
    plan = collection_plan(_account_spec(login_security=[{"jwt": []}]))
    assert [folder.name for folder in plan.folders] == ["account", "notes"]
    assert "email" not in plan.variables
    assert plan.variables["jwt"] == ""
    assert not any(
        step.name.endswith(LOGIN_STEP) for folder in plan.folders for step in folder.steps
    )
