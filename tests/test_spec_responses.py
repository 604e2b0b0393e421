"""For every operation, the documented responses are exactly the responses it really gives.

Each documented status code has a scenario that produces it; each scenario's response must carry
the documented headers and validate against the documented schema (Problem for errors).
"""

from __future__ import annotations

import copy
import fcntl
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft4Validator
from sqlalchemy import update

from app.db import db
from app.extensions import health_checks
from app.tasks.models import new_task_id
from app.workspaces.models import DEFAULT_WORKSPACE_ID, WorkspaceRow, WorkspaceState
from tests.conftest import make_app

BIG = "x" * (1024 * 1024 + 1)
V2_WORKSPACES = "/api/v2/workspaces"
V2_WORKSPACE = "/api/v2/workspaces/{workspace_id}"
# Spec path of the task collection, per API version.
TASKS_PATH = {"1": "/api/v1/tasks", "2": "/api/v2/workspaces/{workspace_id}/tasks"}


class Ctx:
    """A fresh app with a workspace holding one task, and helpers to hit an operation. In v1 the
    workspace is the default one; in v2 a new one."""

    def __init__(self, app: Flask, version: str) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        created_workspace = self.client.post(V2_WORKSPACES, json={"name": "fixture"})
        self.workspace = f"{V2_WORKSPACES}/{created_workspace.json['id']}"
        self.workspace_etag = created_workspace.headers["ETag"]
        self.missing_workspace = f"{V2_WORKSPACES}/{new_task_id()}"
        self.tasks = "/api/v1/tasks" if version == "1" else f"{self.workspace}/tasks"
        created = self.client.post(self.tasks, json={"title": "fixture", "status": "done"})
        self.task_id = created.json["id"]
        self.etag = created.headers["ETag"]
        self.url = f"{self.tasks}/{self.task_id}"
        self.missing = f"{self.tasks}/{new_task_id()}"


Scenario = Callable[[Ctx], Any]  # a status may have a list of them (several ways to get it)


def body_errors(
    method: str, url: Callable[[Ctx], str], ok: dict[str, Any], ok_status: int = 200
) -> dict[int, Scenario]:
    """Success plus the statuses every JSON-body operation shares."""

    def send(**kwargs: Any) -> Scenario:
        return lambda c: c.client.open(url(c), method=method, **kwargs)

    return {
        400: send(data='{"title": ', content_type="application/json"),
        413: send(data=BIG, content_type="application/json"),
        415: send(data="title=x", content_type="text/plain"),
        422: send(json={"title": "", "unknown": 1}),
        ok_status: send(json=ok),
    }


# Every way a write's precondition fails against the current task.
FAILING_PRECONDITIONS: list[Callable[[Ctx], dict[str, str]]] = [
    lambda c: {"If-Match": '"stale"'},
    lambda c: {"If-Match": f"W/{c.etag}"},
    lambda c: {"If-None-Match": "*"},
    lambda c: {"If-None-Match": c.etag},
    lambda c: {"If-Match": c.etag, "If-None-Match": c.etag},
]


def failing_ready(c: Ctx) -> Any:
    def broken() -> None:
        raise OSError("down")

    health_checks.register(c.app, "broken", broken)
    return c.client.get("/health/ready")


def while_moving(send: Scenario) -> Scenario:
    """``send`` while the directory marks the context's workspace moving, as a shard move does."""

    def scenario(c: Ctx) -> Any:
        v1 = c.tasks.startswith("/api/v1/")
        workspace_id = DEFAULT_WORKSPACE_ID if v1 else uuid.UUID(c.workspace.rsplit("/", 1)[1])
        with c.app.app_context():
            db.session.execute(
                update(WorkspaceRow)
                .where(WorkspaceRow.id == workspace_id)
                .values(state=WorkspaceState.MOVING.value)
            )
            db.session.commit()
        return send(c)

    return scenario


def unknown_parameter(url: Callable[[Ctx], str]) -> Scenario:
    return lambda c: c.client.get(url(c) + "?unknown=1")


