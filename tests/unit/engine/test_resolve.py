"""Resolution of one (environment, service): precedence, permissions, secrets, cycles."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipline.config.loader import load_config
from shipline.config.source import load_source
from shipline.domain.models import Config
from shipline.engine.variables import find_scope, resolve
from shipline.errors import (
    ConfigError,
    ConfigErrors,
    NotFoundError,
    PermissionDenied,
    SecretMissing,
)
from shipline.secrets.memory import MemorySecretStore

CONFIG = """
project: demo
globalVariableGroups: [global]
stacks:
  go: {port: 8080, healthPath: /health, variableGroups: [go]}
services:
  - name: api
    stack: go
    variableGroups: [api-extra]
    variables: {level: service, onlyService: yes}
tiers:
  nonprod: {variableGroups: [tier]}
targets:
  local: {type: local}
environments:
  - name: dev
    aliases: [development]
    cluster: local
    namespace: demo-dev
    tier: nonprod
    target: local
    variableGroups: [env]
ladder: [dev]
secretStores:
  mem: {type: memory}
defaultSecretStore: mem
variableGroups:
  global: {variables: {level: global, fromGlobal: g, url: "https://$(HOST)/$(path)"}}
  tier: {variables: {level: tier, fromTier: t}}
  env:
    secretPrefix: DEV
    variables:
      level: environment
      host: dev.example.com
      dbPassword: {secret: true}
      apiToken: {secret: true, optional: true}
      dsn: "postgres://app:$(dbPassword)@db"
  go: {variables: {level: stack, path: go}}
  api-extra: {variables: {level: service-group}}
  tf-only: {pipelines: [terraform], variables: {tfState: x}}
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "shipline.yaml"
    path.write_text(CONFIG)
    return load_config(path)


def _stores(store: MemorySecretStore):  # type: ignore[no-untyped-def]
    return lambda name: store


def test_precedence_and_sources(config: Config) -> None:
    store = MemorySecretStore({"DEV-DB-PASSWORD": "pw-123456"})
    scope = find_scope(config, "dev", "api", "deploy")
    out = {v.name: v for v in resolve(config, scope, _stores(store), {"runParam": "r"})}
    assert out["level"].value == "service"
    assert out["level"].source == "service api"
    assert out["level"].overridden == ("global", "tier", "env", "go", "api-extra")
    assert (out["fromGlobal"].source, out["fromTier"].source) == ("global", "tier")
    assert out["url"].value == "https://dev.example.com/go"  # case-insensitive $(HOST)
    assert out["runParam"].source == "run parameters"
    assert out["dsn"].value == "postgres://app:pw-123456@db" and out["dsn"].secret
    assert out["apiToken"].value is None  # optional secret, not set


def test_run_parameters_win(config: Config) -> None:
    store = MemorySecretStore({"DEV-DB-PASSWORD": "pw-123456"})
    scope = find_scope(config, "development", "api", "deploy")  # alias works
    out = {v.name: v.value for v in resolve(config, scope, _stores(store), {"LEVEL": "param"})}
    assert out["LEVEL"] == "param"


@pytest.mark.parametrize("stored", [None, ""], ids=["missing", "empty"])
def test_missing_secret_names_variable_group_store_and_key(
    config: Config, stored: str | None
) -> None:
    store = MemorySecretStore({} if stored is None else {"DEV-DB-PASSWORD": stored})
    scope = find_scope(config, "dev", "api", "deploy")
    with pytest.raises(SecretMissing) as info:
        resolve(config, scope, _stores(store))
    text = str(info.value)
    state = "missing" if stored is None else "empty"
    assert (
        f"secret 'dbPassword' of group 'env' is {state} in store 'mem' (key DEV-DB-PASSWORD)"
        in text
    )
    assert "apiToken" not in text


def test_without_fetching_secrets_nothing_is_read(config: Config) -> None:
    scope = find_scope(config, "dev", None, "deploy")

    def no_store(name: str) -> MemorySecretStore:
        raise AssertionError("no store may be opened")

    out = {v.name: v for v in resolve(config, scope, no_store, fetch_secrets=False)}
    assert out["dbPassword"].secret and out["dbPassword"].value is None


def test_pipeline_permission_is_enforced(tmp_path: Path) -> None:
    path = tmp_path / "shipline.yaml"
    path.write_text(CONFIG.replace("variableGroups: [env]", "variableGroups: [env, tf-only]"))
    config = load_config(path)
    store = MemorySecretStore({"DEV-DB-PASSWORD": "pw-123456"})
    with pytest.raises(
        PermissionDenied, match="pipeline 'deploy' may not use variable group 'tf-only'"
    ):
        resolve(config, find_scope(config, "dev", "api", "deploy"), _stores(store))
    out = resolve(config, find_scope(config, "dev", "api", "terraform"), _stores(store))
    assert "tfState" in {v.name for v in out}


def test_cycle_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "shipline.yaml"
    path.write_text(
        CONFIG.replace("fromTier: t", "fromTier: $(fromGlobal)").replace(
            "fromGlobal: g", "fromGlobal: $(fromTier)"
        )
    )
    with pytest.raises(ConfigErrors) as found:
        load_config(path)  # `validate` finds it before any run, at its place
    (error,) = found.value.errors
    assert "cycle: $(fromGlobal) -> $(fromTier) -> $(fromGlobal)" in error.message
    assert error.location is not None and error.location.line > 1
    config = Config.model_validate(load_source(path).data)  # and resolution refuses it too
    with pytest.raises(ConfigError, match="cycle"):
        resolve(
            config,
            find_scope(config, "dev", None, "deploy"),
            _stores(MemorySecretStore()),
            fetch_secrets=False,
        )


@pytest.mark.parametrize(
    ("env", "service", "pipeline", "message"),
    [
        ("prod", None, "deploy", "unknown environment 'prod'"),
        ("dev", "web", "deploy", "unknown service 'web'"),
        ("dev", None, "release", "unknown pipeline 'release'"),
    ],
)
def test_unknown_names(
    config: Config, env: str, service: str | None, pipeline: str, message: str
) -> None:
    with pytest.raises(NotFoundError, match=message):
        find_scope(config, env, service, pipeline)
