"""Building secret stores from configuration, by entry point (`shipline.secret_stores`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from shipline.domain.ports import SecretStore
from shipline.errors import ConfigError, StoreError


@dataclass(frozen=True)
class StoreContext:
    """What a store may need when it is built: the state folder and the process environment."""

    state_dir: Path
    environ: Mapping[str, str] = field(default_factory=dict)


class StoreFactory(Protocol):
    """A SecretStore class: built from its settings and the context."""

    @classmethod
    def build(cls, name: str, settings: Mapping[str, Any], context: StoreContext) -> SecretStore:
        """A store configured by `settings` (the keys of its config entry other than `type`)."""
        ...


def _factories() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for ep in entry_points(group="shipline.secret_stores"):
        found[ep.name] = ep
    return found


def open_store(
    name: str, kind: str, settings: Mapping[str, Any], context: StoreContext
) -> SecretStore:
    """Build the store `name` of type `kind`; errors name the store, never a value."""
    if kind == "memory":
        from shipline.secrets.memory import MemorySecretStore

        return MemorySecretStore()
    entry = _factories().get(kind)
    if entry is None:
        raise ConfigError(f"secret store '{name}': unknown type '{kind}'")
    try:
        factory: StoreFactory = entry.load()
    except ImportError as exc:
        raise StoreError(
            f"secret store '{name}' ({kind}) needs a package that is not installed: {exc.name}",
            hint=f"install shipline with the '{kind.split('-', maxsplit=1)[0]}' extra",
        ) from exc
    return factory.build(name, settings, context)
