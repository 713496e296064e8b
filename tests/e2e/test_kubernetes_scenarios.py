"""Scenarios on the test control plane through the CLI and a worker, as a user runs them: QuikApp
services into `quikapp-dev` through the dev overlay with a preview of exactly what changes; a
canary answering 50 % errors rolled back by replica ratio; and health verification catching a
crash-looping version, a readiness probe that never passes and a Service without endpoints, each
with its troubleshooting hint."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube.config.kubeconfig import KubeConfig

from tests.e2e.kube import drop_namespace, kubeconfig, kubectl, objects
from tests.e2e.worker import EXE, running_worker, sh
from tests.servers.prometheus import Prometheus

QUIKAPP = Path(__file__).parents[2] / "examples" / "quikapp"
THREE = "auth-service,backend-gateway,presence-service"


def _run(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    done = sh(env, *args, "--json", timeout=300)
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout)


def _plans(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(data["stages"][0]["outputs"])


def _errors(data: dict[str, Any]) -> str:
    return " ".join(
        str(step["error"]) for stage in data["stages"] for step in stage["steps"] if step["error"]
    )


def _quikapp_copy(tmp_path: Path, *, on_test_cluster: bool = True) -> Path:
    """A copy of the QuikApp reference configuration. Key Vault is not reachable from here: the
    copy keeps the vault-linked secrets in the embedded store. `on_test_cluster`: its dev
    target names the test cluster (the reference names AKS's)."""
    project = tmp_path / "quikapp"
    shutil.copytree(QUIKAPP, project, ignore=shutil.ignore_patterns(".shipline"))
    config = project / "shipline.yaml"
    text = config.read_text()
    vault = "  kv-quikapp:\n    type: azure-keyvault\n    vaultUrl: https://kv-quikapp.vault.azure.net/\n"
    assert vault in text and "cluster: aks-quikapp-dev," in text
    text = text.replace(vault, "  kv-quikapp:\n    type: file\n")
    if on_test_cluster:
        here = KubeConfig.from_file(kubeconfig()).get().context.cluster
        text = text.replace("cluster: aks-quikapp-dev,", f"cluster: {here},")
    config.write_text(text)
    return config


@pytest.fixture
def quikapp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The QuikApp reference configuration, its dev environment on the test cluster."""
    monkeypatch.setenv("KUBECONFIG", kubeconfig())
    config = _quikapp_copy(tmp_path)
    drop_namespace("quikapp-dev")
    with running_worker(config, tmp_path / "state", "dev", tmp_path / "worker.log") as env:
        generated = subprocess.run(
            [EXE, "secrets", "generate", "--env", "dev"], env=env, capture_output=True,
            text=True, timeout=120, check=False,
        )  # fmt: skip
        assert generated.returncode == 0, generated.stderr
        try:
            yield env
        finally:
            sh(env, "down", "--env", "dev")
            drop_namespace("quikapp-dev")


def test_a_target_whose_cluster_is_not_the_contexts_is_refused_before_any_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference configuration as it is (dev on cluster aks-quikapp-dev) with a kubeconfig
    whose context points at another cluster: the deploy is refused when submitted (exit 2),
    saying both, no run is recorded and nothing is applied to that other cluster."""
    monkeypatch.setenv("KUBECONFIG", kubeconfig())
    config = _quikapp_copy(tmp_path, on_test_cluster=False)
    here = KubeConfig.from_file(kubeconfig()).get().context.cluster
    drop_namespace("quikapp-dev")
    with running_worker(config, tmp_path / "state", "dev", tmp_path / "worker.log") as env:
        refused = sh(env, "deploy", "--env", "dev", "--services", "auth-service",
                     "--tag", "1.0.0", "--skip-tests", "--json")  # fmt: skip
        recorded = json.loads(sh(env, "runs", "list", "--json").stdout)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    said = refused.stderr
    assert f"points at cluster '{here}', not at 'aks-quikapp-dev'" in said, said
    assert "environment 'dev': its target 'aks-dev' cannot be used:" in said, said
    assert recorded == []
    assert objects("deployments", "quikapp-dev") == {}


def test_quikapp_services_deploy_into_quikapp_dev_with_the_dev_overlay(
    quikapp: dict[str, str],
) -> None:
    code, data = _run(quikapp, "deploy", "--env", "dev", "--services", THREE, "--tag", "1.0.0")
    assert code == 0, _errors(data)
    deployments = objects("deployments", "quikapp-dev")
    assert sorted(deployments) == sorted(THREE.split(","))
    ports = {"auth-service": (8080, "/actuator/health"), "backend-gateway": (3000, "/health"),
             "presence-service": (4000, "/health")}  # fmt: skip
    for name, deployment in deployments.items():
        assert deployment["status"]["readyReplicas"] == 1
        assert deployment["metadata"]["labels"]["shipline.dev/environment"] == "dev"
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["image"] == f"quikapp/{name}:1.0.0"
        assert container["ports"][0]["containerPort"] == ports[name][0]
        assert container["readinessProbe"]["httpGet"]["path"] == ports[name][1]
        assert container["livenessProbe"]["httpGet"]["path"] == ports[name][1]
        assert container["resources"]["requests"]["cpu"] == "50m"  # the nonprod tier
        assert pod["securityContext"]["runAsNonRoot"] is True
        env = {e["name"]: e for e in container["env"]}
        # A secret from a vault-linked group reaches the pod through the service's Secret.
        assert env["JWT_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == f"{name}-shipline-secrets"
        assert "value" not in env["JWT_SECRET"]
    hpas = objects("hpa", "quikapp-dev")
    assert {n: (h["spec"]["minReplicas"], h["spec"]["maxReplicas"]) for n, h in hpas.items()} == {
        n: (1, 3) for n in THREE.split(",")
    }
    assert sorted(objects("serviceaccounts", "quikapp-dev")) == sorted(
        ["default", *THREE.split(",")]
    )

    # The same tag again: every service in sync, no field would change.
    code, same = _run(quikapp, "preview", "--env", "dev", "--services", THREE, "--tag", "1.0.0")
    assert code == 0
    assert {s: (p["inSync"], p["fields"]) for s, p in _plans(same).items()} == {
        s: (True, []) for s in THREE.split(",")
    }
    # A new tag for one service: exactly its image changes.
    code, plan = _run(quikapp, "preview", "--env", "dev", "--services", "auth-service",
                      "--tag", "1.1.0")  # fmt: skip
    assert code == 0
    assert _plans(plan)["auth-service"]["fields"] == [
        {"object": "Deployment/auth-service",
         "path": "spec.template.spec.containers[auth-service].image",
         "from": "quikapp/auth-service:1.0.0", "to": "quikapp/auth-service:1.1.0"}
    ]  # fmt: skip
    human = sh(quikapp, "preview", "--env", "dev", "--services", "auth-service", "--tag", "1.1.0")
    assert "spec.template.spec.containers[auth-service].image" in human.stdout

    # The rolling upgrade the preview announced.
    code, data = _run(quikapp, "deploy", "--env", "dev", "--services", "auth-service",
                      "--tag", "1.1.0")  # fmt: skip
    assert code == 0, _errors(data)
    upgraded = objects("deployments", "quikapp-dev")["auth-service"]
    assert upgraded["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert upgraded["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":1.1.0")


SMALL = """
project: k8s-scenarios
stacks:
  python: {port: 8000, healthPath: /health}
services:
  - {name: orders, stack: python, image: shipline/orders}
tiers:
  nonprod: {resources: {minReplicas: 1, maxReplicas: 4}}
targets:
  cluster: {type: kubernetes}
  overlaid: {type: kubernetes, manifests: "k8s/{environment}"}
environments:
  - name: canary
    cluster: test
    namespace: shipline-canary
    tier: nonprod
    target: cluster
    strategy:
      type: canary
      steps: [50, 100]
      bakeSeconds: 4
      analysis: {maxErrorRate: 0.05, failureLimit: 2, intervalSeconds: 1}
  - name: checked
    cluster: test
    namespace: shipline-checked
    tier: nonprod
    target: cluster
    checks: {progressDeadlineSeconds: 8}
  - name: broken
    cluster: test
    namespace: shipline-broken
    tier: nonprod
    target: overlaid
ladder: [canary, checked, broken]
"""

# An overlay whose Service selects a label no pod carries: the rollout succeeds, nothing serves.
BROKEN_OVERLAY = {
    "kustomization.yaml": "resources: [deployment.yaml, service.yaml]\n",
    "deployment.yaml": """
apiVersion: apps/v1
kind: Deployment
metadata: {name: orders, labels: {app.kubernetes.io/name: orders}}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: orders}}
  progressDeadlineSeconds: 60
  template:
    metadata: {labels: {app.kubernetes.io/name: orders}}
    spec:
      containers:
        - name: orders
          image: shipline/orders
          ports: [{name: http, containerPort: 8000}]
          readinessProbe: {httpGet: {path: /health, port: http}, periodSeconds: 1}
""",
    "service.yaml": """
apiVersion: v1
kind: Service
metadata: {name: orders, labels: {app.kubernetes.io/name: orders}}
spec:
  selector: {app.kubernetes.io/name: order}
  ports: [{name: http, port: 80, targetPort: http}]
""",
}


@pytest.fixture
def small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv("KUBECONFIG", kubeconfig())
    (tmp_path / "shipline.yaml").write_text(SMALL)
    overlay = tmp_path / "k8s" / "broken"
    overlay.mkdir(parents=True)
    for name, text in BROKEN_OVERLAY.items():
        (overlay / name).write_text(text)
    with running_worker(
        tmp_path / "shipline.yaml", tmp_path / "state", "dev", tmp_path / "worker.log"
    ) as env:
        try:
            yield env
        finally:
            for environment in ("canary", "checked", "broken"):
                sh(env, "down", "--env", environment)
                drop_namespace(f"shipline-{environment}")


def _version(env: dict[str, str], environment: str) -> str:
    rows = json.loads(sh(env, "status", "--env", environment, "--json").stdout)
    return str(rows[0]["version"])


def test_a_canary_answering_half_errors_is_rolled_back_by_replica_ratio(
    small: dict[str, str],
) -> None:
    code, data = _run(small, "deploy", "--env", "canary", "--services", "orders", "--tag", "1.0.0")
    assert code == 0, _errors(data)
    code, bad = _run(small, "deploy", "--env", "canary", "--services", "orders", "--tag", "2.0.0",
                     "--set", "shiplineDemoErrorRate=0.5")  # fmt: skip
    assert code == 1
    assert {s["name"]: s["phase"] for s in bad["stages"]}["deploy"] == "failed"
    assert "rolled back" in bad["reason"]
    logs = json.loads(sh(small, "runs", "logs", str(bad["id"]), "--json").stdout)["logs"]
    assert any("analysis failed" in line["line"] for line in logs)
    assert any("canary 2.0.0 at 50 %" in line["line"] for line in logs)  # the replica ratio
    assert _version(small, "canary") == "1.0.0"
    assert "orders-canary" not in objects("deployments", "shipline-canary")
    assert kubectl("get", "pods", "-n", "shipline-canary", "-l", "shipline.dev/track=canary",
                   "-o", "name").stdout.strip() == ""  # fmt: skip
    code, good = _run(small, "deploy", "--env", "canary", "--services", "orders", "--tag", "2.1.0")
    assert code == 0, _errors(good)
    assert _version(small, "canary") == "2.1.0"


def test_health_verification_catches_crash_loops_unready_pods_and_missing_endpoints(
    small: dict[str, str],
) -> None:
    code, data = _run(small, "deploy", "--env", "checked", "--services", "orders", "--tag", "1.0.0")
    assert code == 0, _errors(data)

    code, crash = _run(small, "deploy", "--env", "checked", "--services", "orders", "--tag",
                       "1.1.0", "--set", "shiplineDemoCrashAtStart=1")  # fmt: skip
    assert code == 1
    said = _errors(crash)
    assert "CrashLoopBackOff" in said or "restarting" in said, said
    assert "kubectl logs --previous" in said  # the spec's hint
    assert _version(small, "checked") == "1.0.0"

    code, unready = _run(small, "deploy", "--env", "checked", "--services", "orders", "--tag",
                         "1.2.0", "--set", "shiplineDemoFailHealth=1")  # fmt: skip
    assert code == 1
    said = _errors(unready)
    assert "progress deadline" in said and "readiness probe failing" in said, said
    assert "kubectl describe pod" in said
    assert _version(small, "checked") == "1.0.0"

    code, empty = _run(small, "deploy", "--env", "broken", "--services", "orders", "--tag", "1.0.0")
    assert code == 1
    assert {s["name"]: s["phase"] for s in empty["stages"]}["verify"] == "failed"
    said = _errors(empty)
    assert "service endpoints: no endpoints" in said, said
    assert "kubectl get endpoints orders -n shipline-broken" in said
    assert "orders" not in objects("deployments", "shipline-broken")  # a failed first deploy


MEASURED = """
project: k8s-prometheus
stacks:
  python: {{port: 8000, healthPath: /health}}
services:
  - {{name: orders, stack: python, image: shipline/orders}}
tiers:
  nonprod: {{resources: {{minReplicas: 1, maxReplicas: 4}}}}
targets:
  cluster: {{type: kubernetes}}
environments:
  - name: measured
    cluster: test
    namespace: shipline-measured
    tier: nonprod
    target: cluster
    strategy:
      type: canary
      steps: [50, 100]
      bakeSeconds: 6
      analysis: {{maxErrorRate: 0.05, failureLimit: 2, intervalSeconds: 3, inconclusiveLimit: 6}}
      metrics: {{source: prometheus, url: "{url}", series: shipline_demo, probeRps: 20}}
ladder: [measured]
"""


def _prom(url: str, promql: str) -> float:
    query = urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=5) as response:
        result = json.loads(response.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


@pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="prometheus is not installed (scripts/test installs Debian's package)",
)
def test_canary_analysis_reads_prometheus_scraping_the_pods(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prometheus finds the pods through the API server, scrapes each one's own counters, and
    the analysis reads the canary's error rate from it: a bad canary is rolled back, a good one
    promoted."""
    config = kubeconfig()
    monkeypatch.setenv("KUBECONFIG", config)
    prometheus = Prometheus(tmp_path)
    prometheus.start_kubernetes(config)
    project = tmp_path / "shipline.yaml"
    project.write_text(MEASURED.format(url=prometheus.url))
    try:
        with running_worker(project, tmp_path / "state", "dev", tmp_path / "worker.log") as env:
            try:
                code, data = _run(env, "deploy", "--env", "measured", "--services", "orders",
                                  "--tag", "1.0.0")  # fmt: skip
                assert code == 0, _errors(data)
                code, bad = _run(env, "deploy", "--env", "measured", "--services", "orders",
                                 "--tag", "2.0.0", "--set", "shiplineDemoErrorRate=0.5")  # fmt: skip
                assert code == 1 and "rolled back" in bad["reason"], bad["reason"]
                logs = json.loads(sh(env, "runs", "logs", str(bad["id"]), "--json").stdout)
                assert any("analysis failed" in line["line"] for line in logs["logs"]), logs
                # The canary's pod is gone (its series stale): what it had answered, last 5 min.
                errors = _prom(prometheus.url, 'sum(max_over_time(shipline_demo_responses_total{'
                               'environment="measured",service="orders",version="2.0.0",'
                               'class="5xx"}[5m]))')  # fmt: skip
                assert errors > 0, "Prometheus scraped the canary's errors"
                code, good = _run(env, "deploy", "--env", "measured", "--services", "orders",
                                  "--tag", "2.1.0")  # fmt: skip
                assert code == 0, _errors(good)
                assert _version(env, "measured") == "2.1.0"
            finally:
                sh(env, "down", "--env", "measured")
                drop_namespace("shipline-measured")
    finally:
        prometheus.stop()


ROUTED = """
project: k8s-routed
stacks:
  python: {port: 8000, healthPath: /health}
services:
  - {name: orders, stack: python, image: shipline/orders}
tiers:
  nonprod: {resources: {minReplicas: 1, maxReplicas: 4}}
targets:
  overlaid: {type: kubernetes, manifests: "k8s/{environment}"}
environments:
  - name: nginx-routed
    cluster: test
    namespace: shipline-nginx
    tier: nonprod
    target: overlaid
    strategy:
      type: canary
      steps: [{setWeight: 30}, {pause: {}}, 100]
      trafficRouting: {nginx: {stableIngress: "{service}-web"}}
      metrics: {probeRps: 0}
  - name: gateway-routed
    cluster: test
    namespace: shipline-gateway
    tier: nonprod
    target: overlaid
    strategy:
      type: canary
      steps: [{setWeight: 30}, {pause: {}}, 100]
      trafficRouting: {gatewayApi: {httpRoute: "{service}-route"}}
      metrics: {probeRps: 0}
ladder: [nginx-routed, gateway-routed]
"""
INGRESS = """
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: orders-web, labels: {app.kubernetes.io/name: orders}}
spec:
  rules:
    - host: orders.example.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: orders, port: {number: 80}}}}
