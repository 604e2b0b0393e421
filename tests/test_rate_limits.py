"""Rate limits (app/core/rate_limits.py) on Flask-RESTX resources, as the app answers them.

Flask-Limiter's own test of Flask-RESTX resources is skipped upstream, so these tests decorate
real Resource methods (directly, in ``method_decorators`` and in ``decorators``) and check every
answer: the counts, the 429 problem, its headers, under the testing and production profiles.
Most use a small app wired like the real one (the project's ``TaskApi``, error handlers and
request-id middleware, a before_request hook standing in for authentication); the rest use
``make_app`` and real endpoints.
"""

from __future__ import annotations

import json
import logging
import socket
import tempfile
import time
from typing import Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from flask_restx import Namespace, Resource
from werkzeug.test import TestResponse

from app.api import TaskApi
from app.auth.principal import Principal, PrincipalKind, set_current_principal
from app.config import ConfigError, load_config
from app.core.errors import PROBLEM_MEDIA_TYPE, register_error_handlers
from app.core.middleware import RequestTrackingMiddleware
from app.core.rate_limits import (
    LIMIT_HEADER,
    REMAINING_HEADER,
    RESET_HEADER,
    auth_rate_limit,
    client_address_key,
    init_rate_limits,
)
from tests.conftest import PRODUCTION_TEST_SECRET, make_app

SUBJECT_HEADER = "X-Test-Subject"  # the test app's stand-in for a bearer token
RATE_HEADERS = (LIMIT_HEADER, REMAINING_HEADER, RESET_HEADER)


def email_in_body() -> str | None:
    body = request.get_json(silent=True)
    return body.get("email") if isinstance(body, dict) else None


ns = Namespace("limited", description="Resources of the rate-limit tests")


@ns.route("/login")
class Login(Resource):
    @auth_rate_limit(account=email_in_body)
    def post(self) -> dict[str, Any]:
        return {"ok": True}


@ns.route("/mfa")
class Mfa(Resource):
    method_decorators = [auth_rate_limit(account=email_in_body)]

    def post(self) -> dict[str, Any]:
        return {"ok": True}


@ns.route("/token")
class Token(Resource):
    decorators = [auth_rate_limit()]  # the whole view: per address only

    def post(self) -> dict[str, Any]:
        return {"ok": True}


shared_sign_in = auth_rate_limit(account=email_in_body, scope="sign-in")


@ns.route("/sign-in-a")
class SignInA(Resource):
    @shared_sign_in
    def post(self) -> dict[str, Any]:
        return {"ok": True}


@ns.route("/sign-in-b")
class SignInB(Resource):
    @shared_sign_in
    def post(self) -> dict[str, Any]:
        return {"ok": True}


@ns.route("/strict-json")
class StrictJson(Resource):
    @auth_rate_limit(account=lambda: request.get_json()["email"])  # raises on a bad body
    def post(self) -> dict[str, Any]:
        return {"ok": True}


@ns.route("/items")
class Items(Resource):
    def get(self) -> dict[str, Any]:
        return {"items": []}


LIMITS = {
    "RATE_LIMIT_AUTH_IP": "3 per minute",
    "RATE_LIMIT_AUTH_ACCOUNT": "2 per minute",
    "RATE_LIMIT_API": "5 per minute",
}


def small_app(env: str = "testing", **overrides: Any) -> Flask:
    """The test resources behind the project's error handling, like create_app wires it."""
    settings = load_config(
        {
            "APP_ENV": env,
            "SECRET_KEY": PRODUCTION_TEST_SECRET,
            "DATABASE_URL": "sqlite://",
            "BACKUP_DIR": tempfile.gettempdir(),  # production asks for one; unused here
            "REDIS_URL": None,
            **LIMITS,
            **overrides,
        },
        environ={},  # a REDIS_URL in the shell must not leak into the memory-storage tests
    )
    app = Flask(__name__)
    app.config.from_mapping(settings)
    register_error_handlers(app)

    @app.before_request
    def authenticate() -> None:  # registered first, like the real authentication hook
        subject = request.headers.get(SUBJECT_HEADER)
        principal = Principal(kind=PrincipalKind.USER, user_id=None, subject=subject)
        set_current_principal(principal if subject else None)

    api = TaskApi(app, doc="/swagger")
    api.add_namespace(ns, path="/t")
    init_rate_limits(app)
    app.wsgi_app = RequestTrackingMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app


