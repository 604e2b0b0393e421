"""JSON responses with strong ETags, conditional GETs (304) and If-Match preconditions.

The ETag is a hash of the exact response bytes, so it changes exactly when the representation
does. The same bytes are produced for the same data on every worker, so ETags agree across them.
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

ETagPrecondition = Callable[[str], bool]


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
    etag: bool = True,
) -> Response:
    """JSON with a strong ETag; on GET/HEAD a matching If-None-Match turns it into a 304.

    Pass ``encoded`` instead of ``payload`` when the bytes are already built (and cached).
    """
    body = encoded if encoded is not None else dump_json(payload)
    response = Response(body, status=status, mimetype=JSON_MEDIA_TYPE)
    if etag:
        response.set_etag(etag_of(body))
    response.headers["Cache-Control"] = cache_control
    for name, value in (headers or {}).items():
        response.headers[name] = value
    conditional = "If-None-Match" in request.headers or "If-Modified-Since" in request.headers
    if conditional and status == 200 and request.method in {"GET", "HEAD"}:
        response.make_conditional(request)
    return response


def no_content(cache_control: str = WRITE_CACHE_CONTROL) -> Response:
    """204: no body, so no Content-Type either."""
    response = Response(status=204, headers={"Cache-Control": cache_control})
    del response.headers["Content-Type"]
    return response


class InvalidPrecondition(ValueError):
    """An If-Match value that names no entity tag (empty, or only commas)."""


def if_match_precondition(header_value: str | None = None) -> ETagPrecondition | None:
    """``If-Match`` (from the request, or a given value) as a check on the current ETag.

    None when there is no precondition. A value that is present but names no tag is refused
    rather than ignored: a client whose ETag variable came out empty must not lose the protection
    silently. Comparison is strong (RFC 9110): weak tags never match, ``*`` matches anything.
    """
    if header_value is None:
        header_value = request.headers.get("If-Match")
        if header_value is None:
            return None
        etags: ETags = request.if_match
    else:
        etags = parse_etags(header_value)
    if not etags:
        raise InvalidPrecondition("must be a quoted entity tag (from an ETag header) or *")
    return etags.contains
