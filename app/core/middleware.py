"""WSGI middleware around the whole Flask app: request id and access log.

Running outside Flask means one function call per request instead of several hooks, and it sees
the final status of every response, including ones Flask's error handling produced.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from app.core.request_id import REQUEST_ID_HEADER, accepted_request_id, request_id_var

ACCESS_LOGGER = "app.access"
_MAX_USER_AGENT = 256
_QUIET_PREFIX = "/health/"  # probes hit these constantly: DEBUG, not INFO

StartResponse = Callable[..., Any]
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def printable(value: str) -> str:
    """Escape control characters: a %0A in a path must not start a forged line in a text log."""
    if not _CONTROL_CHARACTERS.search(value):
        return value
    return _CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", value)


class RequestTrackingMiddleware:
    def __init__(self, wsgi_app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]):
        self.wsgi_app = wsgi_app
        self.access_logger = logging.getLogger(ACCESS_LOGGER)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        path = printable(environ.get("PATH_INFO", ""))  # as sent, before any rewriting
        request_id = accepted_request_id(environ.get("HTTP_X_REQUEST_ID"))
        token = request_id_var.set(request_id)
        status_holder: list[str] = []

        def tracking_start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
            status_holder.append(status)
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, exc_info)

        try:
            return self.wsgi_app(environ, tracking_start_response)
        finally:
            level = logging.DEBUG if path.startswith(_QUIET_PREFIX) else logging.INFO
            if self.access_logger.isEnabledFor(level):
                self._log(level, environ, path, status_holder, started)
            request_id_var.reset(token)

    def _log(
        self, level: int, environ: dict[str, Any], path: str, status: list[str], started: float
    ) -> None:
        duration_ms = round((time.perf_counter() - started) * 1000, 2)
        method = environ.get("REQUEST_METHOD", "")
        code = int(status[-1][:3]) if status else 500
        # Path only: query strings can carry tokens. No headers but the user agent, no body.
        self.access_logger.log(
            level,
            "%s %s %s %sms",
            method,
            path,
            code,
            duration_ms,
            extra={
                "method": method,
                "path": path,
                "status": code,
                "duration_ms": duration_ms,
                "remote_addr": environ.get("REMOTE_ADDR"),
                "user_agent": printable(environ.get("HTTP_USER_AGENT", "")[:_MAX_USER_AGENT]),
            },
        )
