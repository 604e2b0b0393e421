"""For every operation, the documented responses are exactly the responses it really gives.

Each documented status code has a scenario that produces it; each scenario's response must carry
the documented headers and validate against the documented schema (Problem for errors).
"""

from __future__ import annotations

import copy
import fcntl
import functools
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft4Validator
from sqlalchemy import update

from app.auth.permissions import PLATFORM_ADMIN, USERS_ONLY
from app.db import db
from app.extensions import health_checks
from app.tasks.models import new_task_id
from app.workspaces.models import DEFAULT_WORKSPACE_ID, WorkspaceRow, WorkspaceState
from tests.auth import add_member, add_user, renew_session
from tests.conftest import make_app
from tests.spec_examples import example_body

BIG = "x" * (1024 * 1024 + 1)
V2_WORKSPACES = "/api/v2/workspaces"
V2_WORKSPACE = "/api/v2/workspaces/{workspace_id}"
# Spec path of the task collection, per API version.
TASKS_PATH = {"1": "/api/v1/tasks", "2": "/api/v2/workspaces/{workspace_id}/tasks"}


class Ctx:
    """A fresh app with a workspace holding one task, and helpers to hit an operation. In v1 the
    workspace is the default one; in v2 a new one. Callers: ``client`` (the workspace's owner),
    ``viewer`` (a viewer there), ``key`` (a read-only API key of it), ``admin`` (a platform
    administrator), ``outsider`` (a member of no workspace), ``anonymous``."""

    def __init__(self, app: Flask, version: str) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.anonymous: FlaskClient = app.test_client(token="")
        self.version = version
        created_workspace = self.client.post(V2_WORKSPACES, json={"name": "fixture"})
        self.workspace_id = created_workspace.json["id"]
        self.workspace = f"{V2_WORKSPACES}/{created_workspace.json['id']}"
        self.workspace_etag = created_workspace.headers["ETag"]
        self.missing_workspace = f"{V2_WORKSPACES}/{new_task_id()}"
        self.tasks = "/api/v1/tasks" if version == "1" else f"{self.workspace}/tasks"
        created = self.client.post(self.tasks, json={"title": "fixture", "status": "done"})
        self.task_id: str = created.json["id"]
        self.etag = created.headers["ETag"]
        self.url = f"{self.tasks}/{self.task_id}"
        self.missing = f"{self.tasks}/{new_task_id()}"

    # The other callers are made on first use: most scenarios need none of them.

    @functools.cached_property
    def admin(self) -> FlaskClient:
        user = add_user(self.app, "platform@example.com", platform_admin=True)
        return self.app.test_client(token=user.token)

    @property
    def _home(self) -> str:
        return str(DEFAULT_WORKSPACE_ID) if self.version == "1" else self.workspace_id

    @functools.cached_property
    def viewer(self) -> FlaskClient:
        user = add_member(self.app, self._home, "viewer", "viewer@example.com")
        return self.app.test_client(token=user.token)

    @functools.cached_property
    def _key(self) -> dict[str, Any]:
        created = self.client.post(
            f"{V2_WORKSPACES}/{self._home}/api-keys", json={"name": "spec", "scopes": ["read"]}
        )
        assert created.status_code == 201, created.json
        return created.json

    @property
    def key(self) -> FlaskClient:
        return self.app.test_client(token=self._key["key"])

    @property
    def key_id(self) -> str:
        return self._key["id"]

    @functools.cached_property
    def oauth_client_id(self) -> str:
        created = self.client.post(
            f"{V2_WORKSPACES}/{self._home}/oauth-clients",
            json={"name": "spec", "redirect_uris": ["https://app.example/cb"]},
        )
        return created.json["client_id"]

    @functools.cached_property
    def outsider(self) -> FlaskClient:
        """A member of no workspace: another tenant's ids are 404s to it."""
        return self.app.test_client(token=add_user(self.app, "outsider@example.com").token)


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


