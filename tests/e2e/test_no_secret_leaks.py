"""Secrets never leak: every CLI command, with and without --json, on every store we can run.

Values and their base64 and URL-encoded forms must not appear in stdout, stderr, or any file
under the state folder other than the encrypted store (and its key).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from tests.conftest import CLI
from tests.servers import keyvault, vault

SECRETS = {
    "file": ("LOCAL-DB-PASSWORD", "file-secret-Zq8#x/y+z=="),
    "env": ("DEV-API-TOKEN", "env-secret-Kp2&w?v=1 2"),
    "kv": ("DEV-JWT-SECRET", "kv-secret-Wm5%u:t@s"),
    "hv": ("DEV-SIGNING-KEY", "vault-secret-Xr7~q'r\"p"),
}
GENERATED_STORE = "file"


def _forms(value: str) -> set[str]:
    raw = value.encode()
    out = {value, quote(value, safe=""), quote_plus(value)}
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        out |= {encoded.decode(), encoded.decode().rstrip("=")}
    return out


CONFIG = """
project: leaks
stacks:
  go: {{port: 8080, healthPath: /health}}
services:
  - name: api
    stack: go
tiers:
  nonprod: {{}}
targets:
  local: {{type: local}}
environments:
  - name: dev
    cluster: local
    namespace: leaks-dev
    tier: nonprod
    target: local
    variableGroups: [from-file, from-env, from-kv, from-vault]
ladder: [dev]
secretStores:
  file: {{type: file}}
  env: {{type: env, prefix: LEAKTEST_}}
  kv: {{type: azure-keyvault, vaultUrl: "{kv_url}", tokenEnv: KV_TOKEN, caFile: "{ca}", verifyChallengeResource: false}}
  hv: {{type: vault, url: "{vault_url}", tokenEnv: HV_TOKEN}}
defaultSecretStore: file
variableGroups:
  from-file:
    secretStore: file
    secretPrefix: LOCAL
    variables:
      dbPassword: {{secret: true}}
      generated: {{secret: true, ref: LOCAL-GENERATED}}
      dsn: "postgres://app:$(dbPassword)@db"
  from-env: {{secretStore: env, secretPrefix: DEV, variables: {{apiToken: {{secret: true}}}}}}
  from-kv: {{secretStore: kv, secretPrefix: DEV, variables: {{jwtSecret: {{secret: true}}}}}}
  from-vault: {{secretStore: hv, secretPrefix: DEV, variables: {{signingKey: {{secret: true}}}}}}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state_home: Path) -> Iterator[Path]:
    with (
        keyvault.key_vault_server(tmp_path) as (kv_url, ca, _kv),
        vault.vault_server() as (hv_url, _hv),
    ):
        path = tmp_path / "shipline.yaml"
        path.write_text(CONFIG.format(kv_url=kv_url, ca=ca, vault_url=hv_url))
        monkeypatch.setenv("SHIPLINE_CONFIG", str(path))
        monkeypatch.setenv("KV_TOKEN", keyvault.TOKEN)
        monkeypatch.setenv("HV_TOKEN", vault.TOKEN)
        monkeypatch.setenv("LEAKTEST_DEV_API_TOKEN", SECRETS["env"][1])
        yield path


def _assert_clean(text: str, values: list[str], where: str) -> None:
    for value in values:
        for form in _forms(value):
            assert form not in text, f"a secret's form appears in {where}"


def test_no_command_leaks_a_secret(project: Path, cli: CLI, state_home: Path) -> None:
    for store, (key, value) in SECRETS.items():
        if store != "env":
            result = cli("secrets", "set", key, "--store", store, stdin=value + "\n")
            assert result.code == 0, result.err
    generated = cli("secrets", "generate", "--env", "dev", "--json")
    assert generated.code == 0, generated.err
    values = [value for _, value in SECRETS.values()]
    revealed = cli("vars", "show", "--env", "dev", "--service", "api", "--reveal", "--json")
    assert revealed.code == 0, revealed.err
    shown = {row["name"]: row["value"] for row in json.loads(revealed.out)}
    for value in values:
        assert value in shown.values()  # --reveal does show them (and is audited)
    assert len(shown["generated"]) >= 32
    values.append(shown["generated"])

    commands = [
        ["validate"],
        ["services", "list"],
        ["envs", "list"],
        ["schema"],
        ["vars", "show", "--env", "dev"],
        ["vars", "show", "--env", "dev", "--service", "api"],
        ["vars", "show", "--env", "dev", "--skip-secrets"],
        ["audit", "verify"],
        ["audit", "list", "--limit", "100000"],
        ["ci", "cache", "list"],
        ["secrets", "generate", "--env", "dev"],
        *(["secrets", "list", "--store", s] for s in SECRETS),
    ]
    outputs = []
    for command in commands:
        for extra in ([], ["--json"]):
            if command == ["schema"] and extra:
                continue
            result = cli(*command, *extra)
            assert result.code == 0, (command, result.err)
            outputs.append((command + extra, result))
    # error paths too: a missing secret, an unknown store, a bad command
    assert cli("secrets", "rm", SECRETS["file"][0], "--store", "file").code == 0
    outputs.append((["vars", "show (missing)"], cli("vars", "show", "--env", "dev")))
    outputs.append(
        (
            ["secrets", "set (read-only)"],
            cli("secrets", "set", "X", "--store", "env", stdin=values[0]),
        )
    )
    outputs.append((["bad"], cli("vars", "show", "--env", "nope")))
    for command, result in outputs:
        _assert_clean(result.out, values, f"stdout of {command}")
        _assert_clean(result.err, values, f"stderr of {command}")

    files = [p for p in state_home.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"secrets.enc", "secret.key", "state.db"}
    for path in files:
        if path.name in {"secrets.enc", "secret.key"}:
            continue
        _assert_clean(path.read_text(errors="replace"), values, str(path.name))
    audit = json.loads(cli("audit", "list", "--limit", "100000", "--json").out)
    assert any(r["action"] == "vars.reveal" and r["actor"] == "tester" for r in audit)
