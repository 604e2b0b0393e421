"""The factory: no import-time side effects, independent apps in one process."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from flask import Flask

from app.extensions import health_checks
from tests.conftest import make_app

ROOT = Path(__file__).resolve().parent.parent


def test_importing_the_package_creates_nothing() -> None:
    code = (
        "import logging, app, app.api, app.extensions, app.hello.routes\n"
        "assert not logging.getLogger().handlers, 'import configured logging'\n"
        "assert not hasattr(app, 'app'), 'import built an app'\n"
        "print('clean')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"


def test_two_apps_in_one_process_share_no_state() -> None:
    first = make_app("testing", API_TITLE="First")
    second = make_app("production", API_TITLE="Second")

    health_checks.register(first, "only-on-first", lambda: None)

    assert first.extensions["api"] is not second.extensions["api"]
    assert "only-on-first" in health_checks.names(first)
    assert "only-on-first" not in health_checks.names(second)

    first_client, second_client = first.test_client(), second.test_client()
    assert first_client.get("/health/ready").json["checks"]["only-on-first"]["status"] == "ok"
    assert "only-on-first" not in second_client.get("/health/ready").json["checks"]
    assert first_client.get("/health/live").json["environment"] == "testing"
    assert second_client.get("/health/live").json["environment"] == "production"
    assert first_client.get("/swagger.json").json["info"]["title"] == "First"
    assert second_client.get("/swagger.json").json["info"]["title"] == "Second"
    # Both still answer after the other was created (no shared, overwritten wiring).
    assert first_client.get("/api/v1/hello").status_code == 200
    assert second_client.get("/api/v1/hello").status_code == 200


def test_creating_apps_repeatedly_keeps_one_log_handler() -> None:
    for _ in range(3):
        make_app("testing")
    ours = [h for h in logging.getLogger().handlers if getattr(h, "taskapi_handler", False)]
    assert len(ours) == 1


def test_app_is_a_flask_app_with_the_chosen_profile(app: Flask) -> None:
    assert isinstance(app, Flask)
    assert app.config["APP_ENV"] == "testing"
    assert app.testing