def close_redis_clients(app: Flask) -> None:
    """Close the app's Redis connections now (a test's apps are not torn down otherwise)."""
    limiter = app.extensions["rate_limits"].limiter
    limiter.storage.storage.close()  # limits' RedisStorage keeps its redis client there
    if "login_throttle" in app.extensions:
        app.extensions["login_throttle"].close()


def with_test_resources(app: Flask) -> Flask:
    """A make_app app with the test namespace, and rate limits until create_app sets them up."""
    app.extensions["api"].add_namespace(ns, path="/t")
    if "rate_limits" not in app.extensions:
        init_rate_limits(app)
    return app


def post(
    client: FlaskClient, path: str, *, email: str | None = None, ip: str = "192.0.2.1", **kw: Any
) -> TestResponse:
    body = {"email": email} if email else {}
    return client.post(path, json=body, environ_base={"REMOTE_ADDR": ip}, **kw)


def assert_rate_limited(response: TestResponse, *, limit: int, window: int = 60) -> int:
    """The 429 problem, complete; returns its Retry-After."""
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    body = response.get_json()
    assert body["type"] == "/problems/rate-limited"
    assert body["title"] == "Too many requests"
    assert body["status"] == 429
    assert body["instance"] == request_path(response)
    assert body["request_id"] == response.headers["X-Request-ID"]
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after  # delta-seconds, not an HTTP date
    seconds = int(retry_after)
    assert 1 <= seconds <= window
    assert body["retry_after"] == seconds
    assert f"at most {limit} per 1 minute" in body["detail"]
    assert response.headers[LIMIT_HEADER] == str(limit)
    assert response.headers[REMAINING_HEADER] == "0"
    # The reset is when the window ends: Retry-After from now, give or take a second.
    assert abs(int(response.headers[RESET_HEADER]) - (time.time() + seconds)) <= 2
    return seconds


def request_path(response: TestResponse) -> str:
    return response.request.path


# --- Auth limits on Flask-RESTX resources ---------------------------------------------------


@pytest.mark.parametrize("env", ["testing", "production"])
@pytest.mark.parametrize("path", ["/t/login", "/t/mfa", "/t/token"])
def test_auth_limit_per_address_on_every_kind_of_decoration(env: str, path: str) -> None:
    client = small_app(env).test_client()
    for n in range(3):  # a new account each time: only the per-address limit counts
        response = post(client, path, email=f"user{n}@example.com")
        assert response.status_code == 200, response.get_data(as_text=True)
    limited = post(client, path, email="user9@example.com")
    assert_rate_limited(limited, limit=3)
    assert "from this address" in limited.get_json()["detail"]
    # Another address has its own budget; the limited one stays limited.
    assert post(client, path, email="user9@example.com", ip="192.0.2.2").status_code == 200
    assert post(client, path, email="user10@example.com").status_code == 429


@pytest.mark.parametrize("env", ["testing", "production"])
@pytest.mark.parametrize("path", ["/t/login", "/t/mfa"])
def test_auth_limit_per_account_across_addresses(env: str, path: str) -> None:
    client = small_app(env).test_client()
    assert post(client, path, email="victim@example.com", ip="198.51.100.1").status_code == 200
    assert post(client, path, email="victim@example.com", ip="198.51.100.2").status_code == 200
    limited = post(client, path, email="victim@example.com", ip="198.51.100.3")
    assert_rate_limited(limited, limit=2)
    assert "for this account" in limited.get_json()["detail"]
    assert "victim" not in limited.get_data(as_text=True)
    assert post(client, path, email="other@example.com", ip="198.51.100.3").status_code == 200


def test_each_endpoint_has_its_own_budget_unless_they_share_a_scope() -> None:
    client = small_app().test_client()
    for _ in range(3):
        assert post(client, "/t/login", email=None).status_code == 200
    assert post(client, "/t/login").status_code == 429
    assert post(client, "/t/mfa").status_code == 200  # not login's budget

    for path in ("/t/sign-in-a", "/t/sign-in-b", "/t/sign-in-a"):
        assert post(client, path, ip="192.0.2.9").status_code == 200
    assert_rate_limited(post(client, "/t/sign-in-b", ip="192.0.2.9"), limit=3)


def test_no_account_means_only_the_address_limit() -> None:
    client = small_app().test_client()
    for n in range(3):  # no email: the per-account limit (2) does not apply to "no account"
        assert post(client, "/t/login", ip=f"192.0.2.{n + 10}").status_code == 200


