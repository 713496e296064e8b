"""People and how they prove who they are: passwords (argon2), personal API tokens (kept as
SHA-256 digests, scoped, expiring, revocable at once) and browser sessions. The server and the
CLI call this; every change to a person or a token is audited with the verified actor."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shipline.domain.access import Principal, scope_problem
from shipline.domain.identity import IdentityError, canonical_identity
from shipline.engine.reads import as_utc
from shipline.engine.wiring import SqlAccounts, SqlAuditLog
from shipline.errors import NotAuthenticated, NotFoundError, TooManyAttempts, UserError

TOKEN_PREFIX = "shp_"
SESSION_HOURS = 12
MAX_TOKEN_DAYS = 366
MIN_PASSWORD = 12
LOGIN_WINDOW_SECONDS = 300.0
LOGIN_FAILURES_ALLOWED = 5


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()


def person(raw: str) -> str:
    """A person's canonical name, or a UserError saying why it cannot be one."""
    try:
        return canonical_identity(raw)
    except IdentityError as exc:
        raise UserError(f"not a usable name: {exc}") from exc


@dataclass
class Accounts:
    """The identities of one project's server."""

    store: SqlAccounts
    audit: SqlAuditLog
    clock: Any = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # people -------------------------------------------------------------------------------

    def add_user(self, name: str, password: str | None, *, admin: bool, actor: str) -> str:
        """Create or update a local person (password from stdin or a form, never argv)."""
        who = person(name)
        hashed = None
        if password is not None:
            if len(password) < MIN_PASSWORD:
                raise UserError(f"a password needs at least {MIN_PASSWORD} characters")
            hashed = _hasher().hash(password)
        created = self.store.put_user(who, password_hash=hashed, admin=admin, source="local")
        if not created and hashed is not None:
            self.store.end_sessions_of(who)
        self.audit.append(actor, "user.create" if created else "user.update", user=who, admin=admin)
        return who

    def disable_user(self, name: str, *, actor: str, disabled: bool = True) -> None:
        """Disable a person: their sessions end and their tokens stop working at once."""
        who = person(name)
        if not self.store.set_disabled(who, disabled):
            raise NotFoundError(f"no user '{who}'", hint="see `shipline users list`")
        self.store.end_sessions_of(who)
        self.audit.append(actor, "user.disable" if disabled else "user.enable", user=who)

    def users(self) -> list[dict[str, Any]]:
        """Everyone, without password hashes."""
        return self.store.users()

    def _active(self, name: str) -> dict[str, Any]:
        row = self.store.user(name)
        if row is None or row["disabled"]:
            raise NotAuthenticated("unknown or disabled user")
        return row

    # sign-in ------------------------------------------------------------------------------

    def _throttled(self, name: str) -> bool:
        now = self.clock()
        with self._lock:
            recent = self._failures.setdefault(name, deque())
            while recent and now - recent[0] > LOGIN_WINDOW_SECONDS:
                recent.popleft()
            return len(recent) >= LOGIN_FAILURES_ALLOWED

    def _failed(self, name: str) -> None:
        with self._lock:
            self._failures.setdefault(name, deque()).append(self.clock())

    def check_password(self, name: str, password: str, *, source: str = "") -> str:
        """The person's canonical name when the password is theirs. Five failures for one
        name within five minutes refuse further tries for the rest of that time; every
        attempt is audited (never the password)."""
        try:
            who = canonical_identity(name)
        except IdentityError:
            raise NotAuthenticated("wrong name or password") from None
        if self._throttled(who):
            self.audit.append(who, "login.throttled", source=source)
            raise TooManyAttempts("too many failed sign-ins; wait a few minutes")
        row = self.store.user(who)
        ok = False
        if row is not None and not row["disabled"] and row["password_hash"]:
            from argon2.exceptions import VerificationError

            try:
                ok = _hasher().verify(row["password_hash"], password)
            except VerificationError:
                ok = False
        if not ok:
            self._failed(who)
            self.audit.append(who, "login.failed", source=source)
            raise NotAuthenticated("wrong name or password")
        self.audit.append(who, "login.ok", source=source)
        return who

    def single_sign_on(self, name: str, *, issuer: str) -> str:
        """A person verified by the OpenID Connect provider: known from now on (not admin)."""
        who = person(name)
        row = self.store.user(who)
        if row is None:
            self.store.put_user(who, password_hash=None, admin=False, source="oidc")
            self.audit.append(who, "user.create", user=who, source="oidc", issuer=issuer)
        elif row["disabled"]:
            self.audit.append(who, "login.failed", source="oidc", reason="disabled")
            raise NotAuthenticated("this account is disabled")
        self.audit.append(who, "login.ok", source="oidc", issuer=issuer)
        return who

    # sessions -----------------------------------------------------------------------------

    def open_session(self, name: str) -> tuple[str, str]:
        """A new browser session for a verified person: (cookie value, CSRF token)."""
        cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(hours=SESSION_HOURS)
        self.store.add_session(_digest(cookie), name, csrf, expires)
        return cookie, csrf

    def session(self, cookie: str) -> tuple[Principal, str]:
        """The person behind a session cookie and the session's CSRF token."""
        row = self.store.session(_digest(cookie))
        if row is None or as_utc(row["expires_at"]) <= datetime.now(UTC):
            raise NotAuthenticated("not signed in")
        user = self._active(row["user_name"])
        return Principal(user["name"], admin=bool(user["admin"])), str(row["csrf"])

    def close_session(self, cookie: str) -> None:
        """Sign out."""
        self.store.end_session(_digest(cookie))

    # tokens -------------------------------------------------------------------------------

    def create_token(
        self, owner: str, label: str, scopes: list[str], days: int, *, actor: str
    ) -> tuple[int, str]:
        """A new personal token for `owner`: (id, the token, shown once and never again)."""
        problem = scope_problem(scopes)
        if problem:
            raise UserError(problem)
        if not 1 <= days <= MAX_TOKEN_DAYS:
            raise UserError(f"a token lives 1 to {MAX_TOKEN_DAYS} days")
        if not label.strip() or len(label) > 100:
            raise UserError("a token needs a label of 1 to 100 characters")
        self._active(owner)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(days=days)
        token_id = self.store.add_token(
            owner, label.strip(), _digest(token), sorted(set(scopes)), expires
        )
        self.audit.append(
            actor, "token.create", id=token_id, user=owner, scopes=sorted(set(scopes)), days=days
        )
        return token_id, token

    def token(self, token: str) -> Principal:
        """The person a bearer token acts for, with the token's scopes."""
        row = self.store.token(_digest(token)) if token.startswith(TOKEN_PREFIX) else None
        if row is None:
            raise NotAuthenticated("unknown token")
        if row["revoked_at"] is not None:
            raise NotAuthenticated("this token was revoked")
        if as_utc(row["expires_at"]) <= datetime.now(UTC):
            raise NotAuthenticated("this token has expired")
        user = self._active(row["user_name"])
        self.store.touch_token(int(row["id"]))
        return Principal(
            user["name"], admin=bool(user["admin"]), scopes=frozenset(row["scopes"]), via="token"
        )

    def tokens(self, owner: str | None) -> list[dict[str, Any]]:
        """Tokens (never their values), newest first."""
        return self.store.tokens(owner)

    def revoke_token(self, token_id: int, *, actor: str, owner: str | None) -> None:
        """Revoke a token: the next request with it is refused."""
        if not self.store.revoke_token(token_id, owner):
            raise NotFoundError(f"no live token {token_id}", hint="see `shipline tokens list`")
        self.audit.append(actor, "token.revoke", id=token_id)
