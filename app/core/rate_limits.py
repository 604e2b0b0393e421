"""Rate limits with Flask-Limiter: one budget per caller on the API, strict ones on auth endpoints.

* **One Limiter per app**, built by ``init_rate_limits(app)`` and kept in ``app.extensions``: two
  apps in one process (the test suite has hundreds) never share counters, unless they share a
  Redis storage on purpose (several workers of one deployment). Decorators hold no limiter; they
  find the app's at request time.
* **Storage**: ``memory://`` (one process) by default; with ``REDIS_URL``, Redis, every key
  starting with ``REDIS_KEY_PREFIX`` + ``ratelimit:`` (the storage's own key prefix, not
  Flask-Limiter's ``key_prefix``, which would land after the storage's ``LIMITS:``: with ours
  in front, ``SCAN taskapi:*`` finds them and a Redis ACL ``~taskapi:*`` covers them). Fixed
  windows: one ``INCR`` per limit and request; the log-in backoff (``app.auth.login_throttle``)
  is what stops guessing, so the window's edge allowing a short double burst does not matter.
* **The API limit** (``RATE_LIMIT_API``) is one budget per caller across all endpoints
  (Flask-Limiter's application limit): the principal's ``subject`` (``user:<id>``, ``key:<prefix>``)
  when there is one, else the client's address. The limiter's check is a ``before_request`` hook,
  so ``init_rate_limits`` must be called after the authentication hook is installed: Flask runs
  the hooks in order, and the principal must be known when the key is computed. Exempt: ``/``,
  ``/health/*``, ``/swagger*`` (UI, spec, static files), ``/problems*`` and ``OPTIONS`` (CORS
  preflights carry no credentials; they are exempt from every limit).
* **Auth endpoints** (log in, register, refresh, MFA): ``@auth_rate_limit(account=...)`` on a
  Flask-RESTX resource method (or in ``method_decorators`` / ``decorators``) applies
  ``RATE_LIMIT_AUTH_IP`` per client address and ``RATE_LIMIT_AUTH_ACCOUNT`` per account.
* **Client address**: ``request.remote_addr``, which ``app.core.proxies`` has already taken from
  the trusted proxies' ``X-Forwarded-For`` entry (never read the header here). IPv6 addresses
  count per /64: one subscriber usually gets a whole /64, so per-address limits would otherwise
  give an attacker 2^64 budgets.
* **Keys hold no personal data**: an account (an email) is an HMAC under ``SECRET_KEY``, so the
  Redis keys and Flask-Limiter's "ratelimit exceeded" log line show ``account:<digest>``.
* **429**: a ``rate-limited`` problem (``RateLimited``) through ``app.core.errors``, with
  ``Retry-After`` in whole seconds. Every response of a limited endpoint, 200s included, carries
  ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (Unix time) for its
  most restrictive limit, the breached one on a 429. Written here rather than by Flask-Limiter's
  ``headers_enabled``, which also puts ``Retry-After`` on every 200 and would stretch a 503's own
  ``Retry-After`` to the end of the rate-limit window. The IETF ``RateLimit``/``RateLimit-Policy``
  fields are not sent: still an Internet-Draft whose syntax changed between versions.
* **Redis down: fail open, softened.** Flask-Limiter's in-memory fallback logs one warning and
  keeps counting in process memory (so limits still hold per worker) while it re-checks Redis
  with backoff; errors it cannot handle are logged and the request is served
  (``swallow_errors``). An unreachable limiter must not take the API down with it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import itertools
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.wrappers import RequestLimit
from limits import parse_many
from limits.errors import ConfigurationError
from werkzeug.exceptions import HTTPException

from app.auth.principal import current_principal
from app.config import ConfigError
from app.core.errors import ApiProblem, ProblemType, handle_exception

F = TypeVar("F", bound=Callable[..., Any])

LIMIT_HEADER = "X-RateLimit-Limit"
REMAINING_HEADER = "X-RateLimit-Remaining"
RESET_HEADER = "X-RateLimit-Reset"
RETRY_AFTER_HEADER = "Retry-After"
# Paths no limit applies to: probes, documentation, the problem catalog, the index.
EXEMPT_PATHS = frozenset({"/"})
EXEMPT_PREFIXES = ("/health/", "/swagger", "/problems")
STRATEGY = "fixed-window"
# Redis must answer fast or not at all: a hung server would otherwise hold every request.
REDIS_TIMEOUT_SECONDS = 0.5

_EXTENSION = "rate_limits"
_SCOPE = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_decorations = itertools.count(1)

logger = logging.getLogger(__name__)


class RateLimited(ApiProblem):
    """429: a rate limit was reached, or log-ins are in backoff; retry after ``retry_after``."""

    problem_type = ProblemType(
        slug="rate-limited",
        title="Too many requests",
        status=429,
        description=(
            "The caller made more requests than its limit allows, or too many failed log-ins. "
            "Wait the number of seconds in the `Retry-After` header (also `retry_after`) before "
            "trying again. Limited endpoints describe their limit on every response: "
            "`X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (Unix time)."
        ),
    )

    def __init__(self, detail: str, *, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))  # 0 would invite an immediate retry
        super().__init__(detail, headers={RETRY_AFTER_HEADER: str(seconds)}, retry_after=seconds)


# --- Keys ------------------------------------------------------------------------------------


def client_address_key(address: str | None) -> str:
    """The address a client is counted by: an IPv4 address, or an IPv6 address's /64."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return "unknown"  # no address (a Unix socket without proxies): one shared budget
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def client_key() -> str:
    return "ip:" + client_address_key(request.remote_addr)


