"""Extend it (ch-02): GET /api/v1/tasks?due_soon=<days> lists what is due in the next few days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient


def due_in(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


@pytest.fixture
def tasks(client: FlaskClient) -> dict[str, Any]:
    made = {
        "overdue": {"title": "overdue", "due_date": due_in(-1)},
        "tomorrow": {"title": "tomorrow", "due_date": due_in(1)},
        "in five days": {"title": "in five days", "due_date": due_in(5), "status": "in_progress"},
        "next month": {"title": "next month", "due_date": due_in(30)},
        "no due date": {"title": "no due date"},
    }
    for body in made.values():
        assert client.post("/api/v1/tasks", json=body).status_code == 201
    return made


def titles(client: FlaskClient, query: str) -> set[str]:
    response = client.get(f"/api/v1/tasks?{query}")
    assert response.status_code == 200, response.json
    return {item["title"] for item in response.json["items"]}


def test_due_soon_keeps_tasks_due_from_now_to_n_days_ahead(
    client: FlaskClient, tasks: dict[str, Any]
) -> None:
    assert titles(client, "due_soon=3") == {"tomorrow"}
    assert titles(client, "due_soon=7") == {"tomorrow", "in five days"}


def test_due_soon_composes_with_other_filters(client: FlaskClient, tasks: dict[str, Any]) -> None:
    assert titles(client, "due_soon=7&status=in_progress") == {"in five days"}


def test_due_soon_is_documented_in_the_spec(client: FlaskClient) -> None:
    spec = client.get("/swagger.json").json
    params = spec["paths"]["/api/v1/tasks"]["get"]["parameters"]
    assert "due_soon" in {param["name"] for param in params}


@pytest.mark.parametrize("value", ["0", "-1", "soon", "366", "1.5"])
def test_a_bad_due_soon_is_a_400_naming_the_parameter(client: FlaskClient, value: str) -> None:
    response = client.get(f"/api/v1/tasks?due_soon={value}")
    assert response.status_code == 400
    [error] = response.json["errors"]
    assert error["parameter"] == "due_soon"
    assert "not a known parameter" not in error["detail"]  # known, but the value is wrong
