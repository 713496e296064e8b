"""A node agent for a test or demo control plane: what a kubelet does, with local processes.

It registers nodes, and for every pod the scheduler binds to one of them it runs the pod's first
container as the demo workload (`shipline.targets.local.workload`: the service name is the
container's, the version the image's tag) on a pod address of its own, and
reports the pod's status as a kubelet does: the pod IP, Ready from the readiness probe, restarts
with a growing back-off shown as CrashLoopBackOff, liveness failures restarting the container,
ImagePullBackOff for an image it cannot "pull" (a tag starting with `missing`), and Warning
events. So the real Deployment, ReplicaSet, endpoints and HPA controllers drive every rollout.

Pod addresses: the API server refuses loopback addresses in Endpoints, so (as root) the agent
makes a network namespace of its own, `shipline-pods`, joined to this host by a veth pair
(10.244.0.1 here, 10.244.0.0/16 there); each pod gets a 10.244.x.y address in it and its process
runs there. Without root it falls back to loopback addresses (127.1.x.y): rollouts work, but
the endpoints controller cannot list the pods.

    python -m shipline.targets.kubernetes.nodeagent --kubeconfig PATH [--nodes 2]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any, cast

from lightkube import ApiError, Client, KubeConfig
from lightkube.codecs import from_dict
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Node, Pod
from lightkube.types import PatchType

FIELD_MANAGER = "shipline-node-agent"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _PodRunner:
    """One pod: its process, probes and status, on a thread of its own."""

    def __init__(self, agent: NodeAgent, pod: Pod, ip: str) -> None:
        self.agent, self.ip = agent, ip
        meta = pod.metadata
        assert meta is not None and meta.name and meta.namespace and pod.spec
        self.name, self.namespace, self.uid = meta.name, meta.namespace, meta.uid
        self.container = pod.spec.containers[0]
        self.stopping = threading.Event()
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.ready = False
        self.started_at = _now()
        self.thread = threading.Thread(target=self._run, name=f"pod-{self.name}", daemon=True)

    # --- what the pod runs ---------------------------------------------------------------

    def _port(self) -> int:
        ports = self.container.ports or []
        return int(ports[0].containerPort) if ports else 8080

    def _version(self) -> str:
        image = (self.container.image or "").split("@", 1)[0]  # repo:tag@sha256:... too
        tail = image.rsplit("/", 1)[-1]
        return tail.split(":", 1)[1] if ":" in tail else "latest"

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "LANG")}
        for var in self.container.env or []:
            if var.value is not None:
                env[var.name] = var.value
            elif var.valueFrom and var.valueFrom.secretKeyRef:
                ref = var.valueFrom.secretKeyRef
                value = self.agent.secret_value(self.namespace, ref.name or "", ref.key)
                if value is not None:
                    env[var.name] = value
        env["PORT"] = str(self._port())
        return env

    def _probe_path(self, probe: Any) -> str | None:
        return probe.httpGet.path if probe is not None and probe.httpGet is not None else None

    def _start(self) -> subprocess.Popen[bytes]:
        readiness = self._probe_path(self.container.readinessProbe) or "/health"
        return subprocess.Popen(
            [
                *self.agent.network.prefix(),
                sys.executable, "-m", "shipline.targets.local.workload", "--host", self.ip,
                "--port", str(self._port()), "--health", readiness,
                "--service", self.container.name, "--version", self._version(),
                "--owner", f"node-agent:{self.namespace}/{self.name}",
            ],
            env=self._environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def _probe(self, path: str | None) -> bool:
        if path is None:
            return True
        try:
            url = f"http://{self.ip}:{self._port()}{path}"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(200 <= int(response.status) < 400)
        except (urllib.error.URLError, OSError):
            return False

    # --- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        if self._version().startswith("missing"):
            self._report(
                waiting=("ImagePullBackOff", f"Back-off pulling image {self.container.image}")
            )
            self.agent.event(self, "Failed", f"Failed to pull image {self.container.image}")
            return
        period = self.agent.probe_period
        while not self.stopping.is_set():
            self.process = self._start()
            running_since = _now()
            self.ready = False
            self._report(running_since=running_since)
            live_failures = 0
            started = time.monotonic()
            while not self.stopping.is_set() and self.process.poll() is None:
                ready = self._probe(self._probe_path(self.container.readinessProbe))
                if ready != self.ready:
                    self.ready = ready
                    self._report(running_since=running_since)
                liveness = self.container.livenessProbe
                grace = (
                    float(getattr(liveness, "initialDelaySeconds", 0) or 0) * self.agent.time_scale
                )
                if liveness is not None and time.monotonic() - started > grace:
                    live_failures = (
                        0 if self._probe(self._probe_path(liveness)) else live_failures + 1
                    )
                    if live_failures >= int(liveness.failureThreshold or 3):
                        self.agent.event(self, "Unhealthy", "Liveness probe failed; restarting")
                        self.process.terminate()
                        break
                self.stopping.wait(period)
            if self.stopping.is_set():
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
            code = self.process.returncode
            self.restarts += 1
            self.ready = False
            delay = min(self.agent.backoff * 2 ** (self.restarts - 1), self.agent.backoff * 30)
            self._report(
                waiting=("CrashLoopBackOff", f"back-off {delay:g}s restarting failed container"),
                last_exit=code,
            )
            self.agent.event(self, "BackOff", "Back-off restarting failed container")
            self.stopping.wait(delay)
        self._kill()

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def _report(
        self,
        *,
        running_since: str | None = None,
        waiting: tuple[str, str] | None = None,
        last_exit: int | None = None,
    ) -> None:
        state: dict[str, Any]
        if waiting is not None:
            state = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
        else:
            state = {"running": {"startedAt": running_since or _now()}}
        container: dict[str, Any] = {
            "name": self.container.name,
            "image": self.container.image,
            "imageID": f"shipline://{self.container.image}",
            "ready": self.ready,
            "started": waiting is None,
            "restartCount": self.restarts,
            "state": state,
        }
        if last_exit is not None:
            container["lastState"] = {
                "terminated": {"exitCode": last_exit, "reason": "Error", "finishedAt": _now()}
            }
        ready = "True" if self.ready else "False"
        status = {
            "phase": "Running" if waiting is None or self.restarts else "Pending",
            "hostIP": "10.244.0.1" if self.agent.network.kind == "netns" else "127.0.0.1",
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "startTime": self.started_at,
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": self.started_at},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": _now()},
                {"type": "Ready", "status": ready, "lastTransitionTime": _now()},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": self.started_at},
            ],
            "containerStatuses": [container],
        }
        self.agent.patch_status(self, status)


class PodNetwork:
    """Where pods get their addresses: a network namespace of ours, or loopback."""

    NAMESPACE = "shipline-pods"

    def __init__(self, kind: str) -> None:
        self.kind = kind
        counter = itertools.count()
        if kind == "netns":
            self._addresses = (f"10.244.{i // 250 + 1}.{i % 250 + 2}" for i in counter)
        else:
            self._addresses = (f"127.1.{i // 250}.{i % 250 + 2}" for i in counter)

    @classmethod
    def choose(cls) -> PodNetwork:
        usable = os.geteuid() == 0 and shutil.which("ip") is not None
        network = cls("netns" if usable else "loopback")
        if usable:
            try:
                network.setup()
            except subprocess.CalledProcessError:
                return cls("loopback")
        return network

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    def setup(self) -> None:
        """The namespace and its veth pair (made anew: what a crashed agent left is removed)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ip("netns", "del", self.NAMESPACE)
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ip("link", "del", "sl-host")
        self._ip("netns", "add", self.NAMESPACE)
        self._ip("link", "add", "sl-host", "type", "veth", "peer", "name", "sl-pods")
        self._ip("link", "set", "sl-pods", "netns", self.NAMESPACE)
        self._ip("addr", "add", "10.244.0.1/16", "dev", "sl-host")
        self._ip("link", "set", "sl-host", "up")
        inside = ("netns", "exec", self.NAMESPACE, "ip")
        self._ip(*inside, "addr", "add", "10.244.0.2/16", "dev", "sl-pods")
        self._ip(*inside, "link", "set", "sl-pods", "up")
        self._ip(*inside, "link", "set", "lo", "up")

    def teardown(self) -> None:
        if self.kind == "netns":
            with contextlib.suppress(subprocess.CalledProcessError):
                self._ip("netns", "del", self.NAMESPACE)
            with contextlib.suppress(subprocess.CalledProcessError):
                self._ip("link", "del", "sl-host")

    def allocate(self) -> str:
        address = next(self._addresses)
        if self.kind == "netns":
            self._ip("netns", "exec", self.NAMESPACE, "ip", "addr", "add", f"{address}/32",
                     "dev", "sl-pods")  # fmt: skip
        return address

    def release(self, address: str) -> None:
        if self.kind == "netns":
            with contextlib.suppress(subprocess.CalledProcessError):
                self._ip("netns", "exec", self.NAMESPACE, "ip", "addr", "del", f"{address}/32",
                         "dev", "sl-pods")  # fmt: skip

    def prefix(self) -> list[str]:
        """What a pod's command starts with to run inside the network."""
        return ["ip", "netns", "exec", self.NAMESPACE] if self.kind == "netns" else []


