"""CORS with an explicit allowlist: allowed origins get the headers on every response and a 204
preflight; other origins get none; preflights need no credentials, except to admin URLs, which
stay behind their gate.

Under the testing and the production configuration.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import create_app
from app.config import ConfigError, load_config
from app.core.cors import parse_origins
from tests.auth import add_user
from tests.conftest import make_app
from tests.test_admin import ADMIN_PATHS, comparable, spellings, unknown_counterpart, url_of

ALLOWED = "https://app.example.com"
OTHER_ALLOWED = "http://localhost:3000"
DISALLOWED = "https://evil.example"
EXPOSED = (
    "ETag, Location, Link, Retry-After, API-Version, Deprecation, Sunset, X-Request-ID, "
    "WWW-Authenticate, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
)
PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, PATCH, DELETE",
    "Access-Control-Allow-Headers": (
        "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, X-Request-ID, "
        "Accept-Version"
    ),
    "Access-Control-Max-Age": "600",
}


def cors_headers(response: TestResponse) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def preflight(
    client: FlaskClient, url: str, origin: str, method: str = "POST", **headers: str
) -> TestResponse:
    return client.options(
        url, headers={"Origin": origin, "Access-Control-Request-Method": method, **headers}
    )


@pytest.fixture(scope="module", params=["testing", "production"])
def cors_app(request: pytest.FixtureRequest) -> Flask:
    app = make_app(request.param, CORS_ORIGINS=f"{ALLOWED}, {OTHER_ALLOWED}")

    @app.get("/test-boom")
    def boom() -> Any:
        raise RuntimeError("boom")

    return app


@pytest.fixture
def client(cors_app: Flask) -> FlaskClient:
    return cors_app.test_client()


# --- Off by default -----------------------------------------------------------------------------


def test_without_cors_origins_there_is_no_cors_header(any_client: FlaskClient) -> None:
    response = any_client.get("/api/v1/tasks", headers={"Origin": ALLOWED})
    assert cors_headers(response) == {}
    assert "Vary" not in response.headers
    options = preflight(any_client, "/api/v1/tasks", ALLOWED)
    assert options.status_code == 200  # Flask's own OPTIONS answer, as before
    assert cors_headers(options) == {}


# --- Simple requests ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/api/v1/tasks", {}, 200),
        ("POST", "/api/v1/hello", {"json": {"name": "Ada"}}, 200),
        ("POST", "/api/v1/hello", {"json": {"name": ""}}, 422),
        ("GET", "/nothing-here", {}, 404),
        ("DELETE", "/health/live", {}, 405),
        ("GET", "/api/v1//tasks", {}, 308),
        ("GET", "/test-boom", {}, 500),
        ("GET", "/swagger.json", {}, 200),
    ],
)
@pytest.mark.parametrize("origin", [ALLOWED, OTHER_ALLOWED])
def test_an_allowed_origin_can_read_every_response(
    client: FlaskClient, origin: str, method: str, path: str, kwargs: dict[str, Any], status: int
) -> None:
    response = client.open(path, method=method, headers={"Origin": origin}, **kwargs)
    assert response.status_code == status
    assert cors_headers(response) == {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": EXPOSED,
    }
    assert response.headers.getlist("Vary") == ["Origin"]


@pytest.mark.parametrize(
    "origin",
    [
        DISALLOWED,
        "null",  # sandboxed frames, file: pages
        "https://app.example.com.evil.example",
        "http://app.example.com",  # another scheme is another origin
        "https://APP.example.com",  # browsers send origins lower-case: this one is forged
        "https://app.example.com:8443",
    ],
)
def test_other_origins_get_no_cors_header(client: FlaskClient, origin: str) -> None:
    for path in ("/api/v1/tasks", "/nothing-here"):
        response = client.get(path, headers={"Origin": origin})
        assert cors_headers(response) == {}
        assert response.headers.getlist("Vary") == ["Origin"]
    options = preflight(client, "/api/v1/tasks", origin)
    assert options.status_code == 200  # the ordinary OPTIONS answer: the browser refuses
    assert cors_headers(options) == {}


def test_vary_origin_is_sent_without_an_origin_and_merged_with_other_vary(
    client: FlaskClient,
) -> None:
    assert client.get("/api/v1/tasks").headers.getlist("Vary") == ["Origin"]
    unversioned = client.get("/api/hello", headers={"Origin": ALLOWED})  # versioning adds Vary
    assert unversioned.headers.getlist("Vary") == ["Accept-Version, Origin"]


# --- Preflights ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "method"),
    [
        ("/api/v1/tasks", "POST"),
        ("/api/hello", "GET"),
        ("/api/v2/workspaces", "POST"),
        ("/health/live", "GET"),
    ],
)
def test_an_allowed_origins_preflight_is_a_204(client: FlaskClient, url: str, method: str) -> None:
    response = preflight(
        client, url, ALLOWED, method, **{"Access-Control-Request-Headers": "content-type,if-match"}
    )
    assert response.status_code == 204
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers
    assert cors_headers(response) == {"Access-Control-Allow-Origin": ALLOWED, **PREFLIGHT}
    assert response.headers.getlist("Vary") == ["Origin"] or url == "/api/hello"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_plain_options_request_is_not_a_preflight(client: FlaskClient) -> None:
    response = client.options("/api/v1/tasks", headers={"Origin": ALLOWED})
    assert response.status_code == 200
    assert "Allow" in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers


def test_a_preflight_to_an_unknown_path_is_a_404(client: FlaskClient) -> None:
    response = preflight(client, "/nothing-here", ALLOWED)
    assert response.status_code == 404
    assert "Access-Control-Allow-Methods" not in response.headers


def test_a_preflight_needs_no_credentials(cors_app: Flask) -> None:
    """Browsers never send Authorization on a preflight: it must not be a 401."""
    anonymous = cors_app.test_client(token="")
    for url, method in [("/api/v2/workspaces", "POST"), ("/api/v1/tasks", "GET")]:
        response = preflight(
            anonymous, url, ALLOWED, method, **{"Access-Control-Request-Headers": "authorization"}
        )
        assert response.status_code == 204
        assert cors_headers(response) == {"Access-Control-Allow-Origin": ALLOWED, **PREFLIGHT}
    # The request itself is then authenticated, and its 401 is readable, challenge included.
    refused = anonymous.post("/api/v2/workspaces", json={"name": "x"}, headers={"Origin": ALLOWED})
    assert refused.status_code == 401
    assert "WWW-Authenticate" in refused.headers
    assert "WWW-Authenticate" in refused.headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize("path", ADMIN_PATHS)
def test_a_preflight_does_not_reveal_admin_routes(cors_app: Flask, path: str) -> None:
    """A preflight carries no token: the gate's 401, as for any request without one. With the
    token of anyone but a platform administrator: exactly an unknown URL's preflight. Never the
    allow headers for either; a platform administrator's gets the ordinary 204."""
    anonymous = cors_app.test_client(token="")
    not_admin = cors_app.test_client()  # the default workspace's owner
    for url in spellings(url_of(path)):
        gated = preflight(anonymous, url, ALLOWED)
        assert gated.status_code == 401
        assert gated.json["type"] == "/problems/authentication-required"
        assert "Access-Control-Allow-Methods" not in gated.headers
        assert "Allow" not in gated.headers
        hidden = preflight(not_admin, url, ALLOWED)
        assert comparable(hidden) == comparable(
            preflight(not_admin, unknown_counterpart(url), ALLOWED)
        )
        assert hidden.status_code == 404
        assert "Access-Control-Allow-Methods" not in hidden.headers
        assert "Allow" not in hidden.headers
    admin = add_user(cors_app, f"root-{uuid.uuid4().hex[:8]}@example.com", platform_admin=True)
    response = preflight(cors_app.test_client(token=admin.token), url_of(path), ALLOWED)
    assert response.status_code == 204
    assert cors_headers(response) == {"Access-Control-Allow-Origin": ALLOWED, **PREFLIGHT}