COMMON_SCENARIOS: dict[tuple[str, str], dict[int, Scenario]] = {
    **{
        operation: scenarios
        for hello in ("/api/v1/hello", "/api/v2/hello")
        for operation, scenarios in {
            ("get", hello): {
                200: lambda c, h=hello: c.client.get(h),
                400: unknown_parameter(lambda c, h=hello: h),
            },
            ("post", hello): body_errors("POST", lambda c, h=hello: h, {"name": "Ada"}),
        }.items()
    },
    ("get", "/health/live"): {
        200: lambda c: c.client.get("/health/live"),
        400: unknown_parameter(lambda c: "/health/live"),
    },
    ("get", "/health/ready"): {
        200: lambda c: c.client.get("/health/ready"),
        400: unknown_parameter(lambda c: "/health/ready"),
        503: failing_ready,
    },
    ("get", "/problems"): {
        200: lambda c: c.client.get("/problems"),
        400: unknown_parameter(lambda c: "/problems"),
    },
    ("get", "/problems/{slug}"): {
        200: lambda c: c.client.get("/problems/validation-error"),
        400: unknown_parameter(lambda c: "/problems/validation-error"),
        404: lambda c: c.client.get("/problems/nope"),
    },
}


def task_scenarios(version: str) -> dict[tuple[str, str], dict[int, Scenario]]:
    collection = TASKS_PATH[version]
    item = f"{collection}/{{task_id}}"
    return {
        ("get", collection): {
            200: lambda c: c.client.get(f"{c.tasks}?status=done"),
            304: lambda c: c.client.get(
                c.tasks,
                headers={"If-None-Match": c.client.get(c.tasks).headers["ETag"]},
            ),
            400: lambda c: c.client.get(f"{c.tasks}?per_page=0"),
        },
        ("post", collection): {
            **body_errors("POST", lambda c: c.tasks, {"title": "new"}, ok_status=201),
            503: while_moving(lambda c: c.client.post(c.tasks, json={"title": "new"})),
        },
        ("get", item): {
            200: lambda c: c.client.get(c.url),
            304: lambda c: c.client.get(c.url, headers={"If-None-Match": c.etag}),
            400: unknown_parameter(lambda c: c.url),
            404: lambda c: c.client.get(c.missing),
        },
        **{
            (method, item): {
                **body_errors(
                    method.upper(), lambda c: c.url, {"title": "changed", "status": "done"}
                ),
                404: lambda c, m=method: c.client.open(
                    c.missing, method=m.upper(), json={"title": "x"}
                ),
                409: lambda c, m=method: c.client.open(
                    c.url, method=m.upper(), json={"title": "x", "status": "in_progress"}
                ),
                412: [
                    lambda c, m=method, h=headers: c.client.open(
                        c.url, method=m.upper(), json={"title": "x"}, headers=h(c)
                    )
                    for headers in FAILING_PRECONDITIONS
                ],
                503: while_moving(
                    lambda c, m=method: c.client.open(c.url, method=m.upper(), json={"title": "x"})
                ),
            }
            for method in ("put", "patch")
        },
        ("delete", item): {
            204: lambda c: c.client.delete(c.url, headers={"If-Match": c.etag}),
            400: [
                lambda c: c.client.delete(c.url + "?unknown=1"),
                lambda c: c.client.delete(c.url, headers={"If-Match": ""}),
                lambda c: c.client.delete(c.url, headers={"If-None-Match": ","}),
                lambda c: c.client.delete(
                    c.url, headers={"If-Unmodified-Since": "Wed, 21 Oct 2026 07:28:00 GMT"}
                ),
            ],
            404: lambda c: c.client.delete(c.missing),
            412: [
                lambda c, h=headers: c.client.delete(c.url, headers=h(c))
                for headers in FAILING_PRECONDITIONS
            ],
            503: while_moving(lambda c: c.client.delete(c.url)),
        },
        ("post", f"{collection}/bulk"): {
            **body_errors(
                "POST",
                lambda c: f"{c.tasks}/bulk",
                {"operations": [{"op": "create", "task": {"title": "b"}}]},
            ),
            422: [
                lambda c: c.client.post(f"{c.tasks}/bulk", json={"operations": []}),
                lambda c: c.client.post(  # bulk-operation-failed, with per-operation errors
                    f"{c.tasks}/bulk",
                    json={
                        "operations": [
                            {"op": "create", "task": {"title": ""}},
                            {"op": "delete", "id": str(new_task_id())},
                        ]
                    },
                ),
            ],
            503: while_moving(
                lambda c: c.client.post(
                    f"{c.tasks}/bulk", json={"operations": [{"op": "delete", "id": c.task_id}]}
                )
            ),
        },
    }


