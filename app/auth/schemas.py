"""The wire format of accounts and tokens: Swagger models and body checks."""

from __future__ import annotations

from typing import Any

from flask_restx import Model, fields

from app.auth.service import TokenPair, User
from app.core.errors import ValidationProblem
from app.core.validation import schema_errors
from app.tasks.models import utc_now
from app.tasks.schemas import iso_utc

EXAMPLE_EMAIL = "ada@example.com"
EXAMPLE_PASSWORD = "correct horse battery staple"

credentials_input = Model(
    "Credentials",
    {
        "email": fields.String(required=True, max_length=320, example=EXAMPLE_EMAIL),
        "password": fields.String(
            required=True,
            min_length=1,
            max_length=1024,
            description="At least PASSWORD_MIN_LENGTH (15) characters when registering; "
            "no composition rules; not a common password",
            example=EXAMPLE_PASSWORD,
        ),
    },
    strict=True,
)

refresh_input = Model(
    "RefreshInput",
    {"refresh_token": fields.String(required=True, min_length=1, max_length=4096)},
    strict=True,
)

password_change_input = Model(
    "PasswordChange",
    {
        "current_password": fields.String(required=True, min_length=1, max_length=1024),
        "new_password": fields.String(
            required=True, min_length=1, max_length=1024, example="a new long passphrase here"
        ),
    },
    strict=True,
)

mfa_login_input = Model(
    "MfaLogin",
    {
        "mfa_token": fields.String(
            required=True, min_length=1, max_length=4096, description="From POST /auth/login"
        ),
        "code": fields.String(
            max_length=16, description="6 digits from the authenticator app", example="123456"
        ),
        "recovery_code": fields.String(
            max_length=32, description="Instead of code: one of your recovery codes"
        ),
    },
    strict=True,
)

code_input = Model(
    "TotpCode",
    {"code": fields.String(required=True, min_length=1, max_length=16, example="123456")},
    strict=True,
)

mfa_disable_input = Model(
    "MfaDisable",
    {
        "password": fields.String(required=True, min_length=1, max_length=1024),
        "code": fields.String(required=True, min_length=1, max_length=16, example="123456"),
    },
    strict=True,
)

enrolment = Model(
    "TotpEnrolment",
    {
        "secret": fields.String(description="Base32; type it into the app if you cannot scan"),
        "otpauth_uri": fields.String(
            description="otpauth://totp/...: show it as a QR code to the authenticator app"
        ),
    },
)

recovery_codes = Model(
    "RecoveryCodes",
    {
        "recovery_codes": fields.List(
            fields.String, description="Each works once instead of a code; shown this once"
        )
    },
)

user = Model(
    "User",
    {
        "id": fields.String(example="01935f3a-6b1e-7000-8000-0000000000aa"),
        "email": fields.String(example=EXAMPLE_EMAIL),
        "mfa_enabled": fields.Boolean(example=False),
        "platform_admin": fields.Boolean(description="Operates the service (backups...)"),
        "created_at": fields.String(example="2026-11-26T10:00:00.000Z"),
    },
)

token_pair = Model(
    "Tokens",
    {
        "access_token": fields.String(description="Send as Authorization: Bearer <it>"),
        "token_type": fields.String(example="Bearer"),
        "expires_in": fields.Integer(description="Seconds the access token is valid", example=900),
        "refresh_token": fields.String(description="Single use: POST /auth/refresh"),
        "refresh_expires_in": fields.Integer(example=1209600),
    },
)

login_result = Model(
    "LoginResult",
    {
        **token_pair,
        "mfa_required": fields.Boolean(description="True: no tokens yet; send a code next"),
        "mfa_token": fields.String(description="For POST /auth/login/mfa, valid 5 minutes"),
    },
)

jwks = Model(
    "Jwks",
    {"keys": fields.List(fields.Raw, description="Public keys (RFC 7517, OKP Ed25519)")},
)

MODELS = (
    code_input,
    mfa_disable_input,
    enrolment,
    recovery_codes,
    credentials_input,
    refresh_input,
    password_change_input,
    mfa_login_input,
    user,
    token_pair,
    login_result,
    jwks,
)


def checked(model: Model, document: Any) -> dict[str, Any]:
    errors = schema_errors(model.__schema__, document)
    if errors:
        raise ValidationProblem(errors)
    return document


def user_to_dict(item: User) -> dict[str, Any]:
    return {
        "id": str(item.id),
        "email": item.email,
        "mfa_enabled": item.mfa_enabled,
        "platform_admin": item.is_platform_admin,
        "created_at": iso_utc(item.created_at),
    }


def tokens_to_dict(pair: TokenPair) -> dict[str, Any]:
    now = utc_now()
    return {
        "access_token": pair.access.token,
        "token_type": "Bearer",
        "expires_in": max(0, int((pair.access.expires_at - now).total_seconds())),
        "refresh_token": pair.refresh.token,
        "refresh_expires_in": max(0, int((pair.refresh.expires_at - now).total_seconds())),
    }
