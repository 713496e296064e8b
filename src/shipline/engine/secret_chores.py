"""Secret chores on a workspace: find and fill the secrets an environment needs."""

from __future__ import annotations

import secrets as random_source

from shipline.domain.models import PipelineKind
from shipline.domain.ports import SecretStore
from shipline.domain.scopes import Scope, layers
from shipline.domain.variables import merge_layers
from shipline.engine.variables import find_scope
from shipline.engine.workspace import Workspace
from shipline.errors import UserError


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


def _store_name(ws: Workspace, store: str | None) -> str:
    return store or ws.config.default_secret_store or ""


def checked_store(ws: Workspace, name: str, store: str | None) -> SecretStore:
    """The store `store`, once it accepts `name` as a secret's name (UserError otherwise)."""
    chosen = ws.store(store)
    problem = chosen.name_problem(name)
    if problem:
        raise UserError(
            f"invalid secret name {name!r}: {problem}",
            hint="names look like DEV-jwtSecret: a group's secretPrefix, '-', the variable",
        )
    return chosen


def set_secret(ws: Workspace, name: str, value: str, *, store: str | None, actor: str) -> str:
    """Store a secret (its name checked by the store) and audit it; returns the store's name."""
    checked_store(ws, name, store).set(name, value)
    chosen = _store_name(ws, store)
    ws.audit.append(actor, "secret.set", name=name, store=chosen)
    return chosen


def remove_secret(ws: Workspace, name: str, *, store: str | None, actor: str) -> str:
    """Remove a secret (exit 2 when there is none) and audit it; returns the store's name."""
    from shipline.errors import NotFoundError

    chosen = _store_name(ws, store)
    if not checked_store(ws, name, store).delete(name):
        raise NotFoundError(f"no secret '{name}' in store '{chosen}'")
    ws.audit.append(actor, "secret.rm", name=name, store=chosen)
    return chosen


def generate_audited(ws: Workspace, env: str, *, actor: str) -> list[tuple[str, str]]:
    """`generate_missing`, audited."""
    made = generate_missing(ws, env)
    ws.audit.append(actor, "secret.generate", environment=env, names=[m[1] for m in made])
    return made


def audit_reveal(ws: Workspace, *, actor: str, environment: str, service: str | None,
                 names: list[str]) -> None:  # fmt: skip
    """Record that secret values were shown to `actor`."""
    ws.audit.append(actor, "vars.reveal", environment=environment, service=service, variables=names)