WORKSPACE_SCENARIOS: dict[tuple[str, str], dict[int, Scenario]] = {
    ("get", V2_WORKSPACES): {
        200: lambda c: c.client.get(f"{V2_WORKSPACES}?per_page=5"),
        400: [
            unknown_parameter(lambda c: V2_WORKSPACES),
            lambda c: c.client.get(f"{V2_WORKSPACES}?page=0"),
            lambda c: c.client.get(f"{V2_WORKSPACES}?page=99"),
        ],
    },
    ("post", V2_WORKSPACES): body_errors(
        "POST", lambda c: V2_WORKSPACES, {"name": "new"}, ok_status=201
    ),
    ("get", V2_WORKSPACE): {
        200: lambda c: c.client.get(c.workspace),
        304: lambda c: c.client.get(c.workspace, headers={"If-None-Match": c.workspace_etag}),
        400: unknown_parameter(lambda c: c.workspace),
        404: lambda c: c.client.get(c.missing_workspace),
    },
    ("patch", V2_WORKSPACE): {
        **body_errors("PATCH", lambda c: c.workspace, {"name": "renamed"}),
        404: lambda c: c.client.patch(c.missing_workspace, json={"name": "x"}),
        412: lambda c: c.client.patch(
            c.workspace, json={"name": "x"}, headers={"If-Match": '"stale"'}
        ),
        503: while_moving(lambda c: c.client.patch(c.workspace, json={"name": "x"})),
    },
    ("delete", V2_WORKSPACE): {
        204: lambda c: c.client.delete(c.workspace, headers={"If-Match": c.workspace_etag}),
        400: lambda c: c.client.delete(c.workspace, headers={"If-Match": ""}),
        404: lambda c: c.client.delete(c.missing_workspace),
        409: lambda c: c.client.delete(f"{V2_WORKSPACES}/{DEFAULT_WORKSPACE_ID}"),
        412: lambda c: c.client.delete(c.workspace, headers={"If-Match": '"stale"'}),
        503: while_moving(lambda c: c.client.delete(c.workspace)),
    },
}

AUDIT = "/api/v2/workspaces/{workspace_id}/audit"
AUDIT_SCENARIOS: dict[tuple[str, str], dict[int, Scenario]] = {
    ("get", AUDIT): {
        # Two events (the workspace's and the task's creation): a next page, so Link.
        200: lambda c: c.client.get(f"{c.workspace}/audit?limit=1"),
        400: [
            unknown_parameter(lambda c: f"{c.workspace}/audit"),
            lambda c: c.client.get(f"{c.workspace}/audit?limit=0&cursor=x"),
        ],
        404: lambda c: c.client.get(f"{c.missing_workspace}/audit"),
    },
    ("get", "/api/v2/workspaces/{workspace_id}/tasks/{task_id}/history"): {
        200: lambda c: (  # a second event: a next page, so Link
            c.client.patch(c.url, json={"title": "changed"}),
            c.client.get(f"{c.url}/history?limit=1"),
        )[1],
        400: unknown_parameter(lambda c: f"{c.url}/history"),
        404: [
            lambda c: c.client.get(f"{c.missing}/history"),
            lambda c: c.client.get(f"{c.missing_workspace}/tasks/{c.task_id}/history"),
        ],
    },
}

ADMIN_TOKEN = "spec-admin-token-0123456789abcdef0123"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BACKUPS = "/api/v2/admin/backups"
BACKUP = f"{BACKUPS}/{{backup_id}}"
EXPORT = "/api/v2/workspaces/{workspace_id}/export"
IMPORT = "/api/v2/admin/workspaces/import"


def read_and_close(response: Any) -> Any:
    """A streamed file response: read it, then close it (the file behind it)."""
    response.get_data()
    response.close()
    return response


def new_backup(c: Ctx) -> str:
    return c.client.post(BACKUPS, headers=ADMIN).json["id"]


def admin_off(method: str, url: Callable[[Ctx], str]) -> Scenario:
    """With no ADMIN_TOKEN configured the admin endpoints are not there."""

    def scenario(c: Ctx) -> Any:
        target = url(c)
        c.app.config["ADMIN_TOKEN"] = None
        return c.client.open(target, method=method.upper(), headers=ADMIN)

    return scenario


def admin_gate(method: str, url: Callable[[Ctx], str]) -> dict[int, Scenario]:
    return {
        400: lambda c: c.client.open(url(c) + "?unknown=1", method=method.upper(), headers=ADMIN),
        401: lambda c: c.client.open(url(c), method=method.upper()),
    }


def while_backup_runs(send: Scenario) -> Scenario:
    def scenario(c: Ctx) -> Any:
        with (Path(c.app.config["BACKUP_DIR"]) / ".lock").open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            return send(c)

    return scenario


