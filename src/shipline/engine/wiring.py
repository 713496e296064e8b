"""The one place the engine meets adapters: deploy targets by kind, metric sources, and the
concrete adapters the engine's other modules use (the state store, git, the build cache,
builders and scanners, notifiers, configuration and secret stores). An import-linter contract
keeps every other engine module from importing an adapter package directly.

Target kinds come from the `shipline.targets` entry-point group (`local`, `memory`, `fake` ship
with shipline; a plugin adds its own), so no engine module names one. A runtime builds each
target once and keeps it for the life of the process.
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipline.errors import TargetError, TechnicalError, UserError

if TYPE_CHECKING:
    from collections.abc import Callable
    from importlib.metadata import EntryPoint

    from shipline.ci import scanners
    from shipline.ci.builders import BUILDERS, BuildFailed
    from shipline.ci.cache import DependencyCache
    from shipline.ci.git import changed_paths, rev_parse
    from shipline.config.loader import load_config, load_config_files
    from shipline.config.locate import find_config
    from shipline.domain.deploy import ServiceState
    from shipline.domain.models import CanaryMetrics, Config
    from shipline.domain.ports import (
        DeployTarget,
        InfraTool,
        MetricSource,
        TargetFactory,
        TargetView,
        TargetViewFactory,
    )
    from shipline.notify.slack import SlackNotifier
    from shipline.notify.webhook import WebhookNotifier
    from shipline.secrets.base import StoreContext, open_store
    from shipline.store.accounts import SqlAccounts
    from shipline.store.audit import SqlAuditLog, audit_key
    from shipline.store.lite import SqliteRunReader, sqlite_path
    from shipline.store.pool import ping_when_idle
    from shipline.store.records import RunRecord
    from shipline.store.sql import SqlStateStore, migration_lock

# Adapters are imported when first used, so that a command pays only for the ones it needs
# (`ci tag` never loads the state store; `runs list` never loads the builders).
_LAZY = {
    "scanners": ("shipline.ci.scanners", None),
    "BUILDERS": ("shipline.ci.builders", "BUILDERS"),
    "BuildFailed": ("shipline.ci.builders", "BuildFailed"),
    "DependencyCache": ("shipline.ci.cache", "DependencyCache"),
    "changed_paths": ("shipline.ci.git", "changed_paths"),
    "rev_parse": ("shipline.ci.git", "rev_parse"),
    "find_config": ("shipline.config.locate", "find_config"),
    "load_config": ("shipline.config.loader", "load_config"),
    "load_config_files": ("shipline.config.loader", "load_config_files"),
    "SlackNotifier": ("shipline.notify.slack", "SlackNotifier"),
    "WebhookNotifier": ("shipline.notify.webhook", "WebhookNotifier"),
    "StoreContext": ("shipline.secrets.base", "StoreContext"),
    "open_store": ("shipline.secrets.base", "open_store"),
    "SqlAccounts": ("shipline.store.accounts", "SqlAccounts"),
    "SqlAuditLog": ("shipline.store.audit", "SqlAuditLog"),
    "audit_key": ("shipline.store.audit", "audit_key"),
    "RunRecord": ("shipline.store.records", "RunRecord"),
    "SqliteRunReader": ("shipline.store.lite", "SqliteRunReader"),
    "sqlite_path": ("shipline.store.lite", "sqlite_path"),
    "SqlStateStore": ("shipline.store.sql", "SqlStateStore"),
    "migration_lock": ("shipline.store.sql", "migration_lock"),
    "ping_when_idle": ("shipline.store.pool", "ping_when_idle"),
}


def __getattr__(name: str) -> Any:
    """Load an adapter's name on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


__all__ = [
    "BUILDERS",
    "GROUP",
    "BuildFailed",
    "DependencyCache",
    "RunRecord",
    "SlackNotifier",
    "SqlAccounts",
    "SqlAuditLog",
    "SqlStateStore",
    "SqliteRunReader",
    "StoreContext",
    "WebhookNotifier",
    "audit_key",
    "build_target",
    "changed_paths",
    "check_target",
    "find_config",
    "infra_tool",
    "load_config",
    "load_config_files",
    "metric_source",
    "migration_lock",
    "open_store",
    "ping_when_idle",
    "require_target",
    "rev_parse",
    "scanners",
    "seal",
    "sqlite_path",
    "target_kinds",
    "unseal",
    "view_target",
]

GROUP = "shipline.targets"
VIEWS = "shipline.target_views"
CHECKS = "shipline.target_checks"  # a kind's check of its settings, before a run is submitted


@functools.cache
def _entry_points() -> dict[str, dict[str, EntryPoint]]:
    """Every group's entry points, by name, read once per process: reading them scans every
    installed distribution, milliseconds for one group as for all of them, which a server
    asking per request, or a submission asking for three groups, would pay each time."""
    from importlib.metadata import distributions

    groups: dict[str, dict[str, EntryPoint]] = {}
    for dist in distributions():  # in the path's order: the first of a name wins, as imports do
        for ep in dist.entry_points:
            groups.setdefault(ep.group, {}).setdefault(ep.name, ep)
    return groups


