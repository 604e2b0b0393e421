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


# From chapter 4 on a transcript logs in itself and sends "$TOKEN": the access token of the last
# response that held one ($REFRESH_TOKEN likewise). Earlier chapters' transcripts predate
# accounts: they run as the default workspace's owner, as a reader at HEAD would with a token.
SIGNED_IN_FROM = "04"


@pytest.mark.parametrize("doc", CHAPTER_DOCS + OTHER_DOCS, ids=lambda p: p.name)
def test_curl_examples_run_as_documented(doc: Path) -> None:
    # One fresh app per document: examples in a document may build on each other.
    # Development, as ./scripts/run serves it: the seeded demo tasks have fixed ids and ETags.
    app = make_app("development", LOG_LEVEL="WARNING")
    explicit = doc in OTHER_DOCS or (doc.name[:2].isdigit() and doc.name[:2] >= SIGNED_IN_FROM)
    client = app.test_client(token="") if explicit else app.test_client()
    variables: dict[str, str] = {}
    for example in examples_in(doc):
        headers = {
            name: _substitute(value, variables, example.source)
            for name, value in example.headers.items()
        }
        body = example.body
        if body is not None and b"$" in body:
            body = _substitute(body.decode(), variables, example.source).encode()
        response = client.open(example.path, method=example.method, headers=headers, data=body)
        found = response.get_json(silent=True)
        if isinstance(found, dict):
            for key, name in (("access_token", "TOKEN"), ("refresh_token", "REFRESH_TOKEN")):
                if isinstance(found.get(key), str):
                    variables[name] = found[key]
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


def _substitute(text: str, variables: dict[str, str], source: str) -> str:
    for name in ("REFRESH_TOKEN", "TOKEN"):  # the longer name first: $TOKEN is its suffix
        if f"${name}" in text:
            assert name in variables, f"{source}: ${name} before any response held one"
            text = text.replace(f"${name}", variables[name])
    return text


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