"""
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders-route, labels: {app.kubernetes.io/name: orders}}
spec:
  parentRefs: [{name: public}]
  rules:
    - backendRefs: [{name: orders, port: 80}]
"""
# A minimal HTTPRoute definition (no schema): the Gateway API's CRDs are not on this machine.
ROUTE_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: httproutes.gateway.networking.k8s.io
  annotations: {api-approved.kubernetes.io: "https://github.com/kubernetes-sigs/gateway-api/pull/2466"}
spec:
  group: gateway.networking.k8s.io
  names: {kind: HTTPRoute, listKind: HTTPRouteList, plural: httproutes, singular: httproute}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"""


def _overlay(folder: Path, extra: str) -> None:
    folder.mkdir(parents=True)
    (folder / "kustomization.yaml").write_text(
        "resources: [deployment.yaml, service.yaml, extra.yaml]\n"
    )
    (folder / "deployment.yaml").write_text(BROKEN_OVERLAY["deployment.yaml"])
    (folder / "service.yaml").write_text(
        BROKEN_OVERLAY["service.yaml"].replace("name: order}", "name: orders}")
    )
    (folder / "extra.yaml").write_text(extra)


def _wait_for(check: Any, what: str, seconds: float = 120) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"never: {what}")


@pytest.fixture
def routed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    monkeypatch.setenv("KUBECONFIG", kubeconfig())
    crd = tmp_path / "crd.yaml"
    crd.write_text(ROUTE_CRD)
    kubectl("apply", "-f", str(crd))
    kubectl("wait", "--for", "condition=established", "--timeout=60s",
            "crd/httproutes.gateway.networking.k8s.io")  # fmt: skip
    (tmp_path / "shipline.yaml").write_text(ROUTED)
    _overlay(tmp_path / "k8s" / "nginx-routed", INGRESS)
    _overlay(tmp_path / "k8s" / "gateway-routed", ROUTE)
    with running_worker(
        tmp_path / "shipline.yaml", tmp_path / "state", "dev", tmp_path / "worker.log"
    ) as env:
        try:
            yield env
        finally:
            for environment, namespace in (("nginx-routed", "shipline-nginx"),
                                           ("gateway-routed", "shipline-gateway")):  # fmt: skip
                sh(env, "down", "--env", environment)
                drop_namespace(namespace)


def _paused_canary(env: dict[str, str], environment: str) -> int:
    code, data = _run(env, "deploy", "--env", environment, "--services", "orders", "--tag", "1.0.0")
    assert code == 0, _errors(data)
    started = sh(env, "deploy", "--env", environment, "--services", "orders", "--tag", "2.0.0",
                 "--detach", "--json")  # fmt: skip
    run = int(json.loads(started.stdout)["run"])
    _wait_for(lambda: _weights(env, environment) == {"1.0.0": 70, "2.0.0": 30},
              "the canary paused at 30 %")  # fmt: skip
    return run


def _weights(env: dict[str, str], environment: str) -> dict[str, int]:
    rows = json.loads(sh(env, "status", "--env", environment, "--json").stdout)
    return dict(rows[0].get("weights") or {})


def _promote(env: dict[str, str], run: int) -> None:
    done = sh(env, "canary", "promote", str(run), "--as", "dev")
    assert done.returncode == 0, done.stdout + done.stderr
    _wait_for(lambda: json.loads(sh(env, "runs", "show", str(run), "--json").stdout)["phase"]
              == "succeeded", f"run {run} succeeded")  # fmt: skip


def _canary_ips(namespace: str) -> list[str]:
    pods = kubectl("get", "pods", "-n", namespace, "-l", "shipline.dev/track=canary", "-o",
                   "jsonpath={.items[*].status.podIP}").stdout.split()  # fmt: skip
    return sorted(pods)


def _endpoint_ips(namespace: str, service: str) -> list[str]:
    found = json.loads(kubectl("get", "endpoints", service, "-n", namespace, "-o", "json").stdout)
    return sorted(a["ip"] for s in found.get("subsets") or [] for a in s.get("addresses") or [])


def test_nginx_ingress_and_gateway_api_routers_set_the_canarys_weight(
    routed: dict[str, str],
) -> None:
    # NGINX Ingress: a canary Ingress copying the stable one, at the step's weight.
    run = _paused_canary(routed, "nginx-routed")
    _wait_for(lambda: "orders-web-canary" in objects("ingress", "shipline-nginx"),
              "the canary Ingress")  # fmt: skip
    ingress = objects("ingress", "shipline-nginx")["orders-web-canary"]
    notes = ingress["metadata"]["annotations"]
    assert (notes["nginx.ingress.kubernetes.io/canary"],
            notes["nginx.ingress.kubernetes.io/canary-weight"]) == ("true", "30")  # fmt: skip
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "orders-canary"
    # Stable's Service no longer reaches the canary's pods; the canary Service reaches only them.
    services = objects("services", "shipline-nginx")
    assert "pod-template-hash" in services["orders"]["spec"]["selector"]
    _wait_for(lambda: _endpoint_ips("shipline-nginx", "orders-canary")
              == _canary_ips("shipline-nginx") != [], "canary endpoints")  # fmt: skip
    assert not set(_endpoint_ips("shipline-nginx", "orders")) & set(_canary_ips("shipline-nginx"))
    _promote(routed, run)
    assert "orders-web-canary" not in objects("ingress", "shipline-nginx")
    services = objects("services", "shipline-nginx")
    assert "orders-canary" not in services
    assert "pod-template-hash" not in services["orders"]["spec"]["selector"]
    assert _version(routed, "nginx-routed") == "2.0.0"

    # Gateway API: the HTTPRoute's backend weights, restored afterwards.
    run = _paused_canary(routed, "gateway-routed")

    def refs() -> dict[str, int | None]:
        route = objects("httproutes", "shipline-gateway")["orders-route"]
        return {r["name"]: r.get("weight") for r in route["spec"]["rules"][0]["backendRefs"]}

    # The route is set right after the canary's replicas are ready (status shows the split
    # from the replicas first).
    _wait_for(lambda: refs() == {"orders": 70, "orders-canary": 30}, "the route's weights")
    _promote(routed, run)
    route = objects("httproutes", "shipline-gateway")["orders-route"]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "orders", "port": 80}]
    assert _version(routed, "gateway-routed") == "2.0.0"


def test_a_release_deploys_its_pushed_image_by_digest(
    small: dict[str, str], tmp_path: Path
) -> None:
    digest = "sha256:" + "4f" * 32
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"kind": "BuildManifest", "tag": "3.0.0", "services": {
        "orders": {"version": "3.0.0", "tag": "3.0.0", "digest": digest}}}))  # fmt: skip
    made = sh(small, "release", "create", "--from-manifest", str(manifest), "--name", "r3")
    assert made.returncode == 0, made.stderr
    code, data = _run(
        small, "deploy", "--env", "checked", "--services", "orders", "--release", "r3"
    )
    assert code == 0, _errors(data)
    container = objects("deployments", "shipline-checked")["orders"]["spec"]["template"]["spec"][
        "containers"][0]  # fmt: skip
    assert container["image"] == f"shipline/orders:3.0.0@{digest}"
    assert _version(small, "checked") == "3.0.0"
