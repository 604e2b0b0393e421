"""The client's address behind reverse proxies: a spoofed X-Forwarded-For never gets through.

Each request is built the way it arrives: ``REMOTE_ADDR`` is the peer that connected (the last
proxy, or the client itself), ``X-Forwarded-For`` what the client sent plus what each proxy
appended. A test-only route shows what the app then believes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask, jsonify, request

from app import create_app
from app.config import ConfigError
from tests.conftest import CapturedLog, make_app

PROXY = "10.0.0.5"  # the load balancer's own address: what the WSGI server sees
CLIENT = "203.0.113.7"
SPOOFED = "198.51.100.66"


def _app(env: str, trusted_proxies: int) -> Flask:
    app = make_app(env, TRUSTED_PROXIES=trusted_proxies)

    @app.get("/test-only/peer")
    def peer() -> object:
        return jsonify(addr=request.remote_addr, scheme=request.scheme)

    return app


def _seen(app: Flask, forwarded_for: str | None, proto: str | None = None) -> dict[str, str]:
    headers = {}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    if proto is not None:
        headers["X-Forwarded-Proto"] = proto
    response = app.test_client().get(
        "/test-only/peer", headers=headers, environ_base={"REMOTE_ADDR": PROXY}
    )
    assert response.status_code == 200
    return response.json


@pytest.fixture(params=["testing", "production"])
def env(request: pytest.FixtureRequest) -> str:
    return request.param


def test_by_default_forwarded_headers_are_ignored(env: str) -> None:
    app = _app(env, 0)
    assert _seen(app, f"{SPOOFED}, {CLIENT}", "https") == {"addr": PROXY, "scheme": "http"}


def test_behind_one_proxy_the_entry_it_appended_is_the_client(env: str) -> None:
    app = _app(env, 1)
    # The client sent its own X-Forwarded-For; the proxy appended the address it really saw.
    assert _seen(app, f"{SPOOFED}, {CLIENT}")["addr"] == CLIENT
    assert _seen(app, CLIENT, "https") == {"addr": CLIENT, "scheme": "https"}
    assert _seen(app, "2001:db8::7")["addr"] == "2001:db8::7"


def test_behind_two_proxies_the_client_is_two_from_the_end(env: str) -> None:
    app = _app(env, 2)
    assert _seen(app, f"{SPOOFED}, {CLIENT}, 10.0.0.9")["addr"] == CLIENT
    # Fewer entries than proxies: the request skipped a proxy; the connection's address stays.
    assert _seen(app, SPOOFED)["addr"] == PROXY


@pytest.mark.parametrize(
    "garbage",
    ["not-an-ip", "<script>", "1.2.3.4:5678", "unknown", "1.2.3.4 5.6.7.8", "٣.٣.٣.٣", "x" * 500],
)
def test_a_forwarded_value_that_is_not_an_address_is_not_believed(env: str, garbage: str) -> None:
    app = _app(env, 1)
    assert _seen(app, garbage, "gopher") == {"addr": PROXY, "scheme": "http"}


def test_without_a_forwarded_header_the_peer_is_the_client(env: str) -> None:
    assert _seen(_app(env, 1), None)["addr"] == PROXY


def test_the_access_log_records_the_client_not_the_proxy(
    capture_log: Callable[[Flask], CapturedLog],
) -> None:
    app = make_app("production", TRUSTED_PROXIES=1, LOG_FORMAT="json")
    log = capture_log(app)
    app.test_client().get(
        "/api/v1/hello",
        headers={"X-Forwarded-For": f"{SPOOFED}, {CLIENT}"},
        environ_base={"REMOTE_ADDR": PROXY},
    )
    access = [r for r in log.records() if r.get("logger") == "app.access"]
    assert [r["remote_addr"] for r in access] == [CLIENT]


@pytest.mark.parametrize("value", [-1, 6])
def test_an_implausible_number_of_proxies_is_refused(value: int) -> None:
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES"):
        create_app({"APP_ENV": "testing", "TRUSTED_PROXIES": value})


def test_the_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "one")
    with pytest.raises(ConfigError, match="TRUSTED_PROXIES must be an integer"):
        create_app({"APP_ENV": "testing"})
