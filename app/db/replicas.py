"""Read replicas: where a read may go, and when it must not.

``REPLICA_URLS`` (``shard=url,...``) names a streaming replica for some shards. A read outside a
unit of work goes to the shard's replica when the replica is reachable and not lagging more than
``REPLICA_MAX_LAG_SECONDS`` behind; otherwise to the primary. Writes, and reads inside a unit of
work, always use the primary, and so does every read of a request after it has written to that
shard (read-your-writes: a client that just wrote must not read the older version back).

The replica's state is measured at most once per ``_RECHECK_SECONDS`` per process (not once per
request), and a replica that failed is left alone for that long before it is tried again. The
workspace directory is always read from the control database's primary: a stale placement could
send a write to the wrong shard.

"Not lagging" needs the replica to be connected: a replica whose WAL receiver has lost the primary
receives nothing, so it has replayed everything it received and looks current while it serves
ever older data. A replica is therefore usable only while its WAL receiver is ``streaming`` and
has heard from the primary (data or keepalive) within ``REPLICA_MAX_LAG_SECONDS``. An idle
primary sends nothing until the replica pings it, after ``wal_receiver_timeout / 2`` of silence:
set ``wal_receiver_timeout`` on the replica to at most ``REPLICA_MAX_LAG_SECONDS`` (the default,
60 s, leaves an idle replica unused for most of each minute). With a limit of 0 no replica is used.

Privilege: the replica's user (the one in ``REPLICA_URLS``) must be a superuser or have the
privileges of ``pg_read_all_stats`` (``pg_monitor`` includes it), e.g. ``GRANT pg_read_all_stats
TO app`` on the primary (roles replicate). Other users see ``pg_stat_wal_receiver`` without its
status and timestamps; such a replica is reported unusable, saying so, never assumed healthy.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

_RECHECK_SECONDS = 1.0
# One row in one round trip: in recovery?; the WAL receiver's pid (NULL: none running), status and
# seconds since its last message from the primary (both NULL without pg_read_all_stats); and the
# replay lag: 0 when everything received has been replayed, else the age of the last replayed
# transaction. The LEFT JOIN keeps the row when no receiver runs (the view is then empty).
_STATE_QUERY = text(
    "SELECT pg_is_in_recovery(), r.pid, r.status, "
    "EXTRACT(EPOCH FROM clock_timestamp() - r.last_msg_receipt_time), "
    "CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END "
    "FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true"
)
_NO_PRIVILEGE = "cannot see the WAL receiver's status: the replica's user needs pg_read_all_stats"


class ReplicaUnusable(RuntimeError):
    """The replica is down, is not a replica, has lost its primary, or lags too much: reads go to
    the primary."""


@dataclass
class _Measurement:
    at: float = float("-inf")
    lag_seconds: float | None = None  # replay lag; None when error says why it is unusable
    silent_seconds: float | None = None  # since the WAL receiver last heard from the primary
    error: str | None = None


def _interpret(at: float, row: Sequence[Any]) -> _Measurement:
    """A measurement from _STATE_QUERY's row: an error for what no lag limit can make usable."""
    in_recovery, receiver_pid, status, silent, lag = row
    if not in_recovery:
        return _Measurement(at, error="not a replica (not in recovery)")
    if receiver_pid is None:
        return _Measurement(at, error="WAL receiver not streaming (not running)")
    if status is None:  # the pid is visible to every user; the rest needs pg_read_all_stats
        return _Measurement(at, error=_NO_PRIVILEGE)
    if status != "streaming":
        return _Measurement(at, error=f"WAL receiver not streaming ({status})")
    if silent is None:
        return _Measurement(at, error="WAL receiver has not heard from the primary yet")
    return _Measurement(at, float(lag), float(silent))


class Replica:
    def __init__(
        self,
        shard: str,
        engine: Engine,
        max_lag_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.shard = shard
        self.engine = engine
        self.max_lag_seconds = max_lag_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._last = _Measurement()

    def _measure(self) -> _Measurement:
        try:
            with self.engine.connect() as connection:
                row = connection.execute(_STATE_QUERY).one()
        except Exception as exc:  # down, unreachable, refused: any of them means "not now"
            logger.warning("replica of shard %s unreachable: %s", self.shard, type(exc).__name__)
            return _Measurement(self._clock(), error=type(exc).__name__)
        measured = _interpret(self._clock(), row)
        if measured.error is not None:
            logger.warning("replica of shard %s unusable: %s", self.shard, measured.error)
        return measured

    def state(self) -> _Measurement:
        with self._lock:
            if self._clock() - self._last.at >= _RECHECK_SECONDS:
                self._last = self._measure()
            return self._last

    def check_usable(self) -> float:
        """The lag in seconds, or ReplicaUnusable saying why reads should skip it."""
        measured = self.state()
        if measured.error is not None:
            raise ReplicaUnusable(measured.error)
        assert measured.lag_seconds is not None
        assert measured.silent_seconds is not None
        limit = f"(limit {self.max_lag_seconds:g} s)"
        if measured.lag_seconds > self.max_lag_seconds:
            raise ReplicaUnusable(f"lagging {measured.lag_seconds:.1f} s {limit}")
        # Lag 0 only means "replayed all it received": true of a replica cut off from its primary.
        if measured.silent_seconds > self.max_lag_seconds:
            raise ReplicaUnusable(
                f"no message from the primary for {measured.silent_seconds:.1f} s {limit}"
            )
        return measured.lag_seconds

    def check_usable_now(self) -> None:
        """For /health/ready: measure now (not the cached state), raise if unusable."""
        with self._lock:
            self._last = self._measure()
        self.check_usable()

    def usable(self) -> bool:
        try:
            self.check_usable()
        except ReplicaUnusable:
            return False
        return True


def make_replicas(
    urls: Mapping[str, str], engine_options: Callable[[str], dict[str, object]], max_lag: float
) -> dict[str, Replica]:
    return {
        shard: Replica(shard, create_engine(url, **engine_options(url)), max_lag)
        for shard, url in urls.items()
    }
