"""Structured logging: JSON lines in production, readable lines in development.

Logging is process-wide, so ``configure_logging`` owns exactly one handler on the root logger and
replaces it on every call: calling ``create_app`` twice never duplicates log lines.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from functools import lru_cache
from typing import Any, TextIO

from flask import Flask

from app.core.request_id import request_id_var

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id"}
)
# Extra fields whose names suggest a secret are masked, whatever a caller passes.
_SENSITIVE_MARKERS = ("password", "secret", "token", "authorization", "cookie", "api_key")


class RequestContextFilter(logging.Filter):
    """Stamps the current request id (or None outside a request) on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


class DropDevServerAccessLines(logging.Filter):
    """Werkzeug's development server logs each request; our access log already does, with more."""

    def filter(self, record: logging.LogRecord) -> bool:
        # werkzeug.serving logs '<addr> - - [<date>] "%s" %s %s' (request line, status, size).
        return not (
            record.name == "werkzeug"
            and isinstance(record.msg, str)
            and record.msg.endswith('] "%s" %s %s')
        )


@lru_cache(maxsize=1024)
def _is_sensitive(key: str) -> bool:
    lowered = key.lower()
    return any(marker in lowered for marker in _SENSITIVE_MARKERS)


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: "[redacted]" if _is_sensitive(key) else value
        for key, value in record.__dict__.items()
        if key not in _STANDARD_RECORD_ATTRS and not key.startswith("_")
    }


@lru_cache(maxsize=4)
def _utc_second(epoch_second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_second))


def _iso_utc(record: logging.LogRecord) -> str:
    """``2026-11-26T10:00:00.123Z``; the seconds part is formatted once per second."""
    return f"{_utc_second(int(record.created))}.{int(record.msecs):03d}Z"


_encode_json = json.JSONEncoder(default=str, ensure_ascii=False).encode


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (ISO 8601, UTC), level, logger, message, request_id."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": _iso_utc(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        entry.update(_extra_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encode_json(entry)


class TextFormatter(logging.Formatter):
    """``2026-11-26 10:00:00,123 INFO app.access [req-id] message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.request_id = getattr(record, "request_id", None) or "-"
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
    # Flask pins its "app" logger to DEBUG in debug mode, for the whole process; LOG_LEVEL rules.
    app.logger.setLevel(logging.NOTSET)
    return handler
