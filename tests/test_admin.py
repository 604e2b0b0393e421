"""The admin gate in front of routing: without the right token an admin route answers the same
for every HTTP method, a method it lacks and OPTIONS included, so nothing (no 405, no Allow)
reveals it. With ADMIN_TOKEN unset: exactly what an unknown URL answers. Set: a 401.

Every admin rule x every method, under the testing and the production configuration.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import make_app

TOKEN = "admin-gate-test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Every operation the spec marks as needing the admin token (test_the_list_is_every_admin_route
# keeps this complete), by its spec path.
ADMIN_PATHS = (
    "/api/v2/admin/backups",
    "/api/v2/admin/backups/{backup_id}",
    "/api/v2/admin/backups/{backup_id}/download",
    "/api/v2/admin/backups/{backup_id}/restore",
    "/api/v2/admin/workspaces/import",
    "/api/v2/workspaces/{workspace_id}/export",
    "/api/v2/workspaces/{workspace_id}/audit/verify",
)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
# Headers that differ between any two responses.
_VOLATILE = {"X-Request-ID", "Content-Length"}


@pytest.fixture(scope="module", params=["testing", "production"])
def admin_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    # One app per configuration for the whole module: the gate answers before any database
    # work, and the tests only switch ADMIN_TOKEN (monkeypatch puts it back).
    backups = tmp_path_factory.mktemp("backups")
    return make_app(request.param, ADMIN_TOKEN=TOKEN, BACKUP_DIR=str(backups))


@pytest.fixture
def client(admin_app: Flask) -> Iterator[FlaskClient]:
    yield admin_app.test_client()
    assert not list(Path(admin_app.config["BACKUP_DIR"]).glob("*.tar")), "no backup was made"


def url_of(path: str) -> str:
    """A concrete URL for a spec path (ids need not exist: the gate answers first)."""
    return path.replace("{backup_id}", str(uuid.uuid4())).replace(
        "{workspace_id}", str(uuid.uuid4())
    )


def spellings(url: str) -> list[str]:
    """The URL as routed, with merged slashes (werkzeug would redirect: 308) and unversioned
    (``/api/...``: the versioning middleware routes it to the latest version)."""
    return [url, url.replace("/admin/", "//admin//").replace("/workspaces/", "//workspaces/"),
            url.replace("/api/v2/", "/api/", 1)]  # fmt: skip


def unknown_counterpart(url: str) -> str:
    """An unknown URL of the same shape (same API prefix, so the same versioning headers)."""
    prefix = "/api/v2/" if url.startswith("/api/v2/") else "/api/"
    return f"{prefix}nothing-here"


def comparable(response: TestResponse) -> tuple[int, dict[str, str], Any]:
    headers = {k: v for k, v in response.headers.items() if k not in _VOLATILE}
    body = response.get_json(silent=True)
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in {"instance", "request_id"}}
    return response.status_code, headers, body


def test_the_list_is_every_admin_route(admin_app: Flask) -> None:
    spec = admin_app.test_client().get("/swagger.json").json
    secured = {
        path
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if method != "parameters" and operation.get("security") == [{"admin_token": []}]
    }
    assert secured == set(ADMIN_PATHS)
    rules = {rule.rule for rule in admin_app.url_map.iter_rules()}
    for path in ADMIN_PATHS:  # and each is a route of the app
        rule = path.replace("{backup_id}", "<uuid:backup_id>")
        assert rule.replace("{workspace_id}", "<uuid:workspace_id>") in rules


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("path", ADMIN_PATHS)
def test_without_admin_token_every_method_answers_like_an_unknown_url(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, path: str, method: str
) -> None:
    monkeypatch.setitem(client.application.config, "ADMIN_TOKEN", None)
    for url in spellings(url_of(path)):
        unknown = comparable(client.open(unknown_counterpart(url), method=method))
        assert unknown[0] == 404
        for headers in ({}, AUTH):  # a token means nothing when none is configured
            response = client.open(url, method=method, headers=headers)
            assert comparable(response) == unknown, (url, response.headers)
            assert "Allow" not in response.headers


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("path", ADMIN_PATHS)
def test_a_missing_or_wrong_token_is_a_401_for_every_method(
    client: FlaskClient, path: str, method: str
) -> None:
    attempts = {
        None: 'Bearer realm="admin"',
        f"Bearer {TOKEN}x": 'Bearer realm="admin", error="invalid_token"',
    }
    for url in spellings(url_of(path)):
        for header, challenge in attempts.items():
            headers = {} if header is None else {"Authorization": header}
            response = client.open(url, method=method, headers=headers)
            assert response.status_code == 401, (url, header)
            assert response.headers["WWW-Authenticate"] == challenge
            assert "Allow" not in response.headers
            if method != "HEAD":
                assert response.json["type"] == "/problems/admin-authentication-required"


@pytest.mark.parametrize("path", ADMIN_PATHS)
def test_the_right_token_sees_the_route_as_before(client: FlaskClient, path: str) -> None:
    url = url_of(path)
    options = client.options(url, headers=AUTH)
    assert options.status_code == 200
    allowed = {m.strip() for m in options.headers["Allow"].split(",")}
    assert "OPTIONS" in allowed
    assert allowed < set(METHODS)
    for method in sorted(set(METHODS) - allowed):
        refused = client.open(url, method=method, headers=AUTH)
        assert refused.status_code == 405, method
        assert {m.strip() for m in refused.headers["Allow"].split(",")} == allowed
    method = sorted(allowed - {"OPTIONS"})[0]
    assert client.open(spellings(url)[1], method=method, headers=AUTH).status_code == 308


def test_other_routes_are_not_gated(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(client.application.config, "ADMIN_TOKEN", None)
    workspace = f"/api/v2/workspaces/{uuid.uuid4()}"
    for url in ("/api/v2/workspaces", f"{workspace}/audit", f"{workspace}/tasks"):
        assert client.options(url).status_code == 200
        assert "Allow" in client.options(url).headers
    assert client.delete(f"{workspace}/audit").status_code == 405
    assert client.get("/api/v2//workspaces").status_code == 308
