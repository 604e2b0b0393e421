"""scripts/bench still runs end to end: scratch SQLite databases, migrations, seeding, two gunicorn
servers, the pure-Python load generator, the table. A fraction of a second per endpoint: this
checks the machinery, not the numbers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_runs_on_sqlite_with_the_python_load_generator(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SHARD_URLS"}}
    env["TMPDIR"] = str(tmp_path)  # the scratch databases and logs: gone afterwards?
    result = subprocess.run(
        [sys.executable, "scripts/bench_app.py", "--duration", "0.2", "--tasks", "25",
         "--workers", "1", "--connections", "2", "--threads", "1", "--python-load",
         "--shards", "0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    rows = {line.split("  ")[0]: line for line in lines}
    for label in (
        "bare Flask GET /bare",
        "GET /health/live",
        "GET .../tasks?per_page=20",
        "GET .../tasks/{id}",
        "GET .../tasks/{id} If-None-Match",
    ):
        assert label in rows, result.stdout
    assert "25 tasks in the workspace" in result.stdout
    assert "one database" in result.stdout
    assert "SQLite" in result.stdout
    assert "load generator: pure-Python threads (forced by --python-load" in result.stdout
    assert list(tmp_path.iterdir()) == []  # the temporary directory was removed
