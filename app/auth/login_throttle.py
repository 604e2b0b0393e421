"""Failed log-ins: a growing wait per account and address, a short one per account, no lockout.

The log-in service calls ``login_throttle().check(email, address)`` before it verifies the
password (the 429 ``rate-limited`` problem, with ``Retry-After``, if the caller must wait), then
``record_failure`` or ``record_success``. The policy, and why:

* **Per account and address** (``PAIR_BACKOFF``): 5 failures are free (typos, a forgotten
  password); after that each failure doubles the wait before the next attempt from that address
  at that account: 1 s, 2 s, 4 s ... up to 15 minutes. After about 15 failures, one address gets
  about 4 guesses an hour at one account. Forgotten 24 hours after the last failure, and on a
  success from that address. This is the strict one, and it only ever holds up the address
  that made the failures.
* **Per account, from anywhere** (``ACCOUNT_BACKOFF``): 20 failures free, then 1 s doubling up
  to 60 s. It slows a guesser spread over many addresses (a botnet) to about one guess a minute,
  and it is short on purpose: it is also what such an attacker can do to the account's owner,
  who then waits at most a minute per attempt. Forgotten an hour after the last failure, and on
  any success. No lockout: NIST SP 800-63B allows a lock after 100 failures, but that lock is a
  button anyone can press; with passwords of 15+ characters that are not on the common list,
  about 1,400 guesses a day at one account are no threat.
* **Known addresses skip the per-account wait**: an address that logged into the account in the
  last 30 days (``KNOWN_CLIENT_TTL``) is only subject to its own per-address wait, so an attack
  from elsewhere never holds up the owner at home or at work. (``login_rate_limit`` gives them
  the same exemption from the ``RATE_LIMIT_AUTH_ACCOUNT`` limit.)
* The wait applies before the password is checked, to right and wrong passwords alike:
  otherwise a guess during the wait would still say whether it was right. An attempt refused
  with a 429 is not counted, so retrying during a wait does not make it longer.
* **Bursts**: once a wait applies, an allowed check takes its slot in the same atomic update,
  so parallel requests sent together (the "single-packet attack") get one attempt, not one each.
* Count every failed log-in, for unknown emails too: otherwise the throttle would show which
  emails have accounts.

Storage: process memory (one process; bounded) or Redis with ``REDIS_URL``, one small hash per
key with a TTL, read and written in one WATCH/MULTI transaction. Keys start with
``REDIS_KEY_PREFIX`` + ``login:`` and hold an HMAC of the email and address, never the email. If
Redis is down the throttle fails open with one warning per outage: the per-address rate limits
(Flask-Limiter, which keeps counting in memory meanwhile) still bound guessing, and log-ins keep
working. ``RATE_LIMITS_ENABLED=false`` switches it off with the rate limits (load tests).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from flask import Flask, current_app, request

from app.core.rate_limits import (
    RateLimited,
    auth_rate_limit,
    client_address_key,
    keyed_digest,
)

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
Clock = Callable[[], float]

_EXTENSION = "login_throttle"
KEY_NAMESPACE = "login:"
KNOWN_CLIENT_TTL = 30 * 24 * 3600
MAX_MEMORY_ENTRIES = 100_000  # a spray of made-up emails must not grow a worker without bound
REDIS_TIMEOUT_SECONDS = 0.5

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """``free`` failures without a wait, then ``first`` seconds, doubling up to ``cap``."""

    free: int
    first: float
    cap: float
    forget_after: float  # seconds after the last failure when the count starts again

    def wait_after(self, failures: int) -> float:
        if failures < self.free:
            return 0.0
        doublings = min(failures - self.free, 32)  # 2**32 s is far past any cap
        return min(self.first * 2**doublings, self.cap)


PAIR_BACKOFF = Backoff(free=5, first=1.0, cap=15 * 60.0, forget_after=24 * 3600.0)
ACCOUNT_BACKOFF = Backoff(free=20, first=1.0, cap=60.0, forget_after=3600.0)


@dataclass(frozen=True)
class Counter:
    """Failures so far, and when the current wait started (the last failure or reserved slot)."""

    failures: int
    since: float


# A store's writes: key -> (counter, seconds to keep it), or None to delete the key.
Writes = Mapping[str, tuple[Counter, float] | None]


class StoreUnavailable(Exception):
    """The store could not be reached; the throttle fails open."""


class ThrottleStore(Protocol):
    def update(
        self, keys: Sequence[str], decide: Callable[[list[Counter | None]], tuple[Writes, T]]
    ) -> T:
        """Read ``keys``, apply ``decide``'s writes, return its result: all atomically.
        ``decide`` may run more than once (a retried transaction): no side effects."""
        ...

    def close(self) -> None:
        """Release connections (tests; an app's store lives as long as its process)."""
        ...


class MemoryThrottleStore:
    """One process's counters, expired by the throttle's clock, at most ``max_entries``."""

    def __init__(self, clock: Clock, *, max_entries: int = MAX_MEMORY_ENTRIES) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._entries: dict[str, tuple[Counter, float]] = {}  # key -> (counter, expires at)
        self._lock = threading.Lock()

    def update(
        self, keys: Sequence[str], decide: Callable[[list[Counter | None]], tuple[Writes, T]]
    ) -> T:
        with self._lock:
            now = self._clock()
            current = []
            for key in keys:
                entry = self._entries.get(key)
                current.append(entry[0] if entry is not None and entry[1] > now else None)
            writes, result = decide(current)
            for key, write in writes.items():
                self._entries.pop(key, None)  # re-inserted last: the dict stays oldest first
                if write is not None:
                    self._entries[key] = (write[0], now + write[1])
            if len(self._entries) > self._max_entries:
                self._evict(now)
            return result

    def __len__(self) -> int:
        return len(self._entries)

    def close(self) -> None:
        self._entries.clear()

    def _evict(self, now: float) -> None:
        for key in [key for key, (_, expires) in self._entries.items() if expires <= now]:
            del self._entries[key]
        # Still full: forget the least recently written. Under such a flood the per-address
        # rate limits are what hold; several workers should use Redis anyway.
        excess = len(self._entries) - self._max_entries
        for key in list(self._entries)[: max(0, excess)]:
            del self._entries[key]


class RedisThrottleStore:
    """Counters as Redis hashes with TTLs, updated in WATCH/MULTI transactions."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, prefix: str) -> RedisThrottleStore:
        import redis

        client = redis.Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
        )
        return cls(client, prefix)

    def update(
        self, keys: Sequence[str], decide: Callable[[list[Counter | None]], tuple[Writes, T]]
    ) -> T:
        import redis

        names = {key: self._prefix + key for key in keys}
        outcome: list[T] = []

        def attempt(pipe: Any) -> None:
            current = [_decoded(pipe.hmget(names[key], "n", "s")) for key in keys]
            writes, result = decide(current)
            pipe.multi()
            for key, write in writes.items():
                name = self._prefix + key
                if write is None:
                    pipe.delete(name)
                else:
                    counter, keep = write
                    pipe.hset(name, mapping={"n": counter.failures, "s": repr(counter.since)})
                    pipe.expire(name, max(1, math.ceil(keep)))
            outcome[:] = [result]

        try:
            self._client.transaction(attempt, *names.values())
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return outcome[0]

    def close(self) -> None:
        self._client.close()


def _decoded(raw: list[bytes | None]) -> Counter | None:
    failures, since = raw
    if failures is None or since is None:
        return None
    return Counter(int(failures), float(since))


class LoginThrottle:
    """The failed-log-in policy of this module's docstring, over a store and a clock."""

    def __init__(
        self,
        store: ThrottleStore,
        *,
        secret: str | None,
        clock: Clock = time.time,
        enabled: bool = True,
    ) -> None:
        self._store = store
        self._secret = secret
        self._clock = clock
        self.enabled = enabled
        self._store_down = False

    def check(self, account: str, client_ip: str | None) -> None:
        """Return if ``account`` may try a password from ``client_ip`` now; raise the 429
        ``RateLimited`` problem (with Retry-After) if it must wait."""
        if not self.enabled:
            return
        pair, whole, known = self._keys(account, client_ip)
        now = self._clock()

        def decide(current: list[Counter | None]) -> tuple[Writes, float]:
            pair_counter = _fresh(current[0], PAIR_BACKOFF, now)
            account_counter = _fresh(current[1], ACCOUNT_BACKOFF, now)
            applies = [(pair, pair_counter, PAIR_BACKOFF)]
            if not _is_known(current[2], now):
                applies.append((whole, account_counter, ACCOUNT_BACKOFF))
            wait = max(_wait(counter, backoff, now) for _, counter, backoff in applies)
            if wait > 0:
                return {}, wait
            # Take the slot where a wait applies, so a parallel attempt has to wait its turn.
            writes = {
                key: (Counter(counter.failures, now), backoff.forget_after)
                for key, counter, backoff in applies
                if counter is not None and backoff.wait_after(counter.failures) > 0
            }
            return writes, 0.0

        wait = self._update([pair, whole, known], decide, default=0.0)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise RateLimited(
                f"Too many failed log-in attempts. Retry in {seconds} seconds.",
                retry_after=seconds,
            )

    def record_failure(self, account: str, client_ip: str | None) -> None:
        if not self.enabled:
            return
        pair, whole, _ = self._keys(account, client_ip)
        now = self._clock()

        def decide(current: list[Counter | None]) -> tuple[Writes, None]:
            writes = {}
            for key, counter, backoff in (
                (pair, current[0], PAIR_BACKOFF),
                (whole, current[1], ACCOUNT_BACKOFF),
            ):
                counted = _fresh(counter, backoff, now)
                failures = (counted.failures if counted is not None else 0) + 1
                writes[key] = (Counter(failures, now), backoff.forget_after)
            return writes, None

        self._update([pair, whole], decide, default=None)

    def record_success(self, account: str, client_ip: str | None) -> None:
        """Forget the failures of this address and of the account; remember the address."""
        if not self.enabled:
            return
        pair, whole, known = self._keys(account, client_ip)
        now = self._clock()
        writes: Writes = {pair: None, whole: None, known: (Counter(0, now), KNOWN_CLIENT_TTL)}
        self._update([pair, whole, known], lambda _: (writes, None), default=None)

    def is_known_client(self, account: str, client_ip: str | None) -> bool:
        """Whether ``client_ip`` logged into ``account`` in the last ``KNOWN_CLIENT_TTL``."""
        if not self.enabled:
            return False
        known = self._keys(account, client_ip)[2]
        now = self._clock()
        return self._update([known], lambda current: ({}, _is_known(current[0], now)), False)

    def close(self) -> None:
        self._store.close()

    def _keys(self, account: str, client_ip: str | None) -> tuple[str, str, str]:
        address = client_address_key(client_ip)
        pair = keyed_digest(self._secret, "login-pair", account, address)
        return (
            f"{KEY_NAMESPACE}pair:{pair}",
            f"{KEY_NAMESPACE}account:{keyed_digest(self._secret, 'login-account', account)}",
            f"{KEY_NAMESPACE}known:{pair}",
        )

    def _update(
        self,
        keys: Sequence[str],
        decide: Callable[[list[Counter | None]], tuple[Writes, T]],
        default: T,
    ) -> T:
        try:
            result = self._store.update(keys, decide)
        except StoreUnavailable as exc:
            if not self._store_down:  # once per outage, not once per log-in
                logger.warning("log-in throttle store unreachable, not throttling: %s", exc)
                self._store_down = True
            return default
        if self._store_down:
            logger.info("log-in throttle store reachable again")
            self._store_down = False
        return result


def _fresh(counter: Counter | None, backoff: Backoff, now: float) -> Counter | None:
    """The counter, unless its failures are old enough to be forgotten."""
    if counter is None or now - counter.since > backoff.forget_after:
        return None
    return counter


def _wait(counter: Counter | None, backoff: Backoff, now: float) -> float:
    if counter is None:
        return 0.0
    return max(0.0, counter.since + backoff.wait_after(counter.failures) - now)


def _is_known(counter: Counter | None, now: float) -> bool:
    return counter is not None and now - counter.since < KNOWN_CLIENT_TTL


# --- Per app ------------------------------------------------------------------------------------


def init_login_throttle(app: Flask, *, clock: Clock = time.time) -> LoginThrottle:
    """Give ``app`` its throttle: in Redis with ``REDIS_URL``, else in this process's memory."""
    config = app.config
    redis_url = config.get("REDIS_URL")
    store: ThrottleStore = (
        RedisThrottleStore.from_url(redis_url, str(config.get("REDIS_KEY_PREFIX") or ""))
        if redis_url
        else MemoryThrottleStore(clock)
    )
    throttle = LoginThrottle(
        store,
        secret=config.get("SECRET_KEY"),
        clock=clock,
        enabled=bool(config.get("RATE_LIMITS_ENABLED", True)),
    )
    app.extensions[_EXTENSION] = throttle
    return throttle


def login_throttle() -> LoginThrottle:
    """The current app's throttle."""
    throttle = current_app.extensions.get(_EXTENSION)
    if throttle is None:
        raise RuntimeError("no log-in throttle: call init_login_throttle(app) in create_app")
    assert isinstance(throttle, LoginThrottle)
    return throttle


def login_rate_limit(account: Callable[[], str | None]) -> Callable[[F], F]:
    """``auth_rate_limit`` for the log-in operation: the per-account limit does not apply to an
    address that logged into that account before, so an attacker elsewhere cannot use it to
    keep the owner out."""
    return auth_rate_limit(
        account,
        exempt_account_when=lambda value: login_throttle().is_known_client(
            value, request.remote_addr
        ),
    )
