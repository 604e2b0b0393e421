"""CORS with an explicit allowlist of origins (``CORS_ORIGINS``), in a few lines of our own.

Why not Flask-CORS: what we need is small and fixed (exact origins, one list of methods and
headers, no cookies), and the library's generality is where its recent advisories were (path
patterns matched case-insensitively or by the wrong regex, Private Network Access allowed by
default). Here, unset ``CORS_ORIGINS`` means no CORS header at all; ``*`` (any origin) is for
local work and refused in production.

* Every response gets ``Vary: Origin`` while CORS is configured, so a cache never hands one
  origin's answer to another.
* An allowed ``Origin`` gets ``Access-Control-Allow-Origin`` (that origin) and
  ``Access-Control-Expose-Headers`` on every response, errors included, so a browser client can
  read the problem and our headers (ETag, Location, rate limits...). Added by the security
  headers middleware, which sees every response; a view that set its own
  ``Access-Control-Allow-Origin`` (a public document, say) is left alone.
* A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) from an allowed
  origin to a route that exists is answered ``204`` with the allowed methods and headers. Nothing
  else changes: a disallowed origin's preflight gets the usual ``OPTIONS`` answer without any
  ``Access-Control-*`` header (the browser then refuses the request); an unknown path is a 404.
  The hook runs after the admin gate (``app.core.admin``): a preflight to an admin URL still gets
  the gate's 404 or 401, exactly like any other request without the admin token.
* No ``Access-Control-Allow-Credentials``: the API authenticates with the ``Authorization``
  header, never cookies, so a browser never sends cookies cross-origin on our behalf.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, request

from app.config import ConfigError

ALLOWED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "If-Match",
    "If-None-Match",
    "Idempotency-Key",
    "X-Request-ID",
    "Accept-Version",
)
# Response headers a browser client may read beyond the CORS-safelisted ones.
EXPOSED_HEADERS = (
    "ETag",
    "Location",
    "Link",
    "Retry-After",
    "API-Version",
    "Deprecation",
    "Sunset",
    "X-Request-ID",
    "WWW-Authenticate",
    # The rate-limit headers app.core.rate_limits sends (not the IETF draft's RateLimit fields).
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
)
ANY_ORIGIN = "*"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origins(value: str | Iterable[str] | None, *, production: bool) -> tuple[str, ...]:
    """``CORS_ORIGINS`` as exact, normalised origins (``scheme://host[:port]``, as browsers send
    them in ``Origin``); ConfigError for anything else."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    origins: list[str] = []
    for item in (str(raw).strip() for raw in items):
        if not item:
            continue
        if item == ANY_ORIGIN:
            if production:
                raise ConfigError(
                    "refusing to start with APP_ENV=production: CORS_ORIGINS is '*'; "
                    "list the origins that may call the API."
                )
            origins.append(ANY_ORIGIN)
            continue
        origins.append(_normalised_origin(item))
    return tuple(dict.fromkeys(origins))


def _normalised_origin(item: str) -> str:
    problem = f"CORS_ORIGINS: {item!r} is not an origin like https://app.example.com"
    try:
        parts = urlsplit(item)
        port = parts.port
    except ValueError:
        raise ConfigError(problem) from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if (
        scheme not in _DEFAULT_PORTS
        or not host
        or parts.username is not None
        or parts.password is not None
        or parts.path not in {"", "/"}  # a trailing slash is forgiven; a path never matches
        or parts.query
        or parts.fragment
        or "*" in host
    ):
        raise ConfigError(problem)
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    suffix = "" if port is None or port == _DEFAULT_PORTS[scheme] else f":{port}"
    return f"{scheme}://{host}{suffix}"


class CorsPolicy:
    """The allowlist and the header lists, built once."""

    def __init__(self, origins: Iterable[str], *, max_age: int) -> None:
        origins = tuple(origins)
        self.allow_any = ANY_ORIGIN in origins
        self.origins = frozenset(origins) - {ANY_ORIGIN}
        self._exposed = ("Access-Control-Expose-Headers", ", ".join(EXPOSED_HEADERS))
        self._preflight = (
            ("Access-Control-Allow-Methods", ", ".join(ALLOWED_METHODS)),
            ("Access-Control-Allow-Headers", ", ".join(ALLOWED_HEADERS)),
            ("Access-Control-Max-Age", str(max_age)),
        )

    def allows(self, origin: str | None) -> bool:
        return origin is not None and (self.allow_any or origin in self.origins)

    def _allow_origin(self, origin: str) -> tuple[str, str]:
        return ("Access-Control-Allow-Origin", ANY_ORIGIN if self.allow_any else origin)

    def add_response_headers(
        self, headers: list[tuple[str, str]], present: set[str], origin: str | None
    ) -> None:
        """Vary: Origin always; the allow and expose headers for an allowed origin, unless the
        response already has its own Access-Control-Allow-Origin."""
        _add_vary_origin(headers, present)
        if self.allows(origin) and "access-control-allow-origin" not in present:
            assert origin is not None
            headers.append(self._allow_origin(origin))
            headers.append(self._exposed)

    def preflight_response(self, origin: str) -> Response:
        # Allow-Origin too, so the middleware adds only Vary (Expose-Headers means nothing here).
        response = Response(status=204, headers=[self._allow_origin(origin), *self._preflight])
        del response.headers["Content-Type"]  # no body
        return response


def _add_vary_origin(headers: list[tuple[str, str]], present: set[str]) -> None:
    if "vary" not in present:
        headers.append(("Vary", "Origin"))
        return
    for index, (name, value) in enumerate(headers):
        if name.lower() == "vary":
            listed = {item.strip().lower() for item in value.split(",")}
            if not listed & {"origin", "*"}:
                headers[index] = (name, f"{value}, Origin")
            return


def init_cors(app: Flask) -> CorsPolicy | None:
    """Read ``CORS_ORIGINS`` and answer preflights (call it after the admin gate is installed);
    None when CORS is off. The response headers are added by the security headers middleware."""
    origins = parse_origins(
        app.config.get("CORS_ORIGINS"), production=app.config["APP_ENV"] == "production"
    )
    if not origins:
        return None
    max_age = app.config.get("CORS_MAX_AGE")
    if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0:
        raise ConfigError(f"CORS_MAX_AGE must be a whole number of seconds >= 0, got {max_age!r}")
    policy = CorsPolicy(origins, max_age=max_age)

    @app.before_request
    def _answer_preflight() -> Any:
        if request.method != "OPTIONS" or request.url_rule is None:
            return None  # not a preflight, or a path that does not exist: routing answers
        origin = request.headers.get("Origin")
        if "Access-Control-Request-Method" in request.headers and policy.allows(origin):
            assert origin is not None
            return policy.preflight_response(origin)
        return None

    return policy
