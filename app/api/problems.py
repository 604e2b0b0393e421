"""The problem-type catalog: every ``type`` URI in an error body resolves here."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask_restx import Namespace, fields
from werkzeug.exceptions import NotFound

from app.api.models import QUERY_ERROR, problem
from app.api.resource import ApiResource
from app.auth.authentication import public
from app.core.errors import ApiProblem

ns = Namespace("problems", description="What each error `type` URI means (RFC 9457 problem types)")

problem_type = ns.model(
    "ProblemType",
    {
        "type": fields.String(
            description="The URI used in error bodies", example="/problems/validation-error"
        ),
        "title": fields.String(example="Validation failed"),
        "status": fields.Integer(description="Usual HTTP status", example=422),
        "description": fields.String(description="When it happens and what to do"),
    },
)


def _describe(slug: str) -> dict[str, Any]:
    entry = ApiProblem.catalog[slug]
    return {"type": entry.uri} | {k: v for k, v in asdict(entry).items() if k != "slug"}


@ns.route("")
@public
@ns.doc(security=[])  # probes and error readers carry no credentials
class ProblemTypeList(ApiResource):
    @ns.doc("list_problem_types", description="Every problem `type` this API can return.")
    # Documented, not marshalled: marshal_list_with would also apply an X-Fields mask, which
    # this API does not offer (a malformed one was a 500).
    @ns.response(200, "Every problem type this API returns", [problem_type])
    @ns.response(400, QUERY_ERROR, problem)
    def get(self) -> list[dict[str, Any]]:
        return [_describe(slug) for slug in sorted(ApiProblem.catalog)]


@ns.route("/<string:slug>")
@ns.param("slug", "Problem type name", **{"x-example": "validation-error"})  # Swagger 2 form
@public
@ns.doc(security=[])  # probes and error readers carry no credentials
class ProblemTypeDetail(ApiResource):
    @ns.doc("get_problem_type", description="What one problem `type` URI means.")
    @ns.response(200, "The problem type", problem_type)
    @ns.response(400, QUERY_ERROR, problem)
    @ns.response(404, "No such problem type", problem)
    def get(self, slug: str) -> dict[str, Any]:
        if slug not in ApiProblem.catalog:
            raise NotFound("No such problem type; GET /problems lists them.")
        return _describe(slug)
