"""The failed-log-in throttle (app/auth/login_throttle.py): backoff, reset, and no lockout.

Every policy test runs on the memory store and on real Redis, with an injected clock: the
waits are minutes long, and no test sleeps.
"""

from __future__ import annotations

import logging
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask, request
from flask_restx import Namespace, Resource

from app.api import TaskApi
from app.auth.login_throttle import (
    ACCOUNT_BACKOFF,
    KNOWN_CLIENT_TTL,
    PAIR_BACKOFF,
    LoginThrottle,
    MemoryThrottleStore,
    RedisThrottleStore,
    ThrottleStore,
    init_login_throttle,
    login_rate_limit,
    login_throttle,
)
from app.config import load_config
from app.core.errors import PROBLEM_MEDIA_TYPE, register_error_handlers
from app.core.rate_limits import RateLimited, init_rate_limits
from tests.conftest import PRODUCTION_TEST_SECRET
from tests.test_rate_limits import close_redis_clients

VICTIM = "victim@example.com"
HOME = "198.51.100.10"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[ThrottleStore]:
    if request.param == "memory":
        chosen: ThrottleStore = MemoryThrottleStore(clock)
    else:
        settings = request.getfixturevalue("redis_settings")
        chosen = RedisThrottleStore.from_url(settings["REDIS_URL"], settings["REDIS_KEY_PREFIX"])
    yield chosen
    chosen.close()


@pytest.fixture
def throttle(store: ThrottleStore, clock: FakeClock) -> LoginThrottle:
    return LoginThrottle(store, secret="test-secret", clock=clock)


def retry_after(throttle: LoginThrottle, account: str, ip: str) -> int:
    """The 429's Retry-After for an attempt now, or 0 if the attempt may go ahead."""
    try:
        throttle.check(account, ip)
    except RateLimited as problem:
        refused = problem
    else:
        return 0
    assert refused.status == 429
    assert refused.headers["Retry-After"] == str(refused.extensions["retry_after"])
    return int(refused.headers["Retry-After"])


def fail(throttle: LoginThrottle, account: str, ip: str) -> None:
    """A wrong password, the way the log-in service reports it: check, then record."""
    throttle.check(account, ip)
    throttle.record_failure(account, ip)


def attack(throttle: LoginThrottle, clock: FakeClock, attempts: int) -> list[int]:
    """A guesser on many addresses, retrying as soon as allowed; the waits it was given."""
    waits = []
    for n in range(attempts):
        ip = f"203.0.113.{n % 250}" if n < 250 else f"2001:db8:{n}::1"
        wait = retry_after(throttle, VICTIM, ip)
        if wait:
            waits.append(wait)
            clock.advance(wait)
            throttle.check(VICTIM, ip)
        throttle.record_failure(VICTIM, ip)
    return waits


# --- Per account and address ------------------------------------------------------------------


def test_five_failures_are_free_then_the_wait_doubles_up_to_the_cap(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    for _ in range(PAIR_BACKOFF.free):
        fail(throttle, VICTIM, HOME)
    expected = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]
    seen = []
    for _ in expected:
        seen.append(retry_after(throttle, VICTIM, HOME))
        clock.advance(seen[-1])
        fail(throttle, VICTIM, HOME)
    assert seen == expected


