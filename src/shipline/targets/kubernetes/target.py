"""The `kubernetes` target: a service is a Deployment (with its Service, ServiceAccount, HPA and
PDB) applied by server-side apply; its revisions are the Deployment's ReplicaSets.

- The objects come from the environment's Kustomize overlay (`manifests:` in the target's
  settings, e.g. `k8s/overlays/{environment}`, rendered by `kubectl kustomize`), or, without one,
  from a minimal Deployment and Service. The image tag, replicas, rolling-update budget and
  variables are set from the `DeploySpec` at every deploy; files are never edited.
- Secret variables reach the pods through a Secret `SERVICE-shipline-secrets` written at deploy
  time (never to disk); the Deployment names them with `secretKeyRef`.
- API versions a cluster does not serve (autoscaling/v2 and policy/v1 on 1.20) are replaced by
  ones it does, found by discovery.
- A rollout is waited for as `kubectl rollout status` does (observed generation, updated, ready
  and available replicas, progress deadline); new pods that crash-loop or cannot pull their image
  fail it at once. A failed rollout is undone (`rollout undo`), a failed first deploy removed.
- Every mutating call carries its change key in the pod template's annotations, so a change
  recorded under a key is found instead of made again.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import msgspec
from lightkube import ApiError, Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.core.exceptions import LoadResourceError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment, ReplicaSet
from lightkube.resources.core_v1 import (
    Endpoints,
    Event,
    Namespace,
    Pod,
    Secret,
    Service,
    ServiceAccount,
)
from lightkube.resources.networking_v1 import Ingress
from lightkube.types import PatchType
from ruamel.yaml import YAML

from shipline.domain.canary import Sample
from shipline.domain.deploy import (
    DeployPlan,
    DeploySpec,
    FieldChange,
    Revision,
    ServiceState,
    field_changes,
    plan_change,
)
from shipline.domain.health import HealthBounds, HealthCheck, Observation, troubleshooting
from shipline.domain.ports import LogSink, MetricSource, TargetContext
from shipline.errors import CheckFailed, NotFoundError, TargetError
from shipline.targets.kubernetes.apiversions import adapt, served_version
from shipline.targets.kubernetes.kubeconfig import check, kubeconfig_path

MANAGER = "shipline"
NAME = "app.kubernetes.io/name"
SPEC = "shipline.dev/spec"  # the applied DeploySpec (secret values left out)
CHANGE = "shipline.dev/change"  # the change key of the mutation that made this template
CAUSE = "kubernetes.io/change-cause"
ENVIRONMENT = "shipline.dev/environment"
REVISION = "deployment.kubernetes.io/revision"
RESTARTED = "kubectl.kubernetes.io/restartedAt"
STABLE_REPLICAS = "shipline.dev/stable-replicas"  # stable's own count while a canary runs
TRACK = "shipline.dev/track"
ROUTER = "shipline.dev/router"  # on a routed canary: "nginx:INGRESS" / "gateway-api:ROUTE"
WEIGHT = "shipline.dev/weight"  # on a routed canary: the share its router sends it
ROUTE_BEFORE = "shipline.dev/route-before"  # an HTTPRoute's rules before the canary
HASH = "pod-template-hash"
VERSION = "shipline.dev/version"  # on pods: which version they run (any tag, unlike labels)
SCRAPE = "prometheus.io/scrape"
CANARY_SUFFIX = "-canary"
UNDO_CAUSE = "shipline.dev/rollback-cause"  # on the Deployment: why its last undo was
UNDO_CHANGE = "shipline.dev/rollback-change"  # and under which change key
_PLURALS = {
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
}
_POD_PROBLEMS = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                 "CreateContainerConfigError")  # fmt: skip
_GENERIC = {
    ("autoscaling/v2beta2", "HorizontalPodAutoscaler"): ("horizontalpodautoscalers",),
    ("policy/v1beta1", "PodDisruptionBudget"): ("poddisruptionbudgets",),
}


def _quiet(line: str) -> None:
    """Log sink that drops lines."""


def _default_requests(container: dict[str, Any], spec: DeploySpec) -> None:
    """The tier's CPU and memory requests for a container that names neither a request nor a
    limit of its own for them (as a LimitRange's default request would; Kubernetes takes a
    limit alone for the request too); what the overlay names stays."""
    tiers = {"cpu": spec.cpu_request, "memory": spec.memory_request}
    if not any(tiers.values()):
        return
    resources = container.get("resources") or {}
    requests = dict(resources.get("requests") or {})
    limits = resources.get("limits") or {}
    for name, value in tiers.items():
        if value and name not in requests and name not in limits:
            requests[name] = value
    if requests:
        container["resources"] = {**resources, "requests": requests}


def _scale_on_cpu(hpa: dict[str, Any], utilization: int) -> None:
    """The tier's CPU utilization for an autoscaler that names no metric (Kubernetes would
    otherwise keep 80 %); one that names its metrics keeps them."""
    body = hpa.setdefault("spec", {})
    version = hpa.get("apiVersion")
    if version == "autoscaling/v1":
        body.setdefault("targetCPUUtilizationPercentage", utilization)
    elif not body.get("metrics"):
        target: dict[str, Any] = (
            {"targetAverageUtilization": utilization}  # the older schema
            if version == "autoscaling/v2beta1"
            else {"target": {"type": "Utilization", "averageUtilization": utilization}}
        )
        body["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", **target}}]


class KubernetesTarget:
    """Services as Deployments on one cluster (one kubeconfig context)."""

    routers: frozenset[str] = frozenset({"nginx", "gateway-api"})  # beside the replica ratio

    def __init__(
        self,
        connect: Callable[[], Client],
        *,
        kubeconfig: str,
        manifests: str | None = None,
        project: Path | None = None,
        rollout_timeout: float | None = None,
        port: int = 8080,
    ) -> None:
        self._connect = connect
        self._local = threading.local()
        self._clients: list[tuple[threading.Thread, Client]] = []
        self._clients_lock = threading.Lock()
        self.kubeconfig = kubeconfig
        self.manifests = manifests
        self.project = project or Path.cwd()
        self.rollout_timeout = rollout_timeout
        self.port = port
        self._served: set[str] | None = None
        self._namespaces: dict[tuple[str, str], str] = {}
        self._probers: dict[tuple[str, str], _Prober] = {}
        self._renders: dict[Path, tuple[tuple[Any, ...], list[dict[str, Any]]]] = {}
        self._render_lock = threading.Lock()

    @property
    def client(self) -> Client:
        """This thread's API client. Each thread has its own: TLS handshakes that share one
        client's SSL context from several threads can crash the process (CPython with OpenSSL 3),
        and a worker deploys several services at once."""
        found: Client | None = getattr(self._local, "client", None)
        if found is None:
            found = self._local.client = self._connect()
            with self._clients_lock:
                # Steps run in short-lived threads: the clients of ended ones are closed.
                ended = [(t, c) for t, c in self._clients if not t.is_alive()]
                self._clients = [(t, c) for t, c in self._clients if t.is_alive()]
                self._clients.append((threading.current_thread(), found))
            for _, client in ended:
                client.close()
        return found

    def close(self) -> None:
        """Stop canary probes and release the API connections."""
        for prober in self._probers.values():
            prober.stop()
        self._probers.clear()
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for _, client in clients:
            client.close()
        self._local = threading.local()

    # --- objects -------------------------------------------------------------------------

    def _namespace(self, spec: DeploySpec) -> str:
        namespace = spec.namespace or spec.environment
        self._namespaces[(spec.environment, spec.service)] = namespace
        return namespace

    def _where(self, environment: str, service: str) -> str:
        """The namespace `service` of `environment` was deployed to (found by its labels)."""
        known = self._namespaces.get((environment, service))
        if known:
            return known
        found = list(
            self.client.list(
                Deployment, namespace="*", labels={NAME: service, ENVIRONMENT: environment}
            )
        )
        namespace = found[0].metadata.namespace if found and found[0].metadata else None
        if namespace:
            self._namespaces[(environment, service)] = namespace
        return namespace or environment

    def served(self) -> set[str]:
        """The "group/version"s the API server serves (discovery, once)."""
        with self._render_lock:
            return self._discover()

    def _discover(self) -> set[str]:
        if self._served is None:
            raw = subprocess.run(
                ["kubectl", "--kubeconfig", self.kubeconfig, "api-versions"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            if raw.returncode != 0:
                raise TargetError(f"discovery failed: {raw.stderr.strip()[:200]}")
            self._served = set(raw.stdout.split())
        return self._served

    def _rendered(self, spec: DeploySpec) -> list[dict[str, Any]]:
        """The service's objects: from the overlay when one is configured, else a minimal pair."""
        if not self.manifests:
            return self._minimal(spec)
        folder = self.project / self.manifests.format(environment=spec.environment)
        docs = self._render(folder)
        mine = [  # named after the service, or labelled with its name (an Ingress, a route)
            json.loads(json.dumps(d))  # a copy: the cached rendering stays as rendered
            for d in docs
            if d.get("kind") != "Namespace"
            and (
                (d.get("metadata") or {}).get("name") == spec.service
                or ((d.get("metadata") or {}).get("labels") or {}).get(NAME) == spec.service
            )
        ]
        if not any(d.get("kind") == "Deployment" for d in mine):
            raise NotFoundError(f"the overlay {folder} has no Deployment '{spec.service}'")
        return mine

    def _render(self, folder: Path) -> list[dict[str, Any]]:
        """`kubectl kustomize folder`, rendered again only when a file under the manifests'
        top folder changed (a stage deploying 22 services renders its overlay once)."""
        top = self.project / Path(str(self.manifests)).parts[0]
        with self._render_lock:
            stamp = _stamp(top) if top.is_dir() and top != self.project else None
            cached = self._renders.get(folder)
            if cached is not None and stamp is not None and cached[0] == stamp:
                return cached[1]
            done = subprocess.run(
                ["kubectl", "kustomize", str(folder)], capture_output=True, text=True,
                timeout=120, check=False,
            )  # fmt: skip
            if done.returncode != 0:
                raise TargetError(
                    f"kubectl kustomize {folder} failed: {done.stderr.strip()[:300]}",
                    hint="check the overlay: kubectl kustomize " + str(folder),
                )
            docs = [d for d in YAML(typ="safe").load_all(done.stdout) if d]
            if stamp is not None:
                self._renders[folder] = (stamp, docs)
            return docs

    def _minimal(self, spec: DeploySpec) -> list[dict[str, Any]]:
        labels = {NAME: spec.service}
        probe = {"httpGet": {"path": spec.health_path, "port": "http"}, "periodSeconds": 1}
        return [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": spec.service, "labels": labels},
                "spec": {
                    "selector": {"matchLabels": labels},
                    "progressDeadlineSeconds": 120,
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "containers": [
                                {
                                    "name": spec.service,
                                    "image": spec.image or f"shipline/{spec.service}",
                                    "ports": [{"name": "http", "containerPort": self.port}],
                                    "readinessProbe": probe,
                                }
                            ]
                        },
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": spec.service, "labels": labels},
                "spec": {
                    "selector": labels,
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
                },
            },
        ]

    def _desired(
        self, spec: DeploySpec, *, cause: str, change: str | None
    ) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """The objects to apply for `spec`, and the secret values for the service's Secret."""
        docs = [json.loads(json.dumps(d)) for d in self._rendered(spec)]
        secrets = {k: v for k, v in spec.env.items() if k in spec.secret_names}
        stored = spec.stored()
        for doc in docs:
            meta = doc.setdefault("metadata", {})
            meta["namespace"] = self._namespace(spec)
            meta.setdefault("labels", {})[ENVIRONMENT] = spec.environment
            if doc["kind"] == "Service":
                _with_protocols(doc["spec"].get("ports", []))
            if doc["kind"] == "HorizontalPodAutoscaler" and spec.cpu_target is not None:
                _scale_on_cpu(doc, spec.cpu_target)
            if doc["kind"] != "Deployment":
                continue
            body = doc["spec"]
            body["replicas"] = spec.replicas
            if spec.progress_deadline:
                body["progressDeadlineSeconds"] = spec.progress_deadline
            body["strategy"] = {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": spec.max_surge,
                    "maxUnavailable": spec.max_unavailable,
                },
            }
            template = body["template"]
            pod_meta = template.setdefault("metadata", {})
            pod_meta.setdefault("labels", {})[ENVIRONMENT] = spec.environment
            notes = pod_meta.setdefault("annotations", {})
            notes[SPEC] = json.dumps(stored, sort_keys=True)
            notes[VERSION] = spec.version  # metrics are told apart by version (Prometheus)
            notes.setdefault(SCRAPE, "true")
            notes[CAUSE] = cause
            if change:
                notes[CHANGE] = change
            container = template["spec"]["containers"][0]
            image = spec.image or str(container.get("image", spec.service)).split(":")[0]
            # The release's pushed image by digest (the tag stays for people to read).
            container["image"] = f"{image}:{spec.version}" + (
                f"@{spec.digest}" if spec.digest else ""
            )
            env = [e for e in container.get("env", []) if e["name"] not in spec.env]
            for name in sorted(spec.env):
                if name in spec.secret_names:
                    env.append({
                        "name": name,
                        "valueFrom": {"secretKeyRef": {"name": self._secret_name(spec),
                                                       "key": name}},
                    })  # fmt: skip
                else:
                    env.append({"name": name, "value": spec.env[name]})
            container["env"] = env
            _with_protocols(container.get("ports", []))
            pod = template["spec"]
            for each in [*pod["containers"], *(pod.get("initContainers") or [])]:
                _default_requests(each, spec)
        return adapt(docs, self.served()), secrets

    @staticmethod
    def _secret_name(spec: DeploySpec) -> str:
        return f"{spec.service}-shipline-secrets"

    def _resource(self, doc: dict[str, Any]) -> Any:
        """The object as the client sends it: a known kind, or (a version or a custom resource
        its models do not carry, e.g. an HTTPRoute) a namespaced generic one."""
        key = (doc["apiVersion"], doc["kind"])
        group, _, version = doc["apiVersion"].partition("/")
        if key in _GENERIC:
            cls = create_namespaced_resource(group, version, doc["kind"], _GENERIC[key][0])
            return cls.from_dict(doc)
        try:
            return from_dict(doc)
        except (LoadResourceError, AttributeError, KeyError, ValueError):
            cls = create_namespaced_resource(group, version, doc["kind"], _plural(doc["kind"]))
            return cls.from_dict(doc)

    def _apply_docs(self, docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            try:
                self.client.apply(self._resource(doc), field_manager=MANAGER, force=True)
            except ApiError as exc:
                raise TargetError(
                    f"apply {doc['kind']} {doc['metadata']['name']}: {exc.status.message}"
                ) from exc

    def _ensure_namespace(self, name: str) -> None:
        try:
            self.client.get(Namespace, name)
        except ApiError:
            with contextlib.suppress(ApiError):
                self.client.create(from_dict({"apiVersion": "v1", "kind": "Namespace",
                                              "metadata": {"name": name}}))  # fmt: skip

    def _secret_values(self, spec: DeploySpec) -> dict[str, str]:
        """The values the service's Secret holds now (in memory only)."""
        try:
            found = self._get(
                Secret, self._secret_name(spec), self._where(spec.environment, spec.service)
            )
        except NotFoundError:
            return {}
        return {k: base64.b64decode(v).decode() for k, v in (found.get("data") or {}).items()}

    def _write_secret(self, spec: DeploySpec, values: dict[str, str]) -> None:
        if not values:
            return
        secret = from_dict({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": self._secret_name(spec), "namespace": self._namespace(spec),
                         "labels": {NAME: spec.service}},
            "stringData": values,
        })  # fmt: skip
        self.client.apply(cast(Any, secret), field_manager=MANAGER, force=True)

    # --- reading ---------------------------------------------------------------------------

    def _get(self, kind: Any, name: str, namespace: str) -> dict[str, Any]:
        """An object as a plain dict (NotFoundError when there is none)."""
        try:
            found: dict[str, Any] = self.client.get(kind, name, namespace=namespace).to_dict()
        except ApiError as exc:
            if exc.status.code == 404:
                raise NotFoundError(f"{kind.__name__} {name} not found in {namespace}") from None
            raise TargetError(f"read {kind.__name__} {name}: {exc.status.message}") from exc
        return found

    def _optional(
        self, api_version: str, kind: str, name: str, namespace: str
    ) -> dict[str, Any] | None:
        """An object of a kind whose version depends on the cluster (HPA, PDB), or None."""
        chosen = served_version(api_version, self.served())
        if chosen is None:
            return None
        group, _, version = chosen.partition("/")
        resource = create_namespaced_resource(group, version, kind, _PLURALS[kind])
        try:
            return self._get(resource, name, namespace)
        except NotFoundError:
            return None

    def _list(self, kind: Any, namespace: str, labels: dict[str, Any]) -> list[dict[str, Any]]:
        return [o.to_dict() for o in self.client.list(kind, namespace=namespace, labels=labels)]

    def _deployment(self, environment: str, service: str) -> dict[str, Any]:
        try:
            return self._get(Deployment, service, self._where(environment, service))
        except NotFoundError:
            raise NotFoundError(f"{service} is not deployed to {environment}") from None

    def _replica_sets(self, environment: str, service: str) -> list[dict[str, Any]]:
        """The ReplicaSets of the Deployment (by its uid: those of a deleted one being
        collected do not count), oldest revision first."""
        owner = _dig(self._deployment(environment, service), "metadata", "uid")
        found = self._list(ReplicaSet, self._where(environment, service), {NAME: service})
        mine = [
            rs
            for rs in found
            if any(o.get("uid") == owner for o in _dig(rs, "metadata", "ownerReferences") or [])
        ]
        return sorted(mine, key=_revision_of)

    @staticmethod
    def _template_notes(obj: dict[str, Any]) -> dict[str, str]:
        notes: dict[str, str] = _dig(obj, "spec", "template", "metadata", "annotations") or {}
        return notes

    @classmethod
    def _spec_of(cls, obj: dict[str, Any]) -> dict[str, Any] | None:
        raw = cls._template_notes(obj).get(SPEC)
        return json.loads(raw) if raw else None

    # --- DeployTarget ----------------------------------------------------------------------

    def plan(self, spec: DeploySpec) -> DeployPlan:
        """What applying `spec` would change: the spec's own fields (secret values compared
        with the Secret, never shown), and every object's fields as a server-side dry run of
        the apply sees them against the live objects."""
        fields = tuple(self._dry_run(spec))
        try:
            deployment = self._deployment(spec.environment, spec.service)
        except NotFoundError:
            return replace(plan_change(None, spec), fields=fields)
        stored = self._spec_of(deployment)
        if stored is None:
            return replace(plan_change(None, spec), fields=fields)
        # Secret values are compared with the Secret itself, never with a digest kept where
        # anyone who reads Deployments could guess at it.
        current = DeploySpec.from_stored(stored, self._secret_values(spec))
        return replace(plan_change(current, spec), fields=fields)

    def _dry_run(self, spec: DeploySpec) -> list[FieldChange]:
        """Field-level changes: each object applied with dryRun=All, compared with the live one
        (shipline's bookkeeping annotations and server-kept fields left out)."""
        docs, _ = self._desired(spec, cause="preview", change=None)
        changes: list[FieldChange] = []
        for doc in docs:
            resource = self._resource(doc)
            label = f"{doc['kind']}/{doc['metadata']['name']}"
            namespace = doc["metadata"]["namespace"]
            try:
                live = self.client.get(type(resource), doc["metadata"]["name"], namespace=namespace)
            except ApiError as exc:
                if exc.status.code != 404:
                    raise TargetError(f"read {label}: {exc.status.message}") from exc
                changes.append(FieldChange(label, "", None, "created"))
                continue
            try:
                dry = self.client.apply(resource, field_manager=MANAGER, force=True, dry_run=True)
            except ApiError as exc:
                raise TargetError(
                    f"dry run of {label}: {exc.status.message}",
                    hint="the API server refused the object: check the overlay",
                ) from exc
            found = field_changes(label, _comparable(live.to_dict()), _comparable(dry.to_dict()))
            changes += [_masked(change) for change in found]
        return changes

    def apply(
        self,
        spec: DeploySpec,
        *,
        cause: str = "deploy",
        log: LogSink = _quiet,
        change: str | None = None,
    ) -> int:
        """Server-side apply of the service's objects, then the rollout waited for."""
        done = self._recorded(spec.environment, spec.service, change)
        if done is not None:
            log(f"{spec.service}: {cause} already applied (revision {done})")
            return done
        try:
            self._deployment(spec.environment, spec.service)
            first = False
        except NotFoundError:
            first = True
        docs, secrets = self._desired(spec, cause=cause, change=change)
        self._ensure_namespace(self._namespace(spec))
        self._write_secret(spec, secrets)
        self._apply_docs(docs)
        log(f"{spec.service} {spec.version}: applied {len(docs)} object(s); rolling out")
        try:
            return self._await_rollout(spec.environment, spec.service, log)
        except CheckFailed:
            if first:
                self.stop(spec.environment, spec.service)
                log(f"{spec.service}: first deploy failed; removed")
            else:
                failed = self._replica_sets(spec.environment, spec.service)[-1]
                self._undo(spec.environment, spec.service, 0, log=log, cause="undo failed rollout")
                with contextlib.suppress(ApiError):  # a failed rollout is not a revision
                    self.client.delete(
                        ReplicaSet, str(_dig(failed, "metadata", "name")),
                        namespace=self._where(spec.environment, spec.service),
                    )  # fmt: skip
            raise

    def _recorded(self, environment: str, service: str, change: str | None) -> int | None:
        if change is None:
            return None
        try:
            sets = self._replica_sets(environment, service)
        except NotFoundError:
            return None
        for rs in sets:
            if self._template_notes(rs).get(CHANGE) == change:
                return _revision_of(rs)
        deployment = self._deployment(environment, service)
        if (_dig(deployment, "metadata", "annotations") or {}).get(UNDO_CHANGE) == change:
            return _revision_of(deployment)
        return None

    def _new_pods(self, environment: str, service: str) -> list[dict[str, Any]]:
        sets = self._replica_sets(environment, service)
        if not sets:
            return []
        newest = sets[-1]
        template_hash = (_dig(newest, "metadata", "labels") or {}).get("pod-template-hash", "")
        labels = {NAME: service, "pod-template-hash": template_hash}
        owner = _dig(newest, "metadata", "uid")
        return [
            pod
            for pod in self._list(Pod, self._where(environment, service), labels)
            if any(o.get("uid") == owner for o in _dig(pod, "metadata", "ownerReferences") or [])
        ]

    def _pod_problem(self, environment: str, service: str) -> tuple[str, str] | None:
        """(pod, reason) of the first new pod that is not running well: a waiting reason
        (CrashLoopBackOff, ImagePullBackOff, ...), restarts, or not ready."""
        unready: tuple[str, str] | None = None
        for pod in self._new_pods(environment, service):
            name = str(_dig(pod, "metadata", "name"))
            for state in _dig(pod, "status", "containerStatuses") or []:
                reason = _dig(state, "state", "waiting", "reason")
                if reason in _POD_PROBLEMS:
                    return name, str(reason)
                if int(state.get("restartCount") or 0) > 0:
                    return name, "restarting"
                if not state.get("ready") and unready is None:
                    unready = name, "not-ready"
        return unready

    def _rollout_failed(
        self, environment: str, service: str, what: str, problem: tuple[str, str] | None
    ) -> CheckFailed:
        namespace = self._where(environment, service)
        pod, reason = problem or ("POD", "timeout")
        said = {"not-ready": "not ready (readiness probe failing)", "restarting": "restarting"}
        return CheckFailed(
            f"{service}: {what}"
            + (f"; pod {pod} is {said.get(reason, reason)}" if problem else ""),
            hint=troubleshooting(reason, service, namespace, pod),
        )

    def _limit(self, deadline: int | None) -> float:
        """How long to wait for pods: the progress deadline and a margin for the controller to
        report it, at most the target's own `rollout_timeout` when one is set."""
        wait = (deadline or 600) + 15
        return min(wait, self.rollout_timeout) if self.rollout_timeout else wait

    def _await_rollout(self, environment: str, service: str, log: LogSink) -> int:
        """Wait as `kubectl rollout status` does, until the Deployment's progress deadline
        (plus a margin for the controller to say so); fail fast on crash loops and pull errors."""
        start = time.monotonic()
        while True:
            dep = self._deployment(environment, service)
            deadline = int(_dig(dep, "spec", "progressDeadlineSeconds") or 600)
            limit = self._limit(deadline)
            status, wanted = dep.get("status") or {}, int(_dig(dep, "spec", "replicas") or 0)
            generation = int(_dig(dep, "metadata", "generation") or 0)
            if int(status.get("observedGeneration") or 0) >= generation:
                for condition in status.get("conditions") or []:
                    if condition.get("reason") == "ProgressDeadlineExceeded":
                        raise self._rollout_failed(
                            environment, service,
                            f"rollout made no progress for {deadline} s (its progress deadline)",
                            self._pod_problem(environment, service),
                        )  # fmt: skip
                updated = int(status.get("updatedReplicas") or 0)
                if (
                    updated >= wanted
                    and int(status.get("replicas") or 0) <= updated
                    and int(status.get("availableReplicas") or 0) >= updated
                    and int(status.get("readyReplicas") or 0) >= wanted
                ):
                    revision = _revision_of(dep)
                    log(f"{service}: rolled out (revision {revision}, {wanted} ready)")
                    return revision
            problem = self._pod_problem(environment, service)
            if problem and problem[1] != "not-ready":
                raise self._rollout_failed(environment, service, "new pods fail", problem)
            waited = time.monotonic() - start
            if waited > limit:
                raise self._rollout_failed(
                    environment, service, f"rollout not done after {waited:.0f} s", problem
                )
            time.sleep(0.25)

    def observe(self, environment: str, service: str) -> ServiceState:
        """The Deployment's state: version from its template, replicas from its status."""
        dep = self._deployment(environment, service)
        stored = self._spec_of(dep) or {}
        containers = _dig(dep, "spec", "template", "spec", "containers") or [{}]
        image = str(containers[0].get("image", "")).split("@", 1)[0]
        tail = image.rsplit("/", 1)[-1]
        version = str(stored.get("version") or (tail.split(":", 1)[1] if ":" in tail else ""))
        status = dep.get("status") or {}
        restarts = crash = 0
        for pod in self._new_pods(environment, service):
            for state in _dig(pod, "status", "containerStatuses") or []:
                restarts += int(state.get("restartCount") or 0)
                crash += int(_dig(state, "state", "waiting", "reason") == "CrashLoopBackOff")
        weights, canary_version = {version: 100}, None
        canary = self._canary(environment, service)
        if canary is not None:
            canary_version = str((self._spec_of(canary) or {}).get("version", ""))
            stable_ready = int(status.get("readyReplicas") or 0)
            canary_ready = int(_dig(canary, "status", "readyReplicas") or 0)
            total = max(stable_ready + canary_ready, 1)
            share = round(100 * canary_ready / total)
            routed = (_dig(canary, "metadata", "annotations") or {}).get(WEIGHT)
            if routed is not None:  # a router sets the share, not the pods
                share = int(routed)
            weights = {version: 100 - share, canary_version: share}
        return ServiceState(
            environment,
            service,
            version,
            canary=canary_version,
            desired=int(_dig(dep, "spec", "replicas") or 0),
            running=int(status.get("replicas") or 0),
            ready=int(status.get("readyReplicas") or 0),
            revision=_revision_of(dep),
            restarts=restarts,
            crash_looping=crash,
            weights=weights,
            address=f"{service}.{self._where(environment, service)}.svc",
        )

    def history(self, environment: str, service: str) -> list[Revision]:
        """The Deployment's ReplicaSets, oldest revision first."""
        out = []
        for rs in self._replica_sets(environment, service):
            stored = self._spec_of(rs) or {}
            out.append(
                Revision(
                    _revision_of(rs),
                    str(stored.get("version", "")),
                    int(stored.get("replicas", _dig(rs, "spec", "replicas") or 0)),
                    str(_dig(rs, "metadata", "creationTimestamp") or ""),
                    self._template_notes(rs).get(CAUSE, ""),
                    tuple(sorted(stored.get("env", {})) + list(stored.get("secretNames", []))),
                    change=self._template_notes(rs).get(CHANGE),
                )
            )
        return out

    def rollback(
        self,
        environment: str,
        service: str,
        revision: int = 0,
        *,
        log: LogSink = _quiet,
        change: str | None = None,
    ) -> int:
        """`kubectl rollout undo [--to-revision N]`: the ReplicaSet's template back in place."""
        done = self._recorded(environment, service, change)
        if done is not None:
            return done
        return self._undo(environment, service, revision, log=log, change=change)

    def _undo(
        self,
        environment: str,
        service: str,
        revision: int,
        *,
        log: LogSink,
        change: str | None = None,
        cause: str | None = None,
    ) -> int:
        sets = self._replica_sets(environment, service)
        numbers = [_revision_of(rs) for rs in sets]
        if revision == 0:
            if len(numbers) < 2:
                raise NotFoundError(f"{service} in {environment} has no previous revision")
            revision = numbers[-2]
        chosen = next((rs for rs in sets if _revision_of(rs) == revision), None)
        if chosen is None:
            raise NotFoundError(
                f"{service} in {environment} has no revision {revision}",
                hint=f"revisions: {', '.join(map(str, numbers)) or 'none'}",
            )
        template = json.loads(json.dumps(_dig(chosen, "spec", "template")))
        (_dig(template, "metadata", "labels") or {}).pop("pod-template-hash", None)
        # As `kubectl rollout undo`: the very template, so the ReplicaSet is reused (and takes
        # the next revision number); who and why go on the Deployment.
        notes = {UNDO_CAUSE: cause or f"rollback to revision {revision}", UNDO_CHANGE: change}
        try:
            self.client.patch(
                Deployment, service,
                [{"op": "replace", "path": "/spec/template", "value": template}],
                namespace=self._where(environment, service), patch_type=PatchType.JSON,
                field_manager=MANAGER,
            )  # fmt: skip
        except ApiError as exc:
            raise TargetError(f"roll back Deployment {service}: {exc.status.message}") from exc
        self._patch(environment, service, {"metadata": {"annotations": notes}})
        log(f"{service}: rolling back to revision {revision}")
        return self._await_rollout(environment, service, log)

    def _patch(self, environment: str, service: str, patch: dict[str, Any]) -> None:
        try:
            self.client.patch(
                Deployment, service, patch, namespace=self._where(environment, service),
                patch_type=PatchType.MERGE, field_manager=MANAGER,
            )  # fmt: skip
        except ApiError as exc:
            raise TargetError(f"patch Deployment {service}: {exc.status.message}") from exc

    # --- ServiceControl ----------------------------------------------------------------------

    def scale(
        self,
        environment: str,
        service: str,
        replicas: int,
        *,
        log: LogSink = _quiet,
        change: str | None = None,
    ) -> int:
        """Set the replica count (no new revision: scaling is not a rollout in Kubernetes)."""
        self._deployment(environment, service)
        self._patch(environment, service, {"spec": {"replicas": replicas}})
        return self._await_rollout(environment, service, log)

    def restart(
        self, environment: str, service: str, *, log: LogSink = _quiet, change: str | None = None
    ) -> int:
        """`kubectl rollout restart`: a pod-template annotation; with a change key as its value
        the same restart twice changes the template once."""
        done = self._recorded(environment, service, change)
        if done is not None:
            return done
        self._deployment(environment, service)
        notes = {RESTARTED: change or datetime.now(UTC).isoformat(), CAUSE: "restart"}
        if change:
            notes[CHANGE] = change
        self._patch(
            environment, service, {"spec": {"template": {"metadata": {"annotations": notes}}}}
        )
        return self._await_rollout(environment, service, log)

    def stop(self, environment: str, service: str | None = None) -> list[str]:
        """Delete the service's objects (every service of the environment: None)."""
        labels: dict[str, Any] = {ENVIRONMENT: environment}
        if service:
            labels[NAME] = service
        found = self._list(Deployment, "*", labels)
        found = [d for d in found if TRACK not in (_dig(d, "metadata", "labels") or {})]
        for prober in [p for k, p in self._probers.items() if k[0] == environment]:
            prober.stop()
        for deployment in found:
            name = str(_dig(deployment, "metadata", "name"))
            namespace = str(_dig(deployment, "metadata", "namespace"))
            self._unroute(environment, name, _quiet)
            self._namespaces.pop((environment, name), None)
            kinds: list[tuple[Any, str]] = [
                (Deployment, name), (Deployment, f"{name}{CANARY_SUFFIX}"), (Service, name),
                (Secret, f"{name}-shipline-secrets"), (ServiceAccount, name),
            ]  # fmt: skip
            for wanted, kind in (("autoscaling/v2", "HorizontalPodAutoscaler"),
                                 ("policy/v1", "PodDisruptionBudget")):  # fmt: skip
                chosen = served_version(wanted, self.served())
                if chosen:
                    group, _, number = chosen.partition("/")
                    resource = create_namespaced_resource(group, number, kind, _PLURALS[kind])
                    kinds.append((resource, name))
            routes: list[Any] = [Ingress]
            with contextlib.suppress(TargetError):
                routes.append(self._route_kind())
            for kind in routes:  # the overlay's Ingresses and routes labelled as the service's
                with contextlib.suppress(ApiError):
                    for obj in self._list(kind, namespace, {NAME: name, ENVIRONMENT: environment}):
                        kinds.append((kind, str(_dig(obj, "metadata", "name"))))
            for kind, target in kinds:
                with contextlib.suppress(ApiError):
                    self.client.delete(kind, target, namespace=namespace)
        return sorted(str(_dig(d, "metadata", "name")) for d in found)

    def health(self, environment: str, service: str, bounds: HealthBounds) -> Observation:
        """The six checks' inputs: pods, restarts, endpoints, the HPA's and the PDB's own
        state, Warning events."""
        state = self.observe(environment, service)
        namespace = self._where(environment, service)
        endpoint_ok, detail = False, "no endpoints: no ready pod matches the Service's selector"
        try:
            endpoints = self._get(Endpoints, service, namespace)
            ready = [a for s in endpoints.get("subsets") or [] for a in s.get("addresses") or []]
            if ready:
                endpoint_ok, detail = True, f"{len(ready)} endpoint(s)"
        except NotFoundError:
            detail = f"Service {service} not found"
        warnings = tuple(
            f"{e.get('reason')}: {e.get('message')}"
            for e in self._list(Event, namespace, {})
            if e.get("type") == "Warning"
            and str(_dig(e, "involvedObject", "name") or "").startswith(f"{service}-")
        )
        return Observation.of(
            state, bounds, endpoint_ok=endpoint_ok, endpoint_detail=detail,
            error_events=warnings[-5:], namespace=namespace,
            pod_problem=self._pod_problem(environment, service),
            autoscaler=self._autoscaler(service, namespace, state.desired),
            budget=self._budget(service, namespace, bounds.required_available),
        )  # fmt: skip

    def _autoscaler(self, service: str, namespace: str, desired: int) -> HealthCheck | None:
        """The HPA's own state (None without one: the bounds check applies)."""
        hpa = self._optional("autoscaling/v2", "HorizontalPodAutoscaler", service, namespace)
        if hpa is None:
            return None
        low = int(_dig(hpa, "spec", "minReplicas") or 1)
        high = int(_dig(hpa, "spec", "maxReplicas") or 0)
        said = f"{desired} replica(s), HPA bounds {low}-{high}"
        describe = f"`kubectl describe hpa {service} -n {namespace}`"
        if not low <= desired <= high:
            return HealthCheck("scaling", False, f"{said}: outside them", f"{describe}")
        conditions = {c.get("type"): c for c in _dig(hpa, "status", "conditions") or []}
        able, active = conditions.get("AbleToScale"), conditions.get("ScalingActive")
        if able and able.get("status") == "False":
            why = f"{able.get('reason')}: {able.get('message')}"
            return HealthCheck("scaling", False, f"{said}; HPA cannot scale ({why})", describe)
        if active and active.get("status") == "False" and active.get("reason") != "ScalingDisabled":
            return HealthCheck(
                "scaling", True, f"{said}; HPA has no metrics ({active.get('reason')})",
                troubleshooting("hpa-no-metrics", service, namespace), warning=True,
            )  # fmt: skip
        if not conditions:
            return HealthCheck("scaling", True, f"{said}; HPA not evaluated yet")
        return HealthCheck("scaling", True, f"{said}; HPA active")

    def _budget(self, service: str, namespace: str, required: int) -> HealthCheck | None:
        """The PDB's own state once its controller has seen it (None without one, when the
        tier asks for none: the rollout's low point applies)."""
        name = "disruption budget"
        pdb: dict[str, Any] | None = None
        for _ in range(20):  # the disruption controller counts within moments of a change
            pdb = self._optional("policy/v1", "PodDisruptionBudget", service, namespace)
            if pdb is None:
                break
            seen = int(_dig(pdb, "status", "observedGeneration") or 0)
            if seen >= int(_dig(pdb, "metadata", "generation") or 0) and (pdb.get("status") or {}):
                break
            time.sleep(0.25)
        if pdb is None:
            if required <= 0:
                return None
            return HealthCheck(
                name, False, f"no PodDisruptionBudget {service}; the tier requires {required}"
                " available", f"apply the overlay's PodDisruptionBudget (`kubectl get pdb -n "
                f"{namespace}`)",
            )  # fmt: skip
        status = pdb.get("status") or {}
        healthy, wanted = (
            int(status.get("currentHealthy") or 0),
            int(status.get("desiredHealthy") or 0),
        )
        allowed = int(status.get("disruptionsAllowed") or 0)
        ok = healthy >= wanted
        said = f"PDB {service}: {healthy} healthy, {wanted} required, {allowed} may be disrupted"
        hint = None if ok else f"`kubectl describe pdb {service} -n {namespace}`"
        return HealthCheck(name, ok, said, hint)

    # --- CanaryRouter: replica ratio ---------------------------------------------------------

    def _canary_name(self, service: str) -> str:
        return f"{service}{CANARY_SUFFIX}"

    def _canary(self, environment: str, service: str) -> dict[str, Any] | None:
        try:
            return self._get(
                Deployment, self._canary_name(service), self._where(environment, service)
            )
        except NotFoundError:
            return None

    def set_canary(
        self, spec: DeploySpec, weight: int, *, probe_rps: float = 0.0, log: LogSink = _quiet
    ) -> bool:
        """A canary Deployment beside stable, behind the same Service: `weight` % of the pods
        (stable scaled so that the ratio holds, never below its own count). Returns whether the
        canary was started now (False: it ran already, only its weight changed)."""
        environment, service = spec.environment, spec.service
        if spec.router is not None:
            return self._routed_canary(spec, weight, probe_rps, log)
        stable = self._deployment(environment, service)
        notes = _dig(stable, "metadata", "annotations") or {}
        base = int(notes.get(STABLE_REPLICAS) or _dig(stable, "spec", "replicas") or 1)
        canary_pods, stable_pods = _ratio(weight, base)
        existing = self._canary(environment, service)
        deployment, secrets = self._canary_deployment(spec, canary_pods)
        self._write_secret(spec, secrets)
        self._apply_docs([deployment])
        self._patch(
            environment, service,
            {"metadata": {"annotations": {STABLE_REPLICAS: str(base)}},
             "spec": {"replicas": stable_pods}},
        )  # fmt: skip
        self._await_pods(spec, canary_pods, stable_pods)
        log(f"{service}: canary {spec.version} at {weight} % ({canary_pods} of "
            f"{canary_pods + stable_pods} pods)")  # fmt: skip
        key = (environment, service)
        if probe_rps > 0 and key not in self._probers:
            self._probers[key] = _Prober(self, environment, service, probe_rps)
        return existing is None

    def _canary_deployment(
        self, spec: DeploySpec, pods: int
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The canary Deployment for `spec` with `pods` replicas, and its secrets: the service's
        objects as rendered, renamed, with the canary track in its selector and pod labels."""
        service = spec.service
        docs, secrets = self._desired(replace(spec, replicas=pods), cause="canary", change=None)
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        deployment["metadata"]["name"] = self._canary_name(service)
        deployment["metadata"]["labels"][TRACK] = "canary"
        deployment["spec"]["selector"] = {"matchLabels": {NAME: service, TRACK: "canary"}}
        deployment["spec"]["template"]["metadata"].setdefault("labels", {}).update(
            {NAME: service, TRACK: "canary"}
        )
        return deployment, secrets

    def _routed_canary(self, spec: DeploySpec, weight: int, probe_rps: float, log: LogSink) -> bool:
        """A canary Deployment with its own Service; stable's Service narrowed to stable's pods
        (their pod-template-hash, as Argo Rollouts does); the router sends `weight` % to the
        canary Service: an NGINX canary Ingress, or the HTTPRoute's backend weights."""
        assert spec.router is not None
        environment, service = spec.environment, spec.service
        kind, name = spec.router
        namespace = self._namespace(spec)
        stable = self._deployment(environment, service)
        base = int(_dig(stable, "spec", "replicas") or 1)
        pods = max(1, -(-base * weight // 100))
        existing = self._canary(environment, service)
        deployment, secrets = self._canary_deployment(spec, pods)
        deployment["metadata"].setdefault("annotations", {}).update(
            {ROUTER: f"{kind}:{name}", WEIGHT: str(weight)}
        )
        if existing is not None:  # what the route was before the canary is kept as it was
            before = (_dig(existing, "metadata", "annotations") or {}).get(ROUTE_BEFORE)
            if before:
                deployment["metadata"]["annotations"][ROUTE_BEFORE] = before
        self._write_secret(spec, secrets)
        self._apply_docs([deployment])
        self._await_pods(spec, pods, base)
        stable_hash = (_dig(self._replica_sets(environment, service)[-1], "metadata", "labels")
                       or {}).get(HASH)  # fmt: skip
        self._narrow_stable(service, namespace, stable_hash)
        self._canary_service(service, namespace)
        if kind == "nginx":
            self._nginx_weight(service, namespace, name, weight)
        else:
            before = self._route_weight(service, namespace, name, weight)
            if before is not None and ROUTE_BEFORE not in deployment["metadata"]["annotations"]:
                self._patch_canary(environment, service, {ROUTE_BEFORE: before})
        log(f"{service}: canary {spec.version} at {weight} % ({kind} {name}; {pods} canary pod(s)"
            f" beside {base})")  # fmt: skip
        key = (environment, service)
        if probe_rps > 0 and key not in self._probers:
            self._probers[key] = _Prober(self, environment, service, probe_rps)
        return existing is None

    def _patch_canary(self, environment: str, service: str, notes: dict[str, str | None]) -> None:
        with contextlib.suppress(ApiError):
            self.client.patch(
                Deployment, self._canary_name(service), {"metadata": {"annotations": notes}},
                namespace=self._where(environment, service), patch_type=PatchType.MERGE,
            )  # fmt: skip

    def _narrow_stable(self, service: str, namespace: str, stable_hash: str | None) -> None:
        """Stable's Service selects stable's pods only (or, with None, all of the service's)."""
        try:
            self.client.patch(
                Service, service, {"spec": {"selector": {HASH: stable_hash}}},
                namespace=namespace, patch_type=PatchType.MERGE,
            )  # fmt: skip
        except ApiError as exc:
            if exc.status.code != 404 or stable_hash is not None:
                raise TargetError(f"patch Service {service}: {exc.status.message}") from exc

    def _canary_service(self, service: str, namespace: str) -> None:
        """`SERVICE-canary`: stable's Service ports, selecting the canary's pods."""
        stable = self._get(Service, service, namespace)
        ports = [{k: v for k, v in p.items() if k in ("name", "port", "targetPort", "protocol")}
                 for p in _dig(stable, "spec", "ports") or []]  # fmt: skip
        self._apply_docs([{
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": self._canary_name(service), "namespace": namespace,
                         "labels": {NAME: service, TRACK: "canary"}},
            "spec": {"selector": {NAME: service, TRACK: "canary"}, "ports": ports},
        }])  # fmt: skip

    def _nginx_weight(self, service: str, namespace: str, ingress: str, weight: int) -> None:
        """A copy of the stable Ingress sending `weight` % to the canary Service (NGINX Ingress
        canary annotations)."""
        stable = self._routed_object(Ingress, ingress, namespace, "nginx.stableIngress")
        spec = json.loads(json.dumps(stable.get("spec") or {}))
        for rule in spec.get("rules") or []:
            for path in _dig(rule, "http", "paths") or []:
                backend = _dig(path, "backend", "service") or {}
                if backend.get("name") == service:
                    backend["name"] = self._canary_name(service)
        spec.pop("tls", None)
        notes = {"nginx.ingress.kubernetes.io/canary": "true",
                 "nginx.ingress.kubernetes.io/canary-weight": str(weight)}  # fmt: skip
        self._apply_docs([{
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": f"{ingress}{CANARY_SUFFIX}", "namespace": namespace,
                         "labels": {NAME: service, TRACK: "canary"}, "annotations": notes},
            "spec": spec,
        }])  # fmt: skip

    def _routed_object(self, kind: Any, name: str, namespace: str, setting: str) -> dict[str, Any]:
        """The Ingress or HTTPRoute the environment's `trafficRouting` names."""
        try:
            return self._get(kind, name, namespace)
        except NotFoundError:
            raise TargetError(
                f"trafficRouting names {kind.__name__} {name}, which is not in {namespace}",
                hint="add it to the environment's overlay, or name the right one"
                f" (trafficRouting.{setting})",
            ) from None

    def _route_kind(self) -> Any:
        chosen = next(
            (v for v in ("gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1beta1")
             if v in self.served()), None,
        )  # fmt: skip
        if chosen is None:
            raise TargetError(
                "the cluster serves no Gateway API HTTPRoute (gateway.networking.k8s.io)",
                hint="install the Gateway API CRDs, or use another trafficRouting",
            )
        group, _, version = chosen.partition("/")
        return create_namespaced_resource(group, version, "HTTPRoute", "httproutes")

    def _route_weight(self, service: str, namespace: str, route: str, weight: int) -> str | None:
        """Set the HTTPRoute's backends: stable `100 - weight`, the canary Service `weight`.
        Returns the rules as they were before, when this is the canary's first weight."""
        kind = self._route_kind()
        found = self._routed_object(kind, route, namespace, "gatewayApi.httpRoute")
        rules = _dig(found, "spec", "rules") or []
        canary = self._canary_name(service)
        first = not any(ref.get("name") == canary for rule in rules
                        for ref in rule.get("backendRefs") or [])  # fmt: skip
        before = json.dumps(rules) if first else None
        for rule in rules:
            refs = rule.get("backendRefs") or []
            stable = next((r for r in refs if r.get("name") == service), None)
            if stable is None:
                continue
            stable["weight"] = 100 - weight
            mine = next((r for r in refs if r.get("name") == canary), None)
            if mine is None:
                mine = {**stable, "name": canary}
                refs.append(mine)
            mine["weight"] = weight
        self.client.patch(kind, route, {"spec": {"rules": rules}}, namespace=namespace,
                          patch_type=PatchType.MERGE)  # fmt: skip
        return before

    def _unroute(self, environment: str, service: str, log: LogSink) -> None:
        """Send all traffic back to stable: remove the canary Ingress, restore the HTTPRoute,
        widen stable's Service again, remove the canary Service."""
        canary = self._canary(environment, service)
        notes = (_dig(canary, "metadata", "annotations") or {}) if canary else {}
        router = notes.get(ROUTER)
        if not router:
            return
        namespace = self._where(environment, service)
        kind, _, name = router.partition(":")
        if kind == "nginx":
            with contextlib.suppress(ApiError):
                self.client.delete(Ingress, f"{name}{CANARY_SUFFIX}", namespace=namespace)
        elif notes.get(ROUTE_BEFORE):
            self.client.patch(
                self._route_kind(), name, {"spec": {"rules": json.loads(notes[ROUTE_BEFORE])}},
                namespace=namespace, patch_type=PatchType.MERGE,
            )  # fmt: skip
        self._narrow_stable(service, namespace, None)
        with contextlib.suppress(ApiError):
            self.client.delete(Service, self._canary_name(service), namespace=namespace)
        log(f"{service}: all traffic back on stable ({kind} {name})")

    def _await_pods(self, spec: DeploySpec, canary: int, stable: int) -> None:
        environment, service = spec.environment, spec.service
        limit = self._limit(spec.progress_deadline)
        end = time.monotonic() + limit
        while time.monotonic() < end:
            made = self._canary(environment, service) or {}
            dep = self._deployment(environment, service)
            if (
                int(_dig(made, "status", "readyReplicas") or 0) >= canary
                and int(_dig(made, "status", "replicas") or 0) == canary
                and int(_dig(dep, "status", "readyReplicas") or 0) >= stable
                and int(_dig(dep, "status", "replicas") or 0) == stable
            ):
                return
            for pod in self._canary_pods(environment, service):
                for state in _dig(pod, "status", "containerStatuses") or []:
                    reason = _dig(state, "state", "waiting", "reason")
                    if reason in _POD_PROBLEMS:
                        name = str(_dig(pod, "metadata", "name"))
                        raise CheckFailed(
                            f"{service}: canary pod {name} is {reason}",
                            hint=troubleshooting(
                                str(reason), service, self._where(environment, service), name
                            ),
                        )
            time.sleep(0.25)
        raise CheckFailed(
            f"{service}: canary pods not ready after {limit:g} s",
            hint=troubleshooting("not-ready", service, self._where(environment, service)),
        )

    def end_canary(self, spec: DeploySpec, *, promote: bool, log: LogSink = _quiet) -> int:
        """Promote the canary (a rollout of its spec on stable) or remove it; stable gets its
        own replica count back either way."""
        environment, service = spec.environment, spec.service
        prober = self._probers.pop((environment, service), None)
        if prober is not None:
            prober.stop()
        self._unroute(environment, service, log)
        stable = self._deployment(environment, service)
        notes = _dig(stable, "metadata", "annotations") or {}
        base = int(notes.get(STABLE_REPLICAS) or _dig(stable, "spec", "replicas") or 1)
        revision = _revision_of(stable)
        if promote:
            revision = self.apply(replace(spec, replicas=base), cause="canary promoted", log=log)
        with contextlib.suppress(ApiError):
            self.client.delete(
                Deployment, self._canary_name(service),
                namespace=self._where(environment, service),
            )  # fmt: skip
        self._patch(
            environment, service,
            {"metadata": {"annotations": {STABLE_REPLICAS: None}}, "spec": {"replicas": base}},
        )  # fmt: skip
        end = time.monotonic() + self._limit(spec.progress_deadline)
        while self._canary_pods(environment, service) and time.monotonic() < end:
            time.sleep(0.25)
        self._await_rollout(environment, service, log)
        log(f"{service}: canary {'promoted' if promote else 'removed'}; revision {revision}")
        return revision

    def _canary_pods(self, environment: str, service: str) -> list[dict[str, Any]]:
        return self._list(Pod, self._where(environment, service), {NAME: service, TRACK: "canary"})

    def metrics(self, environment: str, service: str) -> MetricSource:
        """Per-version counts of the canary probe's requests to the Service's endpoints."""
        key = (environment, service)
        if key not in self._probers:
            self._probers[key] = _Prober(self, environment, service, 0.0)
        return self._probers[key]

    def endpoints(self, environment: str, service: str) -> list[str]:
        """The Service's ready endpoints as URLs (what kube-proxy would balance over)."""
        return [url for url, _ in self.backends(environment, service)]

    def backends(self, environment: str, service: str) -> list[tuple[str, str]]:
        """(URL, version) of each ready endpoint: the version of the pod behind it, as its
        template recorded it (a response need not say which version answered)."""
        namespace = self._where(environment, service)
        try:
            found = self._get(Endpoints, service, namespace)
        except NotFoundError:
            return []
        versions: dict[str, str] = {}
        for found_pod in self._list(Pod, namespace, {NAME: service}):
            notes = _dig(found_pod, "metadata", "annotations") or {}
            stored = json.loads(notes.get(SPEC) or "{}")
            versions[str(_dig(found_pod, "metadata", "name"))] = str(stored.get("version", "?"))
        out = []
        for subset in found.get("subsets") or []:
            port = next((p.get("port") for p in subset.get("ports") or []), 8080)
            for address in subset.get("addresses") or []:
                name = str(_dig(address, "targetRef", "name") or "")
                out.append((f"http://{address.get('ip')}:{port}", versions.get(name, "?")))
        return out


def _plural(kind: str) -> str:
    """The resource name of a kind, as Kubernetes forms most of them."""
    lower = kind.lower()
    if lower.endswith(("s", "x", "ch", "sh")):
        return f"{lower}es"
    if lower.endswith("y") and lower[-2:-1] not in "aeiou":
        return f"{lower[:-1]}ies"
    return f"{lower}s"


def _stamp(top: Path) -> tuple[Any, ...]:
    """Every file under `top` with its size and modification time."""
    found = []
    for path in sorted(top.rglob("*")):
        with contextlib.suppress(OSError):
            info = path.stat()
            found.append((str(path), info.st_size, info.st_mtime_ns))
    return tuple(found)


def _dig(obj: Any, *keys: str) -> Any:
    """`obj[k1][k2]...`, None where a level is missing."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _ratio(weight: int, base: int) -> tuple[int, int]:
    """(canary pods, stable pods) whose ratio is `weight` %, with at least `base` stable pods
    and at most 20 pods in all."""
    share = Fraction(weight, 100).limit_denominator(20)
    canary, stable = share.numerator, share.denominator - share.numerator
    factor = max(1, -(-base // stable)) if stable else 1
    return max(canary * factor, 1), stable * factor


class _Prober:
    """The canary analysis's own traffic: requests spread over the Service's endpoints (as
    kube-proxy spreads them), counted per version as the workload reports it."""

    def __init__(self, target: KubernetesTarget, environment: str, service: str, rps: float):
        self._target, self._environment, self._service = target, environment, service
        self._lock = threading.Lock()
        self._counts: dict[str, list[float]] = {}  # version -> [requests, errors, *latencies]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if rps > 0:
            self._pause = 1.0 / rps
            self._thread = threading.Thread(target=self._run, name="k8s-probe", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        backends: list[tuple[str, str]] = []
        refreshed = 0.0
        turn = itertools.count()
        while not self._stop.is_set():
            if time.monotonic() - refreshed > 1:
                with contextlib.suppress(Exception):
                    backends = self._target.backends(self._environment, self._service)
                refreshed = time.monotonic()
            if backends:
                self._one(*backends[next(turn) % len(backends)])
            self._stop.wait(self._pause)

    def _one(self, url: str, version: str) -> None:
        """One request to the service's root, counted for the version of the pod behind
        `url`: a 5xx or no answer is an error."""
        started = time.monotonic()
        failed = True
        try:
            with urllib.request.urlopen(f"{url}/", timeout=2) as response:
                response.read()
                failed = response.status >= 500
        except urllib.error.HTTPError as exc:
            failed = exc.code >= 500
        except (urllib.error.URLError, OSError, ValueError):
            pass
        elapsed = (time.monotonic() - started) * 1000
        with self._lock:
            counts = self._counts.setdefault(version, [0.0, 0.0])
            counts[0] += 1
            counts[1] += int(failed)
            counts.append(elapsed)

    def collect(self) -> None:
        """End the interval: the next samples count from now."""
        with self._lock:
            self._window = self._counts
            self._counts = {}

    _window: dict[str, list[float]] = {}

    def sample(self, version: str, seconds: float) -> Sample:
        """`version`'s requests in the last collected interval."""
        with self._lock:
            counts = self._window.get(version, [0.0, 0.0])
        return Sample(int(counts[0]), int(counts[1]), tuple(counts[2:]))

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)