def unknown_parameter_post(url: Callable[[Ctx], str]) -> Scenario:
    return lambda c: c.client.post(url(c) + "?unknown=1")


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
            404: lambda c: c.outsider.get(c.tasks),
        },
        ("post", collection): {
            **body_errors("POST", lambda c: c.tasks, {"title": "new"}, ok_status=201),
            404: lambda c: c.outsider.post(c.tasks, json={"title": "new"}),
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
            404: lambda c: c.outsider.post(
                f"{c.tasks}/bulk", json={"operations": [{"op": "create", "task": {"title": "b"}}]}
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
    return c.admin.post(BACKUPS).json["id"]


def admin_off(method: str, url: Callable[[Ctx], str]) -> Scenario:
    """To anyone but a platform administrator the admin endpoints are not there."""

    def scenario(c: Ctx) -> Any:
        return c.client.open(url(c), method=method.upper())

    return scenario


def admin_gate(method: str, url: Callable[[Ctx], str]) -> dict[int, Scenario]:
    return {400: lambda c: c.admin.open(url(c) + "?unknown=1", method=method.upper())}


def while_backup_runs(send: Scenario) -> Scenario:
    def scenario(c: Ctx) -> Any:
        with (Path(c.app.config["BACKUP_DIR"]) / ".lock").open("a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            return send(c)

    return scenario


def on_a_busy_backup(method: str, suffix: str = "") -> Scenario:
    def scenario(c: Ctx) -> Any:
        url = f"{BACKUPS}/{new_backup(c)}{suffix}"
        return while_backup_runs(lambda c: c.admin.open(url, method=method.upper()))(c)

    return scenario


def damaged_backup(c: Ctx) -> str:
    backup_id = new_backup(c)
    archive = Path(c.app.config["BACKUP_DIR"]) / f"{backup_id}.tar"
    archive.write_bytes(archive.read_bytes()[:-1000])
    return backup_id


def exported(c: Ctx) -> bytes:
    return read_and_close(c.client.get(f"{c.workspace}/export")).data


def import_limited(c: Ctx) -> Any:
    c.app.config["WORKSPACE_IMPORT_MAX_BYTES"] = 1000
    return c.admin.post(IMPORT, data=b"x" * 1001, headers=GZIP)


GZIP = {"Content-Type": "application/gzip"}
ADMIN_SCENARIOS: dict[tuple[str, str], dict[int, Scenario]] = {
    ("get", BACKUPS): {
        200: lambda c: c.admin.get(BACKUPS),
        **admin_gate("get", lambda c: BACKUPS),
        404: admin_off("get", lambda c: BACKUPS),
    },
    ("post", BACKUPS): {
        201: lambda c: c.admin.post(BACKUPS),
        **admin_gate("post", lambda c: BACKUPS),
        404: admin_off("post", lambda c: BACKUPS),
        409: while_backup_runs(lambda c: c.admin.post(BACKUPS)),
    },
    ("get", BACKUP): {
        200: lambda c: c.admin.get(f"{BACKUPS}/{new_backup(c)}"),
        **admin_gate("get", lambda c: f"{BACKUPS}/{new_task_id()}"),
        404: [
            lambda c: c.admin.get(f"{BACKUPS}/{new_task_id()}"),
            admin_off("get", lambda c: f"{BACKUPS}/{new_backup(c)}"),
        ],
    },
    ("delete", BACKUP): {
        204: lambda c: c.admin.delete(f"{BACKUPS}/{new_backup(c)}"),
        **admin_gate("delete", lambda c: f"{BACKUPS}/{new_backup(c)}"),
        404: [
            lambda c: c.admin.delete(f"{BACKUPS}/{new_task_id()}"),
            admin_off("delete", lambda c: f"{BACKUPS}/{new_backup(c)}"),
        ],
        409: on_a_busy_backup("delete"),
    },
    ("get", f"{BACKUP}/download"): {
        200: lambda c: read_and_close(c.admin.get(f"{BACKUPS}/{new_backup(c)}/download")),
        **admin_gate("get", lambda c: f"{BACKUPS}/{new_task_id()}/download"),
        404: [
            lambda c: c.admin.get(f"{BACKUPS}/{new_task_id()}/download"),
            admin_off("get", lambda c: f"{BACKUPS}/{new_backup(c)}/download"),
        ],
    },
    ("post", f"{BACKUP}/restore"): {
        200: lambda c: c.admin.post(f"{BACKUPS}/{new_backup(c)}/restore"),
        **admin_gate("post", lambda c: f"{BACKUPS}/{new_backup(c)}/restore"),
        404: [
            lambda c: c.admin.post(f"{BACKUPS}/{new_task_id()}/restore"),
            admin_off("post", lambda c: f"{BACKUPS}/{new_backup(c)}/restore"),
        ],
        409: on_a_busy_backup("post", "/restore"),
        422: lambda c: c.admin.post(f"{BACKUPS}/{damaged_backup(c)}/restore"),
    },
    ("get", EXPORT): {
        200: lambda c: read_and_close(c.client.get(f"{c.workspace}/export")),
        400: lambda c: c.client.get(f"{c.workspace}/export?unknown=1"),
        404: lambda c: c.client.get(f"{c.missing_workspace}/export"),
    },
    ("get", f"{AUDIT}/verify"): {
        # One event per call, of two (the workspace's and the task's): a next piece, so Link.
        200: lambda c: c.client.get(f"{c.workspace}/audit/verify?limit=1"),
        400: lambda c: c.client.get(f"{c.workspace}/audit/verify?unknown=1"),
        404: lambda c: c.client.get(f"{c.missing_workspace}/audit/verify"),
    },
    ("post", IMPORT): {
        201: lambda c: c.admin.post(IMPORT, data=exported(c), headers=GZIP),
        400: [
            lambda c: c.admin.post(IMPORT + "?unknown=1", data=b"", headers=GZIP),
            lambda c: c.admin.post(IMPORT, data={"x": "1"}, content_type="multipart/form-data"),
        ],
        404: admin_off("post", lambda c: IMPORT),
        413: import_limited,
        415: lambda c: c.admin.post(IMPORT, json={}),
        422: lambda c: c.admin.post(IMPORT, data=b"not gzip", headers=GZIP),
    },
}

PASSWORD = "a passphrase long enough for the policy"
AUTH = "/api/v2/auth"


def registered(c: Ctx) -> FlaskClient:
    """A client signed in as a new account with PASSWORD."""
    c.anonymous.post(f"{AUTH}/register", json={"email": "spec@example.com", "password": PASSWORD})
    tokens = c.anonymous.post(
        f"{AUTH}/login", json={"email": "spec@example.com", "password": PASSWORD}
    ).json
    c.refresh_token = tokens["refresh_token"]  # type: ignore[attr-defined]
    return c.app.test_client(token=tokens["access_token"])


def with_totp(c: Ctx) -> tuple[FlaskClient, Any]:
    """A signed-in account whose second factor is on; its pyotp.TOTP."""
    import pyotp

    user = registered(c)
    totp = pyotp.TOTP(user.post(f"{AUTH}/mfa/totp").json["secret"])
    codes = user.post(f"{AUTH}/mfa/totp/confirm", json={"code": totp.now()}).json
    c.recovery_codes = codes["recovery_codes"]  # type: ignore[attr-defined]
    return user, totp


def mfa_ticket(c: Ctx) -> str:
    with_totp(c)
    return c.anonymous.post(
        f"{AUTH}/login", json={"email": "spec@example.com", "password": PASSWORD}
    ).json["mfa_token"]


AUTH_SCENARIOS: dict[tuple[str, str], dict[int, Scenario]] = {
    ("post", f"{AUTH}/register"): {
        **body_errors(
            "POST",
            lambda c: f"{AUTH}/register",
            {"email": "new@example.com", "password": PASSWORD},
            ok_status=201,
        ),
        409: lambda c: c.anonymous.post(
            f"{AUTH}/register", json={"email": "owner@example.com", "password": PASSWORD}
        ),
    },
    ("post", f"{AUTH}/login"): {
        **body_errors(
            "POST",
            lambda c: f"{AUTH}/login",
            {"email": "spec@example.com", "password": PASSWORD},
        ),
        200: lambda c: (
            registered(c),
            c.anonymous.post(
                f"{AUTH}/login", json={"email": "spec@example.com", "password": PASSWORD}
            ),
        )[1],
        401: lambda c: c.anonymous.post(
            f"{AUTH}/login", json={"email": "nobody@example.com", "password": PASSWORD}
        ),
    },
    ("post", f"{AUTH}/login/mfa"): {
        **body_errors("POST", lambda c: f"{AUTH}/login/mfa", {"mfa_token": "x", "code": "1"}),
        200: lambda c: c.anonymous.post(
            f"{AUTH}/login/mfa",
            json={"mfa_token": mfa_ticket(c), "recovery_code": c.recovery_codes[0]},
        ),
        401: lambda c: c.anonymous.post(
            f"{AUTH}/login/mfa", json={"mfa_token": "not.a.token", "code": "123456"}
        ),
    },
    ("post", f"{AUTH}/refresh"): {
        **body_errors("POST", lambda c: f"{AUTH}/refresh", {"refresh_token": "x"}),
        200: lambda c: (
            registered(c),
            c.anonymous.post(f"{AUTH}/refresh", json={"refresh_token": c.refresh_token}),
        )[1],
        401: lambda c: c.anonymous.post(f"{AUTH}/refresh", json={"refresh_token": "a.b.c"}),
    },
    ("post", f"{AUTH}/logout"): {
        204: lambda c: c.client.post(f"{AUTH}/logout"),
        400: unknown_parameter_post(lambda c: f"{AUTH}/logout"),
    },
    ("post", f"{AUTH}/logout-everywhere"): {
        204: lambda c: c.client.post(f"{AUTH}/logout-everywhere"),
        400: unknown_parameter_post(lambda c: f"{AUTH}/logout-everywhere"),
    },
    ("get", f"{AUTH}/me"): {
        200: lambda c: c.client.get(f"{AUTH}/me"),
        400: unknown_parameter(lambda c: f"{AUTH}/me"),
    },
    ("post", f"{AUTH}/password"): {
        **body_errors(
            "POST",
            lambda c: f"{AUTH}/password",
            {"current_password": PASSWORD, "new_password": PASSWORD + " changed"},
            ok_status=204,
        ),
        204: lambda c: registered(c).post(
            f"{AUTH}/password",
            json={"current_password": PASSWORD, "new_password": PASSWORD + " changed"},
        ),
        401: lambda c: registered(c).post(
            f"{AUTH}/password",
            json={"current_password": "wrong one", "new_password": PASSWORD + " changed"},
        ),
        422: lambda c: registered(c).post(
            f"{AUTH}/password", json={"current_password": PASSWORD, "new_password": "short"}
        ),
    },
    ("post", f"{AUTH}/mfa/totp"): {
        201: lambda c: registered(c).post(f"{AUTH}/mfa/totp"),
        400: unknown_parameter_post(lambda c: f"{AUTH}/mfa/totp"),
        409: lambda c: with_totp(c)[0].post(f"{AUTH}/mfa/totp"),
    },
    ("delete", f"{AUTH}/mfa/totp"): {
        **body_errors(
            "DELETE",
            lambda c: f"{AUTH}/mfa/totp",
            {"password": PASSWORD, "code": "123456"},
            ok_status=204,
        ),
        204: lambda c: (
            lambda user, totp: user.delete(
                f"{AUTH}/mfa/totp", json={"password": PASSWORD, "code": totp.at(time.time() + 30)}
            )
        )(*with_totp(c)),  # fmt: skip
        401: lambda c: (
            lambda user, totp: user.delete(
                f"{AUTH}/mfa/totp", json={"password": "wrong one", "code": totp.now()}
            )
        )(*with_totp(c)),  # fmt: skip
        409: lambda c: registered(c).delete(
            f"{AUTH}/mfa/totp", json={"password": PASSWORD, "code": "123456"}
        ),
    },
    ("post", f"{AUTH}/mfa/totp/confirm"): {
        **body_errors("POST", lambda c: f"{AUTH}/mfa/totp/confirm", {"code": "123456"}),
        200: lambda c: (
            lambda user: (
                lambda totp: user.post(f"{AUTH}/mfa/totp/confirm", json={"code": totp.now()})
            )(__import__("pyotp").TOTP(user.post(f"{AUTH}/mfa/totp").json["secret"]))
        )(registered(c)),  # fmt: skip
        409: lambda c: registered(c).post(f"{AUTH}/mfa/totp/confirm", json={"code": "123456"}),
    },
    ("get", "/.well-known/jwks.json"): {
        200: lambda c: c.anonymous.get("/.well-known/jwks.json"),
        400: unknown_parameter(lambda c: "/.well-known/jwks.json"),
    },
}

MEMBERS = "/api/v2/workspaces/{workspace_id}/members"
KEYS = "/api/v2/workspaces/{workspace_id}/api-keys"


def member_url(c: Ctx) -> str:
    viewer_id = c.viewer.get(f"{AUTH}/me").json["id"]
    return f"{c.workspace}/members/{viewer_id}"


ACCESS_SCENARIOS: dict[tuple[str, str], dict[int, Scenario]] = {
    ("get", MEMBERS): {
        200: lambda c: c.client.get(f"{c.workspace}/members"),
        400: unknown_parameter(lambda c: f"{c.workspace}/members"),
        404: lambda c: c.client.get(f"{c.missing_workspace}/members"),
    },
    ("post", MEMBERS): {
        **body_errors(
            "POST",
            lambda c: f"{c.workspace}/members",
            {"email": "outsider@example.com", "role": "member"},
            ok_status=201,
        ),
        201: lambda c: (
            c.outsider,
            c.client.post(
                f"{c.workspace}/members", json={"email": "outsider@example.com", "role": "member"}
            ),
        )[1],  # fmt: skip
        404: lambda c: c.client.post(
            f"{c.missing_workspace}/members", json={"email": "x@example.com", "role": "member"}
        ),
        409: lambda c: (
            c.viewer,
            c.client.post(  # the viewer: a member already
                f"{c.workspace}/members", json={"email": "viewer@example.com", "role": "member"}
            ),
        )[1],  # fmt: skip
    },
    ("patch", f"{MEMBERS}/{{user_id}}"): {
        **body_errors("PATCH", member_url, {"role": "member"}),
        404: lambda c: c.client.patch(
            f"{c.workspace}/members/{new_task_id()}", json={"role": "member"}
        ),
        409: lambda c: c.client.patch(
            f"{c.workspace}/members/{c.client.get(f'{AUTH}/me').json['id']}",
            json={"role": "viewer"},
        ),
    },
    ("get", f"{MEMBERS}/{{user_id}}"): {
        200: lambda c: c.client.get(member_url(c)),
        400: lambda c: c.client.get(member_url(c) + "?unknown=1"),
        404: lambda c: c.client.get(f"{c.workspace}/members/{new_task_id()}"),
    },
    ("delete", f"{MEMBERS}/{{user_id}}"): {
        204: lambda c: c.client.delete(member_url(c)),
        400: lambda c: c.client.delete(member_url(c) + "?unknown=1"),
        404: lambda c: c.client.delete(f"{c.workspace}/members/{new_task_id()}"),
        409: lambda c: c.client.delete(
            f"{c.workspace}/members/{c.client.get(f'{AUTH}/me').json['id']}"
        ),
    },
    ("get", KEYS): {
        200: lambda c: c.client.get(f"{c.workspace}/api-keys"),
        400: unknown_parameter(lambda c: f"{c.workspace}/api-keys"),
        404: lambda c: c.client.get(f"{c.missing_workspace}/api-keys"),
    },
    ("post", KEYS): {
        **body_errors("POST", lambda c: f"{c.workspace}/api-keys", {"name": "ci"}, ok_status=201),
        404: lambda c: c.client.post(f"{c.missing_workspace}/api-keys", json={"name": "ci"}),
        409: lambda c: too_many_keys(c),
    },
    ("get", f"{KEYS}/{{key_id}}"): {
        200: lambda c: c.client.get(f"{c.workspace}/api-keys/{c.key_id}"),
        400: lambda c: c.client.get(f"{c.workspace}/api-keys/{c.key_id}?unknown=1"),
        404: lambda c: c.client.get(f"{c.workspace}/api-keys/{new_task_id()}"),
    },
    ("delete", f"{KEYS}/{{key_id}}"): {
        204: lambda c: c.client.delete(f"{c.workspace}/api-keys/{c.key_id}"),
        400: lambda c: c.client.delete(f"{c.workspace}/api-keys/{c.key_id}?unknown=1"),
        404: lambda c: c.client.delete(f"{c.workspace}/api-keys/{new_task_id()}"),
    },
    ("post", f"{KEYS}/{{key_id}}/rotate"): {
        **body_errors(
            "POST",
            lambda c: f"{c.workspace}/api-keys/{c.key_id}/rotate",
            {"overlap_seconds": 60},
            ok_status=201,
        ),
        404: lambda c: c.client.post(f"{c.workspace}/api-keys/{new_task_id()}/rotate", json={}),
    },
}


OAUTH_CLIENTS = "/api/v2/workspaces/{workspace_id}/oauth-clients"
OAUTH_CLIENT_BODY = {"name": "board", "redirect_uris": ["https://app.example/cb"]}

OAUTH_CLIENT_SCENARIOS: dict[tuple[str, str], dict[int, Scenario]] = {
    ("get", OAUTH_CLIENTS): {
        200: lambda c: c.client.get(f"{c.workspace}/oauth-clients"),
        400: unknown_parameter(lambda c: f"{c.workspace}/oauth-clients"),
        404: lambda c: c.client.get(f"{c.missing_workspace}/oauth-clients"),
    },
    ("post", OAUTH_CLIENTS): {
        **body_errors(
            "POST", lambda c: f"{c.workspace}/oauth-clients", OAUTH_CLIENT_BODY, ok_status=201
        ),
        404: lambda c: c.client.post(
            f"{c.missing_workspace}/oauth-clients", json=OAUTH_CLIENT_BODY
        ),
        409: lambda c: too_many_oauth_clients(c),
    },
    ("get", f"{OAUTH_CLIENTS}/{{client_id}}"): {
        200: lambda c: c.client.get(f"{c.workspace}/oauth-clients/{c.oauth_client_id}"),
        400: lambda c: c.client.get(f"{c.workspace}/oauth-clients/{c.oauth_client_id}?unknown=1"),
        404: lambda c: c.client.get(f"{c.workspace}/oauth-clients/{new_task_id()}"),
    },
    ("delete", f"{OAUTH_CLIENTS}/{{client_id}}"): {
        204: lambda c: c.client.delete(f"{c.workspace}/oauth-clients/{c.oauth_client_id}"),
        400: lambda c: c.client.delete(
            f"{c.workspace}/oauth-clients/{c.oauth_client_id}?unknown=1"
        ),
        404: lambda c: c.client.delete(f"{c.workspace}/oauth-clients/{new_task_id()}"),
    },
}


def too_many_oauth_clients(c: Ctx) -> Any:
    from app.oauth import service

    assert c.oauth_client_id  # one client exists
    limit, service.MAX_ACTIVE_CLIENTS = service.MAX_ACTIVE_CLIENTS, 1
    try:
        return c.client.post(f"{c.workspace}/oauth-clients", json=OAUTH_CLIENT_BODY)
    finally:
        service.MAX_ACTIVE_CLIENTS = limit


def too_many_keys(c: Ctx) -> Any:
    from app.api_keys import service

    assert c.key_id  # one key exists
    limit, service.MAX_ACTIVE_KEYS = service.MAX_ACTIVE_KEYS, 1
    try:
        return c.client.post(f"{c.workspace}/api-keys", json={"name": "one too many"})
    finally:
        service.MAX_ACTIVE_KEYS = limit


DENY_LIST = "/api/v2/admin/ip-deny-list"
ALLOW_LIST = "/api/v2/workspaces/{workspace_id}/ip-allow-list"
JSON = "application/json"


def deny_rule(c: Ctx, network: str = "203.0.113.0/24") -> str:
    return c.admin.post(DENY_LIST, json={"network": network}).json["id"]


def allow_rule(c: Ctx, network: str = "127.0.0.0/8") -> str:
    """A rule of the context's workspace; the first must admit the test client (127.0.0.1)."""
    return c.client.post(f"{c.workspace}/ip-allow-list", json={"network": network}).json["id"]


def deny_again(c: Ctx) -> Any:
    deny_rule(c)
    return c.admin.post(DENY_LIST, json={"network": "203.0.113.0/24"})


def allow_again(c: Ctx) -> Any:
    allow_rule(c)
    return c.client.post(f"{c.workspace}/ip-allow-list", json={"network": "127.0.0.0/8"})


def full_ip_lists(send: Scenario) -> Scenario:
    """``send`` while each list holds one rule, the most it may."""

    def scenario(c: Ctx) -> Any:
        from app.ip_rules import service

        limits = service.MAX_DENY_RULES, service.MAX_ALLOW_RULES
        service.MAX_DENY_RULES = service.MAX_ALLOW_RULES = 1
        try:
            deny_rule(c)
            allow_rule(c)
            return send(c)
        finally:
            service.MAX_DENY_RULES, service.MAX_ALLOW_RULES = limits

    return scenario


def remove_own_allow_rule(c: Ctx) -> Any:
    """Remove the rule admitting the caller while another one stays: a lockout."""
    mine = allow_rule(c)
    allow_rule(c, "192.0.2.0/24")
    return c.client.delete(f"{c.workspace}/ip-allow-list/{mine}")


def allow_list_post() -> dict[int, Any]:
    scenarios: dict[int, Any] = body_errors(
        "POST", lambda c: f"{c.workspace}/ip-allow-list", {"network": "127.0.0.0/8"}, 201
    )
    other_network = {"network": "192.0.2.0/24"}
    scenarios[404] = lambda c: c.client.post(
        f"{c.missing_workspace}/ip-allow-list", json=other_network
    )
    scenarios[409] = [
        allow_again,
        full_ip_lists(lambda c: c.client.post(f"{c.workspace}/ip-allow-list", json=other_network)),
    ]
    # Invalid fields; or a first rule that leaves the caller (127.0.0.1) outside.
    scenarios[422] = [
        scenarios[422],
        lambda c: c.client.post(f"{c.workspace}/ip-allow-list", json=other_network),
    ]
    return scenarios


IP_RULE_SCENARIOS: dict[tuple[str, str], dict[int, Any]] = {
    ("get", DENY_LIST): {
        200: lambda c: c.admin.get(DENY_LIST),
        **admin_gate("get", lambda c: DENY_LIST),
        404: admin_off("get", lambda c: DENY_LIST),
    },
    ("post", DENY_LIST): {
        201: lambda c: c.admin.post(DENY_LIST, json={"network": "203.0.113.0/24"}),
        400: [
            lambda c: c.admin.post(DENY_LIST, data='{"network": ', content_type=JSON),
            lambda c: c.admin.post(DENY_LIST + "?unknown=1", json={"network": "192.0.2.0/24"}),
        ],
        404: admin_off("post", lambda c: DENY_LIST),
        409: [
            deny_again,
            full_ip_lists(lambda c: c.admin.post(DENY_LIST, json={"network": "192.0.2.0/24"})),
        ],
        413: lambda c: c.admin.post(DENY_LIST, data=BIG, content_type=JSON),
        415: lambda c: c.admin.post(DENY_LIST, data="network=x", content_type="text/plain"),
        422: [
            lambda c: c.admin.post(DENY_LIST, json={"network": "0.0.0.0/0"}),  # too broad
            lambda c: c.admin.post(DENY_LIST, json={"network": "127.0.0.0/8"}),  # the caller
        ],
    },
    ("delete", f"{DENY_LIST}/{{rule_id}}"): {
        204: lambda c: c.admin.delete(f"{DENY_LIST}/{deny_rule(c)}"),
        **admin_gate("delete", lambda c: f"{DENY_LIST}/{deny_rule(c)}"),
        404: [
            lambda c: c.admin.delete(f"{DENY_LIST}/{new_task_id()}"),
            admin_off("delete", lambda c: f"{DENY_LIST}/{deny_rule(c)}"),
        ],
    },
    ("get", ALLOW_LIST): {
        200: lambda c: c.client.get(f"{c.workspace}/ip-allow-list"),
        400: unknown_parameter(lambda c: f"{c.workspace}/ip-allow-list"),
        404: lambda c: c.client.get(f"{c.missing_workspace}/ip-allow-list"),
    },
    ("post", ALLOW_LIST): allow_list_post(),
    ("delete", f"{ALLOW_LIST}/{{rule_id}}"): {
        204: lambda c: c.client.delete(f"{c.workspace}/ip-allow-list/{allow_rule(c)}"),
        400: lambda c: c.client.delete(f"{c.workspace}/ip-allow-list/{allow_rule(c)}?unknown=1"),
        404: lambda c: c.client.delete(f"{c.workspace}/ip-allow-list/{new_task_id()}"),
        422: remove_own_allow_rule,
    },
}


SCENARIOS = {
    **IP_RULE_SCENARIOS,
    **AUTH_SCENARIOS,
    **ACCESS_SCENARIOS,
    **COMMON_SCENARIOS,
    **task_scenarios("1"),
    **task_scenarios("2"),
    **WORKSPACE_SCENARIOS,
    **AUDIT_SCENARIOS,
    **ADMIN_SCENARIOS,
    **OAUTH_CLIENT_SCENARIOS,
}


SPEC = make_app("testing").test_client().get("/swagger.json").json


def concrete_url(c: Ctx, path: str) -> str:
    """The operation's path with the context's ids (others: ids that exist nowhere)."""
    url = path.replace("/api/v2/workspaces/{workspace_id}", c.workspace)
    if "{task_id}" in url:
        url = url.replace("{task_id}", c.task_id)
    if "{key_id}" in url:
        url = url.replace("{key_id}", c.key_id)
    if "{client_id}" in url:
        url = url.replace("{client_id}", c.oauth_client_id)
    url = url.replace("{rule_id}", str(new_task_id()))  # any id: refused before the lookup
    return url.replace("{user_id}", str(new_task_id())).replace("{backup_id}", str(new_task_id()))


def refused(operation: dict[str, Any], path: str, method: str) -> Scenario:
    """The 403 of an operation: a viewer for a workspace action a viewer lacks, an API key for
    what only users may do; with the spec's example body, so nothing else can go wrong first."""
    body = example_body(operation, SPEC)
    caller = "key" if operation["x-permission"] == USERS_ONLY else "viewer"
    return lambda c: getattr(c, caller).open(
        concrete_url(c, path), method=method.upper(), json=body
    )


def anonymous(path: str, method: str) -> Scenario:
    return lambda c: c.anonymous.open(concrete_url(c, path), method=method.upper())


_throttle_apps: dict[str, Flask] = {}


def throttle_app(env: str) -> Flask:
    """One app per profile that allows one request per hour: each scenario spends the budget of
    a caller of its own, so one app serves them all."""
    if env not in _throttle_apps:
        _throttle_apps[env] = make_app(
            env,
            RATE_LIMIT_API="1 per hour",
            RATE_LIMIT_AUTH_IP="1 per hour",
            BACKUP_DIR=tempfile.mkdtemp(prefix="taskapi-throttle-"),
        )
    return _throttle_apps[env]


def throttled(operation: dict[str, Any], path: str, method: str) -> Scenario:
    """The 429 of an operation: the same call twice, by a new caller, on the throttle app (a
    new session the second time: a log-out must not end the caller before the limit answers).
    The limit answers before any view, so the context's ids need not exist there."""

    def scenario(c: Ctx) -> Any:
        url, body = concrete_url(c, path), example_body(operation, SPEC)
        app = throttle_app(c.app.config["APP_ENV"])
        admin = operation.get("x-permission") == PLATFORM_ADMIN
        caller = add_user(app, f"caller-{uuid.uuid4().hex}@example.com", platform_admin=admin)
        client = app.test_client(token=caller.token)
        client.open(url, method=method.upper(), json=body).close()
        renew_session(client)
        return client.open(url, method=method.upper(), json=body)

    return scenario


def _with_access_scenarios(
    scenarios: dict[tuple[str, str], dict[int, Scenario]],
) -> dict[tuple[str, str], dict[int, Scenario]]:
    """Every documented 401, 403 and 429 gets its scenario from the operation's x-permission."""
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            own = scenarios.setdefault((method, path), {})
            if "401" in operation["responses"] and 401 not in own:
                own[401] = anonymous(path, method)
            if "403" in operation["responses"] and 403 not in own:
                own[403] = refused(operation, path, method)
            if "429" in operation["responses"] and 429 not in own:
                own[429] = throttled(operation, path, method)
    return scenarios


SCENARIOS = _with_access_scenarios(SCENARIOS)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return SPEC


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
    ctx = Ctx(make_app(env, MAX_CONTENT_LENGTH=1024 * 1024, BACKUP_DIR=str(tmp_path)), version)
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
