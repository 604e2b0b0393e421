"""Run the curl transcripts of every chapter doc against the app, so the docs cannot rot."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_app
from tests.docs_examples import WILDCARD, examples_in, expected_json, header_matches, matches

DOCS = Path(__file__).resolve().parent.parent / "docs"
CHAPTER_DOCS = sorted((DOCS / "chapters").glob("[0-9][0-9]-*.md"))
OTHER_DOCS = [DOCS / "api-testing.md"]


def test_every_chapter_doc_has_curl_examples() -> None:
    assert CHAPTER_DOCS, "docs/chapters is empty"
    for doc in CHAPTER_DOCS:
        assert examples_in(doc), f"{doc.name} has no executable curl transcript"


@pytest.mark.parametrize("doc", CHAPTER_DOCS + OTHER_DOCS, ids=lambda p: p.name)
def test_curl_examples_run_as_documented(doc: Path) -> None:
    # One fresh app per document: examples in a document may build on each other.
    # Development, as ./scripts/run serves it: the seeded demo tasks have fixed ids and ETags.
    client = make_app("development", LOG_LEVEL="WARNING").test_client()
    for example in examples_in(doc):
        response = client.open(
            example.path, method=example.method, headers=example.headers, data=example.body
        )
        where = f"{example.source}: {example.method} {example.path}"
        assert response.status_code == example.expected_status, (
            f"{where}: got {response.status_code} {response.get_data(as_text=True)[:500]}"
        )
        for name, value in example.expected_headers.items():
            assert name in response.headers, f"{where}: missing header {name}"
            assert header_matches(value, response.headers[name]), f"{where}: header {name}"
        if example.expected_body:
            actual = response.get_json(force=True, silent=True)
            assert matches(expected_json(example), actual), (
                f"{where}: body differs from the docs\n  docs: {example.expected_body}\n"
                f"  real: {response.get_data(as_text=True)[:1000]}"
            )


def test_matcher_accepts_subsets_and_wildcards_only() -> None:
    actual = {"a": 1, "b": {"c": [1, 2]}, "id": "x1"}
    assert matches({"a": 1, "id": WILDCARD}, actual)
    assert matches({"b": {"c": [1, 2]}}, actual)
    assert not matches({"a": 2}, actual)
    assert not matches({"missing": WILDCARD}, actual)
    assert not matches({"b": {"c": [1]}}, actual)
    assert header_matches("/api/v1/tasks/...", "/api/v1/tasks/0193-abc")
    assert not header_matches("/api/v1/tasks/...", "/api/v2/tasks/0193")
    assert header_matches('"abc"', '"abc"')
    assert not header_matches('"abc"', '"abd"')