def test_an_account_function_that_rejects_the_body_does_not_break_the_limits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = small_app().test_client()
    for _ in range(3):
        response = client.post("/t/strict-json", data="{not json", content_type="application/json")
        assert response.status_code == 200  # the view never reads the body
    assert client.post("/t/strict-json", data="{", content_type="application/json").status_code == (
        429
    )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_normal_responses_describe_the_most_restrictive_limit() -> None:
    client = small_app().test_client()
    first = post(client, "/t/login", email="a@example.com")
    # Per address 3 (2 left) and per account 2 (1 left): the account's is the closer one.
    assert first.headers[LIMIT_HEADER] == "2"
    assert first.headers[REMAINING_HEADER] == "1"
    assert int(first.headers[RESET_HEADER]) - time.time() <= 61
    assert "Retry-After" not in first.headers
    second = post(client, "/t/login", email="b@example.com")
    # Now the address has 1 left and account b has 1 left: the same remaining either way.
    assert second.headers[REMAINING_HEADER] == "1"
    third = post(client, "/t/login", email="c@example.com")
    assert (third.headers[LIMIT_HEADER], third.headers[REMAINING_HEADER]) == ("3", "0")


# --- The API limit ------------------------------------------------------------------------


def test_api_limit_per_principal_two_subjects_never_share() -> None:
    client = small_app().test_client()
    alice, bob = {SUBJECT_HEADER: "user:alice"}, {SUBJECT_HEADER: "user:bob"}
    for n in range(5):  # alice from several addresses: one budget
        response = client.get(
            "/t/items", headers=alice, environ_base={"REMOTE_ADDR": f"10.0.0.{n}"}
        )
        assert response.status_code == 200
        assert response.headers[REMAINING_HEADER] == str(4 - n)
    assert_rate_limited(client.get("/t/items", headers=alice), limit=5)
    # bob, from the address alice last used, still has all of his.
    response = client.get("/t/items", headers=bob, environ_base={"REMOTE_ADDR": "10.0.0.4"})
    assert response.status_code == 200
    assert response.headers[REMAINING_HEADER] == "4"


def test_api_limit_is_one_budget_across_endpoints() -> None:
    client = small_app().test_client()
    alice = {SUBJECT_HEADER: "user:alice"}
    for _ in range(4):
        assert client.get("/t/items", headers=alice).status_code == 200
    # An auth endpoint counts too (its own limits come on top of the API budget).
    assert client.post("/t/token", headers=alice).status_code == 200
    assert client.get("/t/items", headers=alice).status_code == 429


def test_anonymous_callers_are_counted_per_address() -> None:
    client = small_app().test_client()
    for _ in range(5):
        assert (
            client.get("/t/items", environ_base={"REMOTE_ADDR": "203.0.113.5"}).status_code == 200
        )
    assert client.get("/t/items", environ_base={"REMOTE_ADDR": "203.0.113.5"}).status_code == 429
    assert client.get("/t/items", environ_base={"REMOTE_ADDR": "203.0.113.6"}).status_code == 200


def test_ipv6_clients_are_counted_per_64() -> None:
    client = small_app().test_client()
    for n in range(5):  # every address of one /64 draws on the same budget
        response = client.get("/t/items", environ_base={"REMOTE_ADDR": f"2001:db8:0:1::{n + 1}"})
        assert response.status_code == 200
    assert (
        client.get("/t/items", environ_base={"REMOTE_ADDR": "2001:db8:0:1:ffff::9"}).status_code
        == 429
    )
    assert (
        client.get("/t/items", environ_base={"REMOTE_ADDR": "2001:db8:0:2::1"}).status_code == 200
    )


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:aa:bb:1:2:3:4", "2001:db8:aa:bb::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),  # an IPv4 client seen through an IPv6 socket
        (None, "unknown"),
        ("", "unknown"),
        ("not-an-address", "unknown"),
    ],
)
def test_client_address_key(address: str | None, key: str) -> None:
    assert client_address_key(address) == key


def test_exempt_paths_and_preflights() -> None:
    client = small_app(RATE_LIMIT_API="1 per minute").test_client()
    for _ in range(3):
        for path in ("/", "/swagger", "/swagger.json", "/swaggerui/swagger-ui.css"):
            response = client.get(path)
            response.close()  # a static file: release it
            assert response.status_code == 200, path
            assert LIMIT_HEADER not in response.headers
        assert client.options("/t/items").status_code == 200
        assert client.options("/t/login").status_code == 200
    assert client.get("/t/items").status_code == 200  # the budget of 1 is still whole
    assert client.get("/t/items").status_code == 429
    assert client.post("/t/login").status_code == 429  # the API budget covers auth endpoints


