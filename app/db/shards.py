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


class UnknownShard(LookupError):
    """A shard name that is not configured (a directory entry naming a removed shard)."""


class ShardRegistry:
    def __init__(self, engines: Mapping[str, Engine], *, control: Engine) -> None:
        self.engines = dict(engines)
        self.control = control

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
    """This app context's session on shard ``name`` (created on first use). ``read=True`` asks
    for a session that may read from a replica; without replicas it is the primary's."""
    sessions: dict[str, Session] = g.setdefault("_shard_sessions", {})
    session = sessions.get(name)
    if session is None:
        session = Session(bind=shards().engine(name), expire_on_commit=False)
        sessions[name] = session
    return session


def close_shard_sessions(_exc: BaseException | None = None) -> None:
    for session in g.pop("_shard_sessions", {}).values():
        session.close()  # rolls back anything left open


def init_shard_sessions(app: Flask) -> None:
    app.teardown_appcontext(close_shard_sessions)
