"""Every error is RFC 9457 problem+json with the request id, in testing and production alike."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask, got_request_exception
from flask.testing import FlaskClient
from flask_restx import Namespace, Resource
from flask_restx import abort as restx_abort
from werkzeug.exceptions import Conflict

from app.core.errors import GENERIC_500_DETAIL

failures = Namespace("failures", description="Test-only resources that fail on purpose")


@failures.route("/crash")
class Crash(Resource):
    def get(self) -> None:
        raise RuntimeError("secret internal detail")


@failures.route("/conflict")
class ConflictResource(Resource):
    def get(self) -> None:
        raise Conflict("This resource changed meanwhile.")


@failures.route("/restx-abort")
class RestxAbort(Resource):
    def get(self) -> None:
        restx_abort(400, "Bad query", errors={"page": "must be a positive integer"})


@pytest.fixture
def failing_client(any_app: Flask) -> FlaskClient:
    any_app.extensions["api"].add_namespace(failures, path="/failures")

    @any_app.get("/plain-crash")
    def plain_crash() -> str:
        raise KeyError("secret internal detail")

    return any_app.test_client()


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    body = response.json
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["type"]
    assert body["instance"] == response.request.path
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_malformed_json_is_400(any_client: FlaskClient) -> None:
    response = any_client.post(
        "/api/v1/hello", data='{"name": "Ada"', content_type="application/json"
    )
    body = assert_problem(response, 400)
    assert body["detail"].startswith("The request body is not valid JSON")


def test_empty_json_body_is_400(any_client: FlaskClient) -> None:
    response = any_client.post("/api/v1/hello", data="", content_type="application/json")
    assert_problem(response, 400)


def test_non_json_body_is_415(any_client: FlaskClient) -> None:
    response = any_client.post("/api/v1/hello", data="name=Ada", content_type="text/plain")
    assert_problem(response, 415)


def test_unknown_path_is_404(any_client: FlaskClient) -> None:
    body = assert_problem(any_client.get("/no/such/path"), 404)
    assert body["type"] == "about:blank"
    assert body["title"] == "Not Found"


def test_wrong_method_is_405_with_allow(any_client: FlaskClient) -> None:
    response = any_client.delete("/api/v1/hello")
    assert_problem(response, 405)
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS, POST"


def test_body_over_max_content_length_is_413(any_client: FlaskClient) -> None:
    big = '{"name": "' + "a" * (1024 * 1024) + '"}'
    response = any_client.post("/api/v1/hello", data=big, content_type="application/json")
    assert_problem(response, 413)


def test_limit_is_configurable() -> None:
    from tests.conftest import make_app

    client = make_app("testing", MAX_CONTENT_LENGTH=16).test_client()
    response = client.post("/api/v1/hello", json={"name": "a fairly long name"})
    assert_problem(response, 413)


def test_invalid_payload_is_422_listing_each_field(any_client: FlaskClient) -> None:
    response = any_client.post("/api/v1/hello", json={"name": 7, "extra": True})
    body = assert_problem(response, 422)
    assert body["type"] == "/problems/validation-error"
    assert body["errors"] == [
        {"pointer": "#/extra", "detail": "is not an allowed field"},
        {"pointer": "#/name", "detail": "must be a string"},
    ]


@pytest.mark.parametrize("path", ["/failures/crash", "/plain-crash"])
def test_unhandled_exception_is_a_generic_500(failing_client: FlaskClient, path: str) -> None:
    body = assert_problem(failing_client.get(path), 500)
    assert body["detail"] == GENERIC_500_DETAIL
    assert "secret internal detail" not in failing_client.get(path).get_data(as_text=True)


def test_unhandled_exception_is_signalled_for_error_trackers(failing_client: FlaskClient) -> None:
    seen: list[BaseException] = []

    def record(sender: Flask, exception: BaseException, **_: Any) -> None:
        seen.append(exception)

    with got_request_exception.connected_to(record):
        failing_client.get("/failures/crash")
    assert [type(e) for e in seen] == [RuntimeError]


def test_http_errors_raised_in_resources_keep_their_status(failing_client: FlaskClient) -> None:
    body = assert_problem(failing_client.get("/failures/conflict"), 409)
    assert body["detail"] == "This resource changed meanwhile."


def test_restx_abort_details_become_parameter_errors(failing_client: FlaskClient) -> None:
    body = assert_problem(failing_client.get("/failures/restx-abort"), 400)
    assert body["errors"] == [{"parameter": "page", "detail": "must be a positive integer"}]


def test_error_responses_keep_the_inbound_request_id(any_client: FlaskClient) -> None:
    response = any_client.get("/missing", headers={"X-Request-ID": "client-123"})
    assert response.json["request_id"] == "client-123"
    assert response.headers["X-Request-ID"] == "client-123"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("[" * 100_000, "The request body is not valid JSON: nested too deeply."),
        ('{"name": ' + "[" * 40 + "]" * 40 + "}", "The request body nests deeper than 32 levels."),
        (
            '{"name": "bad \\ud800"}',
            "The request body contains a lone UTF-16 surrogate escape, which is not valid "
            "Unicode text.",
        ),
        ('{"\\udfff": 1}', None),
    ],
)
def test_unusable_json_is_400_not_500(
    any_client: FlaskClient, body: str, detail: str | None
) -> None:
    response = any_client.post("/api/v1/hello", data=body, content_type="application/json")
    problem = assert_problem(response, 400)
    if detail is not None:
        assert problem["detail"] == detail


def test_nesting_up_to_the_limit_is_left_to_validation(any_client: FlaskClient) -> None:
    body = '{"name": ' + "[" * 30 + "]" * 30 + "}"
    response = any_client.post("/api/v1/hello", data=body, content_type="application/json")
    assert response.status_code == 422


def test_an_escaped_surrogate_pair_is_one_character_and_fine(any_client: FlaskClient) -> None:
    body = '{"name": "smile \\ud83d\\ude00"}'
    response = any_client.post("/api/v1/hello", data=body, content_type="application/json")
    assert response.status_code == 200
    assert "\U0001f600" in response.json["message"]


@pytest.mark.parametrize(
    "path", ["/problems", "/problems/validation-error", "/api/v1/hello", "/api/v1/tasks"]
)
@pytest.mark.parametrize("mask", ["{", "}", "a{b", "((", ""])
def test_x_fields_is_not_offered_so_any_value_is_ignored(
    any_client: FlaskClient, path: str, mask: str
) -> None:
    plain = any_client.get(path)
    masked = any_client.get(path, headers={"X-Fields": mask})
    assert masked.status_code == plain.status_code == 200
    assert masked.get_json() == plain.get_json()
