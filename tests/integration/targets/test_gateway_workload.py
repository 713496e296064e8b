"""The demo workload's modes and the gateway's weighted routing and counters, with real
processes on loopback ports."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from shipline.domain.canary import IntervalVerdict, Sample, assess_interval
from shipline.domain.models import AnalysisThresholds
from shipline.targets.local.gateway import Gateway


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@contextmanager
def workload(version: str, **env: str) -> Iterator[int]:
    port = _port()
    environ = {**os.environ, **env}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shipline.targets.local.workload",
            "--port",
            str(port),
            "--service",
            "api",
            "--version",
            version,
        ],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        end = time.monotonic() + 10
        while time.monotonic() < end and process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        assert process.stdout is not None
        process.stdout.close()


def test_workload_modes() -> None:
    with workload("1.0.0") as port:
        assert _get(f"http://127.0.0.1:{port}/health") == (
            200,
            {"status": "UP", "service": "api", "version": "1.0.0"},
        )
        status, body = _get(f"http://127.0.0.1:{port}/version")
        assert status == 200 and body["version"] == "1.0.0"
        assert _get(f"http://127.0.0.1:{port}/nope")[0] == 404
    with workload("1.0.1", SHIPLINE_DEMO_FAIL_HEALTH="1") as port:
        assert _get(f"http://127.0.0.1:{port}/health")[0] == 503
    with workload("1.0.2", SHIPLINE_DEMO_ERROR_RATE="1") as port:
        assert _get(f"http://127.0.0.1:{port}/")[0] == 500
    crash = subprocess.run(
        [sys.executable, "-m", "shipline.targets.local.workload", "--port", str(_port())],
        env={**os.environ, "SHIPLINE_DEMO_CRASH_AT_START": "1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert crash.returncode == 3 and "crashing at start" in crash.stderr


def test_the_workload_sends_its_answers_without_nagles_delay() -> None:
    """An answer is written in two parts (head, body); with Nagle's algorithm on, the body of an
    answer on a kept-alive connection (the gateway keeps them) waits for the peer's delayed
    acknowledgement, about 40 ms a request. The workload's connections have it off."""
    import random
    import threading
    from http.server import ThreadingHTTPServer

    from shipline.targets.local.workload import _settings, make_handler

    base = make_handler("api", "1.0.0", "/health", _settings({}), random.Random(1))
    seen: list[int] = []

    class Watched(base):  # type: ignore[misc,valid-type]
        def handle(self) -> None:
            seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            super().handle()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Watched)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
        for _ in range(3):  # one kept-alive connection
            connection.request("GET", "/health")
            answer = connection.getresponse()
            assert answer.status == 200 and json.loads(answer.read())["status"] == "UP"
        connection.close()
    finally:
        server.shutdown()
        server.server_close()
    assert len(seen) == 1 and seen[0] != 0


def test_gateway_splits_by_weight_and_counts_per_version() -> None:
    with workload("1.0.0") as stable, workload("2.0.0", SHIPLINE_DEMO_ERROR_RATE="0.5") as canary:
        gateway = Gateway(0, seed=1)
        gateway.start()
        try:
            gateway.route({"1.0.0": [stable], "2.0.0": [canary]}, {"1.0.0": 80, "2.0.0": 20})
            statuses = [_get(f"http://127.0.0.1:{gateway.port}/api/echo")[0] for _ in range(400)]
            counters = gateway.counters(reset=True)
            share = counters["2.0.0"]["requests"] / 400
            assert 0.13 < share < 0.27, share
            assert counters["1.0.0"]["responses"] == {"2xx": counters["1.0.0"]["requests"]}
            canary_errors = counters["2.0.0"]["responses"].get("5xx", 0)
            assert statuses.count(500) == canary_errors > 0  # errors only from the canary's share

            def sample(version: str) -> Sample:
                data = counters[version]
                return Sample(
                    data["requests"], data["responses"].get("5xx", 0), tuple(data["latenciesMs"])
                )

            verdict = assess_interval(
                sample("2.0.0"), sample("1.0.0"), AnalysisThresholds(max_error_rate=0.05)
            )
            assert verdict.verdict == IntervalVerdict.FAILED
            gateway.route({"1.0.0": [stable]}, {"1.0.0": 100})
            after = [_get(f"http://127.0.0.1:{gateway.port}/api/echo")[0] for _ in range(50)]
            assert set(after) == {200}
            stats = _get(f"http://127.0.0.1:{gateway.port}/_shipline/stats")[1]
            assert stats["weights"] == {"1.0.0": 100}
        finally:
            gateway.stop()


