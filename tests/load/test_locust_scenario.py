"""The Locust scenario against a real HTTP server: its users log in, once per team, refresh their
tokens before they expire, and every request succeeds.

Locust runs in a subprocess (importing it here would patch the standard library with gevent);
the server is the development app on werkzeug's threaded server, in a thread of this process,
with access tokens so short-lived that the scenario must refresh them within the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import BaseWSGIServer, make_server

from app.config import TestingConfig
from tests.conftest import make_app

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
USERS = 4  # two teams: one of three, one of one
# The scenario refreshes a token with less than a minute left: this one is due after a second.
ACCESS_TOKEN_TTL = 61


@pytest.fixture
def server() -> Iterator[BaseWSGIServer]:
    # Testing's cheap password hashes: what costs a hash is not what this test is about.
    cheap = {k: v for k, v in vars(TestingConfig).items() if k.startswith("PASSWORD_HASH_")}
    app = make_app("development", LOG_LEVEL="WARNING", ACCESS_TOKEN_TTL=ACCESS_TOKEN_TTL, **cheap)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


def run_locust(url: str, users: int, seconds: int) -> tuple[int, dict[tuple[str, str], Any]]:
    """Locust's exit status and its final statistics, by (method, name)."""
    locust = Path(sys.executable).with_name("locust")
    result = subprocess.run(
        [
            str(locust),
            "-f",
            str(LOCUSTFILE),
            "--host",
            url,
            "--headless",
            "-u",
            str(users),
            "-r",
            str(users),
            "-t",
            f"{seconds}s",
            "--json",
            "--exit-code-on-error",
            "1",
            "--loglevel",
            "WARNING",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.stdout.strip(), result.stderr
    stats = {(row["method"], row["name"]): row for row in json.loads(result.stdout)}
    return result.returncode, stats


def test_users_log_in_once_per_team_and_refresh_before_expiry(server: BaseWSGIServer) -> None:
    status, stats = run_locust(f"http://127.0.0.1:{server.server_port}", USERS, 3)
    failures = {key: row["num_failures"] for key, row in stats.items() if row["num_failures"]}
    assert failures == {}
    assert status == 0
    counts = {key: row["num_requests"] for key, row in stats.items()}
    teams = 2
    for key in (
        ("POST", "/api/v2/auth/register"),
        ("POST", "/api/v2/auth/login"),
        ("POST", "/api/v2/workspaces"),
        ("DELETE", "/api/v2/workspaces/[id]"),  # the last user of a team cleans up ...
        ("POST", "/api/v2/auth/logout"),  # ... and logs out
    ):
        assert counts[key] == teams, key
    # Each team's token was due for a refresh about once a second: once per team at a time.
    assert counts[("POST", "/api/v2/auth/refresh")] >= teams
    assert counts[("GET", "/api/v2/workspaces/[id]/tasks/[id]")] > 0
