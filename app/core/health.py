"""Health checks: liveness never touches a dependency; readiness runs every registered check.

Later chapters register their dependencies (database, Redis, broker) with
``health_checks.register(app, name, check)``. A check returns normally when healthy and raises when
not; it must bound its own time (connect timeouts), because readiness probes have deadlines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app

from app.version import __version__

HealthCheck = Callable[[], None]
_EXTENSION_KEY = "health_checks"

logger = logging.getLogger(__name__)


@dataclass
class _HealthState:
    started_at: float = field(default_factory=time.monotonic)
    checks: dict[str, HealthCheck] = field(default_factory=dict)
    optional: set[str] = field(default_factory=set)  # reported, but not a reason to be unready


class HealthChecks:
    """A Flask extension: the object is stateless, each app keeps its own checks and start time."""

    def init_app(self, app: Flask) -> None:
        app.extensions[_EXTENSION_KEY] = _HealthState()

    @staticmethod
    def _state(app: Flask) -> _HealthState:
        return app.extensions[_EXTENSION_KEY]

    def register(self, app: Flask, name: str, check: HealthCheck, *, critical: bool = True) -> None:
        """``critical=False``: a failure shows in the report but the app stays ready (a read
        replica: reads fall back to the primary)."""
        state = self._state(app)
        if name in state.checks:
            raise ValueError(f"health check {name!r} is already registered")
        state.checks[name] = check
        if not critical:
            state.optional.add(name)

    def names(self, app: Flask) -> list[str]:
        return list(self._state(app).checks)

    def summary(self, app: Flask | None = None) -> dict[str, Any]:
        """What both probes report: version, environment and uptime."""
        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        return {
            "status": "ok",
            "version": __version__,
            "environment": app.config["APP_ENV"],
            "uptime_seconds": round(time.monotonic() - self._state(app).started_at, 3),
        }

    def readiness(self, app: Flask | None = None) -> tuple[bool, dict[str, Any]]:
        """Run every check; return (all healthy, report with per-check status and timing)."""
        app = app or current_app._get_current_object()  # type: ignore[attr-defined]
        state = self._state(app)
        results: dict[str, dict[str, Any]] = {}
        for name, check in state.checks.items():
            started = time.perf_counter()
            try:
                check()
            except Exception as exc:
                # The class name is enough for operators; messages may hold hosts or credentials.
                logger.warning("health check %s failed", name, exc_info=exc)
                result: dict[str, Any] = {"status": "fail", "error": type(exc).__name__}
            else:
                result = {"status": "ok"}
            result["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
            if name in state.optional:
                result["critical"] = False
            results[name] = result
        healthy = all(
            r["status"] == "ok" for name, r in results.items() if name not in state.optional
        )
        report = self.summary(app) | {"status": "ok" if healthy else "fail", "checks": results}
        return healthy, report