def test_a_replica_out_of_the_routes_drains_before_it_is_stopped() -> None:
    """A request in flight to a replica taken out of the routes is finished by it: `drain`
    returns once it has answered, and only then may the replica stop."""
    import threading

    with workload("1.0.0", SHIPLINE_DEMO_LATENCY_MS="600") as old, workload("2.0.0") as new:
        gateway = Gateway(0)
        gateway.start()
        try:
            gateway.route({"1.0.0": [old]}, {"1.0.0": 100})
            answers: list[int] = []
            slow = threading.Thread(
                target=lambda: answers.append(_get(f"http://127.0.0.1:{gateway.port}/api/echo")[0])
            )
            slow.start()
            end = time.monotonic() + 5
            while gateway.drain(old, timeout=0):  # until the request is at the old replica
                assert time.monotonic() < end, "the request never reached the gateway"
                time.sleep(0.01)
            gateway.route({"2.0.0": [new]}, {"2.0.0": 100})
            assert not gateway.drain(old, timeout=0.05)  # still in flight (it answers in 0.6 s)
            assert gateway.drain(old)
            slow.join(5)
            assert answers == [200]
            assert gateway.drain(new, timeout=0)  # nothing was ever in flight there
        finally:
            gateway.stop()


def test_gateway_without_replicas_and_with_a_dead_one() -> None:
    gateway = Gateway(0)
    gateway.start()
    try:
        assert _get(f"http://127.0.0.1:{gateway.port}/")[0] == 503
        gateway.route({"1.0.0": [_port()]}, {"1.0.0": 100})  # nothing listens there
        assert _get(f"http://127.0.0.1:{gateway.port}/")[0] == 502
        assert gateway.counters()["1.0.0"]["responses"] == {"5xx": 1}
    finally:
        gateway.stop()


def test_metric_sources_satisfy_the_port() -> None:
    from shipline.domain.ports import MetricSource
    from shipline.targets.local.metrics import GatewayMetrics, PrometheusMetrics

    gateway = Gateway(0)
    assert isinstance(GatewayMetrics(gateway), MetricSource)
    assert isinstance(PrometheusMetrics("http://127.0.0.1:9", {}), MetricSource)


def test_gateway_exposes_prometheus_metrics() -> None:
    with workload("1.0.0") as port:
        gateway = Gateway(0, labels={"environment": "qa", "service": "api"})
        gateway.start()
        try:
            gateway.route({"1.0.0": [port]}, {"1.0.0": 100})
            for _ in range(3):
                _get(f"http://127.0.0.1:{gateway.port}/api/echo")
            with urllib.request.urlopen(
                f"http://127.0.0.1:{gateway.port}/_shipline/metrics", timeout=5
            ) as r:
                text = r.read().decode()
        finally:
            gateway.stop()
    assert (
        'shipline_gateway_responses_total{class="2xx",environment="qa",service="api",version="1.0.0"} 3.0'
        in text
    )
    assert (  # latency in seconds, as Prometheus' conventions say
        'shipline_gateway_request_duration_seconds_bucket{environment="qa",le="+Inf",service="api",version="1.0.0"} 3.0'
        in text
    )


def test_label_values_are_escaped() -> None:
    gateway = Gateway(0, labels={"environment": "qa", "service": 'a"b\\c'})
    gateway.route({"1.0.0": [_port()]}, {"1.0.0": 100})
    assert 'service="a\\"b\\\\c"' in gateway.metrics()


def _call(
    method: str, url: str, body: bytes | None = None, **headers: str
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        raw = response.read()
        return response.status, dict(response.headers), json.loads(raw) if raw else None


def test_the_gateway_is_a_reverse_proxy_a_service_can_sit_behind() -> None:
    with workload("1.0.0") as port:
        gateway = Gateway(0)
        gateway.start()
        try:
            gateway.route({"1.0.0": [port]}, {"1.0.0": 100})
            url = f"http://127.0.0.1:{gateway.port}/api/echo"
            big = bytes(range(256)) * 20_000  # 5 MB, streamed through
            for method in ("POST", "PUT", "PATCH", "DELETE"):
                status, _, body = _call(method, url, big)
                assert (status, body["method"], body["bytes"]) == (200, method, len(big))
                assert body["sha256"] == hashlib.sha256(big).hexdigest()
            status, headers, body = _call("HEAD", url)
            assert (status, body, headers["X-Shipline-Version"]) == (200, None, "1.0.0")
            status, headers, _ = _call("OPTIONS", url)
            assert status == 204 and "PATCH" in headers["Allow"]
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
            conn.request(  # urllib would send its own `Connection: close`
                "POST", "/api/echo", b"x",
                {"Connection": "keep-alive, X-Hop", "X-Hop": "1", "X-End": "2"},
            )  # fmt: skip
            hop = json.loads(conn.getresponse().read())
            conn.close()
            assert "x-hop" not in hop["headers"] and "x-end" in hop["headers"]
            assert hop["forwardedFor"] == "127.0.0.1"
            peers = {_call("POST", url, b"y")[2]["peerPort"] for _ in range(5)}
            assert len(peers) == 1, "one kept-alive connection to the replica, not one a request"
        finally:
            gateway.stop()
