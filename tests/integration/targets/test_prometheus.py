"""Canary metrics from a real Prometheus (Debian's package) scraping a gateway."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipline.domain.canary import IntervalVerdict, assess_interval
from shipline.domain.models import AnalysisThresholds
from shipline.targets.local.metrics import PrometheusMetrics
from shipline.targets.local.supervisor import free_port
from shipline.targets.local.target import LocalTarget, ServiceSpec

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="prometheus is not installed (scripts/test installs Debian's package)",
)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LocalTarget]:
    local = LocalTarget(tmp_path / "state", health_timeout=8)
    yield local
    local.close()


class Prometheus:
    """A private Prometheus scraping one gateway every second."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, gateway_port: int) -> None:
        config = self.folder / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n  - job_name: gateways\n    metrics_path: /_shipline/metrics\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{gateway_port}']}}]\n"
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
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path)
    yield server
    server.stop()


def test_prometheus_source_sees_the_bad_canary(target: LocalTarget, prometheus: Prometheus) -> None:
    target.apply(ServiceSpec("qa", "api", "1.0.0"))
    svc = target._services[("qa", "api")]
    prometheus.start(svc.gateway.port)
    canary = target._replica(
        ServiceSpec("qa", "api", "2.0.0", env={"SHIPLINE_DEMO_ERROR_RATE": "0.5"}), 0
    )
    target.supervisor.add(canary)
    target._wait_healthy(canary)
    svc.replicas.append(canary)
    target._route(svc, {"1.0.0": 50, "2.0.0": 50})
    end = time.monotonic() + 6
    while time.monotonic() < end:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(
                f"http://127.0.0.1:{svc.gateway.port}/api/echo", timeout=2
            ).close()
        time.sleep(0.01)
    time.sleep(2)  # one more scrape after the last request
    source = PrometheusMetrics(prometheus.url, {"environment": "qa", "service": "api"})
    bad, good = source.sample("2.0.0", 8), source.sample("1.0.0", 8)
    assert bad.requests > 20 and good.requests > 20
    assert 0.3 < bad.error_rate < 0.7 and good.errors == 0
    assert bad.p95 is not None and bad.p95 > 0
    verdict = assess_interval(bad, good, AnalysisThresholds(max_error_rate=0.05))
    assert verdict.verdict == IntervalVerdict.FAILED
