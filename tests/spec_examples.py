"""Request bodies built from the spec's own examples (the matrix and spec tests send them)."""

from __future__ import annotations

from typing import Any


def example_of(schema: dict[str, Any], spec: dict[str, Any]) -> Any:
    if "$ref" in schema:
        return example_of(spec["definitions"][schema["$ref"].rsplit("/", 1)[1]], spec)
    if "example" in schema:
        return schema["example"]
    if schema.get("type") == "array":
        return [example_of(schema.get("items", {}), spec)]
    if schema.get("type") == "object" or "properties" in schema:
        return {
            name: example_of(prop, spec)
            for name, prop in schema.get("properties", {}).items()
            if name in schema.get("required", []) or "example" in prop or "$ref" in prop
        }
    return {"string": "x", "integer": 1, "boolean": True}.get(schema.get("type", ""), "x")


def example_body(operation: dict[str, Any], spec: dict[str, Any]) -> Any:
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "body":
            return example_of(parameter["schema"], spec)
    return None
