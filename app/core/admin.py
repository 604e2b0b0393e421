"""The admin surface's gate, until chapter 4 brings users and roles: one shared bearer token.

``ADMIN_TOKEN`` unset: the admin endpoints do not exist (404, the same problem as an unknown
URL), so a deployment that never configured them shows nothing to probe. Set: every admin request
must send ``Authorization: Bearer <ADMIN_TOKEN>``, compared in constant time (``hmac``), or it
gets a 401 with ``WWW-Authenticate: Bearer`` (RFC 6750). Production refuses a short token
(``MIN_PRODUCTION_ADMIN_TOKEN_LENGTH`` in ``app.config``).

An admin endpoint is one whose operations document the ``admin_token`` security (``@ns.doc(
security=SECURITY_SCHEME)``): what Swagger shows as locked is what is gated. ``init_admin(app)``
checks every request routed to one before anything else answers it, for *every* method: a
method the route lacks (405 with ``Allow``), ``OPTIONS`` (Flask's automatic 200 with ``Allow``),
``HEAD`` and a path werkzeug would redirect (308) included. Without the right token all of them
answer what ``GET`` does: 404 with ADMIN_TOKEN unset, 401 with it set (OPTIONS too: no CORS
preflight to serve yet, and an Allow header would describe the admin surface). With the right
token nothing changes: 405 and OPTIONS answer as on any route. ``require_admin()`` in the views
stays as a second check.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import Flask, current_app, request
from flask.globals import request_ctx
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import MapAdapter, RequestRedirect

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


# --- The gate, in front of routing's own answers ------------------------------------------------

_EXTENSION = "admin_endpoints"
_MAX_PROBES = 32  # (path, method) pairs: a path has a handful of methods and one normal form


def init_admin(app: Flask) -> None:
    """Gate every admin endpoint for every method (call it once the routes are registered)."""
    app.before_request(_gate_admin_endpoints)


def _gate_admin_endpoints() -> None:
    if _routed_endpoints() & _admin_endpoints(current_app):
        require_admin()  # the 404 or 401 problem, before a 405, an OPTIONS answer or the view


def _admin_endpoints(app: Flask) -> frozenset[str]:
    """Endpoints with an operation documented as needing the admin token; computed once (no
    route can be added after the first request)."""
    found = app.extensions.get(_EXTENSION)
    if found is None:
        found = frozenset(
            endpoint for endpoint, view in app.view_functions.items() if _documents_admin(view)
        )
        app.extensions[_EXTENSION] = found
    return found


def _documents_admin(view: Callable[..., Any]) -> bool:
    resource = getattr(view, "view_class", None)  # Flask-RESTX keeps the Resource class here
    if resource is None:
        return False
    documented = [resource, *(getattr(resource, m.lower(), None) for m in resource.methods or ())]
    return any(
        getattr(item, "__apidoc__", {}).get("security") == SECURITY_SCHEME for item in documented
    )


def _routed_endpoints() -> set[str]:
    """The endpoints this request's path leads to, also when routing refused it: a 405 (the
    path is there for other methods) or a 308 (werkzeug would send the client to a normalised
    path, e.g. merged slashes), or both."""
    if request.url_rule is not None:  # matched; OPTIONS and HEAD included
        return {request.url_rule.endpoint}
    adapter = request_ctx.url_adapter
    if adapter is None or not isinstance(
        request.routing_exception, MethodNotAllowed | RequestRedirect
    ):
        return set()
    found: set[str] = set()
    probes, tried = [(adapter.path_info, request.method)], set()
    while probes and len(tried) < _MAX_PROBES:
        probe = probes.pop()
        if probe in tried:
            continue
        tried.add(probe)
        path, method = probe
        try:
            rule, _ = adapter.match(path, method=method, return_rule=True)
        except MethodNotAllowed as refused:
            probes.extend((path, other) for other in refused.valid_methods or ())
        except RequestRedirect as redirect:
            probes.append((_path_info(adapter, redirect.new_url), method))
        except HTTPException:  # nothing there
            continue
        else:
            found.add(rule.endpoint)
    return found


def _path_info(adapter: MapAdapter, url: str) -> str:
    """A redirect target as the path the adapter matches (without the script root)."""
    path = unquote(urlsplit(url).path)
    script = adapter.script_name.rstrip("/")
    return path[len(script) :] if script and path.startswith(script) else path