def on_a_busy_backup(method: str, suffix: str = "") -> Scenario:
    def scenario(c: Ctx) -> Any:
        url = f"{BACKUPS}/{new_backup(c)}{suffix}"
        return while_backup_runs(
            lambda c: c.client.open(url, method=method.upper(), headers=ADMIN)
        )(c)

    return scenario


def damaged_backup(c: Ctx) -> str:
    backup_id = new_backup(c)
    archive = Path(c.app.config["BACKUP_DIR"]) / f"{backup_id}.tar"
    archive.write_bytes(archive.read_bytes()[:-1000])
    return backup_id


def exported(c: Ctx) -> bytes:
    return read_and_close(c.client.get(f"{c.workspace}/export", headers=ADMIN)).data


def import_limited(c: Ctx) -> Any:
    c.app.config["WORKSPACE_IMPORT_MAX_BYTES"] = 1000
    return c.client.post(IMPORT, data=b"x" * 1001, headers={**ADMIN, **GZIP})


GZIP = {"Content-Type": "application/gzip"}
ADMIN_SCENARIOS: dict[tuple[str, str], dict[int, Scenario]] = {
    ("get", BACKUPS): {
        200: lambda c: c.client.get(BACKUPS, headers=ADMIN),
        **admin_gate("get", lambda c: BACKUPS),
        404: admin_off("get", lambda c: BACKUPS),
    },
    ("post", BACKUPS): {
        201: lambda c: c.client.post(BACKUPS, headers=ADMIN),
        **admin_gate("post", lambda c: BACKUPS),
        404: admin_off("post", lambda c: BACKUPS),
        409: while_backup_runs(lambda c: c.client.post(BACKUPS, headers=ADMIN)),
    },
    ("get", BACKUP): {
        200: lambda c: c.client.get(f"{BACKUPS}/{new_backup(c)}", headers=ADMIN),
        **admin_gate("get", lambda c: f"{BACKUPS}/{new_task_id()}"),
        404: [
            lambda c: c.client.get(f"{BACKUPS}/{new_task_id()}", headers=ADMIN),
            admin_off("get", lambda c: f"{BACKUPS}/{new_backup(c)}"),
        ],
    },
    ("delete", BACKUP): {
        204: lambda c: c.client.delete(f"{BACKUPS}/{new_backup(c)}", headers=ADMIN),
        **admin_gate("delete", lambda c: f"{BACKUPS}/{new_backup(c)}"),
        404: [
            lambda c: c.client.delete(f"{BACKUPS}/{new_task_id()}", headers=ADMIN),
            admin_off("delete", lambda c: f"{BACKUPS}/{new_backup(c)}"),
        ],
        409: on_a_busy_backup("delete"),
    },
    ("get", f"{BACKUP}/download"): {
        200: lambda c: read_and_close(
            c.client.get(f"{BACKUPS}/{new_backup(c)}/download", headers=ADMIN)
        ),
        **admin_gate("get", lambda c: f"{BACKUPS}/{new_task_id()}/download"),
        404: [
            lambda c: c.client.get(f"{BACKUPS}/{new_task_id()}/download", headers=ADMIN),
            admin_off("get", lambda c: f"{BACKUPS}/{new_backup(c)}/download"),
        ],
    },
    ("post", f"{BACKUP}/restore"): {
        200: lambda c: c.client.post(f"{BACKUPS}/{new_backup(c)}/restore", headers=ADMIN),
        **admin_gate("post", lambda c: f"{BACKUPS}/{new_backup(c)}/restore"),
        404: [
            lambda c: c.client.post(f"{BACKUPS}/{new_task_id()}/restore", headers=ADMIN),
            admin_off("post", lambda c: f"{BACKUPS}/{new_backup(c)}/restore"),
        ],
        409: on_a_busy_backup("post", "/restore"),
        422: lambda c: c.client.post(f"{BACKUPS}/{damaged_backup(c)}/restore", headers=ADMIN),
    },
    ("get", EXPORT): {
        200: lambda c: read_and_close(c.client.get(f"{c.workspace}/export", headers=ADMIN)),
        **admin_gate("get", lambda c: f"{c.workspace}/export"),
        404: [
            lambda c: c.client.get(f"{c.missing_workspace}/export", headers=ADMIN),
            admin_off("get", lambda c: f"{c.workspace}/export"),
        ],
    },
    ("get", f"{AUDIT}/verify"): {
        # One event per call, of two (the workspace's and the task's): a next piece, so Link.
        200: lambda c: c.client.get(f"{c.workspace}/audit/verify?limit=1", headers=ADMIN),
        **admin_gate("get", lambda c: f"{c.workspace}/audit/verify"),
        404: [
            lambda c: c.client.get(f"{c.missing_workspace}/audit/verify", headers=ADMIN),
            admin_off("get", lambda c: f"{c.workspace}/audit/verify"),
        ],
    },
    ("post", IMPORT): {
        201: lambda c: c.client.post(IMPORT, data=exported(c), headers={**ADMIN, **GZIP}),
        400: [
            lambda c: c.client.post(IMPORT + "?unknown=1", data=b"", headers={**ADMIN, **GZIP}),
            lambda c: c.client.post(
                IMPORT, data={"x": "1"}, headers=ADMIN, content_type="multipart/form-data"
            ),
        ],
        401: lambda c: c.client.post(IMPORT, data=b"", headers=GZIP),
        404: admin_off("post", lambda c: IMPORT),
        413: import_limited,
        415: lambda c: c.client.post(IMPORT, json={}, headers=ADMIN),
        422: lambda c: c.client.post(IMPORT, data=b"not gzip", headers={**ADMIN, **GZIP}),
    },
}

