"""scripts/pg-replica: a primary and a streaming hot standby, started and stopped for real.

Select with `-m replica`; skipped (saying why) without the PostgreSQL binaries, unless
PG_REPLICA_REQUIRED=1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.pg_replica import (
    SCRIPT,
    Pair,
    SqlError,
    have_psycopg,
    psql,
    replay_lag,
    require_postgres,
    start_pair,
    stop_pair,
    wait_for_replay,
)

pytestmark = [
    pytest.mark.replica,
    pytest.mark.skipif(os.name != "posix", reason="scripts/pg-replica needs a POSIX system"),
]


def alive(pid: int) -> bool:
    """pid runs (a zombie, dead but not yet reaped by init, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return not Path("/proc").is_dir()  # no procfs: believe kill(0); gone: dead


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_write_on_the_primary_is_read_on_the_read_only_replica_then_stop_removes_all() -> None:
    require_postgres()
    pair = start_pair()
    try:
        state = json.loads((Path(pair.dir) / "pg-replica.json").read_text())
        pids = [state["primary"]["pid"], state["replica"]["pid"]]
        assert all(alive(pid) for pid in pids)
        assert (
            pair.primary_url
            == f"postgresql+psycopg://postgres@127.0.0.1:{pair.primary_port}/taskapi"
        )
        assert (
            pair.replica_url
            == f"postgresql+psycopg://postgres@127.0.0.1:{pair.replica_port}/taskapi"
        )

        assert psql(pair, "primary", "SELECT pg_is_in_recovery()") == "f"
        assert psql(pair, "replica", "SELECT pg_is_in_recovery()") == "t"
        assert psql(pair, "primary", "SELECT state FROM pg_stat_replication") == "streaming"

        psql(pair, "primary", "CREATE TABLE notes (id int PRIMARY KEY, body text)")
        psql(pair, "primary", "INSERT INTO notes VALUES (1, 'written on the primary')")
        wait_for_replay(pair, use_psycopg=False)  # scripts/pg-replica wait: psql
        assert psql(pair, "replica", "SELECT body FROM notes") == "written on the primary"

        if have_psycopg():
            psql(pair, "primary", "INSERT INTO notes VALUES (2, 'and another')")
            wait_for_replay(pair, use_psycopg=True)
            assert psql(pair, "replica", "SELECT count(*) FROM notes") == "2"

        with pytest.raises(SqlError, match="read-only transaction"):
            psql(pair, "replica", "INSERT INTO notes VALUES (3, 'written on the replica')")

        lag_bytes, lag_seconds = replay_lag(pair)
        assert lag_bytes >= 0
        assert lag_seconds >= 0
    finally:
        stop_pair(pair)

    assert not Path(pair.dir).exists()
    assert not any(alive(pid) for pid in pids)
    assert not listening(pair.primary_port)
    assert not listening(pair.replica_port)
    stop_pair(pair)  # idempotent


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=30, env=env, check=False
    )


def test_stop_refuses_a_directory_that_is_not_a_pair(tmp_path: Path) -> None:
    (tmp_path / "precious").write_text("keep me")
    result = run_script("stop", str(tmp_path))
    assert result.returncode == 1
    assert "not a pg-replica directory" in result.stderr
    assert (tmp_path / "precious").read_text() == "keep me"


def test_stop_of_a_missing_directory_succeeds(tmp_path: Path) -> None:
    assert run_script("stop", str(tmp_path / "gone")).returncode == 0


def test_start_without_the_binaries_says_so_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "pair"
    env = {**os.environ, "PG_BINDIR": str(tmp_path / "no-such-bin")}
    result = run_script("start", "--dir", str(target), env=env)
    assert result.returncode == 1
    assert result.stdout == ""  # nothing for `eval` to pick up
    assert "PostgreSQL server binaries" in result.stderr
    assert "PG_BINDIR" in result.stderr
    assert not target.exists()


def test_pair_urls_become_libpq_urls() -> None:
    pair = Pair(
        "postgresql+psycopg://postgres@127.0.0.1:1/taskapi",
        "postgresql+psycopg://postgres@127.0.0.1:2/taskapi",
        "/x",
        1,
        2,
    )
    assert pair.primary_dsn == "postgresql://postgres@127.0.0.1:1/taskapi"
    assert pair.replica_dsn == "postgresql://postgres@127.0.0.1:2/taskapi"