def _plugins(group: str) -> dict[str, EntryPoint]:
    """The entry points of `group`, by name."""
    return _entry_points().get(group, {})


def target_kinds() -> dict[str, EntryPoint]:
    """Every installed target kind, by name."""
    return dict(_plugins(GROUP))


def require_target(config: Config, environment: str) -> str:
    """The kind of `environment`'s target; a UserError (exit 2) when none is installed for it,
    so that a run is refused when submitted, not after its approvals."""
    env = config.environment(environment)
    kind = config.targets[env.target].type
    kinds = target_kinds()
    if kind not in kinds:
        raise UserError(
            f"environment '{env.name}' deploys to target '{env.target}' of type '{kind}',"
            " which cannot run here: no such target type is installed",
            hint=f"installed target types: {', '.join(sorted(kinds)) or 'none'}",
        )
    return kind


def check_target(
    config: Config, environment: str, state_dir: Path, settings: dict[str, str | None]
) -> None:
    """Refuse (UserError, exit 2) an environment whose target could not be built from its
    settings (a kubernetes target without a kubeconfig, or on another cluster's context): the
    kind's `shipline.target_checks` entry point, when it has one, reads them without building
    the target or reaching it. A submission is refused so, not failed at its deploy step."""
    env = config.environment(environment)
    kind = config.targets[env.target].type
    found = _plugins(CHECKS).get(kind)
    if found is None:
        return
    from shipline.domain.ports import TargetContext

    checker: Callable[[TargetContext], None] = found.load()
    try:
        checker(TargetContext(kind, state_dir, settings))
    except TargetError as exc:
        raise UserError(
            f"environment '{env.name}': its target '{env.target}' cannot be used: {exc.message}",
            hint=exc.hint,
        ) from None


def build_target(kind: str, state_dir: Path, settings: dict[str, str | None]) -> DeployTarget:
    """A new target of `kind` for the state folder."""
    found = target_kinds().get(kind)
    if found is None:
        raise UserError(f"target type '{kind}' is not installed")
    try:
        factory: TargetFactory = found.load()
    except (ImportError, AttributeError) as exc:
        raise TargetError(f"target type '{kind}' could not be loaded: {exc}") from exc
    from shipline.domain.ports import TargetContext

    return factory(TargetContext(kind, state_dir, settings))


class _LiveView:
    """A target that any process can ask directly (no worker holds it) is its own view."""

    def __init__(self, target: DeployTarget) -> None:
        self._target = target

    def observe(self, environment: str, service: str) -> ServiceState:
        return self._target.observe(environment, service)

    def live(self) -> bool:
        return True


def view_target(kind: str, state_dir: Path, settings: dict[str, str | None]) -> TargetView:
    """How a process that does not run the target sees it: the kind's registered view (a target
    that lives in a worker), or the target itself."""
    view = _plugins(VIEWS).get(kind)
    if view is None:
        return _LiveView(build_target(kind, state_dir, settings))
    from shipline.domain.ports import TargetContext

    factory: TargetViewFactory = view.load()
    return factory(TargetContext(kind, state_dir, settings))


def infra_tool(kind: str) -> InfraTool:
    """The infrastructure tool `kind` (`shipline.infra_tools` entry points: terraform, fake)."""
    found = _plugins("shipline.infra_tools").get(kind)
    if found is None:
        raise UserError(f"infrastructure tool '{kind}' is not installed")
    tool: InfraTool = found.load()()
    return tool


def seal(data: bytes, state_dir: Path) -> bytes:
    """`data` encrypted with the project's secret key (a saved plan holds variable values)."""
    from cryptography.fernet import Fernet

    from shipline.secrets.file import load_or_create_key

    return Fernet(load_or_create_key(state_dir / "secret.key", os.environ)).encrypt(data)


def unseal(token: bytes, state_dir: Path) -> bytes:
    """What `seal` encrypted; a TechnicalError when the key changed."""
    from cryptography.fernet import Fernet, InvalidToken

    from shipline.secrets.file import load_or_create_key

    try:
        key = load_or_create_key(state_dir / "secret.key", os.environ)
        return Fernet(key).decrypt(token)
    except (InvalidToken, ValueError) as exc:
        raise TechnicalError(
            "the saved plan cannot be decrypted: the secret key changed", hint="plan again"
        ) from exc


def metric_source(
    metrics: CanaryMetrics, target_metrics: MetricSource, environment: str, service: str
) -> MetricSource:
    """Where a canary's samples come from: the target's own counters, or Prometheus."""
    if metrics.source == "prometheus" and metrics.url:
        from shipline.targets.local.metrics import PrometheusMetrics

        return PrometheusMetrics(
            metrics.url, {"environment": environment, "service": service}, series=metrics.series
        )
    return target_metrics
