"""Greeting logic, free of HTTP so it can be tested (and reused) without a request."""

from __future__ import annotations

from app.core.errors import ValidationProblem

DEFAULT_GREETING = "Hello World"


def greet(name: str | None = None) -> str:
    """``Hello World`` without a name, ``Hello, <name>!`` with one (surrounding blanks trimmed)."""
    if name is None:
        return DEFAULT_GREETING
    cleaned = name.strip()
    if not cleaned:
        raise ValidationProblem([{"pointer": "#/name", "detail": "must not be blank"}])
    return f"Hello, {cleaned}!"