def api_limit_key() -> str:
    """The API budget's owner: the authenticated caller, else the client's address."""
    principal = current_principal()
    return principal.subject if principal is not None else client_key()


def keyed_digest(secret: str | None, *parts: str) -> str:
    """A short HMAC of ``parts``: a stable storage key that does not reveal an email."""
    key = ("taskapi-rate-limits:" + (secret or "")).encode()
    message = json.dumps(parts).encode()  # unambiguous: ("a", "bc") differs from ("ab", "c")
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


# --- The app's limiter -------------------------------------------------------------------------


def _parsed_limit(config: Any, name: str) -> str:
    value = config.get(name)
    try:
        if not isinstance(value, str) or not parse_many(value):
            raise ValueError(value)
    except ValueError:
        raise ConfigError(
            f"{name} must be a rate limit like '10 per minute; 100 per hour', got {value!r}"
        ) from None
    return value


def _exempt_from_api_limit() -> bool:
    path = request.path
    return path in EXEMPT_PATHS or path.startswith(EXEMPT_PREFIXES)


@dataclass(frozen=True, eq=False)
class _AuthRule:
    """One ``auth_rate_limit(...)`` decoration: what it limits, and how to find the account."""

    id: int
    account: Callable[[], str | None] | None
    scope: str | None
    exempt_account_when: Callable[[str], bool] | None

    def account_value(self) -> str | None:
        """The request's account, worked out once per request (every limit asks for it)."""
        cache: dict[int, str | None] = g.setdefault("_auth_rate_limit_accounts", {})
        if self.id not in cache:
            try:
                value = self.account() if self.account is not None else None
            except HTTPException:  # e.g. a body that is not JSON: the view answers that itself
                value = None
            cache[self.id] = str(value) if value else None
        return cache[self.id]

    def account_key(self) -> str:
        value = self.account_value()
        return "account:" + keyed_digest(current_app.config.get("SECRET_KEY"), value or "")

    def account_exempt(self) -> bool:
        value = self.account_value()
        if value is None:
            return True  # no account named: the per-address limit still applies
        return self.exempt_account_when is not None and self.exempt_account_when(value)