class NodeAgent:
    """Registers nodes and runs the pods bound to them."""

    def __init__(
        self,
        client: Client,
        nodes: int = 2,
        *,
        backoff: float = 2.0,
        probe_period: float = 0.5,
        time_scale: float = 0.2,
    ) -> None:
        self.client = client
        self.nodes = [f"shipline-node-{i}" for i in range(1, nodes + 1)]
        self.backoff, self.probe_period, self.time_scale = backoff, probe_period, time_scale
        self.pods: dict[str, _PodRunner] = {}
        self.network = PodNetwork.choose()
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    # --- nodes -------------------------------------------------------------------------

    def register(self) -> None:
        for name in self.nodes:
            node = Node(
                metadata=ObjectMeta(name=name, labels={"kubernetes.io/hostname": name}),
            )
            with contextlib.suppress(ApiError):
                self.client.create(node)
            self._heartbeat(name)
            # The API server taints a new node not-ready; with no node lifecycle controller in
            # this control plane, the agent that reports it Ready lifts the taint itself.
            self.client.patch(Node, name, {"spec": {"taints": None}}, patch_type=PatchType.MERGE)

    def _heartbeat(self, name: str) -> None:
        now = _now()
        status = {
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "250"},
            "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "250"},
            "addresses": [{"type": "InternalIP", "address": "10.244.0.1"},
                          {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "shipline node agent", "lastHeartbeatTime": now,
                            "lastTransitionTime": now}],
            "nodeInfo": {"kubeletVersion": "v1.20.2-shipline", "architecture": "amd64",
                         "operatingSystem": "linux", "osImage": "shipline node agent",
                         "containerRuntimeVersion": "shipline://local", "kernelVersion": "",
                         "kubeProxyVersion": "", "machineID": name, "systemUUID": name,
                         "bootID": name},
        }  # fmt: skip
        self.client.patch(Node.Status, name, {"status": status}, patch_type=PatchType.MERGE)

    # --- what runners call back --------------------------------------------------------

    def patch_status(self, runner: _PodRunner, status: dict[str, Any]) -> None:
        with contextlib.suppress(ApiError):
            self.client.patch(
                Pod.Status, runner.name, {"status": status}, namespace=runner.namespace,
                patch_type=PatchType.MERGE,
            )  # fmt: skip

    def event(self, runner: _PodRunner, reason: str, message: str) -> None:
        now = _now()
        with contextlib.suppress(ApiError):
            self.client.create(
                cast(Any, from_dict({
                    "metadata": {"generateName": f"{runner.name}.", "namespace": runner.namespace},
                    "involvedObject": {"kind": "Pod", "name": runner.name,
                                       "namespace": runner.namespace, "uid": runner.uid,
                                       "apiVersion": "v1"},
                    "type": "Warning", "reason": reason, "message": message,
                    "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                    "source": {"component": "kubelet", "host": self.nodes[0]},
                })),
                namespace=runner.namespace,
            )  # fmt: skip

    def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        import base64

        from lightkube.resources.core_v1 import Secret

        try:
            secret = self.client.get(Secret, name, namespace=namespace)
        except ApiError:
            return None
        data = secret.data or {}
        return base64.b64decode(data[key]).decode() if key in data else None

    # --- pods ----------------------------------------------------------------------------

    def _handle(self, kind: str, pod: Pod) -> None:
        meta, spec = pod.metadata, pod.spec
        if meta is None or spec is None or spec.nodeName not in self.nodes or not meta.uid:
            return
        with self._lock:
            runner = self.pods.get(meta.uid)
            if kind == "DELETED" or meta.deletionTimestamp is not None:
                if runner is not None:
                    runner.stopping.set()
                    runner.thread.join(timeout=10)
                    self.network.release(runner.ip)
                    del self.pods[meta.uid]
                if kind != "DELETED":  # a kubelet confirms a graceful deletion
                    with contextlib.suppress(ApiError):
                        self.client.delete(Pod, meta.name or "", namespace=meta.namespace,
                                           grace_period=0)  # fmt: skip
                return
            if runner is None:
                runner = _PodRunner(self, pod, self.network.allocate())
                self.pods[meta.uid] = runner
                runner.thread.start()

    def run(self) -> None:
        """Register the nodes, then run pods until stopped (heartbeats every 10 s)."""
        self.register()

        def beat() -> None:
            while not self.stopping.wait(10):
                for name in self.nodes:
                    with contextlib.suppress(ApiError):
                        self._heartbeat(name)

        threading.Thread(target=beat, name="heartbeat", daemon=True).start()
        while not self.stopping.is_set():
            try:
                for kind, pod in self.client.watch(Pod, namespace="*", server_timeout=30):
                    self._handle(kind, pod)
                    if self.stopping.is_set():
                        break
            except ApiError:
                self.stopping.wait(1)
            except Exception:
                self.stopping.wait(1)
        self.close()

    def close(self) -> None:
        with self._lock:
            for runner in self.pods.values():
                runner.stopping.set()
            for runner in self.pods.values():
                runner.thread.join(timeout=10)
            self.pods.clear()
        self.network.teardown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shipline-node-agent")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--backoff", type=float, default=2.0, help="first restart back-off (s)")
    args = parser.parse_args(argv)
    from pathlib import Path

    from shipline.process import hold_lock

    fd, holder = hold_lock(Path(f"{args.kubeconfig}.node-agent.lock"))
    if fd is None:  # two agents would fight over the pod network
        print(f"a node agent already runs for {args.kubeconfig} (pid {holder})", file=sys.stderr)
        return 2
    client = Client(config=KubeConfig.from_file(args.kubeconfig), field_manager=FIELD_MANAGER)
    agent = NodeAgent(client, args.nodes, backoff=args.backoff)

    def terminate(*_: object) -> None:  # at once, not when the watch next returns
        agent.stopping.set()
        agent.close()
        os._exit(0)

    signal.signal(signal.SIGTERM, terminate)
    try:
        agent.run()
    except KeyboardInterrupt:
        agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
