"""Cookie sessions still work when used, and cost nothing when not."""

from __future__ import annotations

from flask import Flask, session


def test_a_request_without_a_cookie_gets_an_empty_session_and_no_cookie(app: Flask) -> None:
    @app.get("/peek")
    def peek() -> dict[str, object]:
        return {"keys": sorted(session.keys())}

    response = app.test_client().get("/peek")
    assert response.json == {"keys": []}
    assert "Set-Cookie" not in response.headers


def test_a_session_written_in_one_request_is_read_in_the_next(app: Flask) -> None:
    @app.post("/remember")
    def remember() -> dict[str, str]:
        session["colour"] = "teal"
        return {"ok": "yes"}

    @app.get("/recall")
    def recall() -> dict[str, object]:
        return {"colour": session.get("colour")}

    client = app.test_client()
    assert "Set-Cookie" in client.post("/remember").headers
    assert client.get("/recall").json == {"colour": "teal"}


def test_a_tampered_cookie_is_ignored(app: Flask) -> None:
    @app.get("/recall")
    def recall() -> dict[str, object]:
        return {"colour": session.get("colour")}

    client = app.test_client()
    client.set_cookie("session", "forged.value.here")
    assert client.get("/recall").json == {"colour": None}
