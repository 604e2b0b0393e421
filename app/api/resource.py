"""The base of every API resource: query parameters an operation does not document are a 400.

One rule everywhere: a misspelt ``?per_pgae=5`` must not be silently ignored on one endpoint and
refused on another.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from flask import request
from flask_restx import Resource

from app.core.errors import ValidationProblem
from app.core.validation import shortened


class ApiResource(Resource):
    # Per lower-case method, the query parameters it reads (HEAD counts as GET). None by default.
    query_parameters: ClassVar[Mapping[str, frozenset[str]]] = {}

    def dispatch_request(self, *args: Any, **kwargs: Any) -> Any:
        if request.args:
            method = "get" if request.method == "HEAD" else request.method.lower()
            allowed = self.query_parameters.get(method, frozenset())
            unknown = sorted(name for name in request.args if name not in allowed)
            if unknown:
                raise ValidationProblem(
                    [
                        {"parameter": shortened(name), "detail": "is not a known parameter"}
                        for name in unknown
                    ],
                    status=400,
                )
        return super().dispatch_request(*args, **kwargs)
