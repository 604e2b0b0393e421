"""GET and POST /api/v1/hello, and the greeting service without HTTP."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from app.core.errors import ValidationProblem
from app.hello.service import greet


def test_service_greets_the_world_by_default() -> None:
    assert greet() == "Hello World"


def test_service_trims_the_name() -> None:
    assert greet("  Ada Lovelace ") == "Hello, Ada Lovelace!"


def test_service_rejects_a_blank_name() -> None:
    with pytest.raises(ValidationProblem) as caught:
        greet("   ")
    assert caught.value.extensions["errors"] == [
        {"pointer": "#/name", "detail": "must not be blank"}
    ]


def test_get_hello(client: FlaskClient) -> None:
    response = client.get("/api/v1/hello")
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert response.json == {"message": "Hello World"}


def test_post_hello_greets_by_name(client: FlaskClient) -> None:
    response = client.post("/api/v1/hello", json={"name": " Grace "})
    assert response.status_code == 200
    assert response.json == {"message": "Hello, Grace!"}


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, [{"pointer": "#/name", "detail": "is required"}]),
        ({"name": ""}, [{"pointer": "#/name", "detail": "must be at least 1 character long"}]),
        (
            {"name": "x" * 51},
            [{"pointer": "#/name", "detail": "must be at most 50 characters long"}],
        ),
        ({"name": 42}, [{"pointer": "#/name", "detail": "must be a string"}]),
        ({"name": "   "}, [{"pointer": "#/name", "detail": "must not be blank"}]),
        ([], [{"pointer": "#", "detail": "must be an object"}]),
        (
            {"name": "Ada", "role": "admin", "id": 1},
            [
                {"pointer": "#/id", "detail": "is not an allowed field"},
                {"pointer": "#/role", "detail": "is not an allowed field"},
            ],
        ),
        (
            {"nam": "typo"},
            [
                {"pointer": "#/nam", "detail": "is not an allowed field"},
                {"pointer": "#/name", "detail": "is required"},
            ],
        ),
    ],
)
def test_post_hello_lists_every_invalid_field(
    any_client: FlaskClient, body: object, errors: list[dict[str, str]]
) -> None:
    response = any_client.post("/api/v1/hello", json=body)
    assert response.status_code == 422
    assert response.content_type == "application/problem+json"
    problem = response.json
    assert problem["type"] == "/problems/validation-error"
    assert problem["errors"] == errors


def test_validation_errors_never_echo_the_submitted_value(client: FlaskClient) -> None:
    hostile = "<script>" + "A" * 200
    response = client.post("/api/v1/hello", json={"name": hostile})
    assert response.status_code == 422
    assert "<script>" not in response.get_data(as_text=True)
