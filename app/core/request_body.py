"""Streamed (chunked) request bodies: over the limit is a 413, broken framing is a 400.

A body sent with ``Transfer-Encoding: chunked`` has no ``Content-Length``; the server decodes the
chunks and, by setting ``wsgi.input_terminated``, tells werkzeug it may read ``wsgi.input`` to
its end. Werkzeug then guards it with ``LimitedStream(limit=MAX_CONTENT_LENGTH, is_max=True)``,
which gets two things wrong (werkzeug 3.1):

* ``read()`` (what ``get_data``/``get_json`` use) stops as soon as it holds ``limit`` bytes and
  never looks further. A 3 MB chunked body came back as its first MiB, and if that MiB parsed,
  the request went through on a truncated body. Werkzeug only raises 413 if someone reads
  *again* after the limit.
* It turns ``OSError``/``ValueError`` from the server's reader into a 400 and lets anything else
  through. Gunicorn reports bad chunk framing (size ``zz``, a missing CRLF, a bad extension or
  trailer) as ``gunicorn.http.errors.ParseException`` subclasses, plain ``Exception``s, raised
  in the middle of the view: a 500 with an ERROR traceback for a client's mistake.

Why here, a ``Request.stream`` replacement, and not a WSGI middleware: the limit is a property of
the request, not of the app (Flask 3.1 lets a view set ``request.max_content_length``), and only
the request knows it at the moment the body is read. A middleware could only apply the app-wide
setting: it would refuse a view's larger limit and leave werkzeug's truncation in place below a
view's smaller one. Every consumer (``get_data``, ``get_json``, form parsing) reads through
``request.stream``, so fixing that one stream fixes them all, and errors raised there surface in
the request context, where the error handler renders them like any other problem (same 413
body as a ``Content-Length`` that is too large, request id included). Bodies with a
``Content-Length`` keep werkzeug's stream, which is right for them.

Which errors are the client's: only those raised while reading a streamed body, and only what a
server uses to say "this framing is wrong": gunicorn's ``ParseException`` (looked up in
``sys.modules``, so gunicorn is never imported and any WSGI server works), and an ``OSError``
without an errno, which is how werkzeug's dev server reports it (gunicorn's ``NoMoreData``, the
body ending before its last chunk, is one too). Socket and TLS errors (resets, timeouts: they
carry an errno) stay werkzeug's "client disconnected" 400. Anything else (a ``TypeError`` in a
server's reader, say) is a bug on our side of the socket and stays a 500 with its traceback.

Cost: the body is read in pieces of at most 64 KiB and never more than ``limit + 1`` bytes are
held; the extra byte is the probe that tells "exactly at the limit" from "over it". After a 413
the rest of the body is left unread; the server deals with the connection (gunicorn's sync
worker always closes, draining at most 64 KiB first so the client still sees the response; its
threaded worker drains the same bounded amount or closes; the dev server closes).
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Any

from flask import Flask, Request
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_content_length

from app.core.middleware import printable

logger = logging.getLogger(__name__)

MALFORMED_CHUNKED_DETAIL = "The request body's chunked encoding is malformed."
_READ_STEP = 64 * 1024
_MAX_LOGGED_REASON = 200  # the server's message quotes client bytes: keep it short
# (module, class) of exceptions a WSGI server raises from wsgi.input when the client's framing
# is invalid. Looked up only if the server already imported the module.
_SERVER_FRAMING_ERRORS = (("gunicorn.http.errors", "ParseException"),)


class MalformedRequestBody(BadRequest):
    """The server could not decode the request body's framing (a bad chunk, for example)."""

    description = MALFORMED_CHUNKED_DETAIL


def _server_framing_errors() -> tuple[type[BaseException], ...]:
    found = []
    for module_name, class_name in _SERVER_FRAMING_ERRORS:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def is_framing_error(exc: BaseException) -> bool:
    """Whether reading ``wsgi.input`` raised ``exc`` because the client's framing is invalid.

    An ``OSError`` counts only without an errno: one a server's parser raised with a message.
    With an errno it comes from the socket or TLS (a reset, a timeout): a disconnect.
    """
    if isinstance(exc, OSError):
        return exc.errno is None and not isinstance(exc, ConnectionError | TimeoutError)
    return isinstance(exc, _server_framing_errors())


class BoundedBodyStream(LimitedStream):
    """``wsgi.input`` of a streamed body: at most ``limit`` bytes, else 413; bad framing, 400.

    Unlike werkzeug's ``LimitedStream``, reaching the limit is not the end: one more byte is read
    to find out whether the body really ends there.
    """

    def __init__(self, stream: IO[bytes], limit: int | None) -> None:
        super().__init__(stream, sys.maxsize if limit is None else limit, is_max=True)
        self._at_end = False

    def readinto(self, b: Any) -> int:  # type: ignore[override]
        if self._at_end or not len(b):
            return 0
        if self.is_exhausted:
            # Exactly `limit` bytes so far: the body is acceptable only if nothing follows.
            if self._read_underlying(1):
                raise RequestEntityTooLarge()
            self._at_end = True
            return 0
        try:
            count = super().readinto(b) or 0
        except HTTPException:
            raise
        except Exception as exc:
            self._framing_error(exc)
            raise
        if not count:
            self._at_end = True
        return count

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        # RawIOBase.read allocates `size` bytes up front; never more than the limit allows.
        return super().read(min(size, max(self.limit - self._pos, 1))) or b""

    def readall(self) -> bytes:
        # werkzeug's version stops at the limit without checking for more (the truncation).
        out = bytearray()
        while data := self.read(_READ_STEP):
            out += data
        return bytes(out)

    def on_disconnect(self, error: Exception | None = None) -> None:
        if error is not None:
            self._framing_error(error)
        super().on_disconnect(error)

    def _read_underlying(self, size: int) -> bytes:
        try:
            return self._stream.read(size)
        except HTTPException:
            raise
        except (OSError, ValueError) as exc:  # as werkzeug's own reads treat them
            self.on_disconnect(error=exc)  # raises a 400
            raise
        except Exception as exc:
            self._framing_error(exc)
            raise

    def _framing_error(self, exc: BaseException) -> None:
        """Raise the 400 if ``exc`` is the client's framing error; return to let it propagate."""
        if not is_framing_error(exc):
            return
        # The client's mistake, not ours: a line without a traceback, never an ERROR.
        reason = printable(f"{type(exc).__name__}: {exc}"[:_MAX_LOGGED_REASON])
        logger.info("Rejected a malformed request body (%s)", reason)
        raise MalformedRequestBody() from exc


def _is_streamed(environ: dict[str, Any]) -> bool:
    """No Content-Length, and the server terminates the stream: a chunked body."""
    return get_content_length(environ) is None and "wsgi.input_terminated" in environ


class BoundedBodyRequest(Request):
    """Request mixin: a streamed body is read through :class:`BoundedBodyStream`."""

    @cached_property
    def stream(self) -> IO[bytes]:
        if self.shallow or not _is_streamed(self.environ):
            return super().stream
        return BoundedBodyStream(self.environ["wsgi.input"], self.max_content_length)


def init_request_body(app: Flask) -> None:
    """Make ``app.request_class`` (whatever it is) read streamed bodies safely."""
    base = app.request_class
    if not issubclass(base, BoundedBodyRequest):
        app.request_class = type(
            f"Bounded{base.__name__}", (BoundedBodyRequest, base), {"__module__": __name__}
        )
