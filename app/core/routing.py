"""Routing answers in the API's own shape: redirects become relative, problem-shaped 308s.

Werkzeug answers a path it can normalise (``/api/v1//tasks``, merged slashes) by raising
``RequestRedirect``. Flask returns that exception as the response as it is, past every error
handler: an HTML body, and a ``Location`` built from the request's ``Host`` header, which a client
can set to anything (``Host: evil.example`` would send the redirect there).
"""

from __future__ import annotations

from typing import Any, NoReturn
from urllib.parse import urlsplit

from flask import Flask, Request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect


class PermanentRedirect(HTTPException):
    """308 to a path on this server; the error handler renders it as a problem."""

    code = 308

    def __init__(self, location: str) -> None:
        super().__init__(f"This resource is at {location}; repeat the request there.")
        self.location = location

    def get_headers(self, environ: Any = None, scope: Any = None) -> list[tuple[str, str]]:
        return [("Location", self.location)]


def relative_location(url: str) -> str:
    """Path and query of ``url``: the client resolves it against the URL it used (RFC 9110)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class ApiFlask(Flask):
    def raise_routing_exception(self, request: Request) -> NoReturn:
        exc = request.routing_exception
        if isinstance(exc, RequestRedirect):
            raise PermanentRedirect(relative_location(exc.new_url))
        super().raise_routing_exception(request)
