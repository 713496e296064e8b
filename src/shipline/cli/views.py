"""Rows for the CLI's tables and their --json twins (the same dicts feed both)."""

from __future__ import annotations

from typing import Any

from shipline.domain.masking import MASK
from shipline.domain.models import Config
from shipline.domain.variables import ResolvedVariable


def services(config: Config) -> list[dict[str, Any]]:
    """One row per service."""
    return [
        {
            "name": s.name,
            "stack": s.stack,
            "port": config.service_port(s),
            "healthPath": config.service_health_path(s),
            "image": s.image,
            "paths": s.paths,
        }
        for s in config.services
    ]


def environments(config: Config) -> list[dict[str, Any]]:
    """One row per environment, in ladder order."""
    rows = []
    for order, env in enumerate(config.ladder_environments(), start=1):
        approvals = None
        if env.approvals:
            approvals = {
                "groups": [
                    {
                        "name": g,
                        "displayName": config.approver_groups[g].display_name or g,
                        "members": config.approver_groups[g].members,
                    }
                    for g in env.approvals.groups
                ],
                "mode": env.approvals.mode.value,
                "minimum": env.approvals.minimum,
                "timeoutMinutes": env.approvals.timeout_minutes,
            }
        rows.append(
            {
                "order": order,
                "name": env.name,
                "displayName": env.display_name,
                "aliases": env.aliases,
                "purpose": env.purpose,
                "cluster": env.cluster,
                "namespace": env.namespace,
                "tier": env.tier,
                "target": env.target,
                "targetSettings": config.targets[env.target].model_dump(
                    by_alias=True, mode="json", exclude_none=True
                )
                if env.target in config.targets
                else None,
                "strategy": env.strategy.model_dump(by_alias=True, mode="json"),
                "approvals": approvals,
                "checks": env.checks.model_dump(by_alias=True, mode="json", exclude_none=True),
            }
        )
    return rows


def approvals_text(approvals: dict[str, Any] | None) -> str:
    """'QA Lead' or 'all of CAB, CTO'."""
    if not approvals:
        return "none"
    names = ", ".join(g["displayName"] for g in approvals["groups"])
    if len(approvals["groups"]) == 1:
        return names
    mode = approvals["mode"]
    if mode == "minimum":
        return f"{approvals['minimum']} of {names}"
    return f"{mode} of {names}"


def checks_text(checks: dict[str, Any]) -> str:
    """A short summary of an environment's checks."""
    parts = []
    hours = checks.get("businessHours")
    if hours:
        parts.append(f"business hours {'; '.join(hours['windows'])} {hours['timezone']}")
    if checks.get("lock") == "latest-only":
        parts.append("latest-only lock")
    return ", ".join(parts) or "none"


def variables(resolved: list[ResolvedVariable], *, reveal: bool) -> list[dict[str, Any]]:
    """One row per variable; secret values masked unless revealed."""
    rows = []
    for v in resolved:
        value = v.value
        if v.secret and not reveal:
            value = MASK if value else None
        rows.append(
            {
                "name": v.name,
                "value": value,
                "source": v.source,
                "secret": v.secret,
                "store": v.store,
                "key": v.ref,
                "overrides": list(v.overridden),
            }
        )
    return rows
