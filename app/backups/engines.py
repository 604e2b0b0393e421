"""Each engine's own online backup and restore, behind three functions: dump, check, restore.

SQLite: the backup API (``sqlite3.Connection.backup``) copies a consistent snapshot while other
connections keep working; restoring is the same API in the other direction, into the live file,
in one step: the destination changes in one transaction, all or nothing.

PostgreSQL: ``pg_dump --format=custom`` (a consistent snapshot, taken without blocking writers)
and ``pg_restore --clean --if-exists --single-transaction`` (all or nothing: on any error the
database is left as it was). The tools get the connection from ``PG*`` environment variables,
never from the command line: a password in argv is visible to every user of the machine (``ps``).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

logger = logging.getLogger(__name__)

SUFFIXES = {"sqlite": "sqlite3", "postgresql": "pgdump"}
TOOL_TIMEOUT_SECONDS = 3600
LOCK_TIMEOUT_MS = 30_000  # a restore waiting this long for a table lock gives up: no hang
_MAX_LOGGED_STDERR = 2000
# URL query parameters that have a libpq environment variable.
_LIBPQ_QUERY_ENV = {
    "host": "PGHOST",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
}


class DatabaseToolError(RuntimeError):
    """A dump or restore failed on the server's side (a tool missing or failing, a full disk)."""


def engine_name(engine: Engine) -> str:
    return engine.dialect.name


def revision_of(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None: not migrated)."""
    try:
        with engine.connect() as connection:
            return connection.scalar(text("SELECT version_num FROM alembic_version"))
    except SQLAlchemyError:
        return None


def dump(engine: Engine, destination: Path) -> None:
    """Write a consistent copy of the live database to ``destination``."""
    if engine_name(engine) == "sqlite":
        _sqlite_dump(engine, destination)
    else:
        _run(
            engine,
            "pg_dump",
            ["--format=custom", "--lock-wait-timeout=30000", f"--file={destination}"],
            with_database=True,
        )
    destination.chmod(0o600)


def check(engine: Engine, path: Path) -> tuple[str | None, str | None]:
    """Whether ``path`` is a usable copy for this engine: (why not, or None; its revision).

    The revision is known for SQLite files only; a PostgreSQL dump's is the manifest's.
    """
    if engine_name(engine) == "sqlite":
        return _sqlite_check(path)
    try:
        _run(engine, "pg_restore", ["--list", str(path)], with_database=False)
    except DatabaseToolError:
        return "pg_restore cannot read it", None
    return None, None


def restore(engine: Engine, path: Path) -> None:
    """Replace the live database's content with the copy at ``path``, in one transaction."""
    if engine_name(engine) == "sqlite":
        _sqlite_restore(engine, path)
    else:
        _run(
            engine,
            "pg_restore",
            [
                "--clean",
                "--if-exists",
                "--single-transaction",
                "--exit-on-error",
                "--no-owner",
                "--no-privileges",
                f"--dbname={_conninfo_dbname(engine)}",
                str(path),
            ],
            with_database=False,
        )
    engine.dispose()  # pooled connections may hold plans and caches of the old tables


# --- SQLite ------------------------------------------------------------------------------------


def _sqlite_dump(engine: Engine, destination: Path) -> None:
    raw = engine.raw_connection()
    try:
        target = sqlite3.connect(destination)
        try:
            raw.driver_connection.backup(target)  # type: ignore[union-attr]
        finally:
            target.close()
    finally:
        raw.close()


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def _sqlite_check(path: Path) -> tuple[str | None, str | None]:
    try:
        connection = _read_only(path)
        try:
            result = connection.execute("PRAGMA integrity_check").fetchall()
            if result != [("ok",)]:
                return "its integrity check fails", None
            row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:  # "file is not a database", "no such table", ...
        return f"it is not a usable SQLite database ({exc})", None
    return None, (row[0] if row else None)


def _sqlite_restore(engine: Engine, path: Path) -> None:
    source = _read_only(path)
    raw = engine.raw_connection()
    try:
        # pages=-1 (the default): the whole copy in one step, one transaction on the target.
        source.backup(raw.driver_connection)  # type: ignore[arg-type]
    except sqlite3.Error as exc:
        raise DatabaseToolError(f"SQLite restore failed: {exc}") from exc
    finally:
        raw.close()
        source.close()


# --- PostgreSQL --------------------------------------------------------------------------------


def _server_major(engine: Engine) -> int | None:
    try:
        with engine.connect():
            info = engine.dialect.server_version_info
    except SQLAlchemyError:
        return None
    return int(info[0]) if info else None


def find_pg_tool(name: str, server_major: int | None = None) -> str:
    """The tool matching the server's major version if installed, else PATH's, else the newest
    under /usr/lib/postgresql (Debian's layout). pg_dump refuses servers newer than itself."""
    installed = {}
    for candidate in glob.glob(f"/usr/lib/postgresql/*/bin/{name}"):
        major = Path(candidate).parents[1].name
        if major.isdigit() and os.access(candidate, os.X_OK):
            installed[int(major)] = candidate
    if server_major in installed:
        return installed[server_major]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    if installed:
        return installed[max(installed)]
    raise DatabaseToolError(f"{name} is not installed (PATH or /usr/lib/postgresql/*/bin)")


def _environment(engine: Engine, with_database: bool) -> dict[str, str]:
    url = engine.url
    # No inherited PG* variable (PGSERVICE, PGOPTIONS...) may redirect or alter the tool.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    values = {
        "PGHOST": url.host,
        "PGPORT": str(url.port) if url.port else None,
        "PGUSER": url.username,
        "PGPASSWORD": url.password,
        "PGDATABASE": url.database if with_database else None,
        "PGAPPNAME": "taskapi-backup",
        "PGCONNECT_TIMEOUT": "10",
        "PGOPTIONS": f"-c lock_timeout={LOCK_TIMEOUT_MS}",
    }
    for key, value in url.query.items():
        variable = _LIBPQ_QUERY_ENV.get(key)
        if variable is not None:
            values[variable] = value if isinstance(value, str) else value[-1]
    env.update({key: str(value) for key, value in values.items() if value})
    return env


def _conninfo_dbname(engine: Engine) -> str:
    """``dbname='...'``: a libpq connection string naming only the database, so a database name
    containing ``=`` cannot be read as one; host, user and password come from the environment."""
    name = engine.url.database or ""
    return "dbname='" + re.sub(r"(['\\])", r"\\\1", name) + "'"


def _run(engine: Engine, tool: str, arguments: list[str], *, with_database: bool) -> None:
    command = [find_pg_tool(tool, _server_major(engine)), "--no-password", *arguments]
    try:
        completed = subprocess.run(  # noqa: S603 (fixed executable, no shell)
            command,
            env=_environment(engine, with_database),
            capture_output=True,
            timeout=TOOL_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatabaseToolError(f"{tool} could not run: {exc}") from exc
    if completed.returncode != 0:
        stderr = completed.stderr.decode(errors="replace")[:_MAX_LOGGED_STDERR]
        logger.warning("%s failed with exit code %s: %s", tool, completed.returncode, stderr)
        raise DatabaseToolError(f"{tool} failed with exit code {completed.returncode}")
