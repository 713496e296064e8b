"""A private Prometheus (Debian's package) for tests: scraping gateways listed in a file, or the
pods of a Kubernetes cluster listed from its API server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from shipline.targets.local.supervisor import free_port


def pod_targets(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Prometheus's `kubernetes_sd_configs` (role: pod) with the usual relabelling finds:
    running pods annotated `prometheus.io/scrape: "true"`, at their port named `http`, labelled
    with the environment, service and version the kubernetes target puts on the pod template.
    (Debian's Prometheus is built without Kubernetes discovery: this lists the same targets for
    its file discovery, from the same API server.)"""
    found = []
    for pod in pods:
        meta, status = pod["metadata"], pod.get("status") or {}
        notes, labels = meta.get("annotations") or {}, meta.get("labels") or {}
        if notes.get("prometheus.io/scrape") != "true" or status.get("phase") != "Running":
            continue
        if not status.get("podIP"):
            continue
        ports = [p for c in pod["spec"]["containers"] for p in c.get("ports") or []
                 if p.get("name") == "http"]  # fmt: skip
        if not ports:
            continue
        found.append({
            "targets": [f"{status['podIP']}:{ports[0]['containerPort']}"],
            "labels": {"namespace": meta["namespace"], "pod": meta["name"],
                       "environment": labels.get("shipline.dev/environment", ""),
                       "service": labels.get("app.kubernetes.io/name", ""),
                       "version": notes.get("shipline.dev/version", "")},
        })  # fmt: skip
    return found


class _PodDiscovery(threading.Thread):
    """Writes the cluster's scrape targets to a file every second."""

    def __init__(self, kubeconfig: str, path: Path) -> None:
        super().__init__(name="pod-discovery", daemon=True)
        self.kubeconfig, self.path = kubeconfig, path
        self.stopped = threading.Event()
        self.refresh()

    def refresh(self) -> None:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", self.kubeconfig, "get", "pods", "-A", "-o", "json"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if done.returncode == 0:
            targets = pod_targets(json.loads(done.stdout)["items"])
            scratch = self.path.with_suffix(".tmp")
            scratch.write_text(json.dumps(targets))
            os.replace(scratch, self.path)

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            self.refresh()


class Prometheus:
    """A private Prometheus scraping every second."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.discovery: _PodDiscovery | None = None

    def start(self, targets_file: Path) -> None:
        """Scrape every gateway listed in `targets_file` (the local target's discovery file)."""
        self._run(
            "  - job_name: gateways\n    metrics_path: /_shipline/metrics\n"
            f"    file_sd_configs: [{{files: ['{targets_file}'], refresh_interval: 1s}}]\n"
        )

    def start_kubernetes(self, kubeconfig: str) -> None:
        """Scrape the pods of the cluster `kubeconfig` reaches (their `/metrics`)."""
        targets = self.folder / "pods.json"
        self.discovery = _PodDiscovery(kubeconfig, targets)
        self.discovery.start()
        self._run(
            "  - job_name: pods\n"
            f"    file_sd_configs: [{{files: ['{targets}'], refresh_interval: 1s}}]\n"
        )

    def _run(self, jobs: str) -> None:
        config = self.folder / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n" + jobs
        )
        with open(self.folder / "prometheus.log", "wb") as log:
            self.process = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.folder / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=log,
            )
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError((self.folder / "prometheus.log").read_text()[-2000:])

    def stop(self) -> None:
        if self.discovery is not None:
            self.discovery.stopped.set()
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
