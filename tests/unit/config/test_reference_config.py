"""The QuikApp reference configuration says what the spec says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shipline.config.loader import load_config
from tests.conftest import CLI, QUIKAPP

# spec: "Services Reference" (Docker CI) with the stack ports and health paths of the issue
STACK_DEFAULTS = {
    "springboot": (8080, "/actuator/health"),
    "nestjs": (3000, "/health"),
    "go": (8080, "/health"),
    "elixir": (4000, "/health"),
    "python": (8000, "/health"),
}
SPEC_SERVICES = {
    "auth-service": "springboot",
    "user-service": "springboot",
    "permission-service": "springboot",
    "audit-service": "springboot",
    "admin-service": "springboot",
    "backend-gateway": "nestjs",
    "notification-service": "nestjs",
    "realtime-service": "nestjs",
    "workspace-service": "go",
    "channel-service": "go",
    "thread-service": "go",
    "search-service": "go",
    "file-service": "go",
    "media-service": "go",
    "presence-service": "elixir",
    "message-service": "elixir",
    "call-service": "elixir",
    "huddle-service": "elixir",
    "analytics-service": "python",
    "ml-service": "python",
    "moderation-service": "python",
    "sentiment-service": "python",
}

# spec: Environment Progression and §3 "Configure Environments"
SPEC_LADDER = [
    ("local", [], None),
    ("dev", [], None),
    ("qa", ["QA Lead"], None),
    ("uat1", ["Product Owner"], None),
    ("uat2", ["Product Owner"], None),
    ("uat3", ["Product Owner", "Security Team"], None),
    ("staging", ["Release Manager"], None),
    ("live", ["CAB", "Release Manager", "CTO"], "business hours"),
]

# spec §2.3: every variable name each environment group must hold
SPEC_VARIABLES = [
    "environment",
    "nodeEnv",
    "aksCluster",
    "resourceGroup",
    "namespace",
    "mongodbUri",
    "mysqlHost",
    "mysqlPort",
    "mysqlDatabase",
    "mysqlUser",
    "mysqlPassword",
    "postgresHost",
    "postgresPort",
    "postgresDb",
    "postgresUser",
    "postgresPassword",
    "redisHost",
    "redisPort",
    "redisPassword",
    "elasticsearchUrl",
    "kafkaBrokers",
    "kafkaSaslEnabled",
    "kafkaSaslUsername",
    "kafkaSaslPassword",
    "awsRegion",
    "s3Bucket",
    "storageMode",
    "cdnUrl",
    "jwtSecret",
    "jwtExpiresIn",
    "jwtRefreshSecret",
    "jwtRefreshExpiresIn",
    "encryptionKey",
    "secretKeyBase",
    "corsOrigin",
    "logLevel",
    "logFormat",
    "logPretty",
    "sentryDsn",
    "sentryEnvironment",
    "datadogEnabled",
    "datadogApiKey",
    "newrelicEnabled",
    "newrelicLicenseKey",
    "otelEnabled",
    "otelExporterOtlpEndpoint",
    "tracingSampleRate",
    "firebaseProjectId",
    "firebasePrivateKey",
    "twilioAccountSid",
    "twilioAuthToken",
    "openaiApiKey",
]
SPEC_SECRETS = {
    "mysqlPassword",
    "postgresPassword",
    "redisPassword",
    "kafkaSaslUsername",
    "kafkaSaslPassword",
    "jwtSecret",
    "jwtRefreshSecret",
    "encryptionKey",
    "secretKeyBase",
    "datadogApiKey",
    "newrelicLicenseKey",
    "firebasePrivateKey",
    "twilioAccountSid",
    "twilioAuthToken",
    "openaiApiKey",
}
ENV_GROUPS = {
    "local": "QuikApp-Local-Variables",
    "dev": "QuikApp-Dev-Variables",
    "qa": "QuikApp-QA-Variables",
    "uat1": "QuikApp-UAT1-Variables",
    "uat2": "QuikApp-UAT2-Variables",
    "uat3": "QuikApp-UAT3-Variables",
    "staging": "QuikApp-Staging-Variables",
    "live": "QuikApp-Live-Variables",
}
# spec §2.4
SETTINGS = {
    "nodeEnv": "development development development production production production production production",
    "logLevel": "debug debug debug info debug warn info warn",
    "tracingSampleRate": "0 1.0 1.0 0.5 0.5 0.01 0.5 0.1",
    "datadogEnabled": "false true false false false false true true",
    "newrelicEnabled": "false false false false false false true true",
    "otelEnabled": "false true false false false false true true",
}
STACK_GROUPS = {
    "QuikApp-SpringBoot-Variables": {
        "javaVersion": "21",
        "mavenVersion": "3.9.5",
        "springProfile": "$(environment)",
        "jvmOpts": "-Xms256m -Xmx512m",
    },
    "QuikApp-NestJS-Variables": {"nodeVersion": "20", "npmVersion": "10", "nestCliVersion": "10"},
    "QuikApp-Elixir-Variables": {
        "elixirVersion": "1.15",
        "otpVersion": "26",
        "mixEnv": "prod",
        "erlVmArgs": "+P 1000000 +Q 65536",
    },
    "QuikApp-Go-Variables": {
        "goVersion": "1.21",
        "goPrivate": "github.com/quikapp/*",
        "cgoEnabled": "0",
    },
    "QuikApp-Python-Variables": {
        "pythonVersion": "3.11",
        "pipVersion": "23.3",
        "uvicornWorkers": "4",
    },
}


def test_validate_exits_zero(cli: CLI) -> None:
    result = cli("--config", str(QUIKAPP), "validate")
    assert result.code == 0, result.err
    assert "22 services" in result.out


def test_services_list_json_matches_the_spec(cli: CLI) -> None:
    result = cli("--config", str(QUIKAPP), "services", "list", "--json")
    assert result.code == 0
    rows = json.loads(result.out)
    assert {r["name"]: r["stack"] for r in rows} == SPEC_SERVICES
    for row in rows:
        assert (row["port"], row["healthPath"]) == STACK_DEFAULTS[row["stack"]], row["name"]


def test_envs_list_json_is_the_ladder_with_approvers_and_checks(cli: CLI) -> None:
    result = cli("--config", str(QUIKAPP), "envs", "list", "--json")
    assert result.code == 0
    rows = json.loads(result.out)
    assert [r["name"] for r in rows] == [name for name, _, _ in SPEC_LADDER]
    for row, (name, approvers, check) in zip(rows, SPEC_LADDER, strict=True):
        shown = [g["displayName"] for g in (row["approvals"] or {}).get("groups", [])]
        assert shown == approvers, name
        assert ("businessHours" in row["checks"]) == (check == "business hours"), name
    live = rows[-1]
    assert live["aliases"][0] == "prod"
    assert live["checks"]["businessHours"]["windows"] == ["Mon-Thu 09:00-16:00", "Fri 09:00-12:00"]
    assert live["strategy"]["type"] == "canary"
    assert rows[6]["strategy"]["type"] == "canary"  # staging
    assert {r["strategy"]["type"] for r in rows[:6]} == {"rolling"}
    assert rows[2]["approvals"]["timeoutMinutes"] == 1440


def test_every_environment_group_holds_every_spec_variable() -> None:
    config = load_config(QUIKAPP)
    for env, group_name in ENV_GROUPS.items():
        group = config.variable_groups[group_name]
        assert set(SPEC_VARIABLES) <= set(group.variables), env
        for name in SPEC_SECRETS:
            assert group.variables[name].secret, (env, name)
        for name, row in SETTINGS.items():
            expected = dict(zip(ENV_GROUPS, row.split(), strict=True))[env]
            assert group.variables[name].value == expected, (env, name)


def test_stack_groups_hold_the_spec_values() -> None:
    config = load_config(QUIKAPP)
    for group_name, expected in STACK_GROUPS.items():
        values = {k: v.value for k, v in config.variable_groups[group_name].variables.items()}
        assert values == expected


@pytest.mark.parametrize(
    ("group", "variable", "key"),
    [
        ("QuikApp-Dev-Variables", "jwtSecret", "DEV-JWT-SECRET"),
        ("QuikApp-Dev-Variables", "mongodbUri", "DEV-MONGODB-URI"),
        ("QuikApp-Dev-Variables", "encryptionKey", "DEV-ENCRYPTION-KEY"),
        ("QuikApp-QA-Variables", "mongodbUri", "QA-MONGODB-URI"),
        ("QuikApp-Staging-Variables", "jwtSecret", "STAGING-JWT-SECRET"),
        ("QuikApp-Live-Variables", "mongodbUri", "PROD-MONGODB-URI"),
        ("QuikApp-Live-Variables", "jwtSecret", "PROD-JWT-SECRET"),
    ],
)
def test_key_vault_names_follow_the_spec(group: str, variable: str, key: str) -> None:
    config = load_config(QUIKAPP)
    g = config.variable_groups[group]
    assert g.secret_ref(variable, g.variables[variable]) == key
    assert g.secret_store == "kv-quikapp"


def _env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def _upper_snake(name: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", name).upper()


def test_env_example_files_are_in_sync_with_the_groups_both_ways() -> None:
    config = load_config(QUIKAPP)
    by_source: dict[str, list[str]] = {}
    for name, group in config.variable_groups.items():
        if group.source:
            by_source.setdefault(group.source, []).append(name)
    files = sorted(p.name for p in QUIKAPP.parent.glob(".env.*.example"))
    assert sorted(by_source) == files  # every file has a group and every source a file
    for source, groups in by_source.items():
        entries = _env_file(QUIKAPP.parent / source)
        for group_name in groups:
            variables = config.variable_groups[group_name].variables
            assert {_upper_snake(n) for n in variables} == set(entries), (source, group_name)
        for name in config.variable_groups[groups[0]].variables:
            values = {config.variable_groups[g].variables[name].value for g in groups}
            secret = config.variable_groups[groups[0]].variables[name].secret
            # secrets never appear; values shared by every group using the file appear verbatim
            expected = "" if secret or len(values) > 1 else values.pop()
            assert entries[_upper_snake(name)] == expected, (source, name)
