"""Shared fixtures: a testing app, a production-configured app, and captured log lines."""

from __future__ import annotations

import atexit
import functools
import io
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.auth.accounts import seed_demo_user
from app.auth.keys import rotate
from app.db import db
from app.tasks import seed_demo_tasks
from tests.auth import BearerClient, add_user
from tests.databases import fresh_databases

# Long and random-looking: production accepts it. Only tests use it.
PRODUCTION_TEST_SECRET = "kq3V9x0bM8uZr2tLw7pYc4nJd6hEa1sGf5iTo"


_apps: list[Flask] = []


_REDIS_RUN = uuid.uuid4().hex[:12]
_redis_apps = iter(range(1, 1 << 62))


def _redis_prefix() -> str:
    """A key prefix of one app's own, under this run's (cleaned when the run ends)."""
    if not getattr(_redis_prefix, "cleanup_registered", False):
        _redis_prefix.cleanup_registered = True  # type: ignore[attr-defined]
        atexit.register(_delete_redis_keys, os.environ["REDIS_URL"], f"*taskapi-run-{_REDIS_RUN}-*")
    return f"taskapi-run-{_REDIS_RUN}-{next(_redis_apps)}:"


def _delete_redis_keys(url: str, pattern: str) -> None:
    import redis

    # At exit the log streams may be closed: redis-py's DEBUG lines would only raise there.
    logging.getLogger("redis").setLevel(logging.WARNING)
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        batch = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(batch), 1000):
            client.delete(*batch[start : start + 1000])
    except redis.RedisError:
        pass  # keys expire on their own (every one has a TTL)
    finally:
        client.close()


@functools.cache
def test_keys_directory() -> Path:
    """One signing key for the suite's development and production apps (never instance/)."""
    directory = Path(tempfile.mkdtemp(prefix="taskapi-test-keys-"))
    atexit.register(shutil.rmtree, directory, True)
    keys = directory / "jwt-keys"
    rotate(keys)
    return keys


@pytest.fixture(autouse=True)
def _close_databases() -> Iterator[None]:
    """Close every connection the test's apps opened: a database has a connection limit."""
    yield
    while _apps:
        _apps.pop().extensions["shards"].dispose()


def make_app(env: str = "testing", *, seed: bool | None = None, **overrides: Any) -> Flask:
    """An app on its own fresh databases. Development seeds the demo tasks, as ./scripts/run."""
    config: dict[str, Any] = {"APP_ENV": env, **fresh_databases()}
    if env != "testing":  # testing signs with a key made in memory; the others read a directory
        config["JWT_KEYS_DIR"] = str(test_keys_directory())
    if os.environ.get("REDIS_URL"):  # CI's Redis run: each app counts and revokes on its own
        config["REDIS_KEY_PREFIX"] = _redis_prefix()
    if env == "production":
        config["SECRET_KEY"] = PRODUCTION_TEST_SECRET
        config["BACKUP_DIR"] = tempfile.mkdtemp(prefix="taskapi-test-backups-")
    config.update(overrides)
    app = create_app(config)
    _apps.append(app)
    # Every test client sends the token of the default workspace's owner, unless it asks for
    # another (app.test_client(token=...); token="" for none).
    app.test_client_class = BearerClient
    app.extensions["test_owner"] = add_user(app, "owner@example.com", role="owner")
    if seed if seed is not None else app.config["SEED_DEMO_DATA"]:
        with app.app_context():
            seed_demo_tasks()
            seed_demo_user(db.session(), app.config)  # as flask db-prepare does
    return app


@pytest.fixture
def app() -> Flask:
    return make_app("testing")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def production_app() -> Flask:
    return make_app("production")


@pytest.fixture(params=["testing", "production"])
def any_app(request: pytest.FixtureRequest) -> Flask:
    """Runs a test once per configuration: production must answer like the tested one."""
    return make_app(request.param)


@pytest.fixture
def any_client(any_app: Flask) -> FlaskClient:
    return any_app.test_client()


class CapturedLog:
    """The text our logging handler wrote since the fixture started."""

    def __init__(self, buffer: io.StringIO) -> None:
        self._buffer = buffer

    @property
    def text(self) -> str:
        return self._buffer.getvalue()

    def lines(self) -> list[str]:
        return [line for line in self.text.splitlines() if line]

    def records(self) -> list[dict[str, Any]]:
        """JSON lines parsed (only valid when LOG_FORMAT=json)."""
        return [json.loads(line) for line in self.lines()]


@pytest.fixture
def capture_log() -> Iterator[Callable[[Flask], CapturedLog]]:
    """``capture_log(app)`` points our root handler at a buffer (call it after creating the app)."""
    handlers: list[tuple[logging.StreamHandler[Any], Any]] = []

    def start(_app: Flask) -> CapturedLog:
        ours = [h for h in logging.getLogger().handlers if getattr(h, "taskapi_handler", False)]
        assert len(ours) == 1, "create_app installs exactly one handler"
        handler = ours[0]
        assert isinstance(handler, logging.StreamHandler)
        buffer = io.StringIO()
        handlers.append((handler, handler.setStream(buffer)))
        return CapturedLog(buffer)

    yield start
    for handler, previous in handlers:
        handler.setStream(previous)


# Real Redis for the tests that need it: TEST_REDIS_URL, else the local server's database 15.
# Unreachable: those tests skip, except in CI (CI=true), where they must run.
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_settings() -> Iterator[dict[str, str]]:
    """``REDIS_URL`` and a key prefix of this test's own; its keys are deleted afterwards."""
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI", "").lower() == "true":
            raise
        pytest.skip(f"no Redis at {TEST_REDIS_URL}: {exc}")
    prefix = f"taskapi-test-{uuid.uuid4().hex[:12]}:"
    yield {"REDIS_URL": TEST_REDIS_URL, "REDIS_KEY_PREFIX": prefix}
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    # Flask-Limiter's storage prefixes its own keys ("LIMITS:<prefix>..."): clean those too.
    keys += list(client.scan_iter(match=f"*{prefix}*", count=1000))
    if keys:
        client.delete(*set(keys))
    client.close()
