"""The platform admin surface (backups, restores, workspace import and moves): platform
administrators only, and invisible to everyone else.

An admin endpoint is a Flask-RESTX resource marked ``@platform_admin_only`` (class or method).
``init_admin(app)`` checks every request routed to one before anything else answers it, for
*every* method: a method the route lacks (405 with ``Allow``), ``OPTIONS``, ``HEAD`` and a path
werkzeug would redirect (308) included. No or an invalid token: 401, as anywhere. A valid token
of anyone who is not a platform administrator (an API key included): 404, the same problem as an
unknown URL, so the admin surface shows nothing to probe. Platform administrators are users with
``is_platform_admin`` (``flask users create-admin``), read from the database on each request: a
demoted administrator loses access at once. ``require_platform_admin()`` in the views is a
second check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from flask import Flask, current_app, request
from flask.globals import request_ctx
from sqlalchemy import select
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import MapAdapter, RequestRedirect

from app.auth.authentication import authenticate_header
from app.auth.models import UserRow
from app.auth.principal import (
    Principal,
    PrincipalKind,
    current_principal,
    set_current_principal,
)
from app.db import db
from app.db.shards import outside_transaction

BEARER = "bearer"
# Swagger 2.0 has no "bearer" scheme: an apiKey in the Authorization header is the usual stand-in.
# In Swagger UI's "Authorize" dialog, type: Bearer <access token or API key>.
AUTHORIZATIONS: dict[str, Any] = {
    BEARER: {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "`Bearer <access token>` (from POST /api/v2/auth/login) or "
        "`Bearer <API key>` (tm_...). Type the word Bearer, a space, then the token.",
    }
}
_MARK = "__platform_admin_only__"
F = TypeVar("F", bound=Callable[..., Any])


def platform_admin_only(view: F) -> F:
    """Mark a Resource class or method as the platform admin surface (gated by init_admin)."""
    setattr(view, _MARK, True)
    return view


def is_platform_admin(principal: Principal | None) -> bool:
    if (
        principal is None
        or principal.kind is not PrincipalKind.USER
        or principal.scopes is not None
    ):
        return False  # an OAuth token acting for an admin is not the admin signed in
    query = select(UserRow.is_platform_admin).where(UserRow.id == principal.user_id)
    return bool(outside_transaction(db.session()).scalar(query))


def require_platform_admin() -> Principal:
    """The caller, if a platform administrator; 401 without credentials, 404 otherwise."""
    principal = current_principal()
    if principal is None:
        principal = authenticate_header(request.headers.get("Authorization"))
        set_current_principal(principal)
    if not is_platform_admin(principal):
        raise NotFound()  # same body as an unknown URL: the admin surface is not there
    return principal


# --- The gate, in front of routing's own answers ------------------------------------------------

_EXTENSION = "admin_endpoints"
_MAX_PROBES = 32  # (path, method) pairs: a path has a handful of methods and one normal form


def init_admin(app: Flask) -> None:
    """Gate every admin endpoint for every method (call it once the routes are registered)."""
    app.before_request(_gate_admin_endpoints)


def _gate_admin_endpoints() -> None:
    if _routed_endpoints() & _admin_endpoints(current_app):
        require_platform_admin()  # 401 or 404, before a 405, an OPTIONS answer or the view


def _admin_endpoints(app: Flask) -> frozenset[str]:
    """Endpoints with an operation marked platform-admin only; computed once (no route can be
    added after the first request)."""
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
    marked = [resource, *(getattr(resource, m.lower(), None) for m in resource.methods or ())]
    return any(getattr(item, _MARK, False) for item in marked)


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
