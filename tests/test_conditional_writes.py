"""Write preconditions per RFC 9110: If-Match (strong), If-None-Match on writes, and an honest
refusal of If-Unmodified-Since. Never a silent write."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from app.core.http_cache import CHANGED, EXISTS, STILL_MATCHES, WEAK_NEVER_MATCHES
from tests.test_errors import assert_problem

WRITES: dict[str, Callable[[FlaskClient, str, dict[str, str]], object]] = {
    "PUT": lambda c, url, h: c.put(url, json={"title": "written"}, headers=h),
    "PATCH": lambda c, url, h: c.patch(url, json={"title": "written"}, headers=h),
    "DELETE": lambda c, url, h: c.delete(url, headers=h),
}


@pytest.fixture
def created(any_client: FlaskClient) -> tuple[str, str]:
    response = any_client.post("/api/v1/tasks", json={"title": "original"})
    return response.headers["Location"], response.headers["ETag"]


def _unchanged(client: FlaskClient, url: str, etag: str) -> None:
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["ETag"] == etag


@pytest.mark.parametrize("method", list(WRITES))
@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        (lambda etag: {"If-Match": '"stale"'}, CHANGED),
        (lambda etag: {"If-Match": f"W/{etag}"}, WEAK_NEVER_MATCHES),
        (lambda etag: {"If-Match": 'W/"stale", W/"other"'}, WEAK_NEVER_MATCHES),
        (lambda etag: {"If-None-Match": "*"}, EXISTS),
        (lambda etag: {"If-None-Match": etag}, STILL_MATCHES),
        (lambda etag: {"If-None-Match": f"W/{etag}"}, STILL_MATCHES),  # weak comparison
        (lambda etag: {"If-Match": etag, "If-None-Match": "*"}, EXISTS),
    ],
)
def test_a_failing_precondition_is_412_and_says_why(
    any_client: FlaskClient,
    created: tuple[str, str],
    method: str,
    headers: Callable[[str], dict[str, str]],
    detail: str,
) -> None:
    url, etag = created
    response = WRITES[method](any_client, url, headers(etag))
    body = assert_problem(response, 412)
    assert body["detail"] == detail
    _unchanged(any_client, url, etag)


@pytest.mark.parametrize("method", list(WRITES))
@pytest.mark.parametrize(
    "headers",
    [
        lambda etag: {"If-Match": etag},
        lambda etag: {"If-Match": "*"},
        lambda etag: {"If-None-Match": '"something-else"'},
        lambda etag: {"If-Match": f'"old", {etag}', "If-None-Match": '"old"'},
    ],
)
def test_a_passing_precondition_writes(
    any_client: FlaskClient,
    created: tuple[str, str],
    method: str,
    headers: Callable[[str], dict[str, str]],
) -> None:
    url, etag = created
    response = WRITES[method](any_client, url, headers(etag))
    assert response.status_code in {200, 204}


@pytest.mark.parametrize("method", list(WRITES))
@pytest.mark.parametrize(
    ("headers", "says"),
    [
        ({"If-Unmodified-Since": "Wed, 21 Oct 2026 07:28:00 GMT"}, "If-Unmodified-Since"),
        ({"If-Match": ""}, "If-Match"),
        ({"If-None-Match": " , "}, "If-None-Match"),
    ],
)
def test_a_refused_or_malformed_precondition_is_400_and_writes_nothing(
    any_client: FlaskClient,
    created: tuple[str, str],
    method: str,
    headers: dict[str, str],
    says: str,
) -> None:
    url, etag = created
    body = assert_problem(WRITES[method](any_client, url, headers), 400)
    assert body["detail"].startswith(f"The {says}") or body["detail"].startswith(says)
    _unchanged(any_client, url, etag)


def test_bulk_if_match_with_a_weak_etag_says_why(
    any_client: FlaskClient, created: tuple[str, str]
) -> None:
    url, etag = created
    task_id = url.rsplit("/", 1)[1]
    operation = {"op": "delete", "id": task_id, "if_match": f"W/{etag}"}
    response = any_client.post("/api/v1/tasks/bulk", json={"operations": [operation]})
    body = assert_problem(response, 422)
    assert body["errors"][0]["status"] == 412
    assert body["errors"][0]["detail"] == WEAK_NEVER_MATCHES
    _unchanged(any_client, url, etag)
