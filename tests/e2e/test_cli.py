"""The CLI as a user meets it: exit codes, one-line errors, discovery, the installed command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CLI, QUIKAPP, ROOT


@pytest.mark.parametrize(
    "args",
    [
        ["frobnicate"],
        ["services", "lst"],
        ["vars", "show"],  # missing --env
        ["validate", "--jsn"],
        ["secrets", "set"],  # missing NAME
        ["secrets", "set", "A", "the-value-on-argv"],  # values never come from argv
    ],
    ids=[
        "unknown-command",
        "unknown-subcommand",
        "missing-option",
        "unknown-option",
        "missing-argument",
        "value-on-argv",
    ],
)
def test_malformed_command_is_one_line_and_exit_2(cli: CLI, args: list[str]) -> None:
    result = cli("--config", str(QUIKAPP), *args)
    assert result.code == 2
    assert result.out == ""
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert "error:" in result.err


def test_no_arguments_prints_help(cli: CLI) -> None:
    result = cli()
    assert result.code == 2
    assert "Commands" in result.out or "validate" in result.out


def test_config_is_found_by_walking_up(cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(QUIKAPP.parent)
    (QUIKAPP.parent / ".shipline").mkdir(exist_ok=True)
    monkeypatch.chdir(QUIKAPP.parent / ".shipline")
    result = cli("validate", "--json")
    assert result.code == 0
    assert json.loads(result.out)["config"] == str(QUIKAPP)


def test_no_config_anywhere(cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("validate")
    assert result.code == 2
    assert result.err.splitlines()[0] == "no shipline.yaml here or in any parent folder"


def test_unknown_environment_is_exit_2_with_hint(cli: CLI) -> None:
    result = cli("--config", str(QUIKAPP), "vars", "show", "--env", "prd")
    assert result.code == 2
    assert result.err.splitlines() == [
        "unknown environment 'prd'",
        "  hint: known: local, dev, qa, uat1, uat2, uat3, staging, live",
    ]


def test_alias_resolves(cli: CLI) -> None:
    result = cli(
        "--config", str(QUIKAPP), "vars", "show", "--env", "prod", "--skip-secrets", "--json"
    )
    assert result.code == 0, result.err
    values = {row["name"]: row["value"] for row in json.loads(result.out)}
    assert values["environment"] == "live"
    assert values["sentryEnvironment"] == "live"  # $(environment) expanded


def test_secret_set_list_rm_round_trip(cli: CLI) -> None:
    assert cli("--config", str(QUIKAPP), "secrets", "set", "LOCAL-X", stdin="v4lue-x\n").code == 0
    listed = cli("--config", str(QUIKAPP), "secrets", "list", "--json")
    assert json.loads(listed.out) == {"store": "local", "names": ["LOCAL-X"]}
    assert cli("--config", str(QUIKAPP), "secrets", "rm", "LOCAL-X").code == 0
    again = cli("--config", str(QUIKAPP), "secrets", "rm", "LOCAL-X")
    assert again.code == 2
    assert "no secret 'LOCAL-X'" in again.err
    empty = cli("--config", str(QUIKAPP), "secrets", "set", "LOCAL-Y", stdin="")
    assert empty.code == 2


def test_missing_local_secrets_then_generate(cli: CLI) -> None:
    missing = cli(
        "--config", str(QUIKAPP), "vars", "show", "--env", "local", "--service", "ml-service"
    )
    assert missing.code == 1
    assert "secret 'jwtSecret' of group 'QuikApp-Local-Variables' is missing" in missing.err
    generated = cli("--config", str(QUIKAPP), "secrets", "generate", "--env", "local", "--json")
    assert len(json.loads(generated.out)) == 8
    shown = cli(
        "--config",
        str(QUIKAPP),
        "vars",
        "show",
        "--env",
        "local",
        "--service",
        "ml-service",
        "--json",
    )
    assert shown.code == 0
    rows = {row["name"]: row for row in json.loads(shown.out)}
    assert rows["jwtSecret"]["value"] == "***"
    assert rows["pythonVersion"]["source"] == "QuikApp-Python-Variables"
    again = cli("--config", str(QUIKAPP), "secrets", "generate", "--env", "local", "--json")
    assert json.loads(again.out) == []  # nothing left to fill


def test_reveal_is_audited_and_the_chain_verifies(cli: CLI) -> None:
    cli("--config", str(QUIKAPP), "secrets", "generate", "--env", "local")
    result = cli("--config", str(QUIKAPP), "vars", "show", "--env", "local", "--reveal", "--json")
    assert result.code == 0
    assert "***" not in result.out
    audit = cli("--config", str(QUIKAPP), "audit", "list", "--json")
    actions = [r["action"] for r in json.loads(audit.out)]
    assert actions == ["vars.reveal", "secret.generate"]  # newest first
    assert json.loads(cli("--config", str(QUIKAPP), "audit", "verify", "--json").out)["intact"]


def test_installed_command_runs_in_a_real_process(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "shipline"
    env = {**os.environ, "SHIPLINE_HOME": str(tmp_path)}
    done = subprocess.run(
        [str(exe), "--config", str(QUIKAPP), "envs", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 8
    bad = subprocess.run([str(exe), "nope"], capture_output=True, text=True, env=env, check=False)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr


def test_schema_is_json_schema(cli: CLI) -> None:
    schema = json.loads(cli("schema").out)
    assert schema["title"] == "shipline configuration"
    assert "services" in schema["properties"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--ref", "main"], "latest"),
        (["--ref", "release/1.2.3"], "1.2.3"),
        (["--ref", "v1.2.3", "--strategy", "semver"], "1.2.3"),
    ],
)
def test_ci_tag(cli: CLI, args: list[str], expected: str) -> None:
    result = cli("--config", str(QUIKAPP), "ci", "tag", *args)
    assert result.code == 0 and result.out.strip() == expected


@pytest.mark.parametrize(
    "args",
    [
        ["--ref", "a..b"],
        ["--ref", "v1", "--strategy", "semver"],
        ["--ref", "main", "--strategy", "nope"],
    ],
)
def test_ci_tag_invalid_is_exit_2(cli: CLI, args: list[str]) -> None:
    result = cli("--config", str(QUIKAPP), "ci", "tag", *args)
    assert result.code == 2
    assert result.out == ""
    assert "Traceback" not in result.err and result.err.strip()


UNREACHABLE = """\
project: far
stacks: {{go: {{port: 8080, healthPath: /health}}}}
services: [{{name: api, stack: go}}]
tiers: {{nonprod: {{}}}}
targets: {{here: {{type: local}}}}
environments:
  - {{name: dev, cluster: local, namespace: far-dev, tier: nonprod, target: here,
     variableGroups: [common, from-vault]}}
