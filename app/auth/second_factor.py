"""The TOTP second factor's use cases (RFC 6238 codes from an authenticator app), free of HTTP.

Enrol: a new secret, sealed at rest with a key derived from SECRET_KEY (bound to the user's
id), shown once as an ``otpauth://`` URI. Confirm: the first code proves the app has it; the
factor is on from then, and ten single-use recovery codes are shown once (stored as keyed
hashes). Log in: after the password, ``POST /auth/login/mfa`` with the short-lived ticket and a
code (or a recovery code). No code is accepted twice: the last accepted time step is stored,
and the UPDATE that stores it only succeeds if it is newer, so two requests racing with one
code cannot both pass. Disable: needs the password and a current code again.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from app.auth import credentials, mfa
from app.auth.errors import InvalidCredentials
from app.auth.models import RecoveryCodeRow, UserRow
from app.auth.principal import Principal
from app.auth.service import AccountService, LoginResult, TokenPair
from app.auth.tokens import MFA_PENDING, decode
from app.core.errors import ApiProblem, ProblemType, ValidationProblem
from app.tasks.models import utc_now

RECOVERY_CODES = 10


class MfaStateConflict(ApiProblem):
    problem_type = ProblemType(
        slug="mfa-state-conflict",
        title="Second factor in the wrong state",
        status=409,
        description="Enrol before confirming; a second factor that is on must be disabled "
        "before enrolling again.",
    )


@dataclass(frozen=True)
class Enrolment:
    secret: str
    uri: str


class SecondFactorService:
    def __init__(self, accounts: AccountService) -> None:
        self.accounts = accounts
        self.session: Session = accounts.session
        config: Mapping[str, Any] = accounts.config
        self._issuer = str(config["MFA_ISSUER"])
        self._totp_key = mfa.derive_key(str(config["SECRET_KEY"]), mfa.PURPOSE_TOTP)
        self._recovery_key = mfa.derive_key(str(config["SECRET_KEY"]), mfa.PURPOSE_RECOVERY)

    def enrol(self, principal: Principal) -> Enrolment:
        secret = mfa.new_totp_secret()
        with self.accounts.write_transaction():
            row = self.accounts.user_row(principal, lock=True)
            if row.totp_enabled_at is not None:
                raise MfaStateConflict("A second factor is on; disable it first.")
            row.totp_secret = mfa.seal_secret(
                secret, key=self._totp_key, associated_data=str(row.id)
            )
            row.totp_last_step = None
            self.accounts.audit("user.mfa_enrolment_started", row.id, {})
        return Enrolment(
            secret, mfa.provisioning_uri(secret, account=row.email, issuer=self._issuer)
        )

    def confirm(self, principal: Principal, code: str) -> list[str]:
        """Turn the factor on with a first code; the recovery codes, shown this once."""
        codes = mfa.new_recovery_codes(RECOVERY_CODES)
        with self.accounts.write_transaction():
            row = self.accounts.user_row(principal, lock=True)
            if row.totp_secret is None or row.totp_enabled_at is not None:
                raise MfaStateConflict("Nothing to confirm: enrol first.")
            try:
                self._use_code(row, code)
            except InvalidCredentials:  # signed in already: a wrong code is bad input here
                raise ValidationProblem(
                    [{"pointer": "#/code", "detail": "is not the app's current code"}]
                ) from None
            row.totp_enabled_at = utc_now()
            self._replace_recovery_codes(row.id, codes)
            self.accounts.audit("user.mfa_enabled", row.id, {})
        return codes

    def disable(self, principal: Principal, password: str, code: str) -> None:
        with self.accounts.write_transaction():
            row = self.accounts.user_row(principal, lock=True)
            if row.totp_enabled_at is None:
                raise MfaStateConflict("No second factor is on.")
            if not credentials.verify_password(self.accounts.hasher, row.password_hash, password):
                raise InvalidCredentials("The password is wrong.")
            self._use_code(row, code)
            row.totp_secret = row.totp_enabled_at = row.totp_last_step = None
            self.session.execute(delete(RecoveryCodeRow).where(RecoveryCodeRow.user_id == row.id))
            self.accounts.audit("user.mfa_disabled", row.id, {})

    def login(self, ticket: str, code: str | None, recovery_code: str | None) -> LoginResult:
        """The second step of a log-in: the ticket from the first, and a code."""
        claims = decode(ticket, MFA_PENDING)
        user_id: uuid.UUID = claims["user_id"]
        with self.accounts.write_transaction():
            row = self.session.get(UserRow, user_id, with_for_update=True)
            if row is None or row.totp_enabled_at is None:
                raise InvalidCredentials("The code is not valid.")
            try:
                if recovery_code is not None:
                    self._use_recovery_code(row.id, recovery_code)
                    used = "recovery_code"
                else:
                    self._use_code(row, code or "")
                    used = "totp"
            except InvalidCredentials:
                failed = True
            else:
                failed = False
        if failed:
            self.accounts.audit_in_own_transaction(
                "user.login_failed", user_id, {"reason": "wrong_second_factor"}
            )
            raise InvalidCredentials("The code is not valid.")
        pair: TokenPair = self.accounts.start_session(user_id, "user.logged_in", factor=used)
        return LoginResult(tokens=pair)

    # --- helpers ---------------------------------------------------------------------------------

    def _use_code(self, row: UserRow, code: str) -> None:
        """Accept ``code`` once: its time step must be newer than the last one accepted."""
        try:
            secret = mfa.open_secret(
                row.totp_secret or "", key=self._totp_key, associated_data=str(row.id)
            )
        except mfa.SealedSecretError:
            raise InvalidCredentials("The code is not valid.") from None
        step = mfa.verify_totp(secret, code, last_used_step=row.totp_last_step)
        if step is None:
            raise InvalidCredentials("The code is not valid.")
        claimed = self.session.execute(
            update(UserRow)
            .where(
                UserRow.id == row.id,
                or_(UserRow.totp_last_step.is_(None), UserRow.totp_last_step < step),
            )
            .values(totp_last_step=step)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # another request used this step first
            raise InvalidCredentials("The code is not valid.")
        row.totp_last_step = step

    def _use_recovery_code(self, user_id: uuid.UUID, code: str) -> None:
        stored = list(
            self.session.scalars(
                select(RecoveryCodeRow.code_hash).where(RecoveryCodeRow.user_id == user_id)
            )
        )
        matched = mfa.match_recovery_code(code, stored, key=self._recovery_key)
        if matched is None:
            raise InvalidCredentials("The code is not valid.")
        removed = self.session.execute(
            delete(RecoveryCodeRow).where(
                RecoveryCodeRow.user_id == user_id, RecoveryCodeRow.code_hash == matched
            )
        )
        if removed.rowcount != 1:
            raise InvalidCredentials("The code is not valid.")

    def _replace_recovery_codes(self, user_id: uuid.UUID, codes: list[str]) -> None:
        now = utc_now()
        self.session.execute(delete(RecoveryCodeRow).where(RecoveryCodeRow.user_id == user_id))
        for code in codes:
            self.session.add(
                RecoveryCodeRow(
                    user_id=user_id,
                    code_hash=mfa.hash_recovery_code(code, key=self._recovery_key),
                    created_at=now,
                )
            )
