"""scripts/bench still runs end to end: scratch SQLite databases, migrations, seeding, a user and
an access token, three gunicorn servers (the app, the app without authentication, bare Flask), the
pure-Python load generator, the table. A fraction of a second per endpoint: this checks the
machinery, not the numbers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICK_RUN = ["--duration", "0.2", "--tasks", "25", "--workers", "1", "--connections", "2",
             "--threads", "1", "--python-load", "--shards", "0", "--rounds", "2"]  # fmt: skip
ROWS = (
    "bare Flask GET /bare",
    "GET /health/live",
    "GET .../tasks?per_page=20 no auth",
    "GET .../tasks?per_page=20 JWT",
    "GET .../tasks/{id} JWT",
    "GET .../tasks/{id} If-None-Match JWT",
)


def run_bench(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    # Settings of the shell must not reach the servers: the script sets its own.
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SHARD_URLS"}}
    env["TMPDIR"] = str(tmp_path)  # the scratch databases, keys and logs: gone afterwards?
    return subprocess.run(
        [sys.executable, "scripts/bench_app.py", *QUICK_RUN, *options],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip


def test_the_benchmark_runs_on_sqlite_with_the_python_load_generator(tmp_path: Path) -> None:
    result = run_bench(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split("  ")[0]: line for line in result.stdout.splitlines()}
    for label in ROWS:
        assert label in rows, result.stdout
    # Every row answered as expected: 200s, and 304s for the conditional GET (zero errors).
    for label in ROWS:
        assert rows[label].split()[-2:] == ["0", "0"], rows[label]
    # The authenticated list is compared with the same list without authentication.
    assert rows["GET .../tasks?per_page=20 JWT"].count("%") == 3, rows  # vs bare, target, cost
    # ... round by round, alternately (A B, then B A), the cost being the median of the rounds.
    loaded = [
        line.removeprefix("loading ").rsplit(" for ", 1)[0]
        for line in result.stderr.splitlines()
        if line.startswith("loading GET .../tasks?")
    ]
    no_auth, jwt = "GET .../tasks?per_page=20 no auth", "GET .../tasks?per_page=20 JWT"
    assert loaded == [no_auth, jwt, jwt, no_auth], result.stderr
    cost = re.compile(
        r"^auth cost of GET \.\.\./tasks\?per_page=20 JWT: -?\d+\.\d% of the throughput of "
        r"GET \.\.\./tasks\?per_page=20 no auth \(target: at most 10%; (met|NOT MET)\); "
        r"median of the rounds: -?\d+\.\d%, -?\d+\.\d%; from CPU per request: -?\d+\.\d%$",
        re.MULTILINE,
    )
    assert cost.search(result.stdout), result.stdout
    # CPU per request (from /proc): the app's workers and the load generator; with SQLite the
    # database work is the app's own, so the database column says "-".
    app_cpu, database_cpu, load_cpu = rows["GET .../tasks?per_page=20 JWT"].split()[-6:-3]
    assert float(app_cpu) > 0, rows
    assert float(load_cpu) > 0, rows
    assert database_cpu == "-", rows
    assert "the lists with and without authentication: 2 times each" in result.stdout
    assert "25 tasks in the workspace" in result.stdout
    assert "one database" in result.stdout
    assert "revocation checks in the control database" in result.stdout
    assert "SQLite" in result.stdout
    assert "load generator: pure-Python threads (forced by --python-load" in result.stdout
    assert list(tmp_path.iterdir()) == []  # the temporary directory was removed


def test_the_benchmark_runs_with_redis_and_leaves_no_key(
    tmp_path: Path, redis_settings: dict[str, str]
) -> None:
    import redis

    url, prefix = redis_settings["REDIS_URL"], redis_settings["REDIS_KEY_PREFIX"]
    result = run_bench(tmp_path, "--redis-url", url, "--redis-key-prefix", prefix)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "revocation checks in Redis" in result.stdout
    client = redis.Redis.from_url(url)
    try:  # this run's prefix only: another run may share the server
        assert list(client.scan_iter(match=f"*{prefix}*")) == []
    finally:
        client.close()