ladder: [dev]
secretStores:
  file: {{type: file}}
  hv: {{type: vault, url: "http://127.0.0.1:{port}", tokenEnv: FAR_TOKEN}}
defaultSecretStore: file
variableGroups:
  common: {{variables: {{region: eu-west}}}}
  from-vault: {{secretStore: hv, secretPrefix: DEV, variables: {{signingKey: {{secret: true}}}}}}
"""


def test_a_secret_store_out_of_reach_names_the_way_to_the_rest(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipline.targets.local.supervisor import free_port  # nothing listens there

    config = tmp_path / "shipline.yaml"
    config.write_text(UNREACHABLE.format(port=free_port()))
    monkeypatch.setenv("FAR_TOKEN", "t")
    failed = cli("--config", str(config), "vars", "show", "--env", "dev", "--service", "api")
    assert failed.code == 1, failed.err
    assert failed.err.splitlines()[-1].endswith(
        "; or show the rest without the stores:"
        " shipline vars show --env dev --service api --skip-secrets"
    ), failed.err
    assert "Traceback" not in failed.err
    rest = cli("--config", str(config), "vars", "show", "--env", "dev", "--skip-secrets", "--json")
    assert rest.code == 0, rest.err
    assert {r["name"]: r["value"] for r in json.loads(rest.out)}["region"] == "eu-west"
