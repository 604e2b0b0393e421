"""The authentication and authorisation problems (RFC 9457 bodies, RFC 6750 challenges).

401: we don't know who you are (no credentials, or credentials that are not valid now). 403: we
know, and you may not. 404: the thing is not yours to know about (another tenant's workspace).
"""

from __future__ import annotations

from app.core.errors import ApiProblem, ProblemType

REALM = "task-management-api"


def _challenge(error: str | None = None, description: str | None = None, scope: str = "") -> str:
    parts = [f'Bearer realm="{REALM}"']
    if error:  # RFC 6750 3.1: no error code when the request had no credentials at all
        parts.append(f'error="{error}"')
    if description:  # quoted-string: our own fixed texts, never the token
        parts.append(f'error_description="{description}"')
    if scope:
        parts.append(f'scope="{scope}"')
    return ", ".join(parts)


class AuthenticationRequired(ApiProblem):
    problem_type = ProblemType(
        slug="authentication-required",
        title="Authentication required",
        status=401,
        description="Send `Authorization: Bearer <token>`: an access token from "
        "`POST /api/v2/auth/login` (or an OAuth token), or an API key.",
    )

    def __init__(self, detail: str = "This operation needs an access token or an API key.") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": _challenge()})


class InvalidToken(ApiProblem):
    problem_type = ProblemType(
        slug="invalid-token",
        title="Invalid token",
        status=401,
        description="The bearer token is malformed, expired, revoked or not one of ours. Get a "
        "new access token (`POST /api/v2/auth/refresh` or log in again).",
    )

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": _challenge("invalid_token", detail)})


class InvalidCredentials(ApiProblem):
    problem_type = ProblemType(
        slug="invalid-credentials",
        title="Invalid credentials",
        status=401,
        description="The email and password (or the second-factor code) do not match an "
        "account. The answer is the same whichever part was wrong.",
    )

    def __init__(self, detail: str = "Wrong email or password.") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": _challenge()})


class PermissionDenied(ApiProblem):
    problem_type = ProblemType(
        slug="permission-denied",
        title="Permission denied",
        status=403,
        description="You are a member of this workspace, but your role does not allow this "
        "operation (the chapter 4 doc has the permission table), or your API key or OAuth "
        "token lacks the scope it needs.",
    )

    def __init__(self, detail: str, *, scope: str = "") -> None:
        headers = {}
        if scope:  # RFC 6750: the token is fine, its scope is not enough
            headers["WWW-Authenticate"] = _challenge(
                "insufficient_scope", "The token lacks the scope this operation needs.", scope
            )
        super().__init__(detail, headers=headers, **({"required_scope": scope} if scope else {}))
