"""Secrets in HashiCorp Vault's KV version 2 engine, through hvac (the `vault` extra).

Settings: `url` (required), `mount` (default `secret`), `pathPrefix` (default `shipline/`),
`tokenEnv` (default `VAULT_TOKEN`: the variable holding the token). Each secret is stored at
`<mount>/<pathPrefix><name>` with one field, `value`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import hvac
import requests
from hvac import exceptions as hvac_errors

from shipline.domain.secret_names import name_problem
from shipline.errors import ConfigError, StoreError


class VaultSecretStore:
    """A SecretStore over a Vault KV v2 mount."""

    def __init__(
        self,
        client: hvac.Client,
        *,
        mount: str = "secret",
        path_prefix: str = "shipline/",
        name: str = "vault",
    ) -> None:
        self._client = client
        self.mount = mount
        self.prefix = path_prefix
        self.name = name

    @classmethod
    def build(cls, name: str, settings: Mapping[str, Any], context: Any) -> VaultSecretStore:
        """A store for settings['url'] authenticated with the token in settings['tokenEnv']."""
        url = settings.get("url")
        if not url:
            raise ConfigError(f"secret store '{name}' needs 'url'")
        token_env = str(settings.get("tokenEnv", "VAULT_TOKEN"))
        token = context.environ.get(token_env)
        if not token:
            raise StoreError(
                f"secret store '{name}': no Vault token", hint=f"export {token_env}=<token>"
            )
        client = hvac.Client(url=str(url), token=token)
        return cls(
            client,
            mount=str(settings.get("mount", "secret")),
            path_prefix=str(settings.get("pathPrefix", "shipline/")),
            name=name,
        )

    def _fail(self, action: str, secret: str, exc: Exception) -> StoreError:
        hint = "check the token's policy" if isinstance(exc, hvac_errors.Forbidden) else None
        return StoreError(
            f"secret store '{self.name}': cannot {action} '{secret}' ({type(exc).__name__})",
            hint=hint or "check that Vault is reachable and unsealed",
        )

    def get(self, name: str) -> str | None:
        """The latest version's `value`, or None when there is none."""
        try:
            response = self._client.secrets.kv.v2.read_secret_version(
                path=self.prefix + name, mount_point=self.mount, raise_on_deleted_version=True
            )
        except hvac_errors.InvalidPath:
            return None
        except (hvac_errors.VaultError, requests.RequestException) as exc:
            raise self._fail("read", name, exc) from exc
        value = response["data"]["data"].get("value")
        return None if value is None else str(value)

    def set(self, name: str, value: str) -> None:
        """Write a new version."""
        try:
            self._client.secrets.kv.v2.create_or_update_secret(
                path=self.prefix + name, secret={"value": value}, mount_point=self.mount
            )
        except (hvac_errors.VaultError, requests.RequestException) as exc:
            raise self._fail("write", name, exc) from exc

    def delete(self, name: str) -> bool:
        """Remove every version and the metadata."""
        if self.get(name) is None:
            return False
        try:
            self._client.secrets.kv.v2.delete_metadata_and_all_versions(
                path=self.prefix + name, mount_point=self.mount
            )
        except (hvac_errors.VaultError, requests.RequestException) as exc:
            raise self._fail("delete", name, exc) from exc
        return True

    def names(self) -> list[str]:
        """The names under the prefix, sorted."""
        try:
            response = self._client.secrets.kv.v2.list_secrets(
                path=self.prefix, mount_point=self.mount
            )
        except hvac_errors.InvalidPath:
            return []
        except (hvac_errors.VaultError, requests.RequestException) as exc:
            raise self._fail("list", "*", exc) from exc
        return sorted(str(k) for k in response["data"]["keys"] if not str(k).endswith("/"))

    def name_problem(self, name: str) -> str | None:
        """Why `name` cannot be a secret's name here (None: it can)."""
        return name_problem(name)
