"""Request-body validation against a Flask-RESTX model, reported as one problem listing every field.

Messages are written from the JSON Schema keyword, never from the submitted value, so an error body
never echoes (possibly huge or hostile) input back. Chapter 5 replaces this with marshmallow.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Any

from flask import request
from flask_restx import Model
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from werkzeug.exceptions import UnsupportedMediaType

from app.core.errors import ValidationProblem

_TYPE_NAMES = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


# A key or parameter name longer than this is shortened in errors (ending in "..."): an error
# body must never grow with the input.
POINTER_PART_MAX = 64


def shortened(name: str) -> str:
    """A client-chosen name (key, parameter) cut to a length fit for an error body."""
    return name if len(name) <= POINTER_PART_MAX else name[: POINTER_PART_MAX - 3] + "..."


def _pointer_part(part: Any) -> str:
    return shortened(str(part)).replace("~", "~0").replace("/", "~1")


def json_pointer(path: Iterable[Any]) -> str:
    """RFC 6901 pointer as a URI fragment, the form RFC 9457's examples use: ``#/tags/0``."""
    parts = [_pointer_part(p) for p in path]
    return "#/" + "/".join(parts) if parts else "#"


def _size_errors(
    schema: dict[str, Any], value: Any, path: list[Any]
) -> list[tuple[list[Any], str]]:
    """Arrays over ``maxItems`` and objects with too many unknown keys, found without looking
    inside them: the cheap checks that run before full validation, whose cost grows with what
    it walks. Descends only into arrays within their limit."""
    if isinstance(value, list):
        limit = schema.get("maxItems")
        if limit is not None and len(value) > limit:
            return [(path, _message("maxItems", limit))]
        items = schema.get("items")
        if isinstance(items, dict) and limit is not None:
            return [
                e for i, item in enumerate(value) for e in _size_errors(items, item, [*path, i])
            ]
        return []
    if not isinstance(value, dict):
        return []
    properties = schema.get("properties", {})
    errors: list[tuple[list[Any], str]] = []
    listed = ValidationProblem.MAX_LISTED
    if schema.get("additionalProperties") is False and len(value) > len(properties) + listed:
        # More unknown keys than a problem lists: name the first ones, stop looking.
        unknown = islice((name for name in value if name not in properties), listed + 1)
        errors += [([*path, name], "is not an allowed field") for name in unknown]
    for name, subschema in properties.items():
        if name in value:
            errors += _size_errors(subschema, value[name], [*path, name])
    return errors


def _describe(error: ValidationError) -> list[tuple[list[Any], str]]:
    """(path, message) pairs for one schema error."""
    path = list(error.absolute_path)
    keyword, limit = error.validator, error.validator_value
    if keyword == "required":
        properties = error.instance if isinstance(error.instance, dict) else {}
        return [(path + [name], "is required") for name in limit if name not in properties]
    if keyword == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        return [
            (path + [name], "is not an allowed field")
            for name in error.instance
            if name not in allowed
        ]
    if keyword == "type":
        expected = [limit] if isinstance(limit, str) else list(limit)
        return [(path, "must be " + " or ".join(_TYPE_NAMES.get(t, t) for t in expected))]
    return [(path, _message(str(keyword), limit))]


def _message(keyword: str, limit: Any) -> str:
    plural = "" if limit == 1 else "s"
    match keyword:
        case "minLength":
            return f"must be at least {limit} character{plural} long"
        case "maxLength":
            return f"must be at most {limit} character{plural} long"
        case "minimum":
            return f"must be at least {limit}"
        case "maximum":
            return f"must be at most {limit}"
        case "minItems":
            return f"must have at least {limit} item{plural}"
        case "maxItems":
            return f"must have at most {limit} item{plural}"
        case "uniqueItems":
            return "must not contain duplicates"
        case "enum":
            return "must be one of: " + ", ".join(map(str, limit))
        case "pattern":
            return "has an invalid format"
        case "format":
            return f"must be a valid {limit}"
    return "is invalid"


def schema_errors(schema: dict[str, Any], payload: Any) -> list[dict[str, str]]:
    """Every violation of ``schema`` in ``payload``, as ``{"pointer", "detail"}`` items.

    Oversized arrays and objects are reported first and alone, so full validation only ever
    walks documents within the schema's limits: its cost stays bounded whatever the body.
    """
    oversized = _size_errors(schema, payload, [])
    if oversized:
        limit = ValidationProblem.MAX_LISTED + 1
        return [{"pointer": json_pointer(path), "detail": message} for path, message in oversized][
            :limit
        ]
    validator = Draft4Validator(schema, format_checker=FormatChecker())
    # Stop early: ValidationProblem lists at most MAX_LISTED, and one more says "truncated".
    limit = ValidationProblem.MAX_LISTED + 1
    errors = [
        {"pointer": json_pointer(path), "detail": message}
        for error in islice(validator.iter_errors(payload), limit)
        for path, message in _describe(error)
    ]
    return sorted(errors, key=lambda e: (e["pointer"], e["detail"]))[:limit]  # stable order


JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"  # RFC 7396


def json_body(media_types: tuple[str, ...] = (JSON,)) -> Any:
    """The parsed body: 415 unless its Content-Type is one of ``media_types``, 400 if malformed.

    Checked by name, not by "anything ending in +json": a JSON Patch (RFC 6902,
    ``application/json-patch+json``) is a list of operations, not a document, and must not be
    read as one.
    """
    if request.mimetype not in media_types:
        raise UnsupportedMediaType(f"Send the body as {' or '.join(media_types)}.")
    return request.get_json()


def validated_body(model: Model) -> dict[str, Any]:
    """The JSON body checked against ``model``: 400 malformed, 415 not JSON, 422 invalid."""
    payload = json_body()
    errors = schema_errors(model.__schema__, payload)
    if errors:
        raise ValidationProblem(errors)
    return payload
