"""Canary metrics from a real Prometheus (Debian's package) scraping a gateway."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shipline.domain.canary import IntervalVerdict, assess_interval
from shipline.domain.deploy import DeploySpec
from shipline.domain.models import AnalysisThresholds
from shipline.targets.local.metrics import PrometheusMetrics
from shipline.targets.local.target import LocalTarget
from tests.servers.prometheus import Prometheus

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="prometheus is not installed (scripts/test installs Debian's package)",
)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[LocalTarget]:
    local = LocalTarget(tmp_path / "state", health_timeout=8)
    yield local
    local.close()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path)
    yield server
    server.stop()


def _get(url: str) -> None:
    with contextlib.suppress(OSError):
        urllib.request.urlopen(url, timeout=5).close()


def _scraped(prometheus: Prometheus, promql: str) -> float | None:
    query = urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(f"{prometheus.url}/api/v1/query?{query}", timeout=5) as response:
        result = json.loads(response.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def _wait_for(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus never saw {what}")


def test_the_discovery_file_lists_every_gateway(target: LocalTarget) -> None:
    target.apply(DeploySpec("qa", "api", "1.0.0"))
    target.apply(DeploySpec("dev", "web", "1.0.0"))
    target.write_state()
    listed = json.loads((target.state_dir / "prometheus-targets.json").read_text())
    ports = {(e["labels"]["environment"], e["labels"]["service"]): e["targets"] for e in listed}
    assert ports == {
        ("qa", "api"): [target.observe("qa", "api").address.removeprefix("http://")],
        ("dev", "web"): [target.observe("dev", "web").address.removeprefix("http://")],
    }


def test_prometheus_source_sees_the_bad_canary(target: LocalTarget, prometheus: Prometheus) -> None:
    target.apply(DeploySpec("qa", "api", "1.0.0"))
    target.write_state()  # lists the gateway in prometheus-targets.json
    svc = target._services[("qa", "api")]
    prometheus.start(target.state_dir / "prometheus-targets.json")
    canary = target._replica(
        DeploySpec("qa", "api", "2.0.0", env={"SHIPLINE_DEMO_ERROR_RATE": "0.5"}), 0
    )
    target.supervisor.add(canary)
    target._wait_healthy(canary)
    svc.replicas.append(canary)
    target._route(svc, {"1.0.0": 50, "2.0.0": 50})
    url = f"http://127.0.0.1:{svc.gateway.port}/api/echo"
    selector = 'environment="qa",service="api"'
    started = time.monotonic()
    # Routing creates every series at zero, so Prometheus has a baseline before the traffic.
    _wait_for(
        lambda: (
            _scraped(prometheus, f"count(shipline_gateway_responses_total{{{selector}}})") == 6.0
        ),
        "both versions' 2xx, 4xx and 5xx series",
    )
    for _ in range(300):  # a count, not a duration: a slow machine sends as many
        _get(url)
    # `_get` leaves after the headers; the gateway counts a response once it has passed on.
    end = time.monotonic() + 30
    while sum(svc.gateway.totals().values()) < 300 and time.monotonic() < end:
        time.sleep(0.05)
    sent = svc.gateway.totals()  # what the exposition counts
    assert sum(sent.values()) == 300, sent

    def caught_up() -> bool:
        return all(
            _scraped(
                prometheus, f'sum(shipline_gateway_responses_total{{{selector},version="{v}"}})'
            )
            == n
            for v, n in sent.items()
        )

    _wait_for(caught_up, f"the gateway's final counts {sent}")
    window = time.monotonic() - started + 5
    source = PrometheusMetrics(prometheus.url, {"environment": "qa", "service": "api"})
    bad, good = source.sample("2.0.0", window), source.sample("1.0.0", window)
    assert bad.requests > 60 and good.requests > 60, (bad, good, sent)
    assert 0.3 < bad.error_rate < 0.7 and good.errors == 0
    assert bad.p95 is not None and bad.p95 > 0
    verdict = assess_interval(bad, good, AnalysisThresholds(max_error_rate=0.05))
    assert verdict.verdict == IntervalVerdict.FAILED


def test_a_canary_analysed_through_prometheus_is_rolled_back(
    target: LocalTarget, prometheus: Prometheus
) -> None:
    target.apply(DeploySpec("qa", "api", "1.0.0"))
    target.write_state()
    prometheus.start(target.state_dir / "prometheus-targets.json")
    selector = 'environment="qa",service="api"'
    _wait_for(  # discovered and scraped once before the canary starts
        lambda: _scraped(prometheus, f"up{{{selector}}}") == 1.0, "the gateway"
    )
    lines: list[str] = []
    source = PrometheusMetrics(prometheus.url, {"environment": "qa", "service": "api"})
    bad = DeploySpec("qa", "api", "2.0.0", env={"SHIPLINE_DEMO_ERROR_RATE": "0.5"})
    thresholds = AnalysisThresholds(max_error_rate=0.05, failure_limit=2, interval_seconds=3)
    assert target.set_canary(bad, 50, probe_rps=50, log=lines.append) is True
    verdicts = []
    for _ in range(10):  # intervals, as the engine's analysis steps take them
        time.sleep(thresholds.interval_seconds)
        found = assess_interval(
            source.sample("2.0.0", thresholds.interval_seconds),
            source.sample("1.0.0", thresholds.interval_seconds),
            thresholds,
        )
        verdicts.append(found)
        if [v.verdict for v in verdicts].count(IntervalVerdict.FAILED) >= 2:
            break
    failed = [v for v in verdicts if v.verdict == IntervalVerdict.FAILED]
    assert len(failed) == 2 and any("error rate" in r for v in failed for r in v.reasons)
    target.end_canary(bad, promote=False, log=lines.append)
    state = target.observe("qa", "api")
    assert (state.version, state.canary, state.weights) == ("1.0.0", None, {"1.0.0": 1})
