"""``/api/v1/hello``: thin resources; the greeting itself lives in the service."""

from __future__ import annotations

from flask_restx import Namespace

from app.api.models import QUERY_ERROR, json_body_errors, problem, requires
from app.api.resource import ApiResource
from app.api.versioning import deprecated_copy
from app.auth.permissions import ANY_CALLER
from app.core.validation import validated_body
from app.hello import service
from app.hello.schemas import greeting, greeting_request

ns = Namespace("hello", description="The course's first endpoint: a greeting")
ns_v1 = Namespace("hello (v1)", description="Deprecated: the same greeting under API v1")
for model in (greeting, greeting_request):
    ns.add_model(model.name, model)
    ns_v1.add_model(model.name, model)


@ns.route("")
class Hello(ApiResource):
    @requires(ns, ANY_CALLER)
    @ns.doc("say_hello", description="Returns the course's first demo response.")
    @ns.response(200, "The greeting", greeting)
    @ns.response(400, QUERY_ERROR, problem)
    def get(self) -> dict[str, str]:
        return {"message": service.greet()}

    @requires(ns, ANY_CALLER)
    @ns.doc(
        "greet_by_name",
        description="Greets someone by name. Shows request validation: every invalid field is "
        "listed in one problem response.",
    )
    @ns.expect(greeting_request)
    @ns.response(200, "The greeting", greeting)
    @json_body_errors(ns)
    @ns.response(422, "A field is missing, unknown or invalid", problem)
    def post(self) -> dict[str, str]:
        body = validated_body(greeting_request)
        return {"message": service.greet(body["name"])}


ns_v1.add_resource(deprecated_copy(Hello, "1"), "")
