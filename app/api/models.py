"""Swagger models shared by every namespace: the problem-details error body."""

from __future__ import annotations

from flask_restx import Model, fields

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
            fields.Nested(field_error),
            description="Validation problems only: one entry per invalid field or parameter",
        ),
    },
)

SHARED_MODELS = (field_error, problem)
