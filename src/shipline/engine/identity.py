"""Who is acting. One seam: today the configured user name; later the web server's login."""

from __future__ import annotations

import getpass
from collections.abc import Mapping

USER_ENV = "SHIPLINE_USER"


def current_user(explicit: str | None, environ: Mapping[str, str]) -> str:
    """The acting user: explicit (--as), then SHIPLINE_USER, then the login name."""
    if explicit:
        return explicit
    if environ.get(USER_ENV):
        return environ[USER_ENV]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
