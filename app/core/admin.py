"""The admin surface's gate, until chapter 4 brings users and roles: one shared bearer token.

``ADMIN_TOKEN`` unset: the admin endpoints do not exist (404, the same problem as an unknown
URL), so a deployment that never configured them shows nothing to probe. Set: every admin request
must send ``Authorization: Bearer <ADMIN_TOKEN>``, compared in constant time (``hmac``), or it
gets a 401 with ``WWW-Authenticate: Bearer`` (RFC 6750). Production refuses a short token
(``MIN_PRODUCTION_ADMIN_TOKEN_LENGTH`` in ``app.config``).
"""

from __future__ import annotations

import hmac
from typing import Any

from flask import current_app, request
from werkzeug.exceptions import NotFound

from app.core.errors import ApiProblem, ProblemType

SECURITY_SCHEME = "admin_token"
# Swagger 2.0 has no "bearer" scheme: an apiKey in the Authorization header is the usual stand-in.
# In Swagger UI's "Authorize" dialog, type: Bearer <ADMIN_TOKEN>.
AUTHORIZATIONS: dict[str, Any] = {
    SECURITY_SCHEME: {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "Admin endpoints: `Bearer <ADMIN_TOKEN>` (until chapter 4 brings roles).",
    }
}
_REALM = 'Bearer realm="admin"'


class AdminAuthenticationRequired(ApiProblem):
    problem_type = ProblemType(
        slug="admin-authentication-required",
        title="Admin authentication required",
        status=401,
        description="This is an admin endpoint: send `Authorization: Bearer <ADMIN_TOKEN>`. "
        "The token was missing or is not the configured one.",
    )

    def __init__(self, detail: str, *, invalid: bool) -> None:
        # RFC 6750 3.1: error="invalid_token" only when a token was sent.
        challenge = f'{_REALM}, error="invalid_token"' if invalid else _REALM
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


def admin_enabled() -> bool:
    return bool(current_app.config.get("ADMIN_TOKEN"))


def require_admin() -> None:
    """Return if the request carries the admin token; raise the 404 or 401 problem otherwise."""
    token = current_app.config.get("ADMIN_TOKEN")
    if not token:
        raise NotFound()  # same body as an unknown URL: the admin surface is not there
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise AdminAuthenticationRequired(
            "Send the admin token: Authorization: Bearer <ADMIN_TOKEN>.", invalid=False
        )
    # Bytes: compare_digest refuses non-ASCII str, and a header can hold any latin-1 text.
    if not hmac.compare_digest(credentials.strip().encode(), str(token).encode()):
        raise AdminAuthenticationRequired("The admin token is not valid.", invalid=True)
