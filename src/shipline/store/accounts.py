"""People, personal API tokens and browser sessions in the state store.

Only digests of tokens and session cookies are kept: a copy of the database gives no one a way
in. Password hashes are computed by the caller (argon2), never here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from shipline.errors import StoreError
from shipline.store.schema import api_tokens, users, web_sessions
from shipline.store.sql import SqlStateStore, _rows, utcnow


class SqlAccounts:
    """The server's identities, on the same database as the runs."""

    def __init__(self, store: SqlStateStore) -> None:
        self.store = store

    def _exec(self, statement: Any) -> Any:
        try:
            with self.store.engine.begin() as conn:
                return conn.execute(statement)
        except sa.exc.IntegrityError as exc:
            raise StoreError("that already exists") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"state store write failed: {type(exc).__name__}") from exc

    def _read(self, query: Any) -> list[dict[str, Any]]:
        try:
            with self.store.engine.connect() as conn:
                return _rows(conn.execute(query))
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"state store read failed: {type(exc).__name__}") from exc

    # people -------------------------------------------------------------------------------

    def user(self, name: str) -> dict[str, Any] | None:
        """The person called `name`, or None."""
        found = self._read(sa.select(users).where(users.c.name == name))
        return found[0] if found else None

    def users(self) -> list[dict[str, Any]]:
        """Everyone, by name (without password hashes)."""
        query = sa.select(
            users.c.name, users.c.admin, users.c.disabled, users.c.source, users.c.created_at
        ).order_by(users.c.name)
        return self._read(query)

    def put_user(self, name: str, *, password_hash: str | None, admin: bool, source: str) -> bool:
        """Create the person, or update their password and admin flag; True when created."""
        existing = self.user(name)
        if existing is None:
            self._exec(
                users.insert().values(
                    name=name, password_hash=password_hash, admin=admin, disabled=False,
                    source=source, created_at=utcnow(),
                )
            )  # fmt: skip
            return True
        values: dict[str, Any] = {"admin": admin}
        if password_hash is not None:
            values["password_hash"] = password_hash
        self._exec(users.update().where(users.c.name == name).values(**values))
        return False

    def set_disabled(self, name: str, disabled: bool) -> bool:
        """Disable (or enable) a person; False when there is no such person."""
        done = self._exec(users.update().where(users.c.name == name).values(disabled=disabled))
        return bool(done.rowcount)

    # tokens -------------------------------------------------------------------------------

    def add_token(
        self, user: str, label: str, digest: str, scopes: list[str], expires_at: datetime
    ) -> int:
        """Record a token by its digest; its id."""
        done = self._exec(
            api_tokens.insert().values(
                user_name=user, label=label, digest=digest, scopes=scopes,
                created_at=utcnow(), expires_at=expires_at,
            )
        )  # fmt: skip
        return int(done.inserted_primary_key[0])

    def token(self, digest: str) -> dict[str, Any] | None:
        """The token with this digest, or None."""
        found = self._read(sa.select(api_tokens).where(api_tokens.c.digest == digest))
        return found[0] if found else None

    def touch_token(self, token_id: int) -> None:
        """Note that a token was just used."""
        self._exec(
            api_tokens.update().where(api_tokens.c.id == token_id).values(last_used_at=utcnow())
        )

    def tokens(self, user: str | None = None) -> list[dict[str, Any]]:
        """Tokens (without digests), newest first; one person's when `user` is given."""
        query = sa.select(*[c for c in api_tokens.c if c.name != "digest"]).order_by(
            api_tokens.c.id.desc()
        )
        if user is not None:
            query = query.where(api_tokens.c.user_name == user)
        return self._read(query)

    def revoke_token(self, token_id: int, user: str | None = None) -> bool:
        """Revoke a token (of `user`, when given) at once; False when there is none to revoke."""
        statement = (
            api_tokens.update()
            .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        if user is not None:
            statement = statement.where(api_tokens.c.user_name == user)
        return bool(self._exec(statement).rowcount)

    # sessions -----------------------------------------------------------------------------

    def add_session(self, digest: str, user: str, csrf: str, expires_at: datetime) -> None:
        """Record a browser session by its cookie's digest."""
        self._exec(
            web_sessions.insert().values(
                digest=digest, user_name=user, csrf=csrf, created_at=utcnow(),
                expires_at=expires_at,
            )
        )  # fmt: skip

    def session(self, digest: str) -> dict[str, Any] | None:
        """The session with this digest, or None."""
        found = self._read(sa.select(web_sessions).where(web_sessions.c.digest == digest))
        return found[0] if found else None

    def end_session(self, digest: str) -> None:
        """Forget a session (sign-out)."""
        self._exec(web_sessions.delete().where(web_sessions.c.digest == digest))

    def end_sessions_of(self, user: str) -> None:
        """Forget every session of a person (disabled, or password changed)."""
        self._exec(web_sessions.delete().where(web_sessions.c.user_name == user))
