"""API versioning: the URL (``/api/v1/...``), or the ``Accept-Version`` header on unversioned paths.

``GET /api/v1/hello`` and ``GET /api/hello`` with ``Accept-Version: 1`` reach the same resource;
``GET /api/hello`` without the header gets the latest version. A tiny WSGI middleware rewrites
unversioned paths before Flask routes them; Flask hooks then reject unsupported or conflicting
versions with a problem response and report the served version in ``API-Version``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from flask import Flask, Response, request

from app.core.errors import ApiProblem, ProblemType

SUPPORTED_VERSIONS = ("1",)
LATEST_VERSION = SUPPORTED_VERSIONS[-1]
VERSION_REQUEST_HEADER = "Accept-Version"
VERSION_RESPONSE_HEADER = "API-Version"

_API_PREFIX = "/api"
_VERSIONED_PATH = re.compile(r"/api/v([^/]*)(?:/|$)")
_HEADER_VALUE = re.compile(r"[vV]?([0-9]{1,4})")

# Keys the middleware leaves in the WSGI environ for the Flask hooks.
_ENV_VERSION = "taskapi.api_version"
_ENV_SOURCE = "taskapi.api_version_source"  # "url" or "header"
_ENV_REQUESTED = "taskapi.api_version_requested"


class UnsupportedApiVersion(ApiProblem):
    problem_type = ProblemType(
        slug="unsupported-api-version",
        title="Unsupported API version",
        status=404,
        description=(
            "The API version in the URL (404) or in the Accept-Version header (406) is not served. "
            "`supported_versions` lists the ones that are."
        ),
    )


class ApiVersionConflict(ApiProblem):
    problem_type = ProblemType(
        slug="api-version-conflict",
        title="Conflicting API versions",
        status=400,
        description="The URL names one API version and the Accept-Version header another.",
    )


def _normalise(header_value: str | None) -> str | None:
    if header_value is None:
        return None
    match = _HEADER_VALUE.fullmatch(header_value.strip())
    return str(int(match.group(1))) if match else ""


class ApiVersionMiddleware:
    """Rewrites ``/api/<path>`` to ``/api/v<N>/<path>``; cheap for every other path."""

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if path.startswith(_API_PREFIX + "/"):
            match = _VERSIONED_PATH.match(path)
            if match:
                environ[_ENV_VERSION] = match.group(1)
                environ[_ENV_SOURCE] = "url"
            else:
                requested = _normalise(environ.get("HTTP_ACCEPT_VERSION"))
                version = LATEST_VERSION if requested is None else requested
                environ[_ENV_VERSION] = version
                environ[_ENV_SOURCE] = "header"
                if version in SUPPORTED_VERSIONS:
                    environ["PATH_INFO"] = f"{_API_PREFIX}/v{version}{path[len(_API_PREFIX) :]}"
            environ[_ENV_REQUESTED] = environ.get("HTTP_ACCEPT_VERSION")
        return self.wsgi_app(environ, start_response)


def _supported() -> dict[str, Any]:
    return {"supported_versions": list(SUPPORTED_VERSIONS)}


def init_api_versioning(app: Flask) -> None:
    app.wsgi_app = ApiVersionMiddleware(app.wsgi_app)  # type: ignore[method-assign]

    @app.before_request
    def _check_api_version() -> None:
        version = request.environ.get(_ENV_VERSION)
        if version is None:
            return
        if version not in SUPPORTED_VERSIONS:
            if request.environ[_ENV_SOURCE] == "url":
                raise UnsupportedApiVersion(
                    "This API version is not served; use one of supported_versions.", **_supported()
                )
            raise UnsupportedApiVersion(
                "The Accept-Version header names a version that is not served; "
                "use one of supported_versions.",
                status=406,
                **_supported(),
            )
        requested = request.environ.get(_ENV_REQUESTED)
        from_url = request.environ[_ENV_SOURCE] == "url"
        if from_url and requested is not None and _normalise(requested) != version:
            raise ApiVersionConflict(
                f"The URL asks for version {version} but Accept-Version asks for another; "
                "send one or make them agree.",
                **_supported(),
            )

    @app.after_request
    def _report_api_version(response: Response) -> Response:
        version = request.environ.get(_ENV_VERSION)
        if version in SUPPORTED_VERSIONS:
            response.headers[VERSION_RESPONSE_HEADER] = version
            if request.environ[_ENV_SOURCE] == "header":
                response.vary.add(VERSION_REQUEST_HEADER)
        return response
