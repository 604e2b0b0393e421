"""Page-number pagination shared by every list: RFC 8288 ``Link`` headers."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import request


def link_header(page: int, pages: int) -> str:
    """Links to the first, previous, next and last pages, keeping every other query parameter."""
    others = urlencode([(k, v) for k, v in request.args.items(multi=True) if k != "page"])
    base = f"{request.path}?{others}&page=" if others else f"{request.path}?page="
    links = [(1, "first")]
    if page > 1:
        links.append((page - 1, "prev"))
    if page < pages:
        links.append((page + 1, "next"))
    links.append((pages, "last"))
    return ", ".join(f'<{base}{number}>; rel="{rel}"' for number, rel in links)