_KEPT_BY_SERVER = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp",
                   "selfLink")  # fmt: skip
_BOOKKEEPING = (SPEC, CHANGE, CAUSE, REVISION, VERSION,
                "kubectl.kubernetes.io/last-applied-configuration")  # fmt: skip


def _masked(change: FieldChange) -> FieldChange:
    """A variable's value is never shown, as with every plan: that it changes is."""
    if ".env[" in change.path and change.path.endswith(".value"):
        return replace(
            change,
            before=None if change.before is None else "***",
            after=None if change.after is None else "*** (changed)",
        )
    return change


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as a preview compares it: no status, no fields the server keeps for itself,
    no annotations shipline keeps for its own bookkeeping."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _KEPT_BY_SERVER}
    meta["annotations"] = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in _BOOKKEEPING
    }
    out["metadata"] = meta
    template = _dig(obj, "spec", "template", "metadata")
    if isinstance(template, dict):
        notes = {k: v for k, v in (template.get("annotations") or {}).items()
                 if k not in _BOOKKEEPING}  # fmt: skip
        pod = {**obj["spec"]["template"], "metadata": {**template, "annotations": notes}}
        out["spec"] = {**obj["spec"], "template": pod}
    return out


def _with_protocols(ports: list[dict[str, Any]]) -> None:
    """Server-side apply before 1.21 needs each port's protocol written out (a list keyed by
    port and protocol)."""
    for port in ports:
        port.setdefault("protocol", "TCP")


