"""Role checks for the server: every endpoint asks here, and a refusal names what is missing."""

from __future__ import annotations

from shipline.domain.access import PERMISSIONS, Principal, allowed
from shipline.domain.models import Config, Permission
from shipline.errors import PermissionDenied


def require(
    config: Config, principal: Principal, permission: Permission, environment: str | None = None
) -> None:
    """PermissionDenied unless `principal` may `permission` on `environment` (None: on one)."""
    if allowed(config, principal, permission, environment):
        return
    where = {None: "", "*": " everywhere"}.get(environment, f" on {environment}")
    person = Principal(principal.name, admin=principal.admin)
    via = " with this token's scopes" if allowed(config, person, permission, environment) else ""
    raise PermissionDenied(f"{principal.name} may not {permission}{where}{via}")


def permissions(config: Config, principal: Principal) -> dict[str, list[str]]:
    """What the principal may do, per environment of the ladder."""
    return {
        env.name: [p for p in PERMISSIONS if allowed(config, principal, p, env.name)]
        for env in config.environments
    }


def may(
    config: Config, principal: Principal, permission: Permission, environment: str | None
) -> bool:
    """Whether `principal` may `permission` on `environment` (runs without one need it on any)."""
    return allowed(config, principal, permission, environment)
