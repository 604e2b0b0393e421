"""Turn the project's settings into Flask-SQLAlchemy's, and set every engine up the same way.

``DATABASE_URL`` is the control database; ``SHARD_URLS`` (``name=url,name=url``) the shards. With
no ``SHARD_URLS`` there is one shard, ``main``, which is the control database itself.
"""

from __future__ import annotations

import select
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from flask_migrate import Migrate
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DisconnectionError

from app.config import ConfigError
from app.db.base import db
from app.db.errors import init_database_errors
from app.db.replicas import make_replicas
from app.db.shards import ShardRegistry, init_shard_sessions
from app.extensions import health_checks

MAIN_SHARD = "main"
MIGRATIONS_DIRECTORY = str(Path(__file__).resolve().parents[2] / "migrations")


class DatabaseConfigError(ConfigError):
    """A database setting is unusable; the message says which and why."""


def parse_shard_urls(raw: str | None) -> dict[str, str]:
    """``"a=sqlite:///a.db, b=postgresql+psycopg://..."`` as ``{"a": ..., "b": ...}``."""
    shards: dict[str, str] = {}
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        name, sep, url = item.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not name or not url:
            raise DatabaseConfigError(f"entries are name=url, got {item.strip()!r}")
        if not name.replace("-", "").replace("_", "").isalnum() or not name.isascii():
            raise DatabaseConfigError(f"shard names are letters, digits, - and _, got {name!r}")
        if name in shards:
            raise DatabaseConfigError(f"shard {name!r} is named twice in SHARD_URLS")
        shards[name] = url
    return shards


def _check_url(name: str, url: str) -> None:
    try:
        parsed = make_url(url)
    except Exception:  # sqlalchemy raises ArgumentError, with the URL (and a password) in it
        raise DatabaseConfigError(f"{name} is not a database URL") from None
    # Named, not implied: SQLAlchemy's default PostgreSQL driver has changed between versions.
    if parsed.get_backend_name() == "postgresql" and parsed.drivername != "postgresql+psycopg":
        raise DatabaseConfigError(
            f"{name}: name the driver, postgresql+psycopg://... (psycopg 3 is installed)"
        )
    if parsed.get_backend_name() not in {"sqlite", "postgresql"}:
        raise DatabaseConfigError(f"{name}: only sqlite and postgresql+psycopg are supported")


def _engine_options(config: Mapping[str, Any], url: str) -> dict[str, Any]:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return {}
    options: dict[str, Any] = {
        "pool_size": config["DATABASE_POOL_SIZE"],
        "max_overflow": config["DATABASE_MAX_OVERFLOW"],
        "pool_timeout": config["DATABASE_POOL_TIMEOUT"],
        "pool_recycle": config["DATABASE_POOL_RECYCLE"],
        "pool_pre_ping": config["DATABASE_POOL_PRE_PING"],
    }
    if "connect_timeout" not in parsed.query:  # libpq waits forever by default: a hang, not a 503
        options["connect_args"] = {"connect_timeout": max(1, int(config["DATABASE_POOL_TIMEOUT"]))}
    return options


def _readable(fd: int) -> bool:
    if hasattr(select, "poll"):  # select.select fails for descriptors past FD_SETSIZE
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    return bool(select.select([fd], [], [], 0)[0])  # Windows: no poll, and sockets only


