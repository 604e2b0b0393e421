"""One error shape for the whole API: RFC 9457 problem details, plus the request id.

Every exception ends here, whether it was raised in a Flask-RESTX resource, a plain Flask view,
routing (404/405) or the request body parser (400/413/415). Production and testing answer alike:
one handler for ``Exception`` means nothing depends on ``PROPAGATE_EXCEPTIONS``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

from flask import Flask, Request, Response, current_app, got_request_exception, request
from werkzeug.exceptions import BadRequest, HTTPException

from app.core.request_id import current_request_id

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE_PATH = "/problems/"
GENERIC_500_DETAIL = (
    "The server hit an unexpected condition. Quote the request_id when you report it."
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProblemType:
    """A documented problem type, served at ``/problems/<slug>``."""

    slug: str
    title: str
    status: int
    description: str

    @property
    def uri(self) -> str:
        return PROBLEM_BASE_PATH + self.slug


class ApiProblem(Exception):
    """Base for errors the API reports on purpose. Subclasses set a documented problem type."""

    problem_type: ClassVar[ProblemType | None] = None
    catalog: ClassVar[dict[str, ProblemType]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.problem_type is not None:
            ApiProblem.catalog[cls.problem_type.slug] = cls.problem_type

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        assert self.problem_type is not None, "raise a subclass that declares problem_type"
        self.detail = detail
        self.status = status or self.problem_type.status
        self.headers = dict(headers or {})
        self.extensions = extensions


class ValidationProblem(ApiProblem):
    """The request was well-formed JSON but some fields are invalid; ``errors`` lists each one."""

    problem_type = ProblemType(
        slug="validation-error",
        title="Validation failed",
        status=422,
        description=(
            "One or more fields or parameters are invalid. `errors` lists each one with a `detail` "
            "and either a JSON `pointer` into the body (RFC 6901, e.g. `#/name`) or the query "
            "`parameter` name. Nothing was changed. At most 50 are listed; `errors_truncated` "
            "says when there were more."
        ),
    )
    MAX_LISTED = 50  # enough to fix a request; bounded so hostile input cannot inflate replies

    def __init__(self, errors: list[dict[str, str]], *, status: int | None = None) -> None:
        if len(errors) > self.MAX_LISTED:
            errors, more = errors[: self.MAX_LISTED], {"errors_truncated": True}
            detail = f"More than {self.MAX_LISTED} invalid fields; see errors for the first ones."
        else:
            count, more = len(errors), {}
            detail = f"{count} invalid field{'s' if count != 1 else ''}; see errors."
        super().__init__(detail, status=status, errors=errors, **more)


MAX_JSON_DEPTH = 32
# A \uD800-\uDFFF escape in the raw body: the only way a lone surrogate can get into parsed JSON
# (raw UTF-8 cannot encode one). Searched in C, so the common case costs almost nothing.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_CONTAINERS = frozenset({dict, list})


def json_body_problem(value: Any, raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why a parsed JSON body is unacceptable, or None. No recursion, and cheap next to parsing.

    Too deep: no legitimate body nests 32 levels, and validators recurse. Lone surrogates
    (``"\\ud800"``): valid JSON escapes, but not Unicode text; nothing could store or print them.
    """
    level = [value] if type(value) in _CONTAINERS else []
    depth = 1
    while level:  # breadth first, one nesting level per pass: only containers are visited
        if depth > max_depth:
            return f"nests deeper than {max_depth} levels"
        level = [
            child
            for container in level
            for child in (container.values() if type(container) is dict else container)
            if type(child) in _CONTAINERS
        ]
        depth += 1
    if _SURROGATE_ESCAPE.search(raw):
        try:  # paired escapes decoded to one character; a lone one cannot be encoded
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            return "contains a lone UTF-16 surrogate escape, which is not valid Unicode text"
    return None


class ApiRequest(Request):
    """Request whose JSON problems are clear 400s: Flask's default detail is generic, and a body
    nested deeply enough exhausts the parser's recursion, which would otherwise be a 500."""

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> Any:
        try:
            value = super().get_json(force=force, silent=silent, cache=cache)
        except RecursionError:
            raise BadRequest("The request body is not valid JSON: nested too deeply.") from None
        problem = json_body_problem(value, self.get_data(cache=True)) if value is not None else None
        if problem is not None:
            raise BadRequest(f"The request body {problem}.")
        return value

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is None:  # not a JSON content type: Flask answers 415
            return super().on_json_loading_failed(e)
        # The decoder's message gives the position, never the body itself.
        raise BadRequest(f"The request body is not valid JSON: {e}") from e


def problem_response(
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    type_uri: str = "about:blank",
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> Response:
    """Build an ``application/problem+json`` response for the current request."""
    body: dict[str, Any] = {
        "type": type_uri,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail or HTTPStatus(status).description,
        "instance": request.path,
        "request_id": current_request_id(),
    }
    body.update(extensions)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _from_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status >= 500:
        # e.g. abort(500) or werkzeug's wrapper: the real cause goes to the log only.
        logger.error("HTTP %s raised", status, exc_info=exc)
        return problem_response(status, detail=GENERIC_500_DETAIL)
    # Keep protocol headers such as Allow (405) or Retry-After; our body replaces theirs.
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    if "Allow" in headers:  # werkzeug builds it from a set; a stable order is kinder to clients
        headers["Allow"] = ", ".join(sorted(m.strip() for m in headers["Allow"].split(",")))
    extensions: dict[str, Any] = {}
    data = getattr(exc, "data", None)  # Flask-RESTX abort()/reqparse attach details here
    if isinstance(data, Mapping) and isinstance(data.get("errors"), Mapping):
        extensions["errors"] = [
            {"parameter": str(name), "detail": str(message)}
            for name, message in data["errors"].items()
        ]
    return problem_response(status, detail=exc.description, headers=headers, **extensions)


def _from_api_problem(problem: ApiProblem) -> Response:
    problem_type = problem.problem_type
    assert problem_type is not None
    return problem_response(
        problem.status,
        title=problem_type.title,
        detail=problem.detail,
        type_uri=problem_type.uri,
        headers=problem.headers,
        **problem.extensions,
    )


def handle_exception(exc: Exception) -> Response:
    if isinstance(exc, ApiProblem):
        return _from_api_problem(exc)
    if isinstance(exc, HTTPException):
        return _from_http_exception(exc)
    # Unexpected: full traceback to the log (with the request id), a generic body to the client.
    got_request_exception.send(current_app._get_current_object(), exception=exc)  # type: ignore[attr-defined]
    logger.error("Unhandled exception on %s %s", request.method, request.path, exc_info=exc)
    return problem_response(500, detail=GENERIC_500_DETAIL)


def register_error_handlers(app: Flask) -> None:
    app.request_class = ApiRequest
    app.register_error_handler(Exception, handle_exception)
