"""Schema errors become readable, value-free messages with JSON Pointers."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.validation import json_pointer, schema_errors

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "count": {"type": "integer", "minimum": 1, "maximum": 10},
        "tags": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[a-z]+$"},
            "minItems": 1,
            "maxItems": 2,
            "uniqueItems": True,
        },
        "status": {"type": "string", "enum": ["todo", "done"]},
        "due": {"type": "string", "format": "date-time"},
        "code": {"type": ["string", "null"], "minLength": 2},
    },
}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"count": 0}, [("#/count", "must be at least 1")]),
        ({"count": 11}, [("#/count", "must be at most 10")]),
        ({"count": "3"}, [("#/count", "must be an integer")]),
        ({"tags": []}, [("#/tags", "must have at least 1 item")]),
        ({"tags": ["a", "b", "c"]}, [("#/tags", "must have at most 2 items")]),
        ({"tags": ["a", "a"]}, [("#/tags", "must not contain duplicates")]),
        ({"tags": ["ok", "Not-OK"]}, [("#/tags/1", "has an invalid format")]),
        ({"status": "later"}, [("#/status", "must be one of: todo, done")]),
        ({"due": "tomorrow"}, [("#/due", "must be a valid date-time")]),
        ({"code": 5}, [("#/code", "must be a string or null")]),
        ({"code": "x"}, [("#/code", "must be at least 2 characters long")]),
    ],
)
def test_each_keyword_has_a_message(
    payload: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    errors = schema_errors(SCHEMA, payload)
    assert [(e["pointer"], e["detail"]) for e in errors] == expected


def test_messages_never_contain_the_value() -> None:
    errors = schema_errors(SCHEMA, {"status": "SECRET-VALUE", "tags": ["SECRET-VALUE"]})
    assert errors
    assert all("SECRET-VALUE" not in e["detail"] for e in errors)


def test_unknown_keywords_fall_back_to_a_generic_message() -> None:
    assert schema_errors({"not": {"type": "string"}}, "text") == [
        {"pointer": "#", "detail": "is invalid"}
    ]


def test_pointers_escape_slash_and_tilde() -> None:
    assert json_pointer(["a/b", "c~d", 0]) == "#/a~1b/c~0d/0"
    assert json_pointer([]) == "#"


def test_error_lists_are_bounded() -> None:
    from app.core.errors import ValidationProblem

    schema = {"type": "array", "items": {"type": "string"}}
    errors = schema_errors(schema, list(range(100_000)))
    assert len(errors) == ValidationProblem.MAX_LISTED + 1
    problem = ValidationProblem(errors)
    assert len(problem.extensions["errors"]) == ValidationProblem.MAX_LISTED
    assert problem.extensions["errors_truncated"] is True
    assert problem.detail.startswith("More than 50 invalid fields")
