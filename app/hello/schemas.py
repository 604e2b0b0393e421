"""Swagger models for the hello namespace (chapter 5 derives these from marshmallow schemas)."""

from __future__ import annotations

from flask_restx import Model, fields

NAME_MAX_LENGTH = 50

greeting = Model(
    "Greeting",
    {"message": fields.String(required=True, description="The greeting", example="Hello World")},
)

greeting_request = Model(
    "GreetingRequest",
    {
        "name": fields.String(
            required=True,
            min_length=1,
            max_length=NAME_MAX_LENGTH,
            description="Who to greet; surrounding blanks are trimmed",
            example="Ada",
        ),
    },
    strict=True,  # unknown fields are rejected, not silently ignored
)
