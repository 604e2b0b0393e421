"""Authentication of every request, before any view runs: nothing is public unless marked so.

``init_authentication(app)`` installs one ``before_request`` hook. For a public operation
(``@public``: health, docs, log in...) it does nothing. For every other one it reads
``Authorization: Bearer <credential>``, works out who is calling (a user's access token, an API
key, an OAuth token) and stores the ``Principal``, or answers 401. Whether that caller may do
the operation is the services' decision (app/auth/permissions.py), not this hook's.

Requests that routing refuses (404, 405, a 308 redirect) and ``OPTIONS`` are left alone: they
carry no credentials (a CORS preflight never does) and reveal nothing the spec doesn't say.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, request

from app.auth.errors import AuthenticationRequired
from app.auth.principal import Principal, PrincipalKind, set_current_principal
from app.auth.tokens import ACCESS, decode, revocations

F = TypeVar("F", bound=Callable[..., Any])

# Not Flask-RESTX resources: the Swagger UI, the spec, the API index, static files.
PUBLIC_ENDPOINTS = frozenset({"static", "doc", "specs", "root", "restx_doc.static"})
_PUBLIC_ATTRIBUTE = "__public_operation__"
_EXTENSION = "public_operations"
API_KEY_MARK = "tm_"  # API keys start so (app/auth/api_keys.py); anything else is a JWT


def public(view: F) -> F:
    """Mark a resource method (or a whole Resource class) as callable without credentials."""
    setattr(view, _PUBLIC_ATTRIBUTE, True)
    return view


def init_authentication(app: Flask) -> None:
    app.before_request(_authenticate)


def _authenticate() -> None:
    rule = request.url_rule
    if rule is None or request.method == "OPTIONS":
        return
    if _is_public(rule.endpoint, request.method):
        return
    set_current_principal(authenticate_header(request.headers.get("Authorization")))


def authenticate_header(header: str | None) -> Principal:
    """The caller named by an ``Authorization`` header value; 401 problem if none or invalid."""
    if not header or not header.strip():
        raise AuthenticationRequired()
    scheme, _, credential = header.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise AuthenticationRequired("Use the Bearer scheme: Authorization: Bearer <token>.")
    if credential.startswith(API_KEY_MARK):
        from app.api_keys.service import authenticate_api_key

        return authenticate_api_key(credential)
    return authenticate_access_token(credential)


def authenticate_access_token(token: str) -> Principal:
    from app.auth.errors import InvalidToken

    claims = decode(token, ACCESS)
    if "client_id" in claims:  # issued by the OAuth server: app/oauth/tokens.py checks it
        from app.oauth.tokens import oauth_principal

        return oauth_principal(claims)
    session_id = claims["sid"]
    if revocations().is_revoked(session_id):
        raise InvalidToken("The token has been revoked (logged out).")
    return Principal(
        kind=PrincipalKind.USER,
        user_id=claims["user_id"],
        subject=f"user:{claims['user_id']}",
        session_id=session_id,
        token_id=claims.get("jti"),
    )


def _is_public(endpoint: str, method: str) -> bool:
    cache: dict[tuple[str, str], bool] = current_app.extensions.setdefault(_EXTENSION, {})
    key = (endpoint, method)
    found = cache.get(key)
    if found is None:
        found = cache[key] = _declared_public(endpoint, method)
    return found


def _declared_public(endpoint: str, method: str) -> bool:
    if endpoint in PUBLIC_ENDPOINTS:
        return True
    view = current_app.view_functions.get(endpoint)
    resource = getattr(view, "view_class", None)  # Flask-RESTX keeps the Resource class here
    if resource is None:
        return False
    name = "get" if method == "HEAD" else method.lower()
    return bool(
        getattr(resource, _PUBLIC_ATTRIBUTE, False)
        or getattr(getattr(resource, name, None), _PUBLIC_ATTRIBUTE, False)
    )
