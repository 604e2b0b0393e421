"""API versioning: the URL (``/api/v1/...``), or the ``Accept-Version`` header on unversioned paths.

``GET /api/v1/hello`` and ``GET /api/hello`` with ``Accept-Version: 1`` reach the same resource;
``GET /api/hello`` without the header gets the latest version. A tiny WSGI middleware rewrites
unversioned paths before Flask routes them and reports the served version in ``API-Version``; a
Flask hook rejects unsupported or conflicting versions with a problem response.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, request
from flask_restx import Resource
from werkzeug.http import http_date

from app.core.errors import ApiProblem, ProblemType

SUPPORTED_VERSIONS = ("1", "2")
LATEST_VERSION = SUPPORTED_VERSIONS[-1]
# v1 has no workspaces in its URLs: it serves the default workspace until its sunset, and every
# v1 response says so (RFC 9745 Deprecation, RFC 8594 Sunset, a Link to the successor).
DEPRECATED_VERSIONS = {
    "1": {
        "deprecated_at": datetime(2026, 11, 26, tzinfo=UTC),
        "sunset_at": datetime(2027, 6, 30, tzinfo=UTC),
        "successor": "/api/v2/workspaces",
    }
}
VERSION_REQUEST_HEADER = "Accept-Version"
VERSION_RESPONSE_HEADER = "API-Version"

_API_PREFIX = "/api"
_VERSIONED_PATH = re.compile(r"/api/v([0-9]+)(?:/|$)")  # /api/views is not a version
_HEADER_VALUE = re.compile(r"[vV]?([0-9]{1,4})")

# Keys the middleware leaves in the WSGI environ for the Flask hooks.
_ENV_VERSION = "taskapi.api_version"
_ENV_SOURCE = "taskapi.api_version_source"  # "url" or "header"


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


def _add_vary(headers: list[tuple[str, str]], name: str) -> None:
    """Add ``name`` to an existing Vary header rather than sending a second one."""
    for index, (key, value) in enumerate(headers):
        if key.lower() == "vary":
            headers[index] = (key, f"{value}, {name}")
            return
    headers.append(("Vary", name))


def _deprecation_headers(version: str) -> list[tuple[str, str]]:
    info = DEPRECATED_VERSIONS[version]
    return [
        ("Deprecation", f"@{int(info['deprecated_at'].timestamp())}"),
        ("Sunset", http_date(info["sunset_at"])),
        ("Link", f'<{info["successor"]}>; rel="successor-version"'),
    ]


_DEPRECATION_HEADERS = {version: _deprecation_headers(version) for version in DEPRECATED_VERSIONS}


def deprecated_copy(
    resource: type[Resource],
    version: str,
    *,
    without_params: frozenset[str] | set[str] = frozenset(),
) -> type[Resource]:
    """``resource`` as it is served under an older, deprecated ``version``: the same behaviour,
    with operation ids of its own (``v1_list_tasks``) and ``deprecated`` in the spec.
    ``without_params``: documented path parameters the old URLs do not have."""
    members: dict[str, Any] = {}
    class_doc = dict(getattr(resource, "__apidoc__", {}))
    if without_params and "params" in class_doc:
        class_doc["params"] = {
            name: spec for name, spec in class_doc["params"].items() if name not in without_params
        }
    members["__apidoc__"] = class_doc
    for method in ("get", "post", "put", "patch", "delete"):
        original = getattr(resource, method, None)
        if original is None:
            continue

        def copy(self: Resource, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            return _original(self, *args, **kwargs)

        doc = dict(getattr(original, "__apidoc__", {}))
        if "id" in doc:
            doc["id"] = f"v{version}_{doc['id']}"
        copy.__apidoc__ = {**doc, "deprecated": True}  # type: ignore[attr-defined]
        copy.__name__ = method
        members[method] = copy
    return type(f"V{version}{resource.__name__}", (resource,), members)


class ApiVersionMiddleware:
    """Rewrites ``/api/<path>`` to ``/api/v<N>/<path>``; cheap for every other path."""

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if not path.startswith(_API_PREFIX + "/"):
            return self.wsgi_app(environ, start_response)

        match = _VERSIONED_PATH.match(path)
        if match:
            version, source = match.group(1), "url"
        else:
            requested = _normalise(environ.get("HTTP_ACCEPT_VERSION"))
            version, source = (LATEST_VERSION if requested is None else requested), "header"
            if version in SUPPORTED_VERSIONS:
                environ["PATH_INFO"] = f"{_API_PREFIX}/v{version}{path[len(_API_PREFIX) :]}"
        environ[_ENV_VERSION] = version
        environ[_ENV_SOURCE] = source
        if version not in SUPPORTED_VERSIONS:
            return self.wsgi_app(environ, start_response)  # the Flask hook answers with a problem

        deprecation = _DEPRECATION_HEADERS.get(version, ())

        def reporting_start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
            headers.append((VERSION_RESPONSE_HEADER, version))
            headers.extend(deprecation)
            if source == "header":  # caches must key unversioned URLs on the header
                _add_vary(headers, VERSION_REQUEST_HEADER)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, reporting_start_response)


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
        requested = request.environ.get("HTTP_ACCEPT_VERSION")
        from_url = request.environ[_ENV_SOURCE] == "url"
        if from_url and requested is not None and _normalise(requested) != version:
            raise ApiVersionConflict(
                f"The URL asks for version {version} but Accept-Version asks for another; "
                "send one or make them agree.",
                **_supported(),
            )
