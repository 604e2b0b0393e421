"""Extend it (ch-01): every response says how long the app took, in a Server-Timing header."""

from __future__ import annotations

import re
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

# RFC "Server Timing" (W3C): a metric name, then ;dur=<milliseconds>.
SERVER_TIMING = re.compile(r"app;dur=(\d+(?:\.\d+)?)")


def duration_ms(response: object) -> float:
    values = response.headers.getlist("Server-Timing")  # type: ignore[attr-defined]
    assert len(values) == 1, f"exactly one Server-Timing header, got {values}"
    match = SERVER_TIMING.fullmatch(values[0])
    assert match, f"Server-Timing must look like 'app;dur=1.23', got {values[0]!r}"
    return float(match.group(1))


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/health/live", 200),
        ("GET", "/api/v1/hello", 200),
        ("GET", "/api/hello", 200),  # rewritten by the versioning middleware
        ("GET", "/api/v1/nothing-here", 404),
        ("DELETE", "/api/v1/hello", 405),
        ("GET", "/swagger.json", 200),
    ],
)
def test_every_response_has_server_timing(
    any_client: FlaskClient, method: str, path: str, status: int
) -> None:
    response = any_client.open(path, method=method)
    assert response.status_code == status
    assert duration_ms(response) >= 0


def test_unhandled_errors_are_timed_too(app: Flask) -> None:
    @app.get("/explode")
    def explode() -> str:
        raise RuntimeError("kaboom")

    response = app.test_client().get("/explode")
    assert response.status_code == 500
    assert duration_ms(response) >= 0


def test_the_duration_measures_the_request(app: Flask) -> None:
    @app.get("/slow")
    def slow() -> str:
        time.sleep(0.05)
        return "ok"

    assert duration_ms(app.test_client().get("/slow")) >= 50
