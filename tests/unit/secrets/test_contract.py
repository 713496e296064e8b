"""One contract suite for every SecretStore: the fake, the file store, Key Vault and Vault.

Key Vault and Vault cannot be reached from the test machines: their real SDK clients
(azure-keyvault-secrets, hvac) talk to local servers that speak the REST calls they make
(tests/servers/). The env store is read-only and has its own tests below.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from shipline.domain.ports import SecretStore
from shipline.errors import StoreError, UserError
from shipline.secrets.base import StoreContext, open_store
from shipline.secrets.env import EnvSecretStore
from shipline.secrets.file import FileSecretStore
from shipline.secrets.memory import MemorySecretStore
from tests.servers import keyvault, vault

KINDS = ["memory", "file", "azure-keyvault", "vault"]


class _StaticCredential:
    """A token credential for the fake vault (the real one would ask Entra ID)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(keyvault.TOKEN, 4102444800)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo(keyvault.TOKEN, 4102444800)


@pytest.fixture(params=KINDS, ids=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SecretStore]:
    kind = request.param
    if kind == "memory":
        yield MemorySecretStore()
    elif kind == "file":
        yield FileSecretStore(tmp_path / "secrets.enc", Fernet.generate_key())
    elif kind == "azure-keyvault":
        from azure.keyvault.secrets import SecretClient

        from shipline.secrets.azure_keyvault import AzureKeyVaultSecretStore

        with keyvault.key_vault_server(tmp_path) as (url, ca_file, _state):
            client = SecretClient(
                vault_url=url,
                credential=_StaticCredential(),  # type: ignore[arg-type]
                verify_challenge_resource=False,
                connection_verify=str(ca_file),
            )
            yield AzureKeyVaultSecretStore(client)
    else:
        import hvac

        from shipline.secrets.vault import VaultSecretStore

        with vault.vault_server() as (url, _state):
            yield VaultSecretStore(hvac.Client(url=url, token=vault.TOKEN))


def test_get_of_unknown_is_none(store: SecretStore) -> None:
    assert store.get("DEV-NOTHING") is None


def test_set_get_replace(store: SecretStore) -> None:
    store.set("DEV-JWT-SECRET", "first value")
    assert store.get("DEV-JWT-SECRET") == "first value"
    store.set("DEV-JWT-SECRET", "second value with ünïcode and \nnewline")
    assert store.get("DEV-JWT-SECRET") == "second value with ünïcode and \nnewline"


def test_names_are_sorted_and_never_values(store: SecretStore) -> None:
    store.set("QA-B", "value-b")
    store.set("QA-A", "value-a")
    assert store.names() == ["QA-A", "QA-B"]


def test_delete(store: SecretStore) -> None:
    store.set("DEV-X", "value-x")
    assert store.delete("DEV-X") is True
    assert store.get("DEV-X") is None
    assert store.delete("DEV-X") is False
    assert "DEV-X" not in store.names()


def test_satisfies_the_protocol(store: SecretStore) -> None:
    assert isinstance(store, SecretStore)


def test_file_store_is_encrypted_private_and_keyed(tmp_path: Path) -> None:
    context = StoreContext(tmp_path / ".shipline", {})
    store = open_store("local", "file", {}, context)
    store.set("LOCAL-JWT-SECRET", "plain-text-never-on-disk")
    data = (tmp_path / ".shipline" / "secrets.enc").read_bytes()
    assert b"plain-text-never-on-disk" not in data
    assert b"LOCAL-JWT-SECRET" not in data  # names are encrypted too
    for name in ("secrets.enc", "secret.key"):
        assert os.stat(tmp_path / ".shipline" / name).st_mode & 0o777 == 0o600
    again = open_store("local", "file", {}, context)  # same key file: readable
    assert again.get("LOCAL-JWT-SECRET") == "plain-text-never-on-disk"
    other = open_store(
        "local",
        "file",
        {},
        StoreContext(
            tmp_path / ".shipline", {"SHIPLINE_SECRET_KEY": Fernet.generate_key().decode()}
        ),
    )
    with pytest.raises(StoreError, match="cannot decrypt"):
        other.get("LOCAL-JWT-SECRET")


def test_file_store_rejects_a_bad_key(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a valid Fernet key"):
        open_store("local", "file", {}, StoreContext(tmp_path, {"SHIPLINE_SECRET_KEY": "short"}))


def test_env_store_reads_and_refuses_writes() -> None:
    store = EnvSecretStore({"SHIPLINE_SECRET_DEV_JWT_SECRET": "from-env", "OTHER": "x"})
    assert store.get("DEV-JWT-SECRET") == "from-env"
    assert store.get("DEV-MISSING") is None
    assert store.names() == ["DEV_JWT_SECRET"]
    with pytest.raises(UserError, match="read-only"):
        store.set("DEV-JWT-SECRET", "x")
    with pytest.raises(UserError, match="read-only"):
        store.delete("DEV-JWT-SECRET")


def test_key_vault_unreachable_is_a_store_error_without_value(tmp_path: Path) -> None:
    from azure.keyvault.secrets import SecretClient

    from shipline.secrets.azure_keyvault import AzureKeyVaultSecretStore

    client = SecretClient(
        vault_url="https://127.0.0.1:9",
        credential=_StaticCredential(),  # type: ignore[arg-type]
        retry_total=0,
        verify_challenge_resource=False,
    )
    store = AzureKeyVaultSecretStore(client, name="kv")
    with pytest.raises(StoreError, match="secret store 'kv': cannot write 'A'") as info:
        store.set("A", "value-that-must-not-leak")
    assert "value-that-must-not-leak" not in str(info.value)


def test_key_vault_challenge_is_answered_with_the_credential(tmp_path: Path) -> None:
    from azure.keyvault.secrets import SecretClient

    from shipline.secrets.azure_keyvault import AzureKeyVaultSecretStore

    with keyvault.key_vault_server(tmp_path) as (url, ca_file, state):
        client = SecretClient(
            vault_url=url,
            credential=_StaticCredential(),  # type: ignore[arg-type]
            verify_challenge_resource=False,
            connection_verify=str(ca_file),
        )
        state.secrets["PROD-MONGODB-URI"] = "mongodb://u:p@h/db"
        assert AzureKeyVaultSecretStore(client).get("PROD-MONGODB-URI") == "mongodb://u:p@h/db"
        assert ("GET", "/secrets/PROD-MONGODB-URI/?api-version=7.6") in state.requests or any(
            method == "GET" and "/secrets/PROD-MONGODB-URI" in path
            for method, path in state.requests
        )


def test_vault_wrong_token_is_a_store_error() -> None:
    import hvac

    from shipline.secrets.vault import VaultSecretStore

    with vault.vault_server() as (url, _state):
        store = VaultSecretStore(hvac.Client(url=url, token="wrong"), name="hv")
        with pytest.raises(StoreError, match="secret store 'hv': cannot read 'X' \\(Forbidden\\)"):
            store.get("X")


def test_vault_store_built_from_settings_reads_token_from_environment() -> None:
    with vault.vault_server() as (url, state):
        context = StoreContext(Path("."), {"MY_TOKEN": vault.TOKEN})
        store = open_store("hv", "vault", {"url": url, "tokenEnv": "MY_TOKEN"}, context)
        store.set("DEV-A", "value-a")
        assert state["shipline/DEV-A"]["data"] == {"value": "value-a"}
        with pytest.raises(StoreError, match="no Vault token"):
            open_store("hv", "vault", {"url": url}, StoreContext(Path("."), {}))
