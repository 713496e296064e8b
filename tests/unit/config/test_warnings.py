"""Configuration that is valid but that nothing here acts on is a located warning, never silent:
`validate` still exits 0 and lists the warnings (also in `--json`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import CLI

BASE = """\
project: demo
stacks:
  go: {port: 8080, healthPath: /health}
services:
  - {name: api, stack: go, paths: [services/api/**]}
tiers:
  nonprod: {}
targets:
  here: {type: memory}
  aks: {type: nomad}
environments:
  - {name: dev, cluster: c, namespace: d, tier: nonprod, target: here}
  - {name: qa, cluster: c, namespace: q, tier: nonprod, target: aks}
ladder: [dev, qa]
triggers:
  - {branch: main, deployTo: dev}
"""


def test_ignored_configuration_is_a_located_warning(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shipline.yaml").write_text(BASE)
    monkeypatch.chdir(tmp_path)
    result = cli("validate")
    assert result.code == 0
    warnings = [line for line in result.err.splitlines() if "warning:" in line]
    assert warnings == [  # triggers are acted on (`shipline trigger`): no warning for them
        "shipline.yaml:10:15: warning: target type 'nomad' is not installed here: runs to its"
        " environments are refused",
    ]
    data = json.loads(cli("validate", "--json").out)
    assert data["valid"] is True
    assert [(w["line"], w["column"]) for w in data["warnings"]] == [(10, 15)]


def test_a_configuration_without_them_has_no_warning(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = BASE.replace("  aks: {type: nomad}\n", "").replace("target: aks", "target: here")
    (tmp_path / "shipline.yaml").write_text(clean.split("triggers:")[0])
    monkeypatch.chdir(tmp_path)
    result = cli("validate")
    assert result.code == 0 and "warning" not in result.err


def test_a_service_no_change_can_mark_is_a_warning(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = BASE.replace("paths: [services/api/**]", "port: 8081").replace("aks: {type: nomad}", "")
    (tmp_path / "shipline.yaml").write_text(text.replace("target: aks}", "target: here}"))
    monkeypatch.chdir(tmp_path)
    result = cli("validate")
    assert result.code == 0
    assert [line for line in result.err.splitlines() if "warning:" in line] == [
        "shipline.yaml:5:12: warning: service 'api' has no paths: no change ever marks it for a"
        " build"
    ]


INFRA = """
infrastructure:
  stacks:
    platform:
      root: infra
      varFiles: ["environments/{environment}.tfvars", "common.tfvars"]
    defaults: {root: infra}
  environments: [{name: dev}, {name: prod}]
"""


def test_a_var_file_written_out_but_missing_is_a_warning(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = BASE.replace("  aks: {type: nomad}\n", "").replace("target: aks", "target: here")
    (tmp_path / "shipline.yaml").write_text(clean.split("triggers:")[0] + INFRA)
    (tmp_path / "infra" / "environments").mkdir(parents=True)
    (tmp_path / "infra" / "environments" / "dev.tfvars").write_text('region = "x"\n')
    (tmp_path / "infra" / "common.tfvars").write_text("")
    monkeypatch.chdir(tmp_path)
    result = cli("validate")
    assert result.code == 0
    # prod has no tfvars; the stack without varFiles keeps the optional default pattern quietly
    assert [line for line in result.err.splitlines() if "warning:" in line] == [
        "shipline.yaml:19:18: warning: var file infra/environments/prod.tfvars does not exist:"
        " infrastructure runs of 'prod' go without it"
    ]


def test_cluster_settings_a_target_does_not_read_and_clusters_that_disagree_are_warnings(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (
        BASE.replace("here: {type: memory}", "here: {type: memory, context: dev}")
        .replace("aks: {type: nomad}", "aks: {type: kubernetes, cluster: aks-qa}")
        .replace("{name: qa, cluster: c,", "{name: qa, cluster: aks-dev,")
    )
    (tmp_path / "shipline.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    result = cli("validate")
    assert result.code == 0
    assert [line for line in result.err.splitlines() if "warning:" in line] == [
        "shipline.yaml:9:33: warning: 'context' is not used by a memory target",
        "shipline.yaml:13:25: warning: environment 'qa' says cluster 'aks-dev'; its target 'aks'"
        " deploys to cluster 'aks-qa'",
    ]
    agreed = text.replace("cluster: aks-dev,", "cluster: aks-qa,").replace(", context: dev", "")
    (tmp_path / "shipline.yaml").write_text(agreed)
    assert "warning" not in cli("validate").err
