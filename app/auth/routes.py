"""``/api/v2/auth``: accounts and tokens; ``/.well-known/jwks.json``: the public keys."""

from __future__ import annotations

from typing import Any

import jwt
from flask import Response, current_app, request
from flask_restx import Namespace

from app.api.models import QUERY_ERROR, json_body_errors, problem, requires
from app.api.resource import ApiResource
from app.auth.authentication import public
from app.auth.credentials import normalise_email
from app.auth.errors import PermissionDenied
from app.auth.keys import key_ring
from app.auth.login_throttle import login_rate_limit, login_throttle
from app.auth.permissions import USERS_ONLY
from app.auth.principal import Principal, PrincipalKind, current_principal
from app.auth.schemas import (
    MODELS,
    checked,
    code_input,
    credentials_input,
    enrolment,
    jwks,
    login_result,
    mfa_disable_input,
    mfa_login_input,
    password_change_input,
    recovery_codes,
    refresh_input,
    token_pair,
    tokens_to_dict,
    user,
    user_to_dict,
)
from app.auth.second_factor import SecondFactorService
from app.auth.service import AccountService
from app.core.errors import ValidationProblem
from app.core.http_cache import dump_json, json_response, no_content
from app.core.rate_limits import auth_rate_limit
from app.core.security_headers import no_store
from app.core.validation import json_body
from app.db import db

ns = Namespace("auth", description="Accounts and tokens: register, log in, refresh, log out")
well_known = Namespace("well-known", description="Discovery documents (public keys)")
for _model in MODELS:
    ns.add_model(_model.name, _model)
well_known.add_model(jwks.name, jwks)

_UNAUTHENTICATED = "No, or an invalid, expired or revoked access token"
_NO_CACHE = "no-store"
_USERS_ONLY = "An API key or a client's token: this is about a user's own account"


def accounts() -> AccountService:
    return AccountService(db.session(), current_app.config, throttle=login_throttle())


def _email_in_body() -> str | None:
    """The account a log-in or sign-up is about, for its per-account rate limit."""
    document = request.get_json(silent=True)
    email = document.get("email") if isinstance(document, dict) else None
    if not isinstance(email, str):
        return None
    try:
        return normalise_email(email)
    except ValueError:
        return email.strip().lower()[:320]


def _principal() -> Principal:
    """The signed-in user: these operations are about a user's own account, not for keys."""
    principal = current_principal()
    assert principal is not None  # the authentication hook ran: not a public operation
    if (
        principal.kind is not PrincipalKind.USER
        or principal.user_id is None
        or principal.scopes is not None  # an OAuth token acting for the user
    ):
        raise PermissionDenied("This is about a user's own account: sign in as the user.")
    return principal


def _credential_response(body: dict[str, Any], status: int = 200) -> Response:
    return json_response(
        encoded=dump_json(body), status=status, cache_control=_NO_CACHE, etag=False
    )


@ns.route("/register")
class Register(ApiResource):
    @public
    @auth_rate_limit(_email_in_body)
    @no_store
    @ns.doc("register", description="Create an account. Then log in with it.", security=[])
    @ns.expect(credentials_input)
    @ns.response(201, "The new account", user)
    @json_body_errors(ns)
    @ns.response(409, "An account with this email exists", problem)
    @ns.response(422, "The email or password is not acceptable; errors says why", problem)
    def post(self) -> Response:
        document = checked(credentials_input, json_body())
        created = accounts().register(document["email"], document["password"])
        return _credential_response(user_to_dict(created), 201)


@ns.route("/login")
class Login(ApiResource):
    @public
    @login_rate_limit(_email_in_body)
    @no_store
    @ns.doc(
        "login",
        description="Exchange email and password for an access token (short-lived) and a "
        "refresh token (single use). With a second factor on, the answer is `mfa_required` "
        "and an `mfa_token` for `POST /auth/login/mfa` instead.",
        security=[],
    )
    @ns.expect(credentials_input)
    @ns.response(200, "Tokens (or mfa_required)", login_result)
    @json_body_errors(ns)
    @ns.response(401, "Wrong email or password (the same answer for both)", problem)
    @ns.response(422, "The body is not {email, password}", problem)
    def post(self) -> Response:
        document = checked(credentials_input, json_body())
        result = accounts().login(
            document["email"], document["password"], client_ip=request.remote_addr or ""
        )
        if result.tokens is None:
            return _credential_response({"mfa_required": True, "mfa_token": result.mfa_token})
        return _credential_response({**tokens_to_dict(result.tokens), "mfa_required": False})


