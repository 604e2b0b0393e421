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
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

logger = logging.getLogger(__name__)

_RECHECK_SECONDS = 1.0
# 0 when everything received has been replayed; otherwise the age of the last replayed
# transaction. NULL on a server that is not in recovery (a primary): treated as unusable.
_LAG_QUERY = text(
    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN NULL "
    "WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END"
)


class ReplicaUnusable(RuntimeError):
    """The replica is down, is not a replica, or lags too much: reads go to the primary."""


@dataclass
class _Measurement:
    at: float = float("-inf")
    lag_seconds: float | None = None
    error: str | None = None


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
                lag = connection.execute(_LAG_QUERY).scalar()
        except Exception as exc:  # down, unreachable, refused: any of them means "not now"
            logger.warning("replica of shard %s unreachable: %s", self.shard, type(exc).__name__)
            return _Measurement(self._clock(), None, type(exc).__name__)
        if lag is None:
            return _Measurement(self._clock(), None, "not a replica (not in recovery)")
        return _Measurement(self._clock(), float(lag), None)

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
        if measured.lag_seconds > self.max_lag_seconds:
            raise ReplicaUnusable(
                f"lagging {measured.lag_seconds:.1f} s (limit {self.max_lag_seconds:g} s)"
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