@dataclass
class RateLimits:
    """The app's rate-limit state: its Limiter and the limited callables built for it."""

    enabled: bool
    auth_ip_limit: str
    auth_account_limit: str
    limiter: Limiter | None = None
    _checked: dict[tuple[int, str], Callable[..., Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def checked(self, rule: _AuthRule, target: Callable[..., Any]) -> Callable[..., Any]:
        """``target`` behind this app's limiter: built once per decoration and callable."""
        name = f"{target.__module__}.{getattr(target, '__qualname__', target.__name__)}"
        key = (rule.id, name)
        found = self._checked.get(key)
        if found is None:
            with self._lock:  # two first requests at once must not register the limits twice
                found = self._checked.get(key)
                if found is None:
                    found = self._checked[key] = self._build(rule, target)
        return found

    def _build(self, rule: _AuthRule, target: Callable[..., Any]) -> Callable[..., Any]:
        assert self.limiter is not None

        # Flask-Limiter registers limits under the decorated callable's qualified name: this
        # stand-in gets a name of its own per decoration, and is called with the real target
        # each time (a method_decorators target is a new bound method on every request).
        def call(view: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            return view(*args, **kwargs)

        call.__module__ = target.__module__
        call.__name__ = getattr(target, "__name__", "view")
        call.__qualname__ = (
            f"{getattr(target, '__qualname__', call.__name__)}[rate-limit-{rule.id}]"
        )

        def limit(value: str, **options: Any) -> Any:
            assert self.limiter is not None
            if rule.scope is not None:  # one budget for every endpoint that names this scope
                return self.limiter.shared_limit(value, scope=f"auth-{rule.scope}", **options)
            return self.limiter.limit(value, per_method=True, **options)

        checked: Callable[..., Any] = limit(
            self.auth_ip_limit,
            key_func=client_key,
            error_message="Too many attempts from this address",
        )(call)
        if rule.account is not None:
            checked = limit(
                self.auth_account_limit,
                key_func=rule.account_key,
                exempt_when=rule.account_exempt,
                error_message="Too many attempts for this account",
            )(checked)
        return checked


def rate_limits(app: Flask | None = None) -> RateLimits:
    """The rate-limit state of ``app`` (default: the current app)."""
    target = app if app is not None else current_app
    state = target.extensions.get(_EXTENSION)
    if state is None:
        raise RuntimeError("rate limits are not set up: call init_rate_limits(app) in create_app")
    return cast(RateLimits, state)


def init_rate_limits(app: Flask) -> None:
    """Build this app's Limiter from the settings. Call it after the authentication hook is
    installed (the API limit is keyed by the principal that hook sets)."""
    if _EXTENSION in app.extensions:  # a second Limiter would count every request twice
        raise RuntimeError("init_rate_limits(app) was already called for this app")
    config = app.config
    state = RateLimits(
        enabled=bool(config.get("RATE_LIMITS_ENABLED", True)),
        auth_ip_limit=_parsed_limit(config, "RATE_LIMIT_AUTH_IP"),
        auth_account_limit=_parsed_limit(config, "RATE_LIMIT_AUTH_ACCOUNT"),
    )
    api_limit = _parsed_limit(config, "RATE_LIMIT_API")
    app.extensions[_EXTENSION] = state
    if not state.enabled:
        return  # no hooks at all: nothing is counted, no header is sent

    redis_url = config.get("REDIS_URL")
    storage_options: dict[str, Any] = {}
    if redis_url:
        storage_options = {
            "key_prefix": f"{config.get('REDIS_KEY_PREFIX') or ''}ratelimit",
            "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
            "socket_timeout": REDIS_TIMEOUT_SECONDS,
        }
    limiter = Limiter(
        key_func=api_limit_key,
        application_limits=[api_limit],
        application_limits_exempt_when=_exempt_from_api_limit,
        headers_enabled=False,  # ours: see _add_rate_limit_headers
        strategy=STRATEGY,
        storage_uri=redis_url or "memory://",
        storage_options=storage_options,
        in_memory_fallback_enabled=bool(redis_url),
        swallow_errors=True,
    )
    limiter.request_filter(lambda: request.method == "OPTIONS")
    try:
        limiter.init_app(app)
    except ConfigurationError as exc:
        raise ConfigError(f"REDIS_URL cannot be used for rate limits: {exc}") from None
    state.limiter = limiter
    app.after_request(functools.partial(_add_rate_limit_headers, limiter))
    app.register_error_handler(
        RateLimitExceeded, functools.partial(_answer_rate_limit_exceeded, limiter)
    )


# --- Answers -----------------------------------------------------------------------------------


def _described_limit(limits: list[RequestLimit]) -> RequestLimit:
    """The limit the headers describe: the breached one, else the one with the least left."""
    breached = [limit for limit in limits if limit.breached]
    if breached:
        return breached[0]
    return min(limits, key=lambda limit: limit.window.remaining)


def _add_rate_limit_headers(limiter: Limiter, response: Response) -> Response:
    limits = limiter.current_limits
    if not limits:
        return response  # an exempt request, or one refused before the limiter's check
    try:
        described = _described_limit(limits)
        reset_time, remaining = described.window
    except Exception:  # storage trouble after the check: the answer matters more than headers
        logger.debug("rate limit headers left out", exc_info=True)
        return response
    response.headers[LIMIT_HEADER] = str(described.limit.amount)
    response.headers[REMAINING_HEADER] = str(max(0, remaining))
    response.headers[RESET_HEADER] = str(math.ceil(reset_time))
    return response


def _answer_rate_limit_exceeded(limiter: Limiter, exc: RateLimitExceeded) -> Response:
    """Flask-Limiter's 429 as our problem, through the one error handler."""
    retry_after: float = exc.limit.limit.get_expiry()  # the whole window, if storage fails us
    breached = limiter.current_limit
    if breached is not None:
        try:
            retry_after = breached.window.reset_time - time.time()
        except Exception:
            logger.debug("rate limit window unknown", exc_info=True)
    seconds = max(1, math.ceil(retry_after))
    message = exc.limit.error_message or "Too many requests from this caller"
    detail = f"{message}: at most {exc.limit.limit}. Retry in {seconds} seconds."
    return handle_exception(RateLimited(detail, retry_after=seconds))


# --- The auth endpoints' decorator -------------------------------------------------------------


def auth_rate_limit(
    account: Callable[[], str | None] | None = None,
    *,
    scope: str | None = None,
    exempt_account_when: Callable[[str], bool] | None = None,
) -> Callable[[F], F]:
    """Limit an auth operation to ``RATE_LIMIT_AUTH_IP`` per client address and, when
    ``account`` names one, ``RATE_LIMIT_AUTH_ACCOUNT`` per account.

    ``account`` is called during the request and returns the account the attempt is about (the
    normalised email of a log-in or registration, the user id of an MFA step) or None; read the
    body with ``request.get_json(silent=True)``: it runs before the view validates anything. An
    HTTP error it raises counts as None. ``scope``: endpoints that name the same scope share
    their budgets (by default each endpoint and method has its own). ``exempt_account_when``
    gets the account and may skip the per-account limit (log-in uses it for addresses the
    account logged in from before: see ``app.auth.login_throttle.login_rate_limit``).

    Works on a Resource method, in ``method_decorators`` and in ``decorators`` (the whole view).
    """
    if scope is not None and not _SCOPE.fullmatch(scope):
        raise ValueError(f"scope must match {_SCOPE.pattern}, got {scope!r}")
    rule = _AuthRule(next(_decorations), account, scope, exempt_account_when)

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def limited(*args: Any, **kwargs: Any) -> Any:
            state = rate_limits()  # a missing limiter on an auth endpoint is a bug: say so
            if not state.enabled:
                return view(*args, **kwargs)
            return state.checked(rule, view)(view, *args, **kwargs)

        return cast(F, limited)

    return decorate
