"""Structured logging: JSON lines in production, readable lines in development.

Logging is process-wide, so ``configure_logging`` owns exactly one handler on the root logger and
replaces it on every call: calling ``create_app`` twice never duplicates log lines.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from flask import Flask, Response, g, has_request_context, request

ACCESS_LOGGER = "app.access"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id"}
)
# Extra fields whose names suggest a secret are masked, whatever a caller passes.
_SENSITIVE_MARKERS = ("password", "secret", "token", "authorization", "cookie", "api_key")
_MAX_USER_AGENT = 256


class RequestContextFilter(logging.Filter):
    """Stamps the current request id (or None outside a request) on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id") if has_request_context() else None
        return True


class DropDevServerAccessLines(logging.Filter):
    """Werkzeug's development server logs each request; our access log already does, with more."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name == "werkzeug" and record.msg == '"%s" %s %s')


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = {}
    for key, value in record.__dict__.items():
        if key in _STANDARD_RECORD_ATTRS or key.startswith("_"):
            continue
        if any(marker in key.lower() for marker in _SENSITIVE_MARKERS):
            value = "[redacted]"
        fields[key] = value
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (ISO 8601, UTC), level, logger, message, request_id."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        entry.update(_extra_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2026-11-26 10:00:00,123 INFO app.access [req-id] message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = None
        return super().format(record)


def _is_ours(handler: logging.Handler) -> bool:
    return getattr(handler, "taskapi_handler", False)


def configure_logging(app: Flask, stream: TextIO | None = None) -> logging.Handler:
    """Install (or replace) our single root handler according to the app's settings."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if _is_ours(h)]:
        root.removeHandler(handler)
        handler.close()

    handler = logging.StreamHandler(stream or sys.stderr)
    handler.taskapi_handler = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if app.config["LOG_FORMAT"] == "json" else TextFormatter())
    handler.addFilter(RequestContextFilter())
    handler.addFilter(DropDevServerAccessLines())
    root.addHandler(handler)
    root.setLevel(str(app.config["LOG_LEVEL"]).upper())
    return handler


def init_access_log(app: Flask) -> None:
    """Log one line per request: method, path (no query string), status, duration, client."""
    access_logger = logging.getLogger(ACCESS_LOGGER)

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _log_request(response: Response) -> Response:
        # Probes hit /health constantly; keep them out of INFO so real traffic stays readable.
        level = logging.DEBUG if request.path.startswith("/health/") else logging.INFO
        if access_logger.isEnabledFor(level):
            started = g.get("request_started")
            duration_ms = round((time.perf_counter() - started) * 1000, 2) if started else None
            access_logger.log(
                level,
                "%s %s %s %sms",
                request.method,
                request.path,
                response.status_code,
                duration_ms,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": duration_ms,
                    "remote_addr": request.remote_addr,
                    "user_agent": (request.user_agent.string or "")[:_MAX_USER_AGENT],
                },
            )
        return response