@ns.route("/refresh")
class Refresh(ApiResource):
    @public
    @auth_rate_limit()
    @no_store
    @ns.doc(
        "refresh_tokens",
        description="Trade a refresh token for a new pair. Each refresh token works once: "
        "presenting a used one again ends its session (both tokens stop working).",
        security=[],
    )
    @ns.expect(refresh_input)
    @ns.response(200, "A new access and refresh token", token_pair)
    @json_body_errors(ns)
    @ns.response(401, "The refresh token is invalid, expired, used or revoked", problem)
    @ns.response(422, "The body is not {refresh_token}", problem)
    def post(self) -> Response:
        document = checked(refresh_input, json_body())
        return _credential_response(tokens_to_dict(accounts().refresh(document["refresh_token"])))


@ns.route("/logout")
class Logout(ApiResource):
    @requires(ns, USERS_ONLY)
    @ns.doc("logout", description="End this session: its refresh and access tokens stop working.")
    @ns.response(204, "Logged out")
    @ns.response(400, QUERY_ERROR, problem)
    @ns.response(401, _UNAUTHENTICATED, problem)
    @ns.response(403, _USERS_ONLY, problem)
    def post(self) -> Response:
        accounts().logout(_principal())
        return no_content()


@ns.route("/logout-everywhere")
class LogoutEverywhere(ApiResource):
    @requires(ns, USERS_ONLY)
    @ns.doc("logout_everywhere", description="End every session of your account, this one too.")
    @ns.response(204, "Every session ended")
    @ns.response(400, QUERY_ERROR, problem)
    @ns.response(401, _UNAUTHENTICATED, problem)
    @ns.response(403, _USERS_ONLY, problem)
    def post(self) -> Response:
        accounts().logout_everywhere(_principal())
        return no_content()


@ns.route("/me")
class Me(ApiResource):
    @no_store
    @requires(ns, USERS_ONLY)
    @ns.doc("get_me", description="Your account.")
    @ns.response(200, "Your account", user)
    @ns.response(400, QUERY_ERROR, problem)
    @ns.response(401, _UNAUTHENTICATED, problem)
    @ns.response(403, _USERS_ONLY, problem)
    def get(self) -> Response:
        principal = _principal()
        return _credential_response(user_to_dict(accounts().user(principal.user_id)))


@ns.route("/password")
class Password(ApiResource):
    @no_store
    @requires(ns, USERS_ONLY)
    @ns.doc(
        "change_password",
        description="Change your password (the current one is needed). Every other session "
        "of your account ends; this one stays.",
    )
    @ns.expect(password_change_input)
    @ns.response(204, "Changed")
    @json_body_errors(ns)
    @ns.response(401, "Not authenticated, or the current password is wrong", problem)
    @ns.response(403, _USERS_ONLY, problem)
    @ns.response(422, "The new password is not acceptable; errors says why", problem)
    def post(self) -> Response:
        document = checked(password_change_input, json_body())
        accounts().change_password(
            _principal(), document["current_password"], document["new_password"]
        )
        return no_content()


def second_factor() -> SecondFactorService:
    return SecondFactorService(accounts())


def _user_in_ticket() -> str | None:
    """The account an MFA log-in is about (from its ticket, unverified: only a rate-limit key)."""
    document = request.get_json(silent=True)
    ticket = document.get("mfa_token") if isinstance(document, dict) else None
    if not isinstance(ticket, str) or len(ticket) > 4096:
        return None
    try:
        subject = jwt.decode(ticket, options={"verify_signature": False}).get("sub")
    except jwt.PyJWTError:
        return None
    return subject if isinstance(subject, str) else None


