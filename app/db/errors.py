"""A database that is down, unreachable or out of connections: a 503 the client can retry, never a
500 or a hang; and readiness checks that say which database it is.

Bounded waits make "never a hang" true: a checkout waits at most ``DATABASE_POOL_TIMEOUT`` for a
free connection, and a new PostgreSQL connection at most as long to connect (``connect_timeout``,
unless the URL sets its own). A pooled connection the server dropped (restart, failover,
``pg_terminate_backend``) is replaced at checkout (``app.db.setup``), so the app recovers on its
own.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.core.errors import ApiProblem, ProblemType, handle_exception
from app.db.shards import ShardRegistry
from app.extensions import health_checks

RETRY_AFTER_SECONDS = 5
# What SQLAlchemy raises when it cannot get or keep a connection. OperationalError also covers a
# server going away mid-query and SQLite's "database is locked" past its busy timeout: all of
# them are worth retrying, none is the client's fault.
UNAVAILABLE = (OperationalError, DisconnectionError, PoolTimeoutError)

logger = logging.getLogger(__name__)


class DatabaseUnavailable(ApiProblem):
    problem_type = ProblemType(
        slug="database-unavailable",
        title="Database unavailable",
        status=503,
        description=(
            "A database is down, unreachable or has no free connection right now. Retry after "
            "`Retry-After` seconds (a write retried with `If-Match` cannot apply twice). Any "
            "operation can return it."
        ),
    )


def _unavailable(exc: Exception) -> Response:
    cause = type(getattr(exc, "orig", None) or exc).__name__
    # The class names only: a driver's message can quote hosts, users or (with some drivers) the
    # URL; the request id in the log line ties it to the client's report.
    logger.error(
        "database unavailable on %s %s: %s (%s)",
        request.method,
        request.path,
        type(exc).__name__,
        cause,
    )
    return handle_exception(
        DatabaseUnavailable(
            "A database is unavailable right now; retry later.",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    )


def _ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def init_database_errors(app: Flask, registry: ShardRegistry) -> None:
    """503 for an unavailable database; a readiness check per database (control, each shard)."""
    for error in UNAVAILABLE:
        app.register_error_handler(error, _unavailable)
    health_checks.register(app, "database:control", lambda: _ping(registry.control))
    for name, engine in registry.all_engines().items():
        if name is not None:  # None is the control database, checked above
            health_checks.register(app, f"shard:{name}", lambda e=engine: _ping(e))
