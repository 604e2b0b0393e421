"""Liveness and readiness."""

from __future__ import annotations

import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.extensions import health_checks
from app.version import __version__


def _boom() -> None:
    raise ConnectionError("db.internal:5432 password=hunter2 refused")


def test_liveness_reports_version_environment_and_uptime(any_client: FlaskClient) -> None:
    response = any_client.get("/health/live")
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "ok"
    assert body["version"] == __version__
    assert body["environment"] in {"testing", "production"}
    assert body["uptime_seconds"] >= 0
    assert response.headers["Cache-Control"] == "no-store"


def test_liveness_calls_no_dependency(app: Flask) -> None:
    health_checks.register(app, "broken", _boom)
    assert app.test_client().get("/health/live").status_code == 200


def test_uptime_grows(app: Flask) -> None:
    client = app.test_client()
    first = client.get("/health/live").json["uptime_seconds"]
    time.sleep(0.01)
    assert client.get("/health/live").json["uptime_seconds"] > first


def test_readiness_with_only_the_databases_is_ready(any_client: FlaskClient) -> None:
    response = any_client.get("/health/ready")
    assert response.status_code == 200
    assert response.json["status"] == "ok"
    # app.db registers one check per database (tests/test_database_unavailable.py fails them).
    assert set(response.json["checks"]) == {"database:control", "shard:shard-a", "shard:shard-b"}
    assert response.json["version"] == __version__


def test_readiness_runs_every_check(app: Flask) -> None:
    calls: list[str] = []
    health_checks.register(app, "database", lambda: calls.append("database"))
    health_checks.register(app, "cache", lambda: calls.append("cache"))
    response = app.test_client().get("/health/ready")
    assert response.status_code == 200
    assert calls == ["database", "cache"]
    statuses = {name: check["status"] for name, check in response.json["checks"].items()}
    assert {name: statuses[name] for name in ("database", "cache")} == {
        "database": "ok",
        "cache": "ok",
    }


@pytest.mark.parametrize("env", ["testing", "production"])
def test_one_failing_check_makes_readiness_503_with_detail(env: str) -> None:
    from tests.conftest import make_app

    app = make_app(env)
    health_checks.register(app, "database", _boom)
    health_checks.register(app, "cache", lambda: None)
    response = app.test_client().get("/health/ready")
    assert response.status_code == 503
    body = response.json
    assert body["status"] == "fail"
    assert body["checks"]["database"]["status"] == "fail"
    assert body["checks"]["database"]["error"] == "ConnectionError"
    assert body["checks"]["database"]["duration_ms"] >= 0
    assert body["checks"]["cache"]["status"] == "ok"
    assert "hunter2" not in response.get_data(as_text=True)


def test_a_check_name_is_registered_once(app: Flask) -> None:
    health_checks.register(app, "database", lambda: None)
    with pytest.raises(ValueError, match="already registered"):
        health_checks.register(app, "database", lambda: None)
