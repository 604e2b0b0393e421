"""The client's address and scheme behind reverse proxies (chapter 4).

A load balancer or reverse proxy in front of the app connects to it itself, so the WSGI server's
``REMOTE_ADDR`` is the proxy's address, not the client's. Each proxy appends the address it saw
to ``X-Forwarded-For``. Only the entries the *trusted* proxies appended can be believed: a client
can send any ``X-Forwarded-For`` it likes, and the proxies append to it, so the client's own
entries come first. ``TRUSTED_PROXIES`` is the number of proxies in front of the app; the client
is the entry that many from the end, which werkzeug's ``ProxyFix`` picks
(``x_for=TRUSTED_PROXIES``, and ``x_proto`` for ``X-Forwarded-Proto``). With ``TRUSTED_PROXIES=0``
(the default) the headers are ignored. ``X-Forwarded-Host``, ``-Port`` and ``-Prefix`` are never
used: ``Host`` is checked by ``TRUSTED_HOSTS`` instead.

``ProxyFix`` copies the chosen value as it is, and with fewer entries than proxies it keeps the
connection's address. A request that reached the app without going through every proxy (a
network that lets clients past the outer proxy) can make the chosen entry one the client wrote:
only the network can prevent that (let nothing but the proxies reach the app), but the value is
at least checked here: an address that is not an IP address, or a scheme other than http and
https, is dropped and the connection's own value kept. Every later
use of the client's address (access log, audit log, rate limits, IP allow and deny lists) reads
``REMOTE_ADDR`` after this.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import ConfigError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

MAX_TRUSTED_PROXIES = 5  # more hops than any sane deployment has: a typo, not a topology
_ORIGINAL = "werkzeug.proxy_fix.orig"
_SCHEMES = frozenset({"http", "https"})


def is_ip_address(value: str | None) -> bool:
    if not value or len(value) > 45:  # the longest textual IPv6 address (with IPv4 tail)
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class _KeepOnlyValidForwardedValues:
    """Inside ``ProxyFix``: put back the connection's own address or scheme when the forwarded one
    is not well formed."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        original: dict[str, Any] = environ.get(_ORIGINAL, {})
        if not is_ip_address(environ.get("REMOTE_ADDR")):
            environ["REMOTE_ADDR"] = original.get("REMOTE_ADDR")
        if environ.get("wsgi.url_scheme") not in _SCHEMES:
            environ["wsgi.url_scheme"] = original.get("wsgi.url_scheme", "http")
        return self.app(environ, start_response)


def behind_proxies(wsgi_app: WSGIApplication, trusted_proxies: int) -> WSGIApplication:
    """``wsgi_app`` reading the client's address and scheme from the ``trusted_proxies`` proxies
    in front of it; unchanged for 0."""
    if not 0 <= trusted_proxies <= MAX_TRUSTED_PROXIES:
        raise ConfigError(
            f"TRUSTED_PROXIES must be between 0 and {MAX_TRUSTED_PROXIES}, got {trusted_proxies}"
        )
    if not trusted_proxies:
        return wsgi_app
    checked = _KeepOnlyValidForwardedValues(wsgi_app)
    return ProxyFix(checked, x_for=trusted_proxies, x_proto=trusted_proxies)  # type: ignore[arg-type]
