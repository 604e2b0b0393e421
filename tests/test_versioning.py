"""API versioning: by URL, by Accept-Version header, and refusals as problem responses."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import CapturedLog


def test_url_version_is_served_and_reported(any_client: FlaskClient) -> None:
    response = any_client.get("/api/v1/hello")
    assert response.status_code == 200
    assert response.json == {"message": "Hello World"}
    assert response.headers["API-Version"] == "1"
    assert "Accept-Version" not in response.headers.get("Vary", "")


@pytest.mark.parametrize("header", ["1", "v1", " V1 ", "01"])
def test_header_selects_the_version_on_unversioned_paths(
    any_client: FlaskClient, header: str
) -> None:
    response = any_client.get("/api/hello", headers={"Accept-Version": header})
    assert response.status_code == 200
    assert response.json == {"message": "Hello World"}
    assert response.headers["API-Version"] == "1"
    assert "Accept-Version" in response.headers["Vary"]


def test_unversioned_path_without_header_gets_the_latest(any_client: FlaskClient) -> None:
    response = any_client.get("/api/hello")
    assert response.status_code == 200
    assert response.headers["API-Version"] == "2"
    assert "Deprecation" not in response.headers


def test_access_log_shows_the_path_the_client_sent(
    production_app: Flask, capture_log: Callable[[Flask], CapturedLog]
) -> None:
    log = capture_log(production_app)
    production_app.test_client().get("/api/hello")
    [access] = [r for r in log.records() if r["logger"] == "app.access"]
    assert access["path"] == "/api/hello"


def test_header_versioning_reaches_post_bodies_too(any_client: FlaskClient) -> None:
    response = any_client.post("/api/hello", json={"name": "Ada"}, headers={"Accept-Version": "1"})
    assert response.status_code == 200
    assert response.json == {"message": "Hello, Ada!"}


@pytest.mark.parametrize("path", ["/api/v3/hello", "/api/v0/hello", "/api/v10/hello", "/api/v3"])
def test_unsupported_url_version_is_a_404_problem(any_client: FlaskClient, path: str) -> None:
    response = any_client.get(path)
    assert response.status_code == 404
    assert response.content_type == "application/problem+json"
    body = response.json
    assert body["type"] == "/problems/unsupported-api-version"
    assert body["supported_versions"] == ["1", "2"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "API-Version" not in response.headers


@pytest.mark.parametrize("header", ["3", "abc", "", "1.5", "v99999"])
def test_unsupported_header_version_is_a_406_problem(any_client: FlaskClient, header: str) -> None:
    response = any_client.get("/api/hello", headers={"Accept-Version": header})
    assert response.status_code == 406
    body = response.json
    assert body["type"] == "/problems/unsupported-api-version"
    assert body["supported_versions"] == ["1", "2"]
    assert header not in body["detail"] or not header


def test_conflicting_url_and_header_is_a_400_problem(any_client: FlaskClient) -> None:
    response = any_client.get("/api/v1/hello", headers={"Accept-Version": "2"})
    assert response.status_code == 400
    assert response.json["type"] == "/problems/api-version-conflict"


def test_agreeing_url_and_header_is_fine(any_client: FlaskClient) -> None:
    response = any_client.get("/api/v1/hello", headers={"Accept-Version": "v1"})
    assert response.status_code == 200


def test_non_api_paths_are_not_versioned(any_client: FlaskClient) -> None:
    response = any_client.get("/health/live", headers={"Accept-Version": "7"})
    assert response.status_code == 200
    assert "API-Version" not in response.headers


def test_unknown_path_under_a_supported_version_is_a_plain_404(any_client: FlaskClient) -> None:
    response = any_client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json["type"] == "about:blank"


def test_vary_is_merged_with_one_the_view_already_sets(app: Flask) -> None:
    @app.get("/api/v2/varied")
    def varied() -> tuple[dict[str, str], int, dict[str, str]]:
        return {"ok": "yes"}, 200, {"Vary": "Accept-Encoding"}

    response = app.test_client().get("/api/varied")
    assert response.headers.getlist("Vary") == ["Accept-Encoding, Accept-Version"]


@pytest.mark.parametrize("path", ["/api/vX/hello", "/api/v/x", "/api/views"])
def test_paths_that_merely_start_with_v_are_not_versions(
    any_client: FlaskClient, path: str
) -> None:
    response = any_client.get(path)
    assert response.status_code == 404
    assert response.json["type"] == "about:blank"
    assert response.headers["API-Version"] == "2"  # served (and not found) by the latest


def test_v1_is_deprecated_with_a_sunset_and_a_successor(any_client: FlaskClient) -> None:
    for path in ("/api/v1/hello", "/api/v1/tasks", "/api/v1/nothing-here"):
        response = any_client.get(path)
        assert response.headers["API-Version"] == "1"
        assert response.headers["Deprecation"] == "@1795651200"  # RFC 9745: 2026-11-26
        assert response.headers["Sunset"] == "Wed, 30 Jun 2027 00:00:00 GMT"  # RFC 8594
        assert '</api/v2/workspaces>; rel="successor-version"' in response.headers.getlist("Link")
    current = any_client.get("/api/v2/hello")
    assert "Deprecation" not in current.headers
    assert "Sunset" not in current.headers


def test_v1_operations_are_deprecated_in_the_spec(any_client: FlaskClient) -> None:
    paths = any_client.get("/swagger.json").json["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            assert operation.get("deprecated", False) == path.startswith("/api/v1/"), (path, method)
