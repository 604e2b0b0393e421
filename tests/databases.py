"""Databases for the tests: fresh, migrated, and cheap.

SQLite (the default): the migrations run once per session into template files, and every app gets
its own copies (a file copy costs far less than a migration). PostgreSQL: set
``TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres``; the session creates a
control and two shard databases with unique names, migrates them once, empties them before each
app, and drops them at the end.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

SHARD_NAMES = ("shard-a", "shard-b")
POSTGRES_ADMIN_URL = os.environ.get("TEST_DATABASE_URL")
# Tables emptied between PostgreSQL tests; the default workspace is put back after.
# TRUNCATE fires no row trigger, so the append-only audit_events table empties too.
_TABLES = (
    "task_tags",
    "tasks",
    "workspaces",
    "audit_events",
    "users",
    "memberships",
    "auth_sessions",
    "refresh_tokens",
    "mfa_recovery_codes",
    "api_keys",
    "ip_rules",
)


def _config(control: str, shards: dict[str, str]) -> dict[str, Any]:
    return {
        "DATABASE_URL": control,
        "SHARD_URLS": ",".join(f"{name}={url}" for name, url in shards.items()),
    }


def _migrate(config: dict[str, Any]) -> None:
    from flask_migrate import upgrade

    from app import create_app

    app = create_app({"APP_ENV": "testing", **config})
    with app.app_context():
        upgrade()
    for engine in app.extensions["shards"].all_engines().values():
        engine.dispose()


class SqliteDatabases:
    def __init__(self) -> None:
        # A RAM disk where there is one: every commit syncs the file, and disks can be slow.
        ram = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
        self.root = Path(tempfile.mkdtemp(prefix="taskapi-tests-", dir=ram))
        atexit.register(shutil.rmtree, self.root, True)
        self.template = self.root / "template"
        self.template.mkdir()
        self._count = 0
        self._ready = False

    def _files(self, folder: Path) -> tuple[Path, dict[str, Path]]:
        return folder / "control.db", {name: folder / f"{name}.db" for name in SHARD_NAMES}

    def _urls(self, folder: Path) -> dict[str, Any]:
        control, shards = self._files(folder)
        return _config(f"sqlite:///{control}", {n: f"sqlite:///{p}" for n, p in shards.items()})

    def fresh(self) -> dict[str, Any]:
        if not self._ready:
            _migrate(self._urls(self.template))
            self._ready = True
        self._count += 1
        folder = self.root / f"app-{self._count}"
        folder.mkdir()
        for source in self.template.iterdir():
            shutil.copyfile(source, folder / source.name)
        return self._urls(folder)


class PostgresDatabases:
    def __init__(self, admin_url: str) -> None:
        self.admin_url = make_url(admin_url)
        prefix = f"taskapi_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.names = {"control": f"{prefix}_control"} | {
            name: f"{prefix}_{name.replace('-', '_')}" for name in SHARD_NAMES
        }
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for database in self.names.values():
                connection.execute(text(f'CREATE DATABASE "{database}"'))
        admin.dispose()
        atexit.register(self.drop)
        self.config = _config(self._url("control"), {name: self._url(name) for name in SHARD_NAMES})
        _migrate(self.config)
        self._engines = {key: create_engine(self._url(key), poolclass=None) for key in self.names}
        self._default_workspace = self._snapshot_default()

    def _url(self, key: str) -> str:
        return self.admin_url.set(database=self.names[key]).render_as_string(hide_password=False)

    def _snapshot_default(self) -> list[dict[str, Any]]:
        with self._engines["control"].connect() as connection:
            return [
                dict(row._mapping) for row in connection.execute(text("SELECT * FROM workspaces"))
            ]

    def fresh(self) -> dict[str, Any]:
        for key, engine in self._engines.items():
            with engine.begin() as connection:
                connection.execute(text(f"TRUNCATE {', '.join(_TABLES)} CASCADE"))
                if key == "control" and self._default_workspace:
                    columns = list(self._default_workspace[0])
                    connection.execute(
                        text(
                            f"INSERT INTO workspaces ({', '.join(columns)}) "
                            f"VALUES ({', '.join(':' + c for c in columns)})"
                        ),
                        self._default_workspace,
                    )
        return dict(self.config)

    def drop(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            for database in self.names.values():
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


_databases: SqliteDatabases | PostgresDatabases | None = None


def fresh_databases() -> dict[str, Any]:
    """Settings for a new app: its own empty, migrated databases (plus the default workspace)."""
    global _databases
    if _databases is None:
        _databases = (
            PostgresDatabases(POSTGRES_ADMIN_URL) if POSTGRES_ADMIN_URL else SqliteDatabases()
        )
    return _databases.fresh()
