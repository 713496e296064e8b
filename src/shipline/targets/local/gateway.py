"""One gateway per service and environment: routes requests across replicas by weight and
counts responses per version (2xx / 4xx / 5xx and latencies), which canary analysis reads.

Weights are set per version (`{"1.0.0": 90, "1.1.0": 10}`); within a version, replicas take
turns. A replica that refuses the connection counts as a 5xx of its version (502).
"""

from __future__ import annotations

import http.client
import itertools
import json
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_LATENCIES = 5000  # kept per version between two reads of the counters
BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)


@dataclass
class VersionCounters:
    """Responses of one version since the last reset."""

    requests: int = 0
    by_class: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    latencies_ms: list[float] = field(default_factory=list)

    def add(self, status: int, latency_ms: float) -> None:
        self.requests += 1
        self.by_class[f"{status // 100}xx"] += 1
        if len(self.latencies_ms) < MAX_LATENCIES:
            self.latencies_ms.append(latency_ms)

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "responses": dict(self.by_class),
            "latenciesMs": list(self.latencies_ms),
        }


class Gateway:
    """A weighted reverse proxy on 127.0.0.1:port, run in background threads."""

    def __init__(
        self, port: int, *, seed: int | None = None, labels: dict[str, str] | None = None
    ) -> None:
        self.port = port
        self.labels = labels or {}
        self._totals: dict[tuple[str, str], int] = defaultdict(
            int
        )  # (version, class) -> count, never reset
        self._buckets: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS_MS) + 1))
        self._sums: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        self._backends: dict[str, list[int]] = {}  # version -> replica ports
        self._cycles: dict[str, Any] = {}
        self._weights: dict[str, int] = {}
        self._counters: dict[str, VersionCounters] = defaultdict(VersionCounters)
        self._rng = random.Random(seed)
        self._server: ThreadingHTTPServer | None = None

    def route(self, backends: dict[str, list[int]], weights: dict[str, int]) -> None:
        """Send traffic to `backends` (version → ports) in proportion to `weights` (version → %)."""
        with self._lock:
            self._backends = {v: list(p) for v, p in backends.items() if p}
            self._cycles = {v: itertools.cycle(p) for v, p in self._backends.items()}
            self._weights = {v: w for v, w in weights.items() if w > 0 and v in self._backends}
            for version in self._backends:  # every series exists from the start, at zero, so
                for klass in ("2xx", "4xx", "5xx"):  # Prometheus's increase() sees its first rise
                    self._totals[(version, klass)] += 0
                self._buckets[version][-1] += 0
                self._sums[version] += 0.0

    def weights(self) -> dict[str, int]:
        """The weights in force."""
        with self._lock:
            return dict(self._weights)

    def counters(self, *, reset: bool = False) -> dict[str, dict[str, Any]]:
        """Per-version counters since the last reset."""
        with self._lock:
            data = {v: c.snapshot() for v, c in self._counters.items()}
            if reset:
                self._counters = defaultdict(VersionCounters)
        return data

    def _pick(self) -> tuple[str, int] | None:
        with self._lock:
            if not self._weights:
                return None
            total = sum(self._weights.values())
            point = self._rng.uniform(0, total)
            for version, weight in self._weights.items():
                point -= weight
                if point <= 0:
                    return version, next(self._cycles[version])
            version = next(iter(self._weights))
            return version, next(self._cycles[version])

    def _record(self, version: str, status: int, latency_ms: float) -> None:
        with self._lock:
            self._counters[version].add(status, latency_ms)
            self._totals[(version, f"{status // 100}xx")] += 1
            buckets = self._buckets[version]
            for index, bound in enumerate(BUCKETS_MS):
                if latency_ms <= bound:
                    buckets[index] += 1
            buckets[-1] += 1
            self._sums[version] += latency_ms

    def metrics(self) -> str:
        """Prometheus text exposition: cumulative responses and a latency histogram per version."""

        def line(name: str, value: float, **labels: str) -> str:
            merged = {**self.labels, **labels}
            text = ",".join(f'{k}="{v}"' for k, v in merged.items())
            return f"shipline_gateway_{name}{{{text}}} {value}"

        lines = ["# TYPE shipline_gateway_responses_total counter"]
        with self._lock:
            for (version, klass), count in sorted(self._totals.items()):
                lines.append(line("responses_total", count, version=version, **{"class": klass}))
            lines.append("# TYPE shipline_gateway_request_duration_ms histogram")
            for version, buckets in sorted(self._buckets.items()):
                for bound, count in zip((*map(str, BUCKETS_MS), "+Inf"), buckets, strict=True):
                    lines.append(
                        line("request_duration_ms_bucket", count, version=version, le=bound)
                    )
                lines.append(line("request_duration_ms_sum", self._sums[version], version=version))
                lines.append(line("request_duration_ms_count", buckets[-1], version=version))
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Listen in background threads."""
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _proxy(self) -> None:
                if self.path == "/_shipline/metrics":
                    self._reply(
                        200,
                        gateway.metrics().encode(),
                        [("Content-Type", "text/plain; version=0.0.4")],
                    )
                    return
                if self.path == "/_shipline/stats":
                    body = json.dumps(
                        {"weights": gateway.weights(), "versions": gateway.counters()}
                    ).encode()
                    self._reply(200, body, [("Content-Type", "application/json")])
                    return
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length) if length else None
                picked = gateway._pick()
                if picked is None:
                    self._reply(
                        503, b'{"error": "no replica"}', [("Content-Type", "application/json")]
                    )
                    return
                version, port = picked
                start = time.perf_counter()
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    conn.request(
                        self.command,
                        self.path,
                        body=payload,
                        headers={k: v for k, v in self.headers.items() if k.lower() != "host"},
                    )
                    response = conn.getresponse()
                    body, status, headers = response.read(), response.status, response.getheaders()
                    conn.close()
                except OSError:
                    body, status, headers = b'{"error": "replica unreachable"}', 502, []
                gateway._record(version, status, (time.perf_counter() - start) * 1000)
                self._reply(status, body, [*headers, ("X-Shipline-Version", version)])

            do_GET = _proxy  # noqa: N815
            do_POST = _proxy  # noqa: N815
            do_PUT = _proxy  # noqa: N815
            do_DELETE = _proxy  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(
            target=self._server.serve_forever, name=f"gateway-{self.port}", daemon=True
        ).start()

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
