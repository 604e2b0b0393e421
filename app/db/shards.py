"""Shard databases: their engines, and one session per shard per request.

The control database is Flask-SQLAlchemy's ``db.session``. Shard sessions are plain SQLAlchemy
sessions bound to one shard's engine; they live for one app context and are closed when it ends,
so a request can never leak a transaction into the next one.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask, current_app, g
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app.db.replicas import Replica


class UnknownShard(LookupError):
    """A shard name that is not configured (a directory entry naming a removed shard)."""


class ShardRegistry:
    def __init__(
        self,
        engines: Mapping[str, Engine],
        *,
        control: Engine,
        replicas: Mapping[str, Replica] | None = None,
    ) -> None:
        self.engines = dict(engines)
        self.control = control
        self.replicas = dict(replicas or {})

    def dispose(self) -> None:
        """Close every pooled connection: primaries and replicas."""
        for engine in self.all_engines().values():
            engine.dispose()
        for replica in self.replicas.values():
            replica.engine.dispose()

    @property
    def names(self) -> list[str]:
        return sorted(self.engines)

    def engine(self, name: str) -> Engine:
        try:
            return self.engines[name]
        except KeyError:
            raise UnknownShard(name) from None

    def all_engines(self) -> dict[str | None, Engine]:
        """Every distinct database: the control one (key None) and each shard."""
        found: dict[str | None, Engine] = {None: self.control}
        for name, engine in self.engines.items():
            if engine is not self.control:
                found[name] = engine
        return found


def shards() -> ShardRegistry:
    return current_app.extensions["shards"]


def shard_session(name: str, *, read: bool = False) -> Session:
    """This app context's session on shard ``name`` (created on first use).

    ``read=True`` asks for a session for reads outside a unit of work: the shard's replica when it
    has a usable one and this request has not written to the shard yet (read-your-writes),
    else the primary's session.
    """
    registry = shards()
    key, engine = name, None
    if read and name not in g.get("_shards_written", ()):
        replica = registry.replicas.get(name)
        if replica is not None and replica.usable():
            key, engine = f"{name}@replica", replica.engine
    sessions: dict[str, Session] = g.setdefault("_shard_sessions", {})
    session = sessions.get(key)
    if session is None:
        session = Session(bind=engine or registry.engine(name), expire_on_commit=False)
        sessions[key] = session
    return session


def outside_transaction(session: Session) -> Session:
    """``session``, ready for a read outside any unit of work, in autocommit on PostgreSQL.

    Each statement of such a read is its own transaction anyway (READ COMMITTED takes a snapshot
    per statement), so the ``BEGIN`` and ``ROLLBACK`` around it are two round trips that buy
    nothing. A write's ``atomic()`` ends this read and begins a real transaction. SQLite, in
    process, keeps its ``BEGIN``: it costs no round trip, and its driver workaround
    (``app.db.setup``) owns the transaction statements there.
    """
    if not session.in_transaction() and session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return session


def note_write(name: str) -> None:
    """This request has written to shard ``name``: its later reads there go to the primary."""
    g.setdefault("_shards_written", set()).add(name)


def close_shard_sessions(_exc: BaseException | None = None) -> None:
    for session in g.pop("_shard_sessions", {}).values():
        session.close()  # rolls back anything left open


def init_shard_sessions(app: Flask) -> None:
    app.teardown_appcontext(close_shard_sessions)
