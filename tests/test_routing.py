"""Odd paths and hostile Host headers get the same problem answers as any other request."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.conftest import make_app
from tests.test_errors import assert_problem

EVIL_HOST = {"Host": "evil.example"}


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/api/v1/tasks//bulk", "OPTIONS, POST"),
        ("DELETE", "/api/v1//tasks", "GET, HEAD, OPTIONS, POST"),
        ("PUT", "/health//live", "GET, HEAD, OPTIONS"),
    ],
)
def test_double_slash_with_a_method_the_merged_route_lacks_is_405(
    any_client: FlaskClient, method: str, path: str, allow: str
) -> None:
    response = any_client.open(path, method=method)
    assert_problem(response, 405)
    assert response.headers["Allow"] == allow


@pytest.mark.parametrize(
    ("method", "path", "location"),
    [
        ("GET", "/health//live", "/health/live"),
        ("GET", "/problems//x", "/problems/x"),
        ("GET", "/api/v1//tasks?page=2&per_page=5", "/api/v1/tasks?page=2&per_page=5"),
        ("POST", "/api/v1/tasks//bulk", "/api/v1/tasks/bulk"),
    ],
)
def test_double_slash_redirects_with_a_relative_location_whatever_the_host(
    any_client: FlaskClient, method: str, path: str, location: str
) -> None:
    response = any_client.open(path, method=method, headers=EVIL_HOST)
    body = assert_problem(response, 308)
    assert response.headers["Location"] == location
    assert location in body["detail"]
    assert "evil.example" not in response.get_data(as_text=True)


def test_an_unknown_double_slash_path_is_404(any_client: FlaskClient) -> None:
    assert_problem(any_client.get("/api/v1//nothing-here"), 404)


def test_errors_of_the_error_router_reach_the_json_log(capture_log) -> None:  # type: ignore[no-untyped-def]
    app = make_app("production")
    log = capture_log(app)
    response = app.test_client().get("/api/v1/tasks//bulk")
    assert response.status_code == 405
    assert "Traceback" not in log.text
    assert all(line.startswith("{") for line in log.lines())


@pytest.mark.parametrize("env", ["testing", "production"])
def test_trusted_hosts_refuses_other_hosts(env: str) -> None:
    client = make_app(env, TRUSTED_HOSTS=["api.example.com"]).test_client()
    body = assert_problem(client.get("/health/live", headers=EVIL_HOST), 400)
    assert "host" in body["detail"].lower()
    ok = client.get("/health/live", headers={"Host": "api.example.com:8443"})
    assert ok.status_code == 200


def test_trusted_hosts_from_the_environment_is_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_HOSTS", " api.example.com, .example.org ,")
    app = make_app("production")
    assert app.config["TRUSTED_HOSTS"] == ["api.example.com", ".example.org"]
    client = app.test_client()
    assert client.get("/health/live", headers={"Host": "eu.example.org"}).status_code == 200
    assert client.get("/health/live", headers=EVIL_HOST).status_code == 400
