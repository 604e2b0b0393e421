"""Request ids: keep a well-formed inbound ``X-Request-ID``, otherwise mint one; echo it back."""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

REQUEST_ID_HEADER = "X-Request-ID"
# Only ids that are safe to log and echo: 1-128 characters from a conservative alphabet.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def new_request_id() -> str:
    return uuid.uuid4().hex


def accepted_request_id(candidate: str | None) -> str:
    """The inbound id if well formed, else a fresh one (a bad value is dropped, never logged)."""
    if candidate and _VALID_REQUEST_ID.fullmatch(candidate):
        return candidate
    return new_request_id()


def current_request_id() -> str:
    """The id of the request being handled; minted on first use if the hook has not run yet."""
    request_id = g.get("request_id")
    if request_id is None:
        request_id = g.request_id = new_request_id()
    return request_id


def init_request_id(app: Flask) -> None:
    @app.before_request
    def _assign_request_id() -> None:
        g.request_id = accepted_request_id(request.headers.get(REQUEST_ID_HEADER))

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = current_request_id()
        return response
