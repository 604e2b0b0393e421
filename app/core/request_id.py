"""Request ids: keep a well-formed inbound ``X-Request-ID``, otherwise mint one.

The id lives in a context variable for the duration of the request, so log records and error
bodies can read it cheaply, even outside Flask's request context.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-ID"
# Only ids that are safe to log and echo: 1-128 characters from a conservative alphabet.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def accepted_request_id(candidate: str | None) -> str:
    """The inbound id if well formed, else a fresh one (a bad value is dropped, never logged)."""
    if candidate and _VALID_REQUEST_ID.fullmatch(candidate):
        return candidate
    return new_request_id()


def current_request_id() -> str:
    """The id of the request being handled (a fresh one outside the request middleware)."""
    return request_id_var.get() or new_request_id()
