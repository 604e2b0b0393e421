"""Application factory. Importing ``app`` has no side effects: everything happens in create_app."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from app.api import create_api
from app.api.versioning import init_api_versioning
from app.auth.authentication import init_authentication
from app.auth.login_throttle import init_login_throttle
from app.auth.tokens import init_tokens
from app.cli import register_cli
from app.config import load_config
from app.core.admin import init_admin
from app.core.cors import init_cors
from app.core.errors import register_error_handlers
from app.core.logging import configure_logging
from app.core.middleware import RequestTrackingMiddleware
from app.core.proxies import behind_proxies
from app.core.rate_limits import init_rate_limits
from app.core.request_body import init_request_body
from app.core.routing import ApiFlask
from app.core.security_headers import init_security_headers
from app.core.sessions import OnDemandCookieSessionInterface
from app.db import init_databases
from app.extensions import health_checks
from app.ip_rules import init_ip_deny_list
from app.oauth.server import init_oauth_server
from app.version import __version__

__all__ = ["__version__", "create_app"]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build an app; ``config`` overrides the environment (``{"APP_ENV": "testing"}``)."""
    settings = load_config(config)
    app = ApiFlask(__name__)
    app.config.from_mapping(settings)
    app.session_interface = OnDemandCookieSessionInterface()

    configure_logging(app)
    register_error_handlers(app)
    init_request_body(app)  # after it: wraps the request class it installs
    init_api_versioning(app)
    health_checks.init_app(app)
    init_databases(app)
    # A denied address gets nothing, not even a 401: the hook puts itself before every
    # other before_request hook. After init_databases: it reads the control database.
    init_ip_deny_list(app)
    init_tokens(app)
    init_authentication(app)  # before the routes' own hooks: nothing runs for a stranger
    # Before the rate limits: the admin surface's 404 must carry no rate-limit headers either.
    init_admin(app)
    # After the authentication hook: the API budget is keyed by the principal it sets.
    init_rate_limits(app)
    init_login_throttle(app)
    create_api(app)
    init_oauth_server(app)
    register_cli(app)
    # After create_api: preflights are answered behind the admin gate. The headers middleware
    # wraps versioning, so every response gets them, whoever built it.
    init_security_headers(app, cors=init_cors(app))
    # Outermost, so the request id and access log cover everything, versioning included.
    app.wsgi_app = RequestTrackingMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    # Outside even that: the access log records the client's address, not the proxy's.
    app.wsgi_app = behind_proxies(app.wsgi_app, app.config["TRUSTED_PROXIES"])  # type: ignore[method-assign]
    return app