SCENARIOS = {
    **COMMON_SCENARIOS,
    **task_scenarios("1"),
    **task_scenarios("2"),
    **WORKSPACE_SCENARIOS,
    **AUDIT_SCENARIOS,
    **ADMIN_SCENARIOS,
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return make_app("testing").test_client().get("/swagger.json").json


def documented_operations(spec: dict[str, Any]) -> dict[tuple[str, str], set[int]]:
    return {
        (method, path): {int(code) for code in operation["responses"]}
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if method != "parameters"
    }


def test_every_operation_has_a_scenario_for_exactly_its_documented_responses(
    spec: dict[str, Any],
) -> None:
    documented = documented_operations(spec)
    assert set(documented) == set(SCENARIOS), "an operation is undocumented or untested"
    for operation, codes in documented.items():
        assert codes == set(SCENARIOS[operation]), operation


def _nullable_aware(schema: Any) -> Any:
    """Swagger 2.0's ``x-nullable`` as JSON Schema: the value may also be null."""
    if isinstance(schema, dict):
        converted = {k: _nullable_aware(v) for k, v in schema.items() if k != "x-nullable"}
        if schema.get("x-nullable"):
            return {"anyOf": [converted, {"type": "null"}]}
        return converted
    if isinstance(schema, list):
        return [_nullable_aware(item) for item in schema]
    return schema


CASES = [
    (op, status, index)
    for op, statuses in SCENARIOS.items()
    for status, scenarios in statuses.items()
    for index in range(len(scenarios) if isinstance(scenarios, list) else 1)
]


@pytest.mark.parametrize("env", ["testing", "production"])
@pytest.mark.parametrize(
    ("operation", "status", "variant"), CASES, ids=[f"{m} {p} {s}.{i}" for (m, p), s, i in CASES]
)
def test_each_documented_response_really_happens_as_documented(
    spec: dict[str, Any],
    env: str,
    operation: tuple[str, str],
    status: int,
    variant: int,
    tmp_path: Path,
) -> None:
    version = "1" if operation[1].startswith("/api/v1/") else "2"
    admin = {"ADMIN_TOKEN": ADMIN_TOKEN, "BACKUP_DIR": str(tmp_path)}
    ctx = Ctx(make_app(env, MAX_CONTENT_LENGTH=1024 * 1024, **admin), version)
    scenarios = SCENARIOS[operation][status]
    scenario = scenarios[variant] if isinstance(scenarios, list) else scenarios
    response = scenario(ctx)
    assert response.status_code == status, response.get_data(as_text=True)[:300]

    method, path = operation
    documented = spec["paths"][path][method]["responses"][str(status)]
    for header in documented.get("headers", {}):
        assert header in response.headers, f"documented header {header} missing"
    if status in {204, 304}:
        assert response.data == b""
        return
    if "schema" in documented:
        definitions = _nullable_aware(copy.deepcopy(spec["definitions"]))
        schema = {**_nullable_aware(documented["schema"]), "definitions": definitions}
        errors = sorted(Draft4Validator(schema).iter_errors(response.get_json()), key=str)
        assert not errors, [e.message for e in errors][:3]
    if documented.get("schema") == {"$ref": "#/definitions/Problem"}:
        assert response.content_type == "application/problem+json"
        undocumented = set(response.json) - set(spec["definitions"]["Problem"]["properties"])
        assert not undocumented, f"problem members missing from the Problem model: {undocumented}"
    elif produces := spec["paths"][path][method].get("produces"):  # a file, not JSON
        assert response.mimetype in produces
    else:
        assert response.content_type == "application/json"