def _postgresql_liveness(engine: Engine, ping_after_idle: float) -> None:
    """Replace a pooled connection the server has closed before it is handed out, cheaply.

    A server that ends a session (restart, failover, ``pg_terminate_backend``, an idle timeout)
    sends an error and closes the socket, so the idle connection's socket turns readable: a
    zero-timeout ``poll`` sees that without a round trip (the liveness check Go's MySQL driver
    makes). Only a connection idle for ``ping_after_idle`` seconds, which a silent network drop
    may have cut without a word, gets a real ping. Raising ``DisconnectionError`` makes the pool
    discard the connection and hand out a fresh one; SQLAlchemy's ``pool_pre_ping`` would
    instead pay a round trip per database on every request.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None:  # a new connection: just made, nothing to check
            return
        if _readable(dbapi_connection.pgconn.socket):  # idle: nothing to say, unless hung up
            raise DisconnectionError("the server closed the connection")
        if time.monotonic() - idle_since >= ping_after_idle:
            try:
                engine.dialect.do_ping(dbapi_connection)
            except Exception as exc:
                raise DisconnectionError("the connection failed its ping") from exc


def database_urls(app: Flask) -> tuple[str, dict[str, str]]:
    """The control URL and the shard URLs in effect, defaults filled in."""
    config = app.config
    control = config.get("DATABASE_URL")
    shards = parse_shard_urls(config.get("SHARD_URLS"))
    if not control:
        if config["APP_ENV"] == "production":
            raise DatabaseConfigError("DATABASE_URL is not set")
        control = "sqlite:///taskapi.db"  # relative: Flask-SQLAlchemy puts it in instance/
    _check_url("DATABASE_URL", control)
    for name, url in shards.items():
        if name == MAIN_SHARD:
            raise DatabaseConfigError(f"{MAIN_SHARD!r} is the control database's shard name")
        _check_url(f"SHARD_URLS[{name}]", url)
    return control, shards


def replica_urls(app: Flask, shard_names: list[str]) -> dict[str, str]:
    replicas = parse_shard_urls(app.config.get("REPLICA_URLS"))
    for name, url in replicas.items():
        if name not in shard_names:
            raise DatabaseConfigError(f"REPLICA_URLS names {name!r}, which is not a shard")
        _check_url(f"REPLICA_URLS[{name}]", url)
        if make_url(url).get_backend_name() != "postgresql":
            raise DatabaseConfigError(f"REPLICA_URLS[{name}]: replicas are PostgreSQL only")
    return replicas


def init_databases(app: Flask) -> None:
    control, shards = database_urls(app)
    app.config["SQLALCHEMY_DATABASE_URI"] = control
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = _engine_options(app.config, control)
    app.config["SQLALCHEMY_BINDS"] = {
        name: {"url": url, **_engine_options(app.config, url)} for name, url in shards.items()
    }
    db.init_app(app)
    with app.app_context():
        engines = dict(db.engines)
    for engine in engines.values():
        if engine.dialect.name == "sqlite":
            _sqlite_setup(engine)
        elif not app.config["DATABASE_POOL_PRE_PING"]:
            _postgresql_liveness(engine, float(app.config["DATABASE_POOL_PING_IDLE"]))
    named = {name: engines[name] for name in shards} or {MAIN_SHARD: engines[None]}
    replicas = make_replicas(
        replica_urls(app, list(named)),
        lambda url: _engine_options(app.config, url),
        float(app.config["REPLICA_MAX_LAG_SECONDS"]),
    )
    if not app.config["DATABASE_POOL_PRE_PING"]:
        for replica in replicas.values():
            _postgresql_liveness(replica.engine, float(app.config["DATABASE_POOL_PING_IDLE"]))
    app.extensions["shards"] = ShardRegistry(named, control=engines[None], replicas=replicas)
    for shard, replica in replicas.items():
        health_checks.register(app, f"replica:{shard}", replica.check_usable_now, critical=False)
    init_database_errors(app, app.extensions["shards"])
    init_shard_sessions(app)
    Migrate(directory=MIGRATIONS_DIRECTORY).init_app(app, db, render_as_batch=True)


def _sqlite_setup(engine: Engine) -> None:
    """Foreign keys on, a busy timeout, and real transactions.

    pysqlite starts transactions on its own and ignores SAVEPOINT semantics; SQLAlchemy's
    documented workaround hands transaction control back to SQLAlchemy, so ``begin_nested()``
    (a savepoint per bulk operation) works as on PostgreSQL. A unit of work that will write asks
    for ``BEGIN IMMEDIATE``: it takes the write lock up front instead of failing halfway.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        # INSERT OR REPLACE deletes the old row without firing DELETE triggers unless this is on:
        # the audit log's append-only trigger must not have a side door.
        cursor.execute("PRAGMA recursive_triggers=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("write_transaction", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
