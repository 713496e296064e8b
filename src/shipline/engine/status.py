"""`status`: which version of each service runs where, its replicas and health, and its last
deploy, asked of each environment's target (or the view of it another process has)."""

from __future__ import annotations

from typing import Any

from shipline.domain.health import assess_status
from shipline.domain.ports import TargetView
from shipline.engine.pipelines import find_environment
from shipline.engine.reads import recent_runs
from shipline.engine.wiring import target_kinds, view_target
from shipline.engine.workspace import Workspace
from shipline.errors import ShiplineError


def _last_deploys(ws: Workspace) -> dict[str, dict[str, Any]]:
    runs = recent_runs(ws.database_url, limit=500)
    last: dict[str, dict[str, Any]] = {}
    for run in reversed(runs):
        if run.pipeline == "deploy" and run.environment:
            environments = [run.environment]
        elif run.pipeline == "promote":
            environments = list(run.params.get("environments", []))
        else:
            continue
        for environment in environments:
            for name in run.services:
                last[f"{environment}/{name}"] = {
                    "run": run.id,
                    "phase": run.phase,
                    "at": run.requested_at.isoformat(),
                    "pipeline": run.pipeline,
                    "release": run.params.get("release"),
                }
    return last


def service_status(ws: Workspace, env: str | None = None) -> list[dict[str, Any]]:
    """One row per (environment, service) that is deployed or was asked to be."""
    only = find_environment(ws.config, env).name if env else None
    last = _last_deploys(ws)
    installed = target_kinds()
    views: dict[str, TargetView | None] = {}
    rows: list[dict[str, Any]] = []
    for environment in ws.config.ladder_environments():
        if only and environment.name != only:
            continue
        target = ws.config.targets[environment.target]
        if environment.target not in views:
            try:  # a target that cannot be reached here (no kubeconfig) is "unknown", not fatal
                views[environment.target] = (
                    view_target(target.type, ws.state_dir, ws.target_settings(environment.name))
                    if target.type in installed
                    else None
                )
            except ShiplineError:
                views[environment.target] = None
        view = views[environment.target]
        for service in ws.config.services:
            key = f"{environment.name}/{service.name}"
            try:
                seen = view.observe(environment.name, service.name) if view else None
            except ShiplineError:  # not deployed there, or the target cannot be asked now
                seen = None
            if seen is None and key not in last:
                continue
            live = view.live() if view else True
            ready = (seen.ready if live else 0) if seen else None
            rows.append(
                {
                    "environment": environment.name,
                    "service": service.name,
                    "version": seen.version if seen else None,
                    "ready": ready,
                    "desired": seen.desired if seen else None,
                    "restarts": seen.restarts if seen else None,
                    "health": assess_status(ready, seen.desired if seen else None, live=live)
                    if seen
                    else ("stopped" if live else "stopped (no worker)")  # deployed once; down
                    if view is not None
                    else "unknown",
                    "address": seen.address if seen else None,
                    "canary": seen.canary if seen else None,
                    "weights": dict(seen.weights) if seen and seen.canary else None,
                    "revision": seen.revision if seen else None,
                    "lastDeploy": last.get(key),
                    "release": (last.get(key) or {}).get("release"),
                }
            )
    return rows
