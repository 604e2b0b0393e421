"""JSON responses with strong ETags, conditional GETs (304) and If-Match preconditions.

By default the ETag is a hash of the exact response bytes, so it changes exactly when the
representation does. The same bytes are produced for the same data on every worker, so ETags agree
across them. A resource whose stored version changes with every write may pass its own ETag
(derived from that version) instead: then a 304 needs the version, not the body.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from flask import Response, request
from werkzeug.datastructures import ETags
from werkzeug.http import parse_etags

JSON_MEDIA_TYPE = "application/json"
# Clients and shared caches may store reads but must revalidate every time (a 304 is cheap);
# private because later chapters put per-user data behind authentication.
READ_CACHE_CONTROL = "private, no-cache"
WRITE_CACHE_CONTROL = "no-store"

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dump_json(payload: Any) -> bytes:
    """Compact, deterministic JSON (key order as built): the bytes every ETag is computed from."""
    return _encode(payload).encode()


def etag_of(body: bytes) -> str:
    """The ETag value (unquoted) for a body."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def json_response(
    payload: Any = None,
    status: int = 200,
    *,
    encoded: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    cache_control: str = READ_CACHE_CONTROL,
    etag: bool | str = True,
) -> Response:
    """JSON with a strong ETag; on GET/HEAD a matching If-None-Match turns it into a 304.

    Pass ``encoded`` instead of ``payload`` when the bytes are already built (and cached).
    ``etag``: True hashes the body, a string is the ETag to send (unquoted), False sends none.
    """
    body = encoded if encoded is not None else dump_json(payload)
    response = Response(body, status=status, mimetype=JSON_MEDIA_TYPE)
    if etag:
        response.set_etag(etag if isinstance(etag, str) else etag_of(body))
    response.headers["Cache-Control"] = cache_control
    for name, value in (headers or {}).items():
        response.headers[name] = value
    conditional = "If-None-Match" in request.headers or "If-Modified-Since" in request.headers
    if conditional and status == 200 and request.method in {"GET", "HEAD"}:
        response.make_conditional(request)
        # make_conditional adds Date, which the HTTP server sends anyway: the dev server would
        # send it twice. Date is the server's header (RFC 9110 6.6.1).
        del response.headers["Date"]
    return response


def still_fresh(etag: str) -> bool:
    """Whether this GET/HEAD's If-None-Match matches ``etag`` (weak comparison, RFC 9110 13.1.2),
    so a 304 may be sent without building the body."""
    return request.method in {"GET", "HEAD"} and request.if_none_match.contains_weak(etag)


def not_modified(etag: str, cache_control: str = READ_CACHE_CONTROL) -> Response:
    """The 304 json_response would give for a matching If-None-Match, without the body."""
    response = Response(status=304)
    response.set_etag(etag)
    response.headers["Cache-Control"] = cache_control
    del response.headers["Content-Type"]
    return response


def no_content(cache_control: str = WRITE_CACHE_CONTROL) -> Response:
    """204: no body, so no Content-Type either."""
    response = Response(status=204, headers={"Cache-Control": cache_control})
    del response.headers["Content-Type"]
    return response


class InvalidPrecondition(ValueError):
    """A precondition header that names no entity tag (empty, or only commas), or one refused."""


# Given the current ETag: None if the request may go ahead, else why not (for a 412).
ETagCheck = Callable[[str], str | None]

CHANGED = "The resource changed since the ETag you sent in If-Match was issued."
WEAK_NEVER_MATCHES = (
    'If-Match compares strongly (RFC 9110): a weak ETag (W/"...") never matches, so a write '
    "cannot be conditional on one. Send the ETag exactly as a GET returned it."
)
STILL_MATCHES = "If-None-Match matches the resource's current ETag."
EXISTS = "If-None-Match: * asks for the write only if the resource does not exist, and it does."


def _parsed(header_value: str) -> ETags:
    etags = parse_etags(header_value)
    if not etags:
        raise InvalidPrecondition("must be a quoted entity tag (from an ETag header) or *")
    return etags


def if_match_check(header_value: str | None) -> ETagCheck | None:
    """An ``If-Match`` value as a check on the current ETag; None when there is no header.

    A value that is present but names no tag is refused rather than ignored: a client whose ETag
    variable came out empty must not lose the protection silently. Comparison is strong
    (RFC 9110): weak tags never match, ``*`` matches anything.
    """
    if header_value is None:
        return None
    etags = _parsed(header_value)

    def check(current: str) -> str | None:
        if etags.contains(current):
            return None
        return CHANGED if etags.as_set() else WEAK_NEVER_MATCHES

    return check


def if_none_match_check(header_value: str | None) -> ETagCheck | None:
    """``If-None-Match`` on a write (RFC 9110 13.1.2): fails when ``*`` (the resource exists) or
    when a tag matches the current ETag, compared weakly."""
    if header_value is None:
        return None
    etags = _parsed(header_value)

    def check(current: str) -> str | None:
        if etags.star_tag:
            return EXISTS
        return STILL_MATCHES if etags.contains_weak(current) else None

    return check


def write_precondition() -> ETagCheck | None:
    """The preconditions of the current write request, combined; raises InvalidPrecondition.

    ``If-Unmodified-Since`` is refused, not ignored: HTTP dates have one-second precision, so two
    writes within a second would both pass it. ``If-Match`` does the job exactly.
    """
    headers = request.headers
    if "If-Unmodified-Since" in headers:
        raise InvalidPrecondition(
            "If-Unmodified-Since is not supported: a date with one-second precision cannot "
            "protect a write; send If-Match with the ETag instead"
        )
    checks: list[ETagCheck] = []
    for name, make_check in (("If-Match", if_match_check), ("If-None-Match", if_none_match_check)):
        try:
            check = make_check(headers.get(name))
        except InvalidPrecondition as exc:
            raise InvalidPrecondition(f"The {name} header {exc}") from None
        if check is not None:
            checks.append(check)
    if len(checks) < 2:
        return checks[0] if checks else None

    def both(current: str) -> str | None:
        return checks[0](current) or checks[1](current)

    return both
