"""The one Flask-RESTX ``Api``: Swagger UI at ``/swagger``, the spec at ``/swagger.json``.

An ``Api`` holds per-app state, so ``create_api`` builds a new one for every app. Namespaces are
declared at module level (like blueprints) and mounted here under their paths.
"""

from __future__ import annotations

from typing import Any, NoReturn

from flask import Flask
from flask_restx import Api

from app.api import health, problems
from app.api.models import SHARED_MODELS
from app.api.versioning import SUPPORTED_VERSIONS, VERSION_REQUEST_HEADER, VERSION_RESPONSE_HEADER
from app.api_keys import routes as api_keys
from app.audit import routes as audit
from app.auth import routes as auth
from app.backups import routes as backups
from app.core.admin import AUTHORIZATIONS, BEARER
from app.core.rate_limits import EXEMPT_PREFIXES as RATE_LIMIT_EXEMPT_PREFIXES
from app.hello import routes as hello
from app.ip_rules import routes as ip_rules
from app.members import routes as members
from app.oauth import routes as oauth_clients
from app.tasks import routes as tasks
from app.version import __version__
from app.workspaces import routes as workspaces

UNAUTHENTICATED = (
    "No credentials, or an access token or API key that is malformed, expired or revoked "
    "(WWW-Authenticate says which)"
)
RATE_LIMITED_RESPONSE = {
    "description": "Too many requests: wait Retry-After seconds (X-RateLimit-* say the budget)",
    "schema": {"$ref": "#/definitions/Problem"},
    "headers": {
        "Retry-After": {"type": "integer", "description": "Seconds until a retry may succeed"},
        "X-RateLimit-Limit": {"type": "integer", "description": "Requests allowed in the window"},
        "X-RateLimit-Remaining": {"type": "integer", "description": "Left in the window"},
        "X-RateLimit-Reset": {"type": "integer", "description": "When it resets (Unix time)"},
    },
}
API_V1 = "/api/v1"
API_V2 = "/api/v2"
SWAGGER_UI_PATH = "/swagger"
SPEC_PATH = "/swagger.json"

DESCRIPTION = f"""
The course's Task Management API.

* **Versions**: call `/api/v1/...`, or call `/api/...` with the header `{VERSION_REQUEST_HEADER}: 1`
  (no header means the latest). Responses carry `{VERSION_RESPONSE_HEADER}`.
* **Request ids**: send `X-Request-ID` (1-128 of `A-Z a-z 0-9 . _ -`) or get a generated one back.
* **Errors** are `application/problem+json` (RFC 9457) with `request_id`;
  `GET /problems` lists the types.
* **Any operation** that reads or writes data can answer **503** `database-unavailable` with
  `Retry-After` when a database is down or out of connections; retry after that many seconds.
"""


class TaskApi(Api):
    """Flask-RESTX ``Api`` that leaves every error to the app-wide problem-details handler."""

    def handle_error(self, e: Exception) -> NoReturn:
        # RESTX would render its own {"message": ...} body; re-raising hands the error to
        # app.core.errors, so RESTX and plain Flask routes answer in one shape.
        raise e

    def error_router(self, original_handler: Any, e: Exception) -> Any:
        # Every error goes to the app's handler. RESTX's router would first match the URL again
        # to decide whose error it is, and meets RequestRedirect (a merged-slash path) outside
        # any handler: a 500 with an HTML page.
        return original_handler(e)

    @property
    def __schema__(self) -> dict[str, Any]:
        """The spec, with operation-level ``consumes``: RESTX has no decorator for it, so an
        operation declares ``@ns.vendor({"x-consumes": [...]})`` and it is moved here. And every
        operation that needs credentials documents the 401, and every rate-limited one the 429
        (one place, so none can forget them)."""
        schema = super().__schema__
        default_security = schema.get("security") or []
        for path, path_item in schema.get("paths", {}).items():
            for method, operation in path_item.items():
                if method == "parameters" or not isinstance(operation, dict):
                    continue
                if "x-consumes" in operation:
                    operation["consumes"] = operation.pop("x-consumes")
                if operation.get("security", default_security):
                    operation["responses"].setdefault(
                        "401",
                        {
                            "description": UNAUTHENTICATED,
                            "schema": {"$ref": "#/definitions/Problem"},
                        },
                    )
                if not path.startswith(RATE_LIMIT_EXEMPT_PREFIXES):
                    operation["responses"].setdefault("429", RATE_LIMITED_RESPONSE)
        return schema

    def render_root(self) -> dict[str, Any]:
        """``GET /``: a small index of where things are."""
        return {
            "name": self.title,
            "version": __version__,
            "api_versions": list(SUPPORTED_VERSIONS),
            "links": {
                "swagger_ui": SWAGGER_UI_PATH,
                "openapi_spec": SPEC_PATH,
                "health_live": "/health/live",
                "health_ready": "/health/ready",
                "problem_types": "/problems",
            },
        }


def create_api(app: Flask) -> Api:
    api = TaskApi(
        title=app.config["API_TITLE"],
        version=__version__,
        description=DESCRIPTION,
        doc=SWAGGER_UI_PATH,
        ordered=True,
        authorizations=AUTHORIZATIONS,  # "Authorize" in Swagger UI: Bearer <token or key>
        security=BEARER,  # every operation, unless it says otherwise (the public ones)
    )
    for model in SHARED_MODELS:
        api.models[model.name] = model
    api.add_namespace(auth.ns, path=f"{API_V2}/auth")
    api.add_namespace(workspaces.ns, path=f"{API_V2}/workspaces")
    api.add_namespace(api_keys.ns, path=f"{API_V2}/workspaces/<uuid:workspace_id>/api-keys")
    api.add_namespace(members.ns, path=f"{API_V2}/workspaces/<uuid:workspace_id>/members")
    api.add_namespace(
        oauth_clients.ns, path=f"{API_V2}/workspaces/<uuid:workspace_id>/oauth-clients"
    )
    api.add_namespace(
        ip_rules.ns_workspace, path=f"{API_V2}/workspaces/<uuid:workspace_id>/ip-allow-list"
    )
    api.add_namespace(ip_rules.ns_admin, path=f"{API_V2}/admin/ip-deny-list")
    api.add_namespace(tasks.ns, path=f"{API_V2}/workspaces/<uuid:workspace_id>/tasks")
    api.add_namespace(audit.ns, path=f"{API_V2}/workspaces/<uuid:workspace_id>")
    api.add_namespace(hello.ns, path=f"{API_V2}/hello")
    api.add_namespace(backups.ns, path=API_V2)  # /admin/..., /workspaces/{id}/export
    api.add_namespace(tasks.ns_v1, path=f"{API_V1}/tasks")
    api.add_namespace(hello.ns_v1, path=f"{API_V1}/hello")
    api.add_namespace(health.ns, path="/health")
    api.add_namespace(problems.ns, path="/problems")
    api.add_namespace(auth.well_known, path="/.well-known")
    api.init_app(app)
    app.extensions["api"] = api
    return api