def _revision_of(obj: dict[str, Any]) -> int:
    return int((_dig(obj, "metadata", "annotations") or {}).get(REVISION, "0"))


_WARMED = threading.Lock()
_warm: list[bool] = []


def _warm_decoders() -> None:
    """Build the API client's response decoders once, in one thread, before any concurrent use:
    msgspec builds a model's decoding tables on its first decode, and two threads doing that at
    once for the same model can crash the process."""
    with _WARMED:
        if _warm:
            return
        from lightkube.core import decoders
        from lightkube.models.meta_v1 import Status

        kinds = (Deployment, ReplicaSet, Pod, Endpoints, Event, Namespace, Secret, Service,
                 ServiceAccount, Ingress)  # fmt: skip
        msgspec.json.Decoder(Status)
        for kind in kinds:
            msgspec.json.Decoder(kind)
            msgspec.json.Decoder(decoders._get_list_model(kind)[0])
        _warm.append(True)


def create(context: TargetContext) -> KubernetesTarget:
    """The `kubernetes` target kind: kubeconfig and context from the target's settings (or
    KUBECONFIG and its current context). A target that names its `cluster` is only built on a
    context that points at that cluster (`kubeconfig.check`): a kubeconfig switched to another
    cluster (another environment's, production's) is refused before anything is applied to it."""
    settings = dict(context.settings)
    check(context)  # the file, its context and that context's cluster
    path = kubeconfig_path(settings)
    try:
        config = KubeConfig.from_file(path).get(settings.get("context") or None)
    except Exception as exc:  # what `check` does not read: the cluster's and user's entries
        raise TargetError(
            f"kubeconfig {path}: {type(exc).__name__}: {exc}",
            hint="check the target's 'kubeconfig' and 'context'",
        ) from None
    assert config is not None  # without a default, `get` raises rather than return None
    project = settings.get("project")
    _warm_decoders()
    return KubernetesTarget(
        lambda: Client(config=config, field_manager=MANAGER),
        kubeconfig=path,
        manifests=settings.get("manifests"),
        project=Path(project) if project else None,
    )
