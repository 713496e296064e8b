"""Cross-reference checks of `access:`: who is named (people, `group:NAME`, `*`) and where
(environments), each located in the files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipline.config.source import PathKey
from shipline.domain.identity import IdentityError, canonical_identity

if TYPE_CHECKING:
    from shipline.config.validate import _Checker


def _members(c: _Checker, path: PathKey, entries: list[str]) -> None:
    for j, entry in enumerate(entries):
        if entry == "*":
            continue
        if entry.startswith("group:"):
            group = entry.removeprefix("group:")
            c.known((*path, j), "approver group", group, c.config.approver_groups)
            continue
        try:
            canonical_identity(entry)
        except IdentityError as exc:
            c.error((*path, j), f"{entry!r} is not a person: {exc}",
                    "a user name, group:APPROVER-GROUP, or *")  # fmt: skip


def check_access(c: _Checker) -> None:
    """People, groups and environments named under `access:` exist or can exist."""
    access = c.config.access
    if "access" not in c.source.data:
        return
    _members(c, ("access", "admins"), access.admins)
    _members(c, ("access", "viewers"), access.viewers)
    envs = {e.name for e in c.config.environments}
    for i, grant in enumerate(access.grants):
        _members(c, ("access", "grants", i, "members"), grant.members)
        for j, env in enumerate(grant.environments):
            if env != "*":
                c.known(("access", "grants", i, "environments", j), "environment", env, envs)
    if access.slack is not None:
        for slack_user, person in access.slack.users.items():
            try:
                canonical_identity(person)
            except IdentityError as exc:
                c.error(("access", "slack", "users", slack_user), f"{person!r}: {exc}",
                        "map each Slack user id to a shipline user name")  # fmt: skip
    if access.oidc is not None and not access.oidc.issuer.startswith(("https://", "http://")):
        c.error(("access", "oidc", "issuer"), "the issuer is not an address",
                "e.g. https://login.microsoftonline.com/TENANT/v2.0")  # fmt: skip
