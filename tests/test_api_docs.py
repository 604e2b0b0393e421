"""Swagger UI, the spec, and the JSON index at /."""

from __future__ import annotations

import re

from flask.testing import FlaskClient
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV2SpecValidator

from app.version import __version__


def test_spec_is_valid_swagger_2(client: FlaskClient) -> None:
    response = client.get("/swagger.json")
    assert response.status_code == 200
    spec = response.json
    assert spec["swagger"] == "2.0"
    validate(spec, cls=OpenAPIV2SpecValidator)


def test_spec_has_title_version_and_description(client: FlaskClient) -> None:
    info = client.get("/swagger.json").json["info"]
    assert info["title"] == "Task Management API"
    assert info["version"] == __version__
    assert "Accept-Version" in info["description"]


def test_no_operation_has_an_x_fields_parameter(client: FlaskClient) -> None:
    spec = client.get("/swagger.json").json
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            names = [p.get("name") for p in operation.get("parameters", [])]
            assert "X-Fields" not in names, f"{method.upper()} {path}"


def test_every_operation_is_grouped_and_described(client: FlaskClient) -> None:
    spec = client.get("/swagger.json").json
    tags = {tag["name"]: tag.get("description") for tag in spec["tags"]}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            where = f"{method.upper()} {path}"
            assert operation["tags"], where
            assert all(tags.get(t) for t in operation["tags"]), where
            assert operation.get("operationId"), where
            assert operation.get("description") or operation.get("summary"), where
            assert any(code.startswith("2") for code in operation["responses"]), where


def test_swagger_ui_is_served_with_local_assets(client: FlaskClient) -> None:
    page = client.get("/swagger")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/swagger.json" in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        assert not asset.startswith(("http://", "https://", "//")), f"remote asset {asset}"
        with client.get(asset) as response:  # file responses must be closed
            assert response.status_code == 200, asset


def test_root_is_a_json_index(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    index = response.json
    assert index["name"] == "Task Management API"
    assert index["version"] == __version__
    assert index["api_versions"] == ["1", "2"]
    for link in index["links"].values():
        assert client.get(link).status_code == 200, link


def test_problem_type_catalog_resolves_every_type(client: FlaskClient) -> None:
    listing = client.get("/problems")
    assert listing.status_code == 200
    slugs = {entry["type"] for entry in listing.json}
    assert {"/problems/validation-error", "/problems/unsupported-api-version"} <= slugs
    for entry in listing.json:
        detail = client.get(entry["type"])
        assert detail.status_code == 200
        assert detail.json == entry


def test_unknown_problem_type_is_a_404_problem(client: FlaskClient) -> None:
    response = client.get("/problems/no-such-thing")
    assert response.status_code == 404
    assert response.content_type == "application/problem+json"
    assert "no-such-thing" not in response.json["detail"]
