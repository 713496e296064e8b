"""A workspace: one loaded configuration, its state folder, its secret stores and its masker."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from shipline.domain.masking import Masker
from shipline.domain.models import Config
from shipline.domain.ports import SecretStore
from shipline.engine.locations import database_url_of, state_dir_of
from shipline.engine.pipelines import target_settings
from shipline.engine.wiring import StoreContext, check_target, load_config, open_store
from shipline.errors import NotFoundError, ShiplineError, UserError

if TYPE_CHECKING:  # the store (SQLAlchemy) loads only for commands that use it
    from shipline.engine.wiring import SqlAuditLog

LOCAL_STORE_TYPES = {"file", "env", "memory"}  # read without a network
SERVER_CONFIG_ENV = "SHIPLINE_SERVER_CONFIG"  # the configuration `shipline server` serves


@dataclass
class Workspace:
    """Everything a command needs about the project it runs in."""

    config_path: Path
    config: Config
    environ: Mapping[str, str]
    masker: Masker = field(default_factory=Masker)
    _stores: dict[str, SecretStore] = field(default_factory=dict)
    _audit: SqlAuditLog | None = None
    loaded_from: bytes | None = None  # the file's content when it was loaded (when known)

    @classmethod
    def open(
        cls,
        config_path: Path,
        environ: Mapping[str, str] | None = None,
        masker: Masker | None = None,
    ) -> Workspace:
        """Load the configuration at `config_path`."""
        env = dict(os.environ if environ is None else environ)
        try:
            text: bytes | None = config_path.read_bytes()
        except OSError:
            text = None  # load_config says what is wrong with the path
        loaded = cls(config_path, load_config(config_path), env, masker or Masker())
        loaded.loaded_from = text
        return loaded

    def sibling(self) -> Workspace:
        """A workspace of the same loaded configuration (not read again) with secret stores and
        an audit trail of its own, for another thread."""
        twin = Workspace(self.config_path, self.config, self.environ, self.masker)
        twin.loaded_from = self.loaded_from
        return twin

    def changed_on_disk(self) -> bool:
        """Whether the configuration file says something else now than when it was loaded (a
        long-running worker keeps what it loaded; a deploy says so in its log)."""
        if self.loaded_from is None:
            return False
        try:
            return self.config_path.read_bytes() != self.loaded_from
        except OSError:
            return True

    @property
    def root(self) -> Path:
        """The project folder: where the configuration file is."""
        return self.config_path.resolve().parent

    def target_settings(self, environment: str) -> dict[str, str | None]:
        """What `environment`'s target is built with (paths resolved against the project)."""
        return target_settings(self.config, self.config.environment(environment), self.root)

    def check_target(self, environment: str) -> None:
        """Refuse (exit 2) a run of `environment` whose target could not be built from its
        settings (`wiring.check_target`)."""
        check_target(self.config, environment, self.state_dir, self.target_settings(environment))

    @property
    def state_dir(self) -> Path:
        """`.shipline/` beside the configuration, or SHIPLINE_HOME."""
        return state_dir_of(self.config_path, self.environ)

    @property
    def database_url(self) -> str:
        """The state store: SHIPLINE_DATABASE_URL, or SQLite under the state folder."""
        return database_url_of(self.config_path, self.environ)

    @property
    def audit(self) -> SqlAuditLog:
        """The project's audit trail, in the state store (one chain for every worker and CLI).

        Records an earlier shipline kept in `.shipline/audit.jsonl` are taken over once."""
        if self._audit is None:
            from shipline.engine.wiring import SqlAuditLog, SqlStateStore, audit_key

            key, made = audit_key(self.state_dir, self.environ)
            self._audit = SqlAuditLog(SqlStateStore.connect(self.database_url), key)
            self._audit.import_file(self.state_dir / "audit.jsonl")
            if made:
                self._audit.reseal()  # a trail from before keys existed is sealed once
        return self._audit

    def learn_secrets(self, local: bool | None = None) -> list[str]:
        """Read every secret of the configured stores once, so that the masker knows each
        value (a long-running server masks what it shows); the stores it could not read.
        `local`: only the stores on this machine (True), only the others (False), all (None)."""
        unread: list[str] = []
        for name, spec in self.config.secret_stores.items():
            if local is not None and (spec.type in LOCAL_STORE_TYPES) != local:
                continue
            try:
                store = self.store(name)
                for secret in store.names():
                    store.get(secret)
            except ShiplineError:
                unread.append(name)
        return unread

    def store(self, name: str | None = None) -> SecretStore:
        """The secret store `name` (default: the configured default), built once."""
        chosen = name or self.config.default_secret_store
        if not chosen:
            raise UserError("no secret store configured", hint="add 'secretStores' to the config")
        if chosen not in self._stores:
            spec = self.config.secret_stores.get(chosen)
            if spec is None:
                known = ", ".join(sorted(self.config.secret_stores)) or "none"
                raise NotFoundError(f"unknown secret store '{chosen}'", hint=f"known: {known}")
            settings = {k: v for k, v in (spec.model_extra or {}).items()}
            context = StoreContext(self.state_dir, self.environ)
            self._stores[chosen] = _MaskingStore(
                open_store(chosen, spec.type, settings, context), self.masker
            )
        return self._stores[chosen]


class _MaskingStore:
    """Wraps a store so that every value read or written is registered with the masker."""

    def __init__(self, inner: SecretStore, masker: Masker) -> None:
        self._inner = inner
        self._masker = masker

    def get(self, name: str) -> str | None:
        value = self._inner.get(name)
        self._masker.add(value)
        return value

    def set(self, name: str, value: str) -> None:
        self._masker.add(value)
        self._inner.set(name, value)

    def delete(self, name: str) -> bool:
        return self._inner.delete(name)

    def names(self) -> list[str]:
        return self._inner.names()

    def name_problem(self, name: str) -> str | None:
        return self._inner.name_problem(name)
