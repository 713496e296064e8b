"""Secret chores on a workspace: find and fill the secrets an environment needs."""

from __future__ import annotations

import secrets as random_source

from shipline.domain.models import PipelineKind
from shipline.domain.variables import merge_layers
from shipline.engine.variables import Scope, find_scope, layers
from shipline.engine.workspace import Workspace


def required_secrets(ws: Workspace, env: str) -> list[tuple[str, str, bool]]:
    """(store, key, optional) of every secret the environment's services resolve."""
    config = ws.config
    base = find_scope(config, env, None, "deploy")
    found: dict[tuple[str, str], bool] = {}
    for service in config.services or [None]:  # type: ignore[list-item]
        scope = Scope(base.environment, service, PipelineKind.DEPLOY)
        for var in merge_layers(layers(config, scope, {})).values():
            if var.secret and var.store and var.ref:
                key = (var.store, var.ref)
                found[key] = found.get(key, True) and var.optional
    return sorted((store, ref, optional) for (store, ref), optional in found.items())


def generate_missing(ws: Workspace, env: str) -> list[tuple[str, str]]:
    """Give each missing required secret of `env` a random value; return (store, key) pairs."""
    made = []
    for store_name, key, optional in required_secrets(ws, env):
        if optional:
            continue
        store = ws.store(store_name)
        if not store.get(key):
            store.set(key, random_source.token_urlsafe(32))
            made.append((store_name, key))
    return made