def test_two_apps_with_memory_storage_never_share_counters() -> None:
    first, second = small_app().test_client(), small_app().test_client()
    for _ in range(5):
        assert first.get("/t/items").status_code == 200
    assert first.get("/t/items").status_code == 429
    assert second.get("/t/items").status_code == 200


def test_rate_limits_can_be_switched_off() -> None:
    client = small_app(RATE_LIMITS_ENABLED=False).test_client()
    for _ in range(8):
        for response in (client.get("/t/items"), post(client, "/t/login", email="a@example.com")):
            assert response.status_code == 200
            assert not set(RATE_HEADERS) & set(response.headers.keys())


@pytest.mark.parametrize(
    "setting", ["RATE_LIMIT_API", "RATE_LIMIT_AUTH_IP", "RATE_LIMIT_AUTH_ACCOUNT"]
)
@pytest.mark.parametrize("value", ["lots", "", "10 per fortnight"])
def test_a_malformed_limit_stops_the_app(setting: str, value: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        small_app(**{setting: value})


def test_one_limiter_per_app() -> None:
    with pytest.raises(RuntimeError, match="already"):
        init_rate_limits(small_app())


def test_a_decorated_operation_without_a_limiter_fails_loudly() -> None:
    app = Flask(__name__)
    api = TaskApi(app, doc=False)
    api.add_namespace(ns, path="/t")

    @app.errorhandler(RuntimeError)
    def report(exc: RuntimeError) -> tuple[str, int]:
        return str(exc), 500

    response = app.test_client().post("/t/login", json={})
    assert response.status_code == 500
    assert "init_rate_limits" in response.get_data(as_text=True)


# --- The real app -------------------------------------------------------------------------


@pytest.mark.parametrize("env", ["testing", "production"])
def test_a_real_endpoint_is_limited_with_the_problem_shape(env: str) -> None:
    app = with_test_resources(make_app(env, REDIS_URL=None, RATE_LIMIT_API="3 per minute"))
    client = app.test_client()
    for n in range(3):
        response = client.get("/api/v2/hello")
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.headers[LIMIT_HEADER] == "3"
        assert response.headers[REMAINING_HEADER] == str(2 - n)
    assert_rate_limited(client.get("/api/v2/hello"), limit=3)
    for path in ("/health/live", "/problems", "/problems/rate-limited", "/swagger.json", "/"):
        assert client.get(path).status_code == 200, path


@pytest.mark.parametrize("env", ["testing", "production"])
def test_auth_limits_on_the_real_app(env: str) -> None:
    app = with_test_resources(
        make_app(env, REDIS_URL=None, **{**LIMITS, "RATE_LIMIT_API": "100 per minute"})
    )
    client = app.test_client()
    for n in range(3):
        assert post(client, "/t/login", email=f"u{n}@example.com").status_code == 200
    assert_rate_limited(post(client, "/t/login", email="u9@example.com"), limit=3)


def test_cors_exposes_the_rate_limit_headers_that_are_sent() -> None:
    origin = "https://app.example.com"
    app = with_test_resources(make_app(REDIS_URL=None, CORS_ORIGINS=origin, **LIMITS))
    client = app.test_client()
    for _ in range(3):
        post(client, "/t/token", headers={"Origin": origin})
    limited = post(client, "/t/token", headers={"Origin": origin})
    assert limited.status_code == 429
    sent = {name for name, _ in limited.headers.items() if "ratelimit" in name.lower()}
    assert sent == set(RATE_HEADERS)
    exposed = {name.strip() for name in limited.headers["Access-Control-Expose-Headers"].split(",")}
    assert {*sent, "Retry-After"} <= exposed
    assert not [name for name in exposed if "ratelimit" in name.lower() and name not in sent]


def test_the_problem_type_is_in_the_catalog() -> None:
    client = with_test_resources(make_app(REDIS_URL=None)).test_client()
    response = client.get("/problems/rate-limited")
    assert response.status_code == 200
    assert response.get_json()["status"] == 429


def test_a_spoofed_forwarded_for_does_not_change_the_address_without_trusted_proxies() -> None:
    app = with_test_resources(make_app(REDIS_URL=None, TRUSTED_PROXIES=0, **LIMITS))
    client = app.test_client()
    for n in range(3):
        spoofed = {"X-Forwarded-For": f"198.51.100.{n}"}
        response = post(client, "/t/token", ip="10.1.1.1", headers=spoofed)
        assert response.status_code == 200
    assert (
        post(client, "/t/token", ip="10.1.1.1", headers={"X-Forwarded-For": "1.2.3.4"}).status_code
        == 429
    )


def test_behind_one_proxy_only_the_entry_it_added_counts() -> None:
    app = with_test_resources(make_app(REDIS_URL=None, TRUSTED_PROXIES=1, **LIMITS))
    client = app.test_client()
    proxy = "10.0.0.2"
    for n in range(3):  # the client varies what it writes; the proxy appends the real address
        forwarded = {"X-Forwarded-For": f"198.51.100.{n}, 203.0.113.7"}
        assert post(client, "/t/token", ip=proxy, headers=forwarded).status_code == 200
    forwarded = {"X-Forwarded-For": "203.0.113.99, 203.0.113.7"}
    assert post(client, "/t/token", ip=proxy, headers=forwarded).status_code == 429
    # Another client behind the same proxy has its own budget.
    forwarded = {"X-Forwarded-For": "203.0.113.7, 203.0.113.8"}
    assert post(client, "/t/token", ip=proxy, headers=forwarded).status_code == 200


# --- Redis --------------------------------------------------------------------------------


def test_two_workers_on_one_redis_share_counters(redis_settings: dict[str, str]) -> None:
    import redis

    first_app, second_app = small_app(**redis_settings), small_app(**redis_settings)
    first, second = first_app.test_client(), second_app.test_client()
    # Account a: 2 per minute, whichever worker the attempts reach.
    assert post(first, "/t/login", email="a@example.com", ip="192.0.2.50").status_code == 200
    assert post(second, "/t/login", email="a@example.com", ip="192.0.2.51").status_code == 200
    assert_rate_limited(post(first, "/t/login", email="a@example.com", ip="192.0.2.52"), limit=2)
    for client in (first, second, first, second, first):
        assert client.get("/t/items", headers={SUBJECT_HEADER: "user:w"}).status_code == 200
    assert_rate_limited(second.get("/t/items", headers={SUBJECT_HEADER: "user:w"}), limit=5)

    for app in (first_app, second_app):
        close_redis_clients(app)
    with redis.Redis.from_url(redis_settings["REDIS_URL"]) as client:
        keys = client.keys("*")
    ours = [key.decode() for key in keys if redis_settings["REDIS_KEY_PREFIX"] in key.decode()]
    assert ours
    assert all(key.startswith(redis_settings["REDIS_KEY_PREFIX"] + "ratelimit:") for key in ours)
    assert not any("a@example.com" in key for key in ours)  # accounts are digests


def test_another_prefix_on_the_same_redis_is_another_deployment(
    redis_settings: dict[str, str],
) -> None:
    app = small_app(**redis_settings)
    client = app.test_client()
    for _ in range(5):
        assert client.get("/t/items").status_code == 200
    other_prefix = {**redis_settings, "REDIS_KEY_PREFIX": redis_settings["REDIS_KEY_PREFIX"] + "b:"}
    other = small_app(**other_prefix)
    assert other.test_client().get("/t/items").status_code == 200
    for each in (app, other):
        close_redis_clients(each)


def closed_port() -> int:
    """A local port nothing listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_redis_down_requests_are_still_served_and_limited_per_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    app = small_app(REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    client = app.test_client()
    for _ in range(5):
        response = client.get("/t/items")
        assert response.status_code == 200
        assert LIMIT_HEADER in response.headers  # counted in memory meanwhile
    assert client.get("/t/items").status_code == 429
    for n in range(3):
        assert (
            post(client, "/t/login", email=f"u{n}@example.com", ip="192.0.2.77").status_code == 200
        )
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "unreachable" in warnings[0].getMessage()


def test_the_429_body_is_valid_json_with_nothing_extra() -> None:
    client = small_app().test_client()
    for _ in range(3):
        post(client, "/t/token")
    body = json.loads(post(client, "/t/token").get_data(as_text=True))
    assert set(body) == {
        "type",
        "title",
        "status",
        "detail",
        "instance",
        "request_id",
        "retry_after",
    }
