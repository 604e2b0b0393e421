"""Swagger models shared by every namespace: the problem-details error body."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask_restx import Model, Namespace, fields

field_error = Model(
    "FieldError",
    {
        "pointer": fields.String(
            description="JSON Pointer (RFC 6901) to the invalid body member", example="#/name"
        ),
        "parameter": fields.String(description="The invalid query parameter", example="page"),
        "detail": fields.String(description="What is wrong with it", example="is required"),
    },
)

problem_error = Model(
    "ProblemError",
    {
        "pointer": fields.String(
            description="Validation: JSON Pointer (RFC 6901) to the invalid body member",
            example="#/name",
        ),
        "parameter": fields.String(description="Validation: the invalid query parameter"),
        "detail": fields.String(description="What is wrong", example="is required"),
        "index": fields.Integer(description="Bulk: position of the failed operation"),
        "status": fields.Integer(description="Bulk: the status that operation would have got"),
        "type": fields.String(description="Bulk: that operation's problem type"),
        "title": fields.String(description="Bulk: that problem type's title"),
        "errors": fields.List(
            fields.Nested(field_error), description="Bulk: that operation's invalid fields"
        ),
    },
)

problem = Model(
    "Problem",
    {
        "type": fields.String(
            description="URI of the problem type; `about:blank` for plain HTTP errors",
            example="/problems/validation-error",
        ),
        "title": fields.String(
            description="Short summary of the problem type", example="Validation failed"
        ),
        "status": fields.Integer(description="HTTP status code", example=422),
        "detail": fields.String(
            description="What went wrong this time", example="1 invalid field; see errors."
        ),
        "instance": fields.String(description="The request path", example="/api/v1/hello"),
        "request_id": fields.String(
            description="The request id (also in the X-Request-ID header); quote it in bug reports",
            example="9f1c2d3e4b5a69788796a5b4c3d2e1f0",
        ),
        "errors": fields.List(
            fields.Nested(problem_error),
            description="validation-error: one entry per invalid field or parameter; "
            "bulk-operation-failed: one entry per failed operation",
        ),
        "errors_truncated": fields.Boolean(
            description="validation-error: true when more errors existed than are listed"
        ),
        "allowed": fields.List(
            fields.String, description="invalid-status-transition: the statuses allowed next"
        ),
        "supported_versions": fields.List(
            fields.String, description="unsupported-api-version: the versions served"
        ),
        "retry_after": fields.Integer(
            description="rate-limited: seconds to wait (as the Retry-After header)"
        ),
        "required_scope": fields.String(
            description="permission-denied: the scope a key or token lacks"
        ),
    },
)

SHARED_MODELS = (field_error, problem_error, problem)


_Operation = TypeVar("_Operation", bound=Callable[..., object])

# What any operation that reads a JSON body can answer before its own logic runs.
_JSON_BODY_ERRORS = (
    (400, "The body is not valid JSON, or a query parameter is unknown"),
    (413, "The body is larger than MAX_CONTENT_LENGTH"),
    (415, "The body is not JSON (Content-Type)"),
)


QUERY_ERROR = "A query parameter is unknown; errors lists each"


def json_body_errors(ns: Namespace) -> Callable[[_Operation], _Operation]:
    """Document the 400, 413 and 415 problems every JSON-body operation can return."""

    def document(operation: _Operation) -> _Operation:
        for code, description in _JSON_BODY_ERRORS:
            operation = ns.response(code, description, problem)(operation)
        return operation

    return document


def requires(ns: Namespace, permission: str) -> Callable[[_Operation], _Operation]:
    """Document what an operation needs (``x-permission`` in the spec): an action of the
    permission table (app/auth/permissions.py), or any caller, users only, platform admins.
    The services enforce it; tests/test_permission_matrix.py checks the two agree."""
    return ns.vendor({"x-permission": str(permission)})
