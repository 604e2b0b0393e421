"""A Postman Collection (v2.1) generated from the Swagger 2.0 spec, so it never drifts from the API.

``postman_collection(spec, base_url)`` is a pure function of the spec that ``/swagger.json`` serves:
one folder per tag, one request per operation, with example path variables, query parameters
(disabled unless required), header parameters and JSON bodies taken from the spec's examples.
``flask --app wsgi export-postman`` (app/cli.py) writes it out.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask

POSTMAN_SCHEMA = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
BASE_URL_VARIABLE = "baseUrl"
DEFAULT_BASE_URL = "http://127.0.0.1:5000"

# Swagger 2.0 path-item keys that are operations, in the order Postman shows them.
_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
_PATH_TEMPLATE = re.compile(r"\{([^}/]+)\}")
# Placeholders for values the spec gives no example for; only disabled parameters and
# optional fields use them in practice (every field our models require has an example).
_FORMAT_SAMPLES = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "uuid": str(uuid.UUID(int=0)),
}


def app_spec(app: Flask) -> dict[str, Any]:
    """The spec ``/swagger.json`` serves (RESTX needs a request context to build it)."""
    with app.test_request_context():
        spec = app.extensions["api"].__schema__
    if "paths" not in spec:  # RESTX returns {"error": ...} and logs the traceback
        raise RuntimeError(f"the API spec could not be built: {spec.get('error', spec)}")
    return spec


def postman_collection(spec: Mapping[str, Any], base_url: str = DEFAULT_BASE_URL) -> dict[str, Any]:
    """Turn a Swagger 2.0 spec into a Postman Collection v2.1 document (a JSON-ready dict)."""
    info = spec.get("info", {})
    title = info.get("title", "API")
    definitions = spec.get("definitions", {})
    base_path = spec.get("basePath", "/").rstrip("/")

    folders: dict[str, dict[str, Any]] = {
        tag["name"]: {"name": tag["name"], "description": tag.get("description", ""), "item": []}
        for tag in spec.get("tags", [])
    }
    for path, path_item in spec.get("paths", {}).items():
        shared = path_item.get("parameters", [])
        for method in _METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            parameters = _merged_parameters(shared, operation.get("parameters", []))
            item = _request_item(spec, base_path + path, method, operation, parameters, definitions)
            tag = (operation.get("tags") or ["default"])[0]
            folder = folders.setdefault(tag, {"name": tag, "description": "", "item": []})
            folder["item"].append(item)

    description = (info.get("description") or "").strip()
    return {
        "info": {
            # Stable id: re-importing offers to replace the collection instead of duplicating it.
            "_postman_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"postman:{title}")),
            "name": title,
            "description": f"{description}\n\nGenerated from the API's Swagger spec "
            f"(API version {info.get('version', '?')}). Set the `{BASE_URL_VARIABLE}` "
            "collection variable to the server you test.",
            "version": str(info.get("version", "")),
            "schema": POSTMAN_SCHEMA,
        },
        "item": [folder for folder in folders.values() if folder["item"]],
        "variable": [{"key": BASE_URL_VARIABLE, "value": base_url.rstrip("/"), "type": "string"}],
    }


def _merged_parameters(
    shared: Iterable[Mapping[str, Any]], own: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """Path-level parameters plus the operation's; the operation's win (Swagger 2.0 rule)."""
    merged = {(p["name"], p["in"]): p for p in shared}
    merged.update({(p["name"], p["in"]): p for p in own})
    return list(merged.values())


def _request_item(
    spec: Mapping[str, Any],
    path: str,
    method: str,
    operation: Mapping[str, Any],
    parameters: list[Mapping[str, Any]],
    definitions: Mapping[str, Any],
) -> dict[str, Any]:
    by_location: dict[str, list[Mapping[str, Any]]] = {}
    for parameter in parameters:
        by_location.setdefault(parameter["in"], []).append(parameter)

    postman_path = _PATH_TEMPLATE.sub(r":\1", path)
    query = [
        _key_value(p, definitions, disabled=not p.get("required", False))
        for p in by_location.get("query", [])
    ]
    enabled_query = "&".join(f"{q['key']}={q['value']}" for q in query if not q["disabled"])
    url: dict[str, Any] = {
        "raw": f"{{{{{BASE_URL_VARIABLE}}}}}{postman_path}"
        + (f"?{enabled_query}" if enabled_query else ""),
        "host": [f"{{{{{BASE_URL_VARIABLE}}}}}"],
        "path": [segment for segment in postman_path.split("/") if segment],
    }
    if query:
        url["query"] = query
    variables = [_key_value(p, definitions) for p in by_location.get("path", [])]
    if variables:
        url["variable"] = [{k: v for k, v in var.items() if k != "disabled"} for var in variables]

    headers = []
    request: dict[str, Any] = {"method": method.upper(), "header": headers, "url": url}
    body_parameters = by_location.get("body", [])
    if body_parameters:
        media_type = (operation.get("consumes") or spec.get("consumes") or ["application/json"])[0]
        headers.append({"key": "Content-Type", "value": media_type, "type": "text"})
        example = _example(body_parameters[0].get("schema", {}), definitions, frozenset())
        request["body"] = {
            "mode": "raw",
            "raw": json.dumps(example, indent=2, ensure_ascii=False),
            "options": {"raw": {"language": "json"}},
        }
    headers.extend(
        {**_key_value(p, definitions, disabled=not p.get("required", False)), "type": "text"}
        for p in by_location.get("header", [])
    )
    description = operation.get("description") or operation.get("summary")
    if description:
        request["description"] = description
    name = operation.get("summary") or operation.get("operationId") or f"{method.upper()} {path}"
    return {"name": name, "request": request, "response": []}


def _key_value(
    parameter: Mapping[str, Any], definitions: Mapping[str, Any], *, disabled: bool = False
) -> dict[str, Any]:
    value = _example(parameter, definitions, frozenset())
    if isinstance(value, list):  # arrays in a query or header: comma-separated (our API accepts)
        value = ",".join(_text(v) for v in value)
    entry = {"key": parameter["name"], "value": _text(value), "disabled": disabled}
    if parameter.get("description"):
        entry["description"] = parameter["description"]
    return entry


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _example(
    schema: Mapping[str, Any], definitions: Mapping[str, Any], seen: frozenset[str]
) -> Any:
    """An example value for a schema or parameter: its own example first, then one built from
    its parts (``$ref``, ``allOf``, properties, items), then a placeholder for its type."""
    for key in ("example", "x-example", "default"):
        if key in schema:
            return schema[key]
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen or name not in definitions:  # recursive model: stop here
            return {}
        return _example(definitions[name], definitions, seen | {name})
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = _example(part, definitions, seen)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return _object_example(schema, definitions, seen)
    if kind == "array":
        items = schema.get("items")
        return [_example(items, definitions, seen)] if items else []
    if kind == "integer":
        return schema.get("minimum", 0)
    if kind == "number":
        return schema.get("minimum", 0.0)
    if kind == "boolean":
        return False
    if kind == "string":
        return _FORMAT_SAMPLES.get(schema.get("format", ""), "")
    return None


def _object_example(
    schema: Mapping[str, Any], definitions: Mapping[str, Any], seen: frozenset[str]
) -> dict[str, Any]:
    """Every writable property that has (or is built from) an example, plus every required one:
    a placeholder for an optional field would only make the example body fail validation."""
    required = set(schema.get("required", []))
    example: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        if prop.get("readOnly"):
            continue  # the server sets it; never part of a request body
        if name in required or _has_example(prop, definitions, seen):
            example[name] = _example(prop, definitions, seen)
    return example


def _has_example(
    schema: Mapping[str, Any], definitions: Mapping[str, Any], seen: frozenset[str]
) -> bool:
    if any(key in schema for key in ("example", "x-example", "default", "enum")):
        return True
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return name not in seen and name in definitions
    if "allOf" in schema:
        return any(_has_example(part, definitions, seen) for part in schema["allOf"])
    if schema.get("type") == "array" and "items" in schema:
        return _has_example(schema["items"], definitions, seen)
    return "properties" in schema
