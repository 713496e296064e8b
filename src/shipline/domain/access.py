"""Who may do what where: the server's role rules, decided here once for every entry point.

Four permissions, each per environment: `view` (see runs, status, logs), `deploy` (start and
cancel runs), `approve` (vote on a waiting stage; the approval policy still decides whether the
vote counts), `admin` (everything, and people and tokens). A personal token carries scopes, a
subset of these; what a request may do is what the person may do *and* what the token allows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shipline.domain.identity import IdentityError, canonical_identity
from shipline.domain.models import Config, Permission

PERMISSIONS: tuple[Permission, ...] = ("view", "deploy", "approve", "admin")
ANY_ENVIRONMENT = "*"


@dataclass(frozen=True)
class Principal:
    """A verified person acting on the server: their identity, whether the user store marks
    them an administrator, and the scopes of the credential they came with (None: a browser
    session, which carries all of the person's permissions)."""

    name: str
    admin: bool = False
    scopes: frozenset[str] | None = None
    via: str = "session"


def _same(name: str, user: str) -> bool:
    """Whether a configured name is `user` (names compare in canonical form)."""
    try:
        return canonical_identity(name) == user
    except IdentityError:
        return False


def _in_group(config: Config, group: str, user: str) -> bool:
    found = config.approver_groups.get(group)
    return found is not None and any(_same(m, user) for m in found.members)


def _expand(config: Config, entries: Iterable[str], user: str) -> bool:
    """Whether `user` is among `entries`: names, `group:NAME` (an approver group), or `*`."""
    for entry in entries:
        if entry == "*" or _same(entry, user):
            return True
        if entry.startswith("group:") and _in_group(config, entry.removeprefix("group:"), user):
            return True
    return False


def _approver_of(config: Config, user: str, environment: str | None) -> bool:
    """Whether `user` sits in an approver group that `environment` (any, when None) names."""
    names: set[str] = set()
    for env in config.environments:
        if environment is not None and env.name != environment:
            continue
        if env.approvals is not None:
            names.update(env.approvals.groups)
    return any(_in_group(config, group, user) for group in names)


def person_may(
    config: Config, user: str, admin: bool, permission: Permission, environment: str | None
) -> bool:
    """Whether the person may `permission` on `environment` (None: on at least one; `*`: on
    every one, as people and tokens need)."""
    access = config.access
    if admin or _expand(config, access.admins, user):
        return True
    if permission == "view" and _expand(config, access.viewers, user):
        return True
    approving = permission == "approve" and environment != ANY_ENVIRONMENT
    if approving and _approver_of(config, user, environment):
        return True
    if not access.grants:
        return permission in ("view", "deploy")
    for grant in access.grants:
        granted = set(grant.permissions)
        if "admin" in granted:  # administering an environment is every permission there
            granted.update(PERMISSIONS)
        if granted & {"deploy", "approve"}:
            granted.add("view")
        if permission not in granted:
            continue
        envs = grant.environments
        in_env = environment is None or ANY_ENVIRONMENT in envs or environment in envs
        if in_env and _expand(config, grant.members, user):
            return True
    return False


def allowed(
    config: Config, principal: Principal, permission: Permission, environment: str | None = None
) -> bool:
    """Whether the request may `permission` on `environment`: the person's permission and,
    for a token, its scopes (a token scoped `view` cannot deploy, whoever made it)."""
    scopes = principal.scopes
    if scopes is not None and permission not in scopes and "admin" not in scopes:
        return False
    return person_may(config, principal.name, principal.admin, permission, environment)


def scope_problem(scopes: Iterable[str]) -> str | None:
    """Why a token's scopes are not acceptable, or None."""
    chosen = list(scopes)
    if not chosen:
        return "a token needs at least one scope (view, deploy, approve, admin)"
    unknown = [s for s in chosen if s not in PERMISSIONS]
    if unknown:
        return f"unknown scope {', '.join(unknown)} (known: {', '.join(PERMISSIONS)})"
    return None