# --- Settings -----------------------------------------------------------------------------------


def test_any_origin_is_for_local_work_only() -> None:
    client = make_app("testing", CORS_ORIGINS="*").test_client()
    response = client.get("/api/v1/tasks", headers={"Origin": DISALLOWED})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert preflight(client, "/api/v1/tasks", DISALLOWED).status_code == 204
    with pytest.raises(ConfigError, match=r"CORS_ORIGINS is '\*'"):
        make_app("production", CORS_ORIGINS=f"{ALLOWED},*")


def test_cors_origins_from_the_environment_is_a_list() -> None:
    environ = {
        "APP_ENV": "testing",
        "CORS_ORIGINS": f" {ALLOWED} ,{OTHER_ALLOWED},",
        "CORS_MAX_AGE": "60",
    }
    settings = load_config(environ=environ)
    assert settings["CORS_ORIGINS"] == [ALLOWED, OTHER_ALLOWED]
    assert settings["CORS_MAX_AGE"] == 60
    assert load_config(environ={"APP_ENV": "testing", "CORS_ORIGINS": ""})["CORS_ORIGINS"] is None


def test_origins_are_normalised_as_browsers_send_them() -> None:
    assert parse_origins(
        ["HTTPS://App.Example.com:443/", "http://localhost:80", "http://[::1]:8080"],
        production=True,
    ) == ("https://app.example.com", "http://localhost", "http://[::1]:8080")


@pytest.mark.parametrize(
    "value",
    [
        "app.example.com",
        "ftp://app.example.com",
        "https://app.example.com/path",
        "https://app.example.com?x=1",
        "https://user@app.example.com",
        "https://*.example.com",
        "https://app.example.com:99999",
        "null",
    ],
)
def test_a_malformed_origin_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        create_app({"APP_ENV": "testing", "CORS_ORIGINS": value})


@pytest.mark.parametrize("max_age", [-1, "600", None])
def test_a_bad_max_age_is_refused(max_age: Any) -> None:
    with pytest.raises(ConfigError, match="CORS_MAX_AGE"):
        create_app({"APP_ENV": "testing", "CORS_ORIGINS": ALLOWED, "CORS_MAX_AGE": max_age})


def test_max_age_is_the_setting() -> None:
    client = make_app("testing", CORS_ORIGINS=[ALLOWED], CORS_MAX_AGE=7200).test_client()
    assert preflight(client, "/api/v1/tasks", ALLOWED).headers["Access-Control-Max-Age"] == "7200"