def test_a_refused_attempt_does_not_make_the_wait_longer(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    for _ in range(PAIR_BACKOFF.free + 4):  # the next wait: 16 s
        clock.advance(retry_after(throttle, VICTIM, HOME))
        fail(throttle, VICTIM, HOME)
    assert retry_after(throttle, VICTIM, HOME) == 16
    for left in (11, 6, 1):  # each refusal answers what is left of the same wait
        clock.advance(5)
        assert retry_after(throttle, VICTIM, HOME) == left
    clock.advance(1)
    assert retry_after(throttle, VICTIM, HOME) == 0


def test_parallel_attempts_get_one_slot_not_one_each(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    for _ in range(PAIR_BACKOFF.free + 1):
        clock.advance(retry_after(throttle, VICTIM, HOME))
        fail(throttle, VICTIM, HOME)
    clock.advance(retry_after(throttle, VICTIM, HOME))  # the wait is over
    throttle.check(VICTIM, HOME)  # the first of a burst takes the slot...
    assert retry_after(throttle, VICTIM, HOME) == 2  # ...the others wait a whole turn


def test_a_burst_in_parallel_threads_gets_exactly_one_attempt(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    for _ in range(PAIR_BACKOFF.free + 1):
        clock.advance(retry_after(throttle, VICTIM, HOME))
        fail(throttle, VICTIM, HOME)
    clock.advance(retry_after(throttle, VICTIM, HOME))
    start = threading.Barrier(16)

    def attempt() -> int:
        start.wait()
        return retry_after(throttle, VICTIM, HOME)

    with ThreadPoolExecutor(max_workers=16) as pool:
        waits = list(pool.map(lambda _: attempt(), range(16)))
    assert sorted(waits) == [0] + [2] * 15


def test_a_success_forgets_the_failures(throttle: LoginThrottle, clock: FakeClock) -> None:
    for _ in range(PAIR_BACKOFF.free + 3):
        clock.advance(retry_after(throttle, VICTIM, HOME))
        fail(throttle, VICTIM, HOME)
    clock.advance(retry_after(throttle, VICTIM, HOME))
    throttle.check(VICTIM, HOME)
    throttle.record_success(VICTIM, HOME)
    for _ in range(PAIR_BACKOFF.free):  # five free failures again
        fail(throttle, VICTIM, HOME)
    assert retry_after(throttle, VICTIM, HOME) == 1


def test_failures_are_forgotten_a_day_after_the_last(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    for _ in range(PAIR_BACKOFF.free):
        fail(throttle, VICTIM, HOME)
    clock.advance(PAIR_BACKOFF.forget_after - 10)
    assert retry_after(throttle, VICTIM, HOME) == 0  # the 1 s wait is long over...
    throttle.record_failure(VICTIM, HOME)
    assert retry_after(throttle, VICTIM, HOME) == 2  # ...but the failures still count
    clock.advance(PAIR_BACKOFF.forget_after + 1)
    throttle.record_failure(VICTIM, HOME)
    assert retry_after(throttle, VICTIM, HOME) == 0  # counting from 1 again


def test_an_address_in_backoff_does_not_hold_up_other_addresses(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    attacker = "203.0.113.66"
    for _ in range(PAIR_BACKOFF.free + 5):
        clock.advance(retry_after(throttle, VICTIM, attacker))
        fail(throttle, VICTIM, attacker)
    assert retry_after(throttle, VICTIM, attacker) == 32
    assert retry_after(throttle, VICTIM, HOME) == 0
    assert retry_after(throttle, "someone@example.com", attacker) == 0  # nor other accounts


def test_ipv6_addresses_of_one_64_are_one_address(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    for n in range(PAIR_BACKOFF.free):
        fail(throttle, VICTIM, f"2001:db8:1:2::{n + 1}")
    assert retry_after(throttle, VICTIM, "2001:db8:1:2:ffff::1") == 1
    assert retry_after(throttle, VICTIM, "2001:db8:1:3::1") == 0


# --- Per account: no lockout ------------------------------------------------------------------


def test_an_attack_from_many_addresses_holds_the_owner_up_a_minute_at_most(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    waits = attack(throttle, clock, 300)
    # The account's wait: 20 free failures, then 1 s doubling, never more than a minute.
    assert waits[:7] == [1, 2, 4, 8, 16, 32, 60]
    assert max(waits) == ACCOUNT_BACKOFF.cap == 60
    # The owner, from an address never used before, right after the attacker's last failure:
    assert 0 < retry_after(throttle, VICTIM, "192.0.2.200") <= 60
    clock.advance(60)
    throttle.check(VICTIM, "192.0.2.200")
    throttle.record_success(VICTIM, "192.0.2.200")
    # A success forgets the account's failures: the next attempt from anywhere goes ahead.
    assert retry_after(throttle, VICTIM, "192.0.2.201") == 0


def test_an_address_the_owner_logged_in_from_is_not_held_up_at_all(
    throttle: LoginThrottle, clock: FakeClock
) -> None:
    throttle.check(VICTIM, HOME)
    throttle.record_success(VICTIM, HOME)
    assert throttle.is_known_client(VICTIM, HOME)
    attack(throttle, clock, 100)
    assert retry_after(throttle, VICTIM, "192.0.2.200") > 0
    for _ in range(3):  # and it takes no slot from the attacker's account-wide wait either
        assert retry_after(throttle, VICTIM, HOME) == 0
    clock.advance(KNOWN_CLIENT_TTL + 1)
    assert not throttle.is_known_client(VICTIM, HOME)


def test_known_is_per_account_and_address(throttle: LoginThrottle) -> None:
    throttle.record_success(VICTIM, HOME)
    assert throttle.is_known_client(VICTIM, HOME)
    assert not throttle.is_known_client(VICTIM, "192.0.2.1")
    assert not throttle.is_known_client("other@example.com", HOME)


# --- Storage ----------------------------------------------------------------------------------


def test_two_workers_on_one_redis_share_the_counts(
    redis_settings: dict[str, str], clock: FakeClock
) -> None:
    def worker() -> LoginThrottle:
        store = RedisThrottleStore.from_url(
            redis_settings["REDIS_URL"], redis_settings["REDIS_KEY_PREFIX"]
        )
        return LoginThrottle(store, secret="test-secret", clock=clock)

    first, second = worker(), worker()
    try:
        for n in range(PAIR_BACKOFF.free):
            fail(first if n % 2 else second, VICTIM, HOME)
        assert retry_after(first, VICTIM, HOME) == retry_after(second, VICTIM, HOME) == 1
    finally:
        first.close()
        second.close()


def test_redis_keys_carry_the_prefix_and_no_email(
    redis_settings: dict[str, str], clock: FakeClock
) -> None:
    import redis

    prefix = redis_settings["REDIS_KEY_PREFIX"]
    store = RedisThrottleStore.from_url(redis_settings["REDIS_URL"], prefix)
    throttle = LoginThrottle(store, secret="test-secret", clock=clock)
    fail(throttle, VICTIM, HOME)
    throttle.record_success("owner@example.com", HOME)
    throttle.close()
    with redis.Redis.from_url(redis_settings["REDIS_URL"]) as client:
        keys = sorted(key.decode() for key in client.scan_iter(match=f"{prefix}*"))
        assert len(keys) == 3  # the victim's pair and account, the owner's known address
        assert all(key.startswith(prefix + "login:") for key in keys)
        assert not any("example.com" in key or HOME in key for key in keys)
        assert all(0 < client.ttl(key) <= KNOWN_CLIENT_TTL for key in keys)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_redis_down_fails_open_with_one_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.auth.login_throttle")
    store = RedisThrottleStore.from_url(f"redis://127.0.0.1:{closed_port()}/0", "x:")
    throttle = LoginThrottle(store, secret="test-secret", clock=clock)
    for _ in range(PAIR_BACKOFF.free * 3):
        fail(throttle, VICTIM, HOME)  # never raises
    throttle.record_success(VICTIM, HOME)
    assert not throttle.is_known_client(VICTIM, HOME)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "unreachable" in warnings[0].getMessage()


def test_the_memory_store_is_bounded(clock: FakeClock) -> None:
    store = MemoryThrottleStore(clock, max_entries=50)
    throttle = LoginThrottle(store, secret="test-secret", clock=clock)
    for n in range(200):  # a spray of made-up emails
        throttle.record_failure(f"nobody{n}@example.com", HOME)
    assert len(store) <= 50
    for _ in range(PAIR_BACKOFF.free):  # the newest entries are the ones kept
        throttle.record_failure(VICTIM, HOME)
    assert retry_after(throttle, VICTIM, HOME) == 1


def test_switched_off_it_never_refuses(clock: FakeClock) -> None:
    throttle = LoginThrottle(
        MemoryThrottleStore(clock), secret="test-secret", clock=clock, enabled=False
    )
    for _ in range(50):
        fail(throttle, VICTIM, HOME)
    assert retry_after(throttle, VICTIM, HOME) == 0


# --- In an app ----------------------------------------------------------------------------------


def email_in_body() -> str | None:
    body = request.get_json(silent=True)
    return body.get("email") if isinstance(body, dict) else None


ns = Namespace("throttled", description="Resources of the log-in throttle tests")


@ns.route("/login")
class Login(Resource):
    """A log-in as the service will do it: limits, the throttle, the password, the record."""

    @login_rate_limit(account=email_in_body)
    def post(self) -> dict[str, Any]:
        body = request.get_json()
        throttle, address = login_throttle(), request.remote_addr
        throttle.check(body["email"], address)
        if body["password"] != "right":
            throttle.record_failure(body["email"], address)
            return {"ok": False}
        throttle.record_success(body["email"], address)
        return {"ok": True}


def throttled_app(env: str, clock: Callable[[], float], **overrides: Any) -> Flask:
    settings = load_config(
        {
            "APP_ENV": env,
            "SECRET_KEY": PRODUCTION_TEST_SECRET,
            "DATABASE_URL": "sqlite://",
            "BACKUP_DIR": tempfile.gettempdir(),  # production asks for one; unused here
            "REDIS_URL": None,
            "RATE_LIMIT_AUTH_IP": "100 per minute",
            "RATE_LIMIT_AUTH_ACCOUNT": "3 per minute",
            "RATE_LIMIT_API": "1000 per minute",
            **overrides,
        },
        environ={},
    )
    app = Flask(__name__)
    app.config.from_mapping(settings)
    register_error_handlers(app)
    TaskApi(app, doc=False).add_namespace(ns, path="/t")
    init_rate_limits(app)
    init_login_throttle(app, clock=clock)
    return app


def log_in(client: Any, ip: str, password: str = "wrong", email: str = VICTIM) -> Any:
    return client.post(
        "/t/login", json={"email": email, "password": password}, environ_base={"REMOTE_ADDR": ip}
    )


@pytest.mark.parametrize("env", ["testing", "production"])
def test_backoff_answers_the_rate_limited_problem(env: str, clock: FakeClock) -> None:
    client = throttled_app(env, clock, RATE_LIMIT_AUTH_ACCOUNT="100 per minute").test_client()
    for _ in range(PAIR_BACKOFF.free):
        assert log_in(client, HOME).get_json() == {"ok": False}
    response = log_in(client, HOME, password="right")  # right or wrong: it must wait
    assert response.status_code == 429
    assert response.mimetype == PROBLEM_MEDIA_TYPE
    assert response.headers["Retry-After"] == "1"
    body = response.get_json()
    assert body["type"] == "/problems/rate-limited"
    assert body["retry_after"] == 1
    assert VICTIM not in response.get_data(as_text=True)
    clock.advance(1)
    assert log_in(client, HOME, password="right").get_json() == {"ok": True}


def test_the_account_limit_spares_addresses_the_owner_logged_in_from(clock: FakeClock) -> None:
    client = throttled_app("testing", clock).test_client()
    assert log_in(client, HOME, password="right").get_json() == {"ok": True}
    for n in range(2):  # the account limit is 3 a minute: an attacker uses up the rest...
        assert log_in(client, f"203.0.113.{n}").status_code == 200
    refused = log_in(client, "192.0.2.99", password="right")
    assert refused.status_code == 429  # ...for the owner on a new address too
    assert "for this account" in refused.get_json()["detail"]
    # At home, the owner logs in as usual.
    assert log_in(client, HOME, password="right").get_json() == {"ok": True}


def test_two_apps_keep_their_own_counts(clock: FakeClock) -> None:
    first = throttled_app("testing", clock, RATE_LIMIT_AUTH_ACCOUNT="100 per minute")
    second = throttled_app("testing", clock, RATE_LIMIT_AUTH_ACCOUNT="100 per minute")
    first_client, second_client = first.test_client(), second.test_client()
    for _ in range(PAIR_BACKOFF.free):
        assert log_in(first_client, HOME).status_code == 200
    assert log_in(first_client, HOME).status_code == 429
    assert log_in(second_client, HOME).status_code == 200


def test_rate_limits_enabled_false_switches_the_throttle_off(clock: FakeClock) -> None:
    app = throttled_app("testing", clock, RATE_LIMITS_ENABLED=False)
    client = app.test_client()
    for _ in range(PAIR_BACKOFF.free * 3):
        assert log_in(client, HOME).status_code == 200
    assert log_in(client, HOME, password="right").get_json() == {"ok": True}


def test_with_redis_the_app_keeps_its_counts_there(
    redis_settings: dict[str, str], clock: FakeClock
) -> None:
    first = throttled_app("testing", clock, **redis_settings)
    second = throttled_app("testing", clock, **redis_settings)
    try:
        for n in range(PAIR_BACKOFF.free):  # failures seen by two workers
            with (first if n % 2 else second).test_request_context():
                login_throttle().record_failure(VICTIM, HOME)
        assert log_in(second.test_client(), HOME).status_code == 429
    finally:
        for app in (first, second):
            close_redis_clients(app)
