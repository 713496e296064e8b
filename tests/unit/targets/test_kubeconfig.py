"""A kubernetes target's settings checked before a run is submitted: what could not be built is
refused with what is wrong and what to set, without reaching any cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipline.domain.ports import TargetContext
from shipline.errors import TargetError
from shipline.targets.kubernetes.kubeconfig import check

KUBECONFIG = """
apiVersion: v1
kind: Config
current-context: dev-admin
clusters:
  - {name: aks-dev, cluster: {server: "https://127.0.0.1:6443"}}
  - {name: aks-prod, cluster: {server: "https://127.0.0.1:6444"}}
contexts:
  - {name: dev-admin, context: {cluster: aks-dev, user: admin}}
  - {name: prod-admin, context: {cluster: aks-prod, user: admin}}
users:
  - {name: admin, user: {token: abc}}
"""


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    return str(path)


def _check(tmp_path: Path, **settings: str) -> None:
    check(TargetContext("kubernetes", tmp_path, dict(settings)))


@pytest.mark.parametrize(
    ("settings", "said", "hint"),
    [
        ({}, "needs a kubeconfig", "set 'kubeconfig:' on the target, or KUBECONFIG"),
        ({"kubeconfig": "{dir}/absent"}, "absent: No such file or directory", "'kubeconfig'"),
        ({"kubeconfig": "{dir}/bad"}, "bad: ", "'kubeconfig'"),
        ({"context": "qa-admin"}, "no context 'qa-admin'", "one of its contexts (dev-admin,"),
        ({"cluster": "aks-prod"}, "context 'dev-admin' points at cluster 'aks-dev', not at"
         " 'aks-prod'", "set the target's 'context:'"),
        ({"context": "dev-admin", "cluster": "aks-prod"}, "points at cluster 'aks-dev'", "correct"),
    ],
)  # fmt: skip
def test_settings_no_target_could_be_built_from_are_refused_saying_why(
    tmp_path: Path, kubeconfig: str, settings: dict[str, str], said: str, hint: str
) -> None:
    (tmp_path / "bad").write_text("contexts: [unclosed\n")
    given = {k: v.format(dir=tmp_path) for k, v in settings.items()}
    if "kubeconfig" not in given and settings:
        given["kubeconfig"] = kubeconfig
    with pytest.raises(TargetError) as refused:
        _check(tmp_path, **given)
    assert said in refused.value.message
    assert refused.value.hint is not None and hint in refused.value.hint


def test_a_kubeconfig_without_a_current_context_needs_the_targets_context(
    tmp_path: Path, kubeconfig: str
) -> None:
    path = Path(kubeconfig)
    path.write_text(KUBECONFIG.replace("current-context: dev-admin\n", ""))
    with pytest.raises(TargetError, match="no context chosen"):
        _check(tmp_path, kubeconfig=kubeconfig)
    _check(tmp_path, kubeconfig=kubeconfig, context="prod-admin", cluster="aks-prod")


def test_the_current_context_or_the_named_one_on_its_cluster_passes(
    tmp_path: Path, kubeconfig: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _check(tmp_path, kubeconfig=kubeconfig)
    _check(tmp_path, kubeconfig=kubeconfig, cluster="aks-dev")
    _check(tmp_path, kubeconfig=kubeconfig, context="prod-admin", cluster="aks-prod")
    monkeypatch.setenv("KUBECONFIG", kubeconfig)  # the target's setting, else KUBECONFIG
    _check(tmp_path, cluster="aks-dev")
