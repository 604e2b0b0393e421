"""Security headers on every response, in one WSGI middleware, and the Swagger UI page's own CSP.

Every response (JSON, problem+json errors, redirects, 304s, the spec, Swagger UI and its static
files) gets, unless the view already set that header itself:

* ``X-Content-Type-Options: nosniff``: a browser never guesses a type (a JSON body that looks like
  HTML is not rendered as HTML; a JSON URL in ``<script src>`` is refused).
* ``Content-Security-Policy: default-src 'none'; frame-ancestors 'none'``: opened in a browser, a
  response may load and run nothing and be framed by no one. The Swagger UI page sets its own,
  looser policy (``swagger_ui_csp``); a view's own header always wins.
* ``X-Frame-Options: DENY``: the same frame protection for browsers without CSP level 2.
* ``Referrer-Policy: no-referrer``: the API's URLs carry workspace ids, and later OAuth codes;
  nothing is gained by telling another site where a user came from. (A same-origin HTML form that
  checks ``Origin`` against CSRF, like the OAuth consent page, should set ``same-origin`` itself:
  with ``no-referrer`` browsers send ``Origin: null`` on its POSTs.)
* ``Cross-Origin-Opener-Policy: same-origin``: a page of another site that opens ours gets no
  handle on its window.
* ``Cross-Origin-Resource-Policy: same-origin``: another site cannot embed our responses with
  ``<img>``/``<script>`` (side channels such as Spectre). CORS requests are not affected: the
  policy applies to no-cors requests only, so the CORS allowlist (``app.core.cors``) still works.
* ``Strict-Transport-Security`` (``HSTS_*`` settings; on in production) on HTTPS responses only:
  RFC 6797 forbids it over plain HTTP. Behind a TLS-terminating proxy, ``TRUSTED_PROXIES`` makes
  the scheme the proxy saw (``X-Forwarded-Proto``) the request's.

The header list is built once, at app creation; per response the middleware only looks at the
names already there. ``no_store`` marks a view's responses (errors included) ``Cache-Control:
no-store``, for credentials: tokens, keys, secrets shown once.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, Response, after_this_request
from flask_restx import Api
from flask_restx.apidoc import ui_for

from app.config import ConfigError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from app.core.cors import CorsPolicy

API_CSP = "default-src 'none'; frame-ancestors 'none'"
BASE_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", API_CSP),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
HSTS_HEADER = "Strict-Transport-Security"
NO_STORE = "no-store"

F = TypeVar("F", bound=Callable[..., Any])


def hsts_value(config: Mapping[str, Any]) -> str | None:
    """The Strict-Transport-Security value the settings ask for, or None when it is off."""
    if not config.get("HSTS_ENABLED"):
        return None
    max_age = config.get("HSTS_MAX_AGE")
    if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0:
        raise ConfigError(f"HSTS_MAX_AGE must be a whole number of seconds >= 0, got {max_age!r}")
    # max-age=0 is meaningful: browsers forget the host's HSTS (how to undo it).
    subdomains = "; includeSubDomains" if config.get("HSTS_INCLUDE_SUBDOMAINS") else ""
    return f"max-age={max_age}{subdomains}"


class _HeaderSet:
    """A header list ready to add: as pairs (the common case, when the response set none of
    them: one C-level extend) and with lower-case names (to skip those it did set)."""

    def __init__(self, headers: Iterable[tuple[str, str]]) -> None:
        self.pairs = list(headers)
        self.names = frozenset(name.lower() for name, _ in self.pairs)
        self.keyed = tuple((name.lower(), name, value) for name, value in self.pairs)

    def add_to(self, headers: list[tuple[str, str]], present: set[str]) -> None:
        if self.names.isdisjoint(present):
            headers.extend(self.pairs)
        else:
            headers.extend((name, value) for key, name, value in self.keyed if key not in present)


class SecurityHeadersMiddleware:
    """Adds the security headers (and CORS response headers) to every response's header list."""

    def __init__(
        self,
        wsgi_app: WSGIApplication,
        *,
        hsts: str | None,
        cors: CorsPolicy | None = None,
    ) -> None:
        self.wsgi_app = wsgi_app
        self._plain = _HeaderSet(BASE_HEADERS)
        self._https = _HeaderSet((*BASE_HEADERS, (HSTS_HEADER, hsts))) if hsts else self._plain
        self._cors = cors

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        defaults = self._https if environ.get("wsgi.url_scheme") == "https" else self._plain
        cors = self._cors
        origin = environ.get("HTTP_ORIGIN") if cors is not None else None

        def start_with_headers(status: str, headers: list[Any], exc_info: Any = None) -> Any:
            present = {name.lower() for name, _ in headers}
            defaults.add_to(headers, present)
            if cors is not None:
                cors.add_response_headers(headers, present, origin)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start_with_headers)


# --- Cache-Control: no-store for credential responses ----------------------------------------


def _set_no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = NO_STORE
    return response


def mark_no_store() -> None:
    """Make this request's response ``Cache-Control: no-store``, whatever it turns out to be
    (an error too): call it in a view that returns a credential."""
    after_this_request(_set_no_store)


def no_store(view: F) -> F:
    """Decorator for a view (or a Flask-RESTX resource method) whose responses carry credentials:
    no cache, shared or private, may keep them (RFC 9111 5.2.2.5)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mark_no_store()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# --- The Swagger UI page ------------------------------------------------------------------------

# Inline <script> elements (no src). Flask-RESTX's template has one: it starts Swagger UI.
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script\s*>", re.I | re.S)


def script_hash(source: str) -> str:
    """The CSP hash source of an inline script: its exact text between the tags, UTF-8."""
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


@functools.lru_cache(maxsize=8)
def swagger_ui_csp(inline_scripts: tuple[str, ...]) -> str:
    """The policy that lets the Swagger UI page work and little else.

    Scripts: our own files and the page's inline scripts by hash, no 'unsafe-inline' and no
    eval: an injected script does not run. connect-src 'self': the spec and "Try it out" go to
    this origin only, which also stops the bundled Swagger UI (3.x) from loading a spec named in
    the page's query string (``?url=``, the route of its known XSS advisories) from elsewhere.
    Styles allow 'unsafe-inline': the page has an inline stylesheet and style attributes, and
    CSS cannot run code. Images: our files and the data: icons of swagger-ui.css.
    """
    scripts = " ".join(script_hash(source) for source in dict.fromkeys(inline_scripts))
    return (
        "default-src 'none'; "
        f"script-src 'self' {scripts}; "
        "style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; "
        "font-src 'self'; "
        "connect-src 'self'; "
        "form-action 'self'; "
        "base-uri 'none'; "
        "frame-ancestors 'none'"
    )


def _swagger_ui_view(api: Api) -> Callable[[], Response]:
    def swagger_ui() -> Response:
        html = ui_for(api)
        # Hashed from the page as rendered: it depends on the script root and a few settings.
        # Cached: the page is the same request after request, so the hashing happens once.
        policy = swagger_ui_csp(tuple(_INLINE_SCRIPT.findall(html)))
        return Response(html, mimetype="text/html", headers={"Content-Security-Policy": policy})

    return swagger_ui


def init_security_headers(app: Flask, *, cors: CorsPolicy | None = None) -> None:
    """Wrap the app's WSGI callable (call it before the request-tracking middleware wraps it)
    and give the Swagger UI page its policy."""
    api = app.extensions.get("api")
    if api is not None:
        api.documentation(_swagger_ui_view(api))
    app.wsgi_app = SecurityHeadersMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, hsts=hsts_value(app.config), cors=cors
    )
