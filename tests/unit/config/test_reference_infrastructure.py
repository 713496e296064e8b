"""QuikApp's reference infrastructure: the spec's architecture as Terraform modules and the
spec's per-environment table as tfvars. The Azure provider cannot be downloaded here, so the
module is checked by `terraform fmt -check` and by parsing it (python-hcl2)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest

from shipline.config.loader import load_config

QUIKAPP = Path(__file__).parents[3] / "examples" / "quikapp"
ROOT = QUIKAPP / "infrastructure" / "terraform"


def _load(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        loaded: dict[str, Any] = hcl2.load(handle)
    return loaded


def _plain(value: Any) -> Any:
    """python-hcl2 keeps a string's quotes."""
    if isinstance(value, str):
        return value.strip('"')
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def test_every_file_parses_and_is_formatted() -> None:
    files = sorted(ROOT.rglob("*.tf")) + sorted(ROOT.rglob("*.tfvars"))
    assert len(files) >= 13
    for path in files:
        _load(path)
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed (expected at /usr/local/bin/terraform)")
    done = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout


def test_the_architecture_of_the_spec() -> None:
    resources: set[str] = set()
    for path in ROOT.rglob("*.tf"):
        for block in _load(path).get("resource", []):
            resources.update(_plain(name) for name in block)
    assert {
        "azurerm_resource_group", "azurerm_virtual_network", "azurerm_subnet",
        "azurerm_kubernetes_cluster", "azurerm_container_registry", "azurerm_key_vault",
        "azurerm_log_analytics_workspace", "azurerm_private_endpoint",
    } <= resources  # fmt: skip
    modules = {
        _plain(name): _plain(body["source"])
        for path in ROOT.glob("*.tf")
        for block in _load(path).get("module", [])
        for name, body in block.items()
    }
    assert set(modules) == {"network", "aks", "acr", "keyvault", "monitoring"}
    for source in modules.values():
        assert (ROOT / source / "main.tf").is_file(), source
    outputs = {_plain(n) for block in _load(ROOT / "outputs.tf")["output"] for n in block}
    assert {"aks_cluster", "resource_group", "acr_login_server", "key_vault_uri"} <= outputs


SPEC_TABLE = {  # spec "Terraform Environment Configurations"
    "dev": ("Free", 1, 3, "Basic", False, "standard", False, False, 14),
    "qa": ("Free", 1, 3, "Basic", False, "standard", False, False, 30),
    "staging": ("Standard", 2, 5, "Standard", False, "standard", True, True, 60),
    "prod": ("Standard", 3, 10, "Premium", True, "premium", True, True, 90),
}


@pytest.mark.parametrize("environment", list(SPEC_TABLE))
def test_tfvars_follow_the_spec_table(environment: str) -> None:
    values = {
        k: _plain(v) for k, v in _load(ROOT / "environments" / f"{environment}.tfvars").items()
    }
    found = (
        values["aks_sku_tier"], values["aks_min_nodes"], values["aks_max_nodes"],
        values["acr_sku"], bool(values["acr_georeplication_locations"]), values["keyvault_sku"],
        values["purge_protection"], values["private_endpoints"], values["log_retention_days"],
    )  # fmt: skip
    assert found == SPEC_TABLE[environment]
    assert values["environment"] == environment


def test_the_configuration_runs_the_reference_module() -> None:
    config = load_config(QUIKAPP / "shipline.yaml")
    infra = config.infrastructure
    stack = infra.stacks["platform"]
    assert (QUIKAPP / stack.root).resolve() == ROOT.resolve()
    backend = _load(ROOT / "versions.tf")["terraform"][0]["backend"][0]
    assert {_plain(k) for k in backend} == {stack.backend.type} == {"azurerm"}
    assert infra.order() == ["dev", "qa", "staging", "prod"]
    for env in infra.environments:
        assert (ROOT / stack.var_files[0].replace("{environment}", env.name)).is_file()
    prod = infra.environment("prod")
    assert prod.protected and prod.approvals and prod.destroy_approvals
    assert set(prod.destroy_approvals.groups) == {"cto", "security-team"}
    assert [e.name for e in infra.environments if e.auto_approve] == ["dev", "qa"]
