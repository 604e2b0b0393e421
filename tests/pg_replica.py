"""A private PostgreSQL primary + streaming hot standby for tests, via scripts/pg-replica.

A helper module, not a test module. It imports no app code, and psycopg only if it is installed
(otherwise everything goes through psql, run by the script). In a test module or a conftest.py::

    from tests.pg_replica import pair_fixture, wait_for_replay

    pg_pair = pair_fixture()  # a session-scoped fixture named pg_pair; skips if no PostgreSQL

    def test_reads_see_writes(pg_pair):
        ...  # write through pg_pair.primary_url (postgresql+psycopg://, for SQLAlchemy)
        wait_for_replay(pg_pair)  # the replica has now replayed everything committed so far
        ...  # read through pg_pair.replica_url

Defined in a test module, the fixture starts one pair for that module's tests (stopped at the end
of the session); defined in a conftest.py, one pair for every test below it. By hand:
``pair = start_pair()`` ... ``stop_pair(pair)``.

Without the PostgreSQL binaries, the fixture skips, saying why; with PG_REPLICA_REQUIRED=1 (for
CI, where a skip would hide a broken setup) it fails instead.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pg-replica"
Node = Literal["primary", "replica"]


@dataclass(frozen=True)
class Pair:
    primary_url: str  # postgresql+psycopg://postgres@127.0.0.1:PORT/taskapi (SQLAlchemy)
    replica_url: str
    dir: str  # the state directory: scripts/pg-replica stop DIR
    primary_port: int
    replica_port: int

    @property
    def primary_dsn(self) -> str:
        """The primary's URL for libpq: psycopg.connect(), psql."""
        return self.primary_url.replace("postgresql+psycopg://", "postgresql://", 1)

    @property
    def replica_dsn(self) -> str:
        return self.replica_url.replace("postgresql+psycopg://", "postgresql://", 1)


class SqlError(RuntimeError):
    """psql reported an error; the message is PostgreSQL's."""


def _script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # This interpreter rather than the script's `#!/usr/bin/env python3`: the same standard
    # library script, minus the start-up of a version manager's python3 shim (~0.15 s a call).
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _assignments(output: str) -> dict[str, str]:
    """The NAME=value lines the script prints for `eval` (values may be shell-quoted)."""
    values = {}
    for line in output.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            values[name] = " ".join(shlex.split(value))
    return values


@cache
def unavailable() -> str | None:
    """Why a pair cannot be started here (e.g. no PostgreSQL binaries), or None if it can."""
    result = _script("check", timeout=30)
    if result.returncode == 0:
        return None
    return result.stderr.strip().removeprefix("pg-replica: error: ") or "scripts/pg-replica check"


def start_pair(*, database: str = "taskapi") -> Pair:
    """Start a primary and a replica streaming from it; stop them with stop_pair()."""
    result = _script("start", "--database", database)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/pg-replica start failed:\n{result.stderr}")
    values = _assignments(result.stdout)
    return Pair(
        primary_url=values["PG_PRIMARY_URL"],
        replica_url=values["PG_REPLICA_URL"],
        dir=values["PG_REPLICA_DIR"],
        primary_port=int(values["PG_PRIMARY_PORT"]),
        replica_port=int(values["PG_REPLICA_PORT"]),
    )


def stop_pair(pair: Pair) -> None:
    """Stop both servers and remove the pair's directory. Idempotent."""
    result = _script("stop", pair.dir)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/pg-replica stop failed:\n{result.stderr}")


def psql(pair: Pair, node: Node, sql: str) -> str:
    """Run sql on the pair's taskapi database with psql; its unaligned output, stripped."""
    result = _script("psql", pair.dir, node, "-Atq", "-v", "ON_ERROR_STOP=1", "-c", sql, timeout=30)
    if result.returncode != 0:
        raise SqlError(result.stderr.strip())
    return result.stdout.strip()


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        return None
    return psycopg


def have_psycopg() -> bool:
    """psycopg (3) is importable: wait_for_replay() then uses it instead of psql."""
    return _psycopg() is not None


def wait_for_replay(pair: Pair, timeout: float = 10.0, *, use_psycopg: bool | None = None) -> None:
    """Wait until the replica has replayed all the WAL the primary has written so far: every
    transaction committed on the primary before this call is then visible on the replica.

    Compares pg_current_wal_lsn() on the primary with pg_last_wal_replay_lsn() on the replica,
    polling; raises TimeoutError after `timeout` seconds. Uses psycopg if it is importable (or
    if use_psycopg), else `scripts/pg-replica wait`, which uses psql."""
    psycopg = _psycopg() if use_psycopg is not False else None
    if use_psycopg and psycopg is None:
        raise RuntimeError("use_psycopg=True, but psycopg is not installed")
    if psycopg is None:
        result = _script("wait", pair.dir, "--timeout", str(timeout), timeout=timeout + 30)
        if result.returncode != 0:
            raise TimeoutError(result.stderr.strip())
        return
    deadline = time.monotonic() + timeout
    with psycopg.connect(pair.primary_dsn, autocommit=True, connect_timeout=5) as primary:
        target = primary.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    with psycopg.connect(pair.replica_dsn, autocommit=True, connect_timeout=5) as replica:
        while True:
            caught_up = replica.execute(
                "SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)", (target,)
            ).fetchone()[0]
            if caught_up:
                return
            if time.monotonic() > deadline:
                replayed = replica.execute("SELECT pg_last_wal_replay_lsn()::text").fetchone()[0]
                raise TimeoutError(
                    f"the replica replayed up to {replayed}, not {target}, in {timeout:g} s"
                )
            time.sleep(0.02)


def replay_lag(pair: Pair) -> tuple[int, float]:
    """(bytes, seconds) the replica's replay is behind the primary: `scripts/pg-replica lag`."""
    result = _script("lag", pair.dir, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"scripts/pg-replica lag failed:\n{result.stderr}")
    values = _assignments(result.stdout)
    return int(values["PG_REPLICA_LAG_BYTES"]), float(values["PG_REPLICA_LAG_SECONDS"])


def require_postgres() -> None:
    """Skip the calling test (fail under PG_REPLICA_REQUIRED=1) if no pair can start here."""
    reason = unavailable()
    if reason is None:
        return
    if os.environ.get("PG_REPLICA_REQUIRED", "") not in ("", "0"):
        pytest.fail(f"PG_REPLICA_REQUIRED is set, but: {reason}")
    pytest.skip(f"no PostgreSQL replica pair here: {reason}")


def pair_fixture(
    *, scope: Literal["session", "package", "module"] = "session", name: str = "pg_pair"
) -> Callable[[], Iterator[Pair]]:
    """A fixture (assign it to a module-level variable named like `name`) yielding a Pair."""

    @pytest.fixture(scope=scope, name=name)
    def _pair() -> Iterator[Pair]:
        require_postgres()
        pair = start_pair()
        try:
            yield pair
        finally:
            stop_pair(pair)

    return _pair
