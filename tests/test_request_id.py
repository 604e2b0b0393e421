"""Request ids: kept when well formed, replaced otherwise, echoed, logged, in every error body."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.core.request_id import accepted_request_id
from tests.conftest import CapturedLog

GENERATED = re.compile(r"[0-9a-f]{32}")


def test_a_request_id_is_generated_when_absent(any_client: FlaskClient) -> None:
    response = any_client.get("/api/v1/hello")
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])


def test_each_request_gets_its_own_id(client: FlaskClient) -> None:
    ids = {client.get("/health/live").headers["X-Request-ID"] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize("inbound", ["abc", "req-2026.11_26", "A" * 128, "0"])
def test_a_well_formed_inbound_id_is_kept(any_client: FlaskClient, inbound: str) -> None:
    response = any_client.get("/api/v1/hello", headers={"X-Request-ID": inbound})
    assert response.headers["X-Request-ID"] == inbound


@pytest.mark.parametrize(
    "inbound",
    [
        "A" * 129,  # too long
        "has space",
        "semi;colon",
        'quote"',
        "<script>alert(1)</script>",
        "../../etc/passwd",
        "é-unicode",
        "tab\tinside",
    ],
)
def test_a_malformed_inbound_id_is_replaced(any_client: FlaskClient, inbound: str) -> None:
    response = any_client.get("/api/v1/nope", headers={"X-Request-ID": inbound})
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])
    body = response.get_data(as_text=True)
    assert inbound not in body
    assert response.json["request_id"] == response.headers["X-Request-ID"]


def test_empty_inbound_id_is_replaced(client: FlaskClient) -> None:
    response = client.get("/health/live", headers={"X-Request-ID": ""})
    assert GENERATED.fullmatch(response.headers["X-Request-ID"])


def test_validation_rule_without_http() -> None:
    assert accepted_request_id("ok-1.2_3") == "ok-1.2_3"
    assert GENERATED.fullmatch(accepted_request_id("not ok"))
    assert GENERATED.fullmatch(accepted_request_id(None))


def test_the_request_id_is_on_every_log_line_of_the_request(
    production_app: Flask, capture_log: Callable[[Flask], CapturedLog]
) -> None:
    log = capture_log(production_app)
    production_app.test_client().get("/api/v1/hello", headers={"X-Request-ID": "trace-me-42"})
    records = log.records()
    assert records, "the request was logged"
    assert all(record["request_id"] == "trace-me-42" for record in records)


def test_a_rejected_id_never_reaches_the_log(
    production_app: Flask, capture_log: Callable[[Flask], CapturedLog]
) -> None:
    log = capture_log(production_app)
    production_app.test_client().get("/api/v1/hello", headers={"X-Request-ID": "evil value;"})
    assert "evil value" not in log.text
    assert all(GENERATED.fullmatch(r["request_id"]) for r in log.records())
