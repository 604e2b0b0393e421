"""Structured logging: JSON in production, text in development, nothing secret, no duplicates."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from datetime import datetime
from urllib.request import Request, urlopen

from flask import Flask
from werkzeug.serving import make_server

from tests.conftest import CapturedLog, make_app


def test_production_writes_json_lines_with_the_access_fields(
    production_app: Flask, capture_log: Callable[[Flask], CapturedLog]
) -> None:
    log = capture_log(production_app)
    production_app.test_client().get(
        "/api/v1/tasks?q=secret-query", headers={"User-Agent": "pytest-agent/1.0"}
    )
    [access] = [r for r in log.records() if r["logger"] == "app.access"]
    assert access["level"] == "INFO"
    assert access["message"].startswith("GET /api/v1/tasks 200 ")
    assert access["method"] == "GET"
    assert access["path"] == "/api/v1/tasks"  # the query string is never logged
    assert access["status"] == 200
    assert isinstance(access["duration_ms"], float)
    assert access["remote_addr"] == "127.0.0.1"
    assert access["user_agent"] == "pytest-agent/1.0"
    assert re.fullmatch(r"[0-9a-f]{32}", access["request_id"])
    timestamp = access["timestamp"]
    assert timestamp.endswith("Z")
    assert datetime.fromisoformat(timestamp).utcoffset().total_seconds() == 0
    assert "secret-query" not in log.text


def test_development_writes_readable_lines(capture_log: Callable[[Flask], CapturedLog]) -> None:
    app = make_app("development")
    log = capture_log(app)
    app.test_client().get("/api/v1/hello", headers={"X-Request-ID": "dev-1"})
    [line] = [line for line in log.lines() if "app.access" in line]
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO app\.access \[dev-1\] "
        r"GET /api/v1/hello 200 [\d.]+ms",
        line,
    )


def test_level_comes_from_configuration(capture_log: Callable[[Flask], CapturedLog]) -> None:
    app = make_app("production", LOG_LEVEL="WARNING")
    log = capture_log(app)
    app.test_client().get("/api/v1/hello")
    assert log.text == ""
    assert logging.getLogger().level == logging.WARNING


def test_health_probes_are_logged_at_debug_only(
    production_app: Flask, capture_log: Callable[[Flask], CapturedLog]
) -> None:
    log = capture_log(production_app)
    production_app.test_client().get("/health/live")
    assert log.text == ""


def test_secrets_and_bodies_never_reach_the_log(
    any_app: Flask, capture_log: Callable[[Flask], CapturedLog]
) -> None:
    log = capture_log(any_app)
    client = any_app.test_client()  # sends a real access token: the owner's
    token = any_app.extensions["test_owner"].token
    cookie = {"Cookie": "session=cookie-secret"}
    forged = {"Authorization": "Bearer top-secret-token", **cookie}
    answers = [
        client.post("/api/v1/hello", json={"name": "Ada", "password": "hunter2"}, headers=cookie),
        client.post("/api/v1/hello", data="{not json hunter2", content_type="application/json"),
        client.post("/api/v1/hello", json={"name": "x" * 60, "password": "hunter2"}),
        client.post("/api/v1/hello", json={"name": "Ada"}, headers=forged),
        any_app.test_client(token="").post(
            "/api/v2/auth/login", json={"email": "ada@example.com", "password": "hunter2-Ada-pw"}
        ),
    ]
    # Each was read as far as it goes: a body refused, a token refused, a log-in refused.
    assert [answer.status_code for answer in answers] == [422, 400, 422, 401, 401]
    assert log.lines(), "requests were logged"
    for secret in (token, token.rsplit(".", 1)[1], "top-secret-token", "cookie-secret", "hunter2"):
        assert secret not in log.text
    assert "Ada" not in log.text


def test_sensitive_extra_fields_are_redacted(
    production_app: Flask, capture_log: Callable[[Flask], CapturedLog]
) -> None:
    log = capture_log(production_app)
    logging.getLogger("app.test").warning("login", extra={"password": "p", "user": "ada"})
    [record] = log.records()
    assert record["password"] == "[redacted]"
    assert record["user"] == "ada"
    assert record["request_id"] is None  # outside a request


def test_unhandled_errors_log_the_traceback_with_the_request_id(
    production_app: Flask, capture_log: Callable[[Flask], CapturedLog]
) -> None:
    @production_app.get("/explode")
    def explode() -> str:
        raise RuntimeError("kaboom internals")

    log = capture_log(production_app)
    response = production_app.test_client().get("/explode", headers={"X-Request-ID": "err-7"})
    assert response.status_code == 500
    [error] = [r for r in log.records() if r["level"] == "ERROR"]
    assert error["request_id"] == "err-7"
    assert "RuntimeError: kaboom internals" in error["exception"]
    assert "kaboom" not in response.get_data(as_text=True)


def test_dev_server_access_lines_are_dropped_in_favour_of_ours(
    capture_log: Callable[[Flask], CapturedLog],
) -> None:
    app = make_app("development")
    log = capture_log(app)
    server = make_server("127.0.0.1", 0, app)  # the real development server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/api/v1/hello"
        request = Request(url, headers=app.extensions["test_owner"].headers)
        with urlopen(request, timeout=5) as reply:
            assert reply.status == 200
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    logging.getLogger("werkzeug").info(" * Running on http://127.0.0.1:5000")
    assert "HTTP/1.1" not in log.text  # werkzeug's own line: '"GET /api/v1/hello HTTP/1.1" 200 -'
    assert len([line for line in log.lines() if "app.access" in line]) == 1
    assert "Running on" in log.text  # other werkzeug messages still pass


def test_control_characters_cannot_forge_text_log_lines(
    capture_log: Callable[[Flask], CapturedLog],
) -> None:
    app = make_app("development")
    log = capture_log(app)
    app.test_client().get("/api/v1/x%0AFAKE ERROR line", headers={"User-Agent": "agent\x1b[31m"})
    [line] = log.lines()  # one line, however hostile the path
    assert "\\x0aFAKE ERROR line" in line


def test_json_logs_keep_the_escaped_path(
    production_app: Flask, capture_log: Callable[[Flask], CapturedLog]
) -> None:
    log = capture_log(production_app)
    production_app.test_client().get("/a%0Ab", headers={"User-Agent": "ua\x07"})
    [access] = log.records()
    assert access["path"] == "/a\\x0ab"
    assert access["user_agent"] == "ua\\x07"
