"""Who is acting. One seam: today the configured user name; later the web server's login.

Without a server, approvals trust the local user: whoever runs the CLI says who they are.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping

from shipline.domain.identity import IdentityError, canonical_identity
from shipline.errors import UserError

USER_ENV = "SHIPLINE_USER"


def identity(raw: str, *, source: str = "--as") -> str:
    """`raw` as one canonical person's name; UserError (exit 2) saying why it cannot be one."""
    try:
        return canonical_identity(raw)
    except IdentityError as exc:
        raise UserError(
            f"{source} {raw!r}: {exc}",
            hint="user names are letters and digits with . _ - @ + ' (one script)",
        ) from None


def current_user(explicit: str | None, environ: Mapping[str, str]) -> str:
    """The acting user: explicit (--as, which may not be empty), then SHIPLINE_USER, then the
    login name; always in canonical form."""
    if explicit is not None:
        return identity(explicit)
    if environ.get(USER_ENV):
        return identity(environ[USER_ENV], source=USER_ENV)
    try:
        return identity(getpass.getuser(), source="the login name")
    except (KeyError, OSError):
        return "unknown"
