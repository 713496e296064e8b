"""Secrets in Azure Key Vault, through azure-keyvault-secrets (the `azure` extra).

Settings: `vaultUrl` (required). Authentication uses DefaultAzureCredential (a managed identity,
the Azure CLI login, or AZURE_CLIENT_ID / AZURE_TENANT_ID / AZURE_CLIENT_SECRET), or, with
`tokenEnv: NAME`, an access token that the CI system put in that environment variable.
`caFile` trusts a private CA (private endpoints behind a TLS-inspecting proxy).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    ResourceNotFoundError,
)
from azure.keyvault.secrets import SecretClient

from shipline.domain.secret_names import DASHED, DASHED_RULE, name_problem
from shipline.errors import ConfigError, StoreError


class _TokenCredential:
    """A credential holding one access token obtained elsewhere (e.g. by the CI system)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


class AzureKeyVaultSecretStore:
    """A SecretStore over one Key Vault."""

    def __init__(self, client: SecretClient, name: str = "azure-keyvault") -> None:
        self._client = client
        self.name = name

    @classmethod
    def build(
        cls, name: str, settings: Mapping[str, Any], context: Any
    ) -> AzureKeyVaultSecretStore:
        """A store for settings['vaultUrl'] with the default Azure credential chain."""
        url = settings.get("vaultUrl")
        if not url:
            raise ConfigError(f"secret store '{name}' needs 'vaultUrl'")
        credential: Any
        token_env = settings.get("tokenEnv")
        if token_env:
            token = context.environ.get(str(token_env))
            if not token:
                raise StoreError(
                    f"secret store '{name}': no access token", hint=f"export {token_env}=<token>"
                )
            credential = _TokenCredential(token)
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        options: dict[str, Any] = {}
        if settings.get("caFile"):
            options["connection_verify"] = str(settings["caFile"])
        if settings.get("verifyChallengeResource") is False:
            options["verify_challenge_resource"] = False
        return cls(SecretClient(vault_url=str(url), credential=credential, **options), name)

    def _fail(self, action: str, secret: str, exc: Exception) -> StoreError:
        reason = type(exc).__name__
        if isinstance(exc, ClientAuthenticationError):
            hint = "check the Azure credential and the vault's Get/List permissions"
        else:
            hint = "check that the vault is reachable from here"
        return StoreError(
            f"secret store '{self.name}': cannot {action} '{secret}' ({reason})", hint=hint
        )

    def get(self, name: str) -> str | None:
        """The current version's value, or None when the secret does not exist."""
        try:
            value: str | None = self._client.get_secret(name).value
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise self._fail("read", name, exc) from exc
        return value

    def set(self, name: str, value: str) -> None:
        """Write a new version of the secret."""
        try:
            self._client.set_secret(name, value)
        except AzureError as exc:
            raise self._fail("write", name, exc) from exc

    def delete(self, name: str) -> bool:
        """Delete the secret (soft-delete where the vault keeps deleted secrets)."""
        try:
            self._client.begin_delete_secret(name).wait()
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise self._fail("delete", name, exc) from exc
        return True

    def names(self) -> list[str]:
        """The vault's secret names, sorted."""
        try:
            return sorted(str(p.name) for p in self._client.list_properties_of_secrets())
        except AzureError as exc:
            raise self._fail("list", "*", exc) from exc

    def name_problem(self, name: str) -> str | None:
        """Key Vault names: letters, digits and '-' only."""
        return name_problem(name, DASHED, DASHED_RULE)