@ns.route("/login/mfa")
class LoginSecondFactor(ApiResource):
    @public
    @auth_rate_limit(_user_in_ticket, scope="mfa")
    @no_store
    @ns.doc(
        "login_mfa",
        description="The second step of logging in with a second factor on: the `mfa_token` "
        "from `POST /auth/login` and a `code` from the authenticator app (or a "
        "`recovery_code`, each usable once). No code is accepted twice.",
        security=[],
    )
    @ns.expect(mfa_login_input)
    @ns.response(200, "Tokens", token_pair)
    @json_body_errors(ns)
    @ns.response(401, "The ticket or the code is not valid", problem)
    @ns.response(422, "The body is not {mfa_token, code} or {mfa_token, recovery_code}", problem)
    def post(self) -> Response:
        document = checked(mfa_login_input, json_body())
        if ("code" in document) == ("recovery_code" in document):
            raise ValidationProblem(
                [{"pointer": "#/code", "detail": "send either code or recovery_code"}]
            )
        result = second_factor().login(
            document["mfa_token"], document.get("code"), document.get("recovery_code")
        )
        assert result.tokens is not None
        return _credential_response(tokens_to_dict(result.tokens))


@ns.route("/mfa/totp")
class TotpFactor(ApiResource):
    @no_store
    @requires(ns, USERS_ONLY)
    @ns.doc(
        "enrol_totp",
        description="Start turning on a TOTP second factor: a new secret and its otpauth:// "
        "URI for the authenticator app. It is on once `POST /auth/mfa/totp/confirm` gets a "
        "first code.",
    )
    @ns.response(201, "The secret, shown this once", enrolment)
    @ns.response(400, QUERY_ERROR, problem)
    @ns.response(403, _USERS_ONLY, problem)
    @ns.response(409, "A second factor is already on", problem)
    def post(self) -> Response:
        enrolled = second_factor().enrol(_principal())
        body = {"secret": enrolled.secret, "otpauth_uri": enrolled.uri}
        return _credential_response(body, 201)

    @no_store
    @requires(ns, USERS_ONLY)
    @ns.doc(
        "disable_totp",
        description="Turn the second factor off: needs your password and a current code.",
    )
    @ns.expect(mfa_disable_input)
    @ns.response(204, "Off; the recovery codes are gone too")
    @json_body_errors(ns)
    @ns.response(401, "Not authenticated, or the password or code is wrong", problem)
    @ns.response(403, _USERS_ONLY, problem)
    @ns.response(409, "No second factor is on", problem)
    @ns.response(422, "The body is not {password, code}", problem)
    def delete(self) -> Response:
        document = checked(mfa_disable_input, json_body())
        second_factor().disable(_principal(), document["password"], document["code"])
        return no_content()


@ns.route("/mfa/totp/confirm")
class TotpConfirmation(ApiResource):
    @auth_rate_limit(lambda: str(_principal().user_id), scope="mfa")
    @no_store
    @requires(ns, USERS_ONLY)
    @ns.doc(
        "confirm_totp",
        description="Confirm the enrolment with a first code: the second factor is on from "
        "now, and the answer holds your recovery codes (shown this once; keep them safe).",
    )
    @ns.expect(code_input)
    @ns.response(200, "On: your recovery codes", recovery_codes)
    @json_body_errors(ns)
    @ns.response(403, _USERS_ONLY, problem)
    @ns.response(409, "Nothing to confirm: enrol first", problem)
    @ns.response(422, "The body is not {code}, or the code is wrong", problem)
    def post(self) -> Response:
        document = checked(code_input, json_body())
        codes = second_factor().confirm(_principal(), document["code"])
        return _credential_response({"recovery_codes": codes})


@well_known.route("/jwks.json")
class Jwks(ApiResource):
    @public
    @well_known.doc(
        "get_jwks",
        description="The public keys that verify this service's tokens (RFC 7517), by `kid`. "
        "Keys being retired stay listed until every token they signed has expired.",
        security=[],
    )
    @well_known.response(200, "The key set", jwks)
    @well_known.response(400, QUERY_ERROR, problem)
    def get(self) -> Response:
        return json_response(
            encoded=dump_json(key_ring(current_app).jwks()), cache_control="public, max-age=300"
        )
