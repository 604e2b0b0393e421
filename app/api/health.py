"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from flask_restx import Namespace, fields

from app.api.models import QUERY_ERROR, problem
from app.api.resource import ApiResource
from app.auth.authentication import public
from app.extensions import health_checks

ns = Namespace(
    "health", description="Liveness and readiness probes for orchestrators and load balancers"
)

_NO_STORE = {"Cache-Control": "no-store"}

health = ns.model(
    "Health",
    {
        "status": fields.String(enum=["ok", "fail"], description="Overall result", example="ok"),
        "version": fields.String(description="Application version", example="0.1.0"),
        "environment": fields.String(description="APP_ENV of this process", example="development"),
        "uptime_seconds": fields.Float(
            description="Seconds since the app was created", example=42.5
        ),
    },
)

readiness = ns.inherit(
    "Readiness",
    health,
    {
        "checks": fields.Raw(
            description="Per dependency: status ok|fail, duration_ms, on failure the error class",
            example={"database": {"status": "ok", "duration_ms": 1.3}},
        ),
    },
)


@ns.route("/live")
@public
@ns.doc(security=[])  # probes and error readers carry no credentials
class Liveness(ApiResource):
    @ns.doc("liveness", description="The process is up and serving. Calls no dependency.")
    @ns.response(200, "Alive", health)
    @ns.response(400, QUERY_ERROR, problem)
    def get(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        return health_checks.summary(), 200, _NO_STORE


@ns.route("/ready")
@public
@ns.doc(security=[])  # probes and error readers carry no credentials
class Readiness(ApiResource):
    @ns.doc(
        "readiness",
        description="Runs every registered dependency check; 503 with details if one fails.",
    )
    @ns.response(200, "Ready: every check passed", readiness)
    @ns.response(503, "Not ready: at least one check failed", readiness)
    @ns.response(400, QUERY_ERROR, problem)
    def get(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        healthy, report = health_checks.readiness()
        return report, 200 if healthy else 503, _NO_STORE
