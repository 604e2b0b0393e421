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
    payload: Any,
    status: int = 200,
    *,
    headers: Mapping[str, str] | None = None,
    cache_control: str = READ_CACHE_CONTROL,
) -> Response:
    """JSON with a strong ETag; on GET/HEAD a matching If-None-Match turns it into a 304."""
    body = dump_json(payload)
    response = Response(body, status=status, mimetype=JSON_MEDIA_TYPE)
    response.set_etag(etag_of(body))
    response.headers["Cache-Control"] = cache_control
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if status == 200 and request.method in {"GET", "HEAD"}:
        response.make_conditional(request)
    return response


def if_match_precondition(header_value: str | None = None) -> ETagPrecondition | None:
    """``If-Match`` (from the request, or a given header value) as a check on the current ETag.

    None when there is no precondition. Comparison is strong (RFC 9110): weak tags never match,
    ``*`` matches any existing resource.
    """
    etags: ETags = request.if_match if header_value is None else parse_etags(header_value)
    if not etags:
        return None
    return etags.contains
