"""Security headers on every response, whoever built it; the Swagger UI page's own policy; HSTS;
``no_store`` for credential responses.

Under the testing and the production configuration, over HTTP and HTTPS.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest
from flask import Flask, abort, jsonify
from flask.testing import FlaskClient
from flask_restx import Namespace, Resource
from werkzeug.test import TestResponse

from app import create_app
from app.config import BaseConfig, ConfigError, load_config
from app.core.security_headers import no_store
from tests.conftest import make_app

API_CSP = "default-src 'none'; frame-ancestors 'none'"
EXPECTED = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
HSTS = "Strict-Transport-Security"
PRODUCTION_HSTS = "max-age=31536000; includeSubDomains"
HTTPS = "https://localhost"
LIMIT = BaseConfig.MAX_CONTENT_LENGTH
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.S)


def assert_security_headers(
    response: TestResponse, *, csp: str = API_CSP, hsts: str | None = None
) -> None:
    """Each header exactly once, with exactly this value."""
    for name, value in {**EXPECTED, "Content-Security-Policy": csp}.items():
        assert response.headers.getlist(name) == [value], (name, response.headers)
    assert response.headers.getlist(HSTS) == ([hsts] if hsts else [])


def sha256_source(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


def with_test_routes(app: Flask) -> Flask:
    """A route that fails (500), one that sets its own headers, and credential routes."""

    @app.get("/test-boom")
    def boom() -> Any:
        raise RuntimeError("boom")

    @app.get("/test-own-headers")
    def own_headers() -> Any:
        response = jsonify(ok=True)
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        response.headers["Content-Security-Policy"] = "default-src 'self'"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    @app.post("/test-token")
    @no_store
    def token() -> Any:
        response = jsonify(access_token="secret")
        response.headers["Cache-Control"] = "private, max-age=60"  # no_store wins
        return response

    @app.post("/test-token-refused")
    @no_store
    def token_refused() -> Any:
        abort(401)

    ns = Namespace("test-credentials")

    @ns.route("")
    class Credentials(Resource):
        @no_store
        def post(self) -> Any:
            return {"api_key": "tk_secret"}, 201

    app.extensions["api"].add_namespace(ns, path="/test-credentials")
    return app


@pytest.fixture(scope="module", params=["testing", "production"])
def headers_app(request: pytest.FixtureRequest) -> Flask:
    return with_test_routes(make_app(request.param))


@pytest.fixture
def client(headers_app: Flask) -> FlaskClient:
    return headers_app.test_client()


def hsts_for(app: Flask, base_url: str) -> str | None:
    production = app.config["APP_ENV"] == "production"
    return PRODUCTION_HSTS if production and base_url == HTTPS else None


REQUESTS: list[tuple[str, str, dict[str, Any], int]] = [
    ("GET", "/", {}, 200),
    ("GET", "/api/v1/tasks", {}, 200),
    ("HEAD", "/api/v1/tasks", {}, 200),
    ("OPTIONS", "/api/v1/tasks", {}, 200),
    ("GET", "/api/hello", {"headers": {"Accept-Version": "1"}}, 200),
    ("POST", "/api/v1/hello", {"json": {"name": "Ada"}}, 200),
    ("GET", "/health/live", {}, 200),
    ("GET", "/health/ready", {}, 200),
    ("GET", "/swagger.json", {}, 200),
    ("GET", "/swaggerui/swagger-ui-bundle.js", {}, 200),
    ("GET", "/swaggerui/swagger-ui.css", {}, 200),
    ("GET", "/problems", {}, 200),
    ("GET", "/nothing-here", {}, 404),
    ("GET", "/api/v9/hello", {}, 404),
    ("DELETE", "/health/live", {}, 405),
    ("GET", "/api/v1//tasks", {}, 308),
    ("POST", "/api/v1/hello", {"data": b"{", "content_type": "application/json"}, 400),
    (
        "POST",
        "/api/v1/hello",
        {"data": b" " * (LIMIT + 1), "content_type": "application/json"},
        413,
    ),
    ("GET", "/test-boom", {}, 500),
]


@pytest.mark.parametrize("base_url", ["http://localhost", HTTPS])
@pytest.mark.parametrize(("method", "path", "kwargs", "status"), REQUESTS)
def test_every_response_carries_the_security_headers(
    client: FlaskClient,
    base_url: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    response = client.open(path, method=method, base_url=base_url, **kwargs)
    response.close()  # static files are streamed from an open file
    assert response.status_code == status
    assert_security_headers(response, hsts=hsts_for(client.application, base_url))


@pytest.mark.parametrize("path", ["/api/v1/tasks", "/swaggerui/swagger-ui.css"])
def test_not_modified_responses_carry_them_too(client: FlaskClient, path: str) -> None:
    first = client.get(path, base_url=HTTPS)
    first.close()
    etag = first.headers["ETag"]
    response = client.get(path, base_url=HTTPS, headers={"If-None-Match": etag})
    response.close()
    assert response.status_code == 304
    assert_security_headers(response, hsts=hsts_for(client.application, HTTPS))


def swagger_ui_policy(html: str) -> str:
    scripts = " ".join(sha256_source(s) for s in _INLINE_SCRIPT.findall(html))
    return (
        "default-src 'none'; "
        f"script-src 'self' {scripts}; "
        "style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; "
        "font-src 'self'; "
        "connect-src 'self'; "
        "form-action 'self'; "
        "base-uri 'none'; "
        "frame-ancestors 'none'"
    )


def directives(policy: str) -> dict[str, list[str]]:
    parsed = (item.split() for item in policy.split(";"))
    return {words[0]: words[1:] for words in parsed if words}


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_swagger_ui_page_policy_lets_its_own_scripts_run(client: FlaskClient, method: str) -> None:
    page = client.get("/swagger", base_url=HTTPS)
    html = page.get_data(as_text=True)
    inline = _INLINE_SCRIPT.findall(html)
    assert inline, "Flask-RESTX's page starts Swagger UI from an inline script"
    response = client.open("/swagger", method=method, base_url=HTTPS)
    policy = response.headers["Content-Security-Policy"]
    assert policy == swagger_ui_policy(html)
    assert_security_headers(response, csp=policy, hsts=hsts_for(client.application, HTTPS))
    parsed = directives(policy)
    for script in inline:  # every inline script is allowed by its hash, nothing else inline
        assert sha256_source(script) in parsed["script-src"]
    assert "'unsafe-inline'" not in parsed["script-src"]
    assert "'unsafe-eval'" not in parsed["script-src"]
    # The bundle and the spec come from this origin; "Try it out" calls this origin.
    sources = re.findall(r'<script src="([^"]+)"', html)
    assert sources
    assert all(s.startswith("/swaggerui/") for s in sources)
    assert '"/swagger.json"' in html
    assert parsed["connect-src"] == ["'self'"]


def test_swagger_ui_policy_follows_the_page_under_a_script_root(client: FlaskClient) -> None:
    root = client.get("/swagger")
    mounted = client.get("/swagger", environ_overrides={"SCRIPT_NAME": "/taskapi"})
    html = mounted.get_data(as_text=True)
    assert '"/taskapi/swagger.json"' in html  # the inline script changed...
    assert mounted.headers["Content-Security-Policy"] == swagger_ui_policy(html)  # ...its hash too
    assert mounted.headers["Content-Security-Policy"] != root.headers["Content-Security-Policy"]


def test_headers_a_view_set_are_kept(client: FlaskClient) -> None:
    response = client.get("/test-own-headers", base_url=HTTPS)
    assert response.headers.getlist("X-Frame-Options") == ["SAMEORIGIN"]
    assert response.headers.getlist("Content-Security-Policy") == ["default-src 'self'"]
    assert response.headers.getlist("Referrer-Policy") == ["same-origin"]
    assert response.headers.getlist("X-Content-Type-Options") == ["nosniff"]


@pytest.mark.parametrize(
    ("path", "status"),
    [("/test-token", 200), ("/test-token-refused", 401), ("/test-credentials", 201)],
)
def test_no_store_marks_credential_responses_errors_included(
    client: FlaskClient, path: str, status: int
) -> None:
    response = client.post(path)
    assert response.status_code == status
    assert response.headers.getlist("Cache-Control") == ["no-store"]
    assert_security_headers(response)


def test_unmarked_responses_keep_their_own_caching(client: FlaskClient) -> None:
    assert client.get("/api/v1/tasks").headers["Cache-Control"] == "private, no-cache"
    assert "Cache-Control" not in client.get("/nothing-here").headers


# --- HSTS ------------------------------------------------------------------------------------


def test_hsts_is_production_only_by_default() -> None:
    production = {"SECRET_KEY": "x" * 40, "DATABASE_URL": "x", "BACKUP_DIR": "x"}
    assert load_config({"APP_ENV": "production", **production})["HSTS_ENABLED"]
    for env in ("development", "testing"):
        assert not load_config({"APP_ENV": env})["HSTS_ENABLED"]
    response = make_app("testing").test_client().get("/health/live", base_url=HTTPS)
    assert HSTS not in response.headers


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"HSTS_MAX_AGE": 600}, "max-age=600; includeSubDomains"),
        ({"HSTS_INCLUDE_SUBDOMAINS": False}, "max-age=31536000"),
        ({"HSTS_MAX_AGE": 0}, "max-age=0; includeSubDomains"),  # how to make browsers forget
        ({"HSTS_ENABLED": False}, None),
    ],
)
def test_hsts_settings(overrides: dict[str, Any], expected: str | None) -> None:
    client = make_app("production", **overrides).test_client()
    assert client.get("/health/live", base_url=HTTPS).headers.getlist(HSTS) == (
        [expected] if expected else []
    )
    assert HSTS not in client.get("/health/live").headers  # never over plain HTTP


def test_hsts_settings_from_the_environment() -> None:
    environ = {"APP_ENV": "testing", "HSTS_ENABLED": "on", "HSTS_MAX_AGE": "60"}
    settings = load_config(environ=environ | {"HSTS_INCLUDE_SUBDOMAINS": "false"})
    assert (settings["HSTS_ENABLED"], settings["HSTS_MAX_AGE"]) == (True, 60)
    assert settings["HSTS_INCLUDE_SUBDOMAINS"] is False


@pytest.mark.parametrize("max_age", [-1, "60", None])
def test_a_bad_hsts_max_age_is_refused(max_age: Any) -> None:
    with pytest.raises(ConfigError, match="HSTS_MAX_AGE"):
        create_app({"APP_ENV": "testing", "HSTS_ENABLED": True, "HSTS_MAX_AGE": max_age})


def test_hsts_behind_a_trusted_proxy_follows_x_forwarded_proto() -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    behind_proxy = make_app("production", TRUSTED_PROXIES=1).test_client()
    response = behind_proxy.get("/health/live", headers=forwarded)
    assert response.headers.getlist(HSTS) == [PRODUCTION_HSTS]
    # Without a trusted proxy the header is the client's word: ignored.
    direct = make_app("production").test_client()
    assert HSTS not in direct.get("/health/live", headers=forwarded).headers
