"""One gateway per service and environment: a reverse proxy that routes requests across replicas
by weight and counts responses per version (2xx / 4xx / 5xx and latencies), which canary
analysis reads.

Built on aiohttp: every method, keep-alive connections to the replicas, bodies streamed both
ways, hop-by-hop headers dropped and `X-Forwarded-*` added. All gateways of a process share one
event-loop thread, so an idle gateway costs nothing. The Prometheus exposition comes from
prometheus-client (label values escaped, latency in seconds).

Weights are set per version (`{"1.0.0": 90, "1.1.0": 10}`); within a version, replicas take
turns. A replica that refuses the connection counts as a 5xx of its version (502).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
from collections import defaultdict
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

MAX_LATENCIES = 5000  # kept per version between two reads of the counters
BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CHUNK = 64 * 1024
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
T = TypeVar("T")

try:  # the `_created` series say nothing a scrape needs
    from prometheus_client import disable_created_metrics

    disable_created_metrics()  # type: ignore[no-untyped-call]
except ImportError:  # pragma: no cover - older prometheus-client
    pass


class _Loop:
    """The one event-loop thread every gateway of this process runs on."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def run(cls, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        """Run `coro` on the shared loop and wait for its result."""
        with cls._lock:
            if cls._loop is None or not cls._loop.is_running():
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                threading.Thread(target=serve, name="shipline-gateways", daemon=True).start()
                started.wait()
                cls._loop = loop
            loop = cls._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


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


# how long a replica taken out of the routes may take to finish its requests before it stops
DRAIN_SECONDS = 10.0


class Gateway:
    """A weighted reverse proxy on 127.0.0.1:port."""

    def __init__(
        self, port: int, *, seed: int | None = None, labels: dict[str, str] | None = None
    ) -> None:
        self.port = port
        self.labels = labels or {}
        self._lock = threading.Lock()
        self._backends: dict[str, list[int]] = {}  # version -> replica ports
        self._cycles: dict[str, Iterator[int]] = {}
        self._weights: dict[str, int] = {}
        self._counters: dict[str, VersionCounters] = defaultdict(VersionCounters)
        self._in_flight: dict[int, int] = defaultdict(int)  # replica port -> requests
        self._rng = random.Random(seed)
        names = [*self.labels, "version"]
        self.registry = CollectorRegistry(auto_describe=True)
        self._responses = Counter(
            "shipline_gateway_responses",
            "Responses through the gateway, by version and status class.",
            [*names, "class"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "shipline_gateway_request_duration_seconds",
            "Time from receiving a request to the end of its response, by version.",
            names,
            buckets=BUCKETS_SECONDS,
            registry=self.registry,
        )
        self._runner: web.BaseRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- routing and counting -------------------------------------------------------------------

    def route(self, backends: dict[str, list[int]], weights: dict[str, int]) -> None:
        """Send traffic to `backends` (version → ports) in proportion to `weights` (version → %)."""
        with self._lock:
            self._backends = {v: list(p) for v, p in backends.items() if p}
            self._cycles = {v: itertools.cycle(p) for v, p in self._backends.items()}
            self._weights = {v: w for v, w in weights.items() if w > 0 and v in self._backends}
            for version in self._backends:  # every series exists from the start, at zero, so
                for klass in ("2xx", "4xx", "5xx"):  # Prometheus's increase() sees its first rise
                    self._responses.labels(*self._label_values(version), klass)
                self._latency.labels(*self._label_values(version))

    def _label_values(self, version: str) -> list[str]:
        return [*self.labels.values(), version]

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

    def totals(self) -> dict[str, int]:
        """Responses per version since the gateway started (what the exposition counts)."""
        found: dict[str, int] = defaultdict(int)
        for metric in self.registry.collect():
            for sample in metric.samples:
                if sample.name == "shipline_gateway_responses_total":
                    found[sample.labels["version"]] += int(sample.value)
        return dict(found)

    def _pick(self) -> tuple[str, int] | None:
        """A version by weight and its next replica, counted in flight until `_done`."""
        with self._lock:
            if not self._weights:
                return None
            total = sum(self._weights.values())
            point = self._rng.uniform(0, total)
            picked = next(iter(self._weights))
            for version, weight in self._weights.items():
                point -= weight
                if point <= 0:
                    picked = version
                    break
            port = next(self._cycles[picked])
            self._in_flight[port] += 1
            return picked, port

    def _done(self, port: int) -> None:
        with self._lock:
            self._in_flight[port] -= 1
            if self._in_flight[port] <= 0:
                del self._in_flight[port]

    def drain(self, port: int, timeout: float = DRAIN_SECONDS) -> bool:
        """Wait until no request is in flight to the replica on `port` (taken out of the
        routes before): whether it drained within `timeout` seconds. A replica stopped while
        a request to it is in flight answers that request with a 502."""
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._in_flight.get(port):
                    return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.005)

    def _record(self, version: str, status: int, seconds: float) -> None:
        with self._lock:
            self._counters[version].add(status, seconds * 1000)
        labels = self._label_values(version)
        self._responses.labels(*labels, f"{status // 100}xx").inc()
        self._latency.labels(*labels).observe(seconds)

    def metrics(self) -> str:
        """Prometheus text exposition: cumulative responses and a latency histogram per version."""
        return generate_latest(self.registry).decode()

    # --- serving ---------------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/_shipline/metrics":
            return web.Response(
                body=generate_latest(self.registry),
                headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
            )
        if request.path == "/_shipline/stats":
            body = {"weights": self.weights(), "versions": self.counters()}
            return web.json_response(body)
        picked = self._pick()
        if picked is None:
            return web.json_response({"error": "no replica"}, status=503)
        version, port = picked
        start = time.perf_counter()
        try:
            return await self._forward(request, version, port, start)
        except (TimeoutError, aiohttp.ClientError, OSError):
            self._record(version, 502, time.perf_counter() - start)
            return web.json_response(
                {"error": "replica unreachable"},
                status=502,
                headers={"X-Shipline-Version": version},
            )
        finally:
            self._done(port)

    async def _forward(
        self, request: web.BaseRequest, version: str, port: int, start: float
    ) -> web.StreamResponse:
        assert self._session is not None
        headers = _end_to_end(request.headers)
        peer = request.remote or ""
        prior = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
        headers["X-Forwarded-Host"] = request.host
        headers["X-Forwarded-Proto"] = request.scheme
        body = _stream(request) if request.body_exists else None
        async with self._session.request(
            request.method,
            f"http://127.0.0.1:{port}{request.rel_url}",
            headers=headers,
            data=body,
            allow_redirects=False,
            auto_decompress=False,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            passed = _end_to_end(upstream.headers)  # Content-Length: set below, or chunked
            response.headers.extend(
                (k, v) for k, v in passed.items() if k.lower() != "content-length"
            )
            response.headers["X-Shipline-Version"] = version
            if upstream.content_length is not None and request.method != "HEAD":
                response.content_length = upstream.content_length
            # Counted before the client can have the whole answer (the last chunk is held
            # back until then), so a count read after a request returned includes it.
            counted = request.method == "HEAD" or upstream.content_length == 0
            if counted:
                self._record(version, upstream.status, time.perf_counter() - start)
            try:
                await response.prepare(request)
                held: bytes | None = None
                async for chunk in upstream.content.iter_chunked(CHUNK):
                    if held is not None:
                        await response.write(held)
                    held = chunk
                if not counted:
                    counted = True
                    self._record(version, upstream.status, time.perf_counter() - start)
                if held is not None:
                    await response.write(held)
                await response.write_eof()
            except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                # The client left before the whole answer: the replica answered all the same.
                if not counted:
                    self._record(version, upstream.status, time.perf_counter() - start)
            return response

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )
        server = web.Server(self._handle, access_log=None)
        runner = self._runner = web.ServerRunner(server, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await self._stop()
            raise
        self.port = int(runner.addresses[0][1])

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def start(self) -> None:
        """Listen (on the shared event loop); OSError when the port is taken."""
        _Loop.run(self._start())

    def stop(self) -> None:
        """Stop listening and close the connections to the replicas."""
        if self._runner is not None or self._session is not None:
            _Loop.run(self._stop())


def _end_to_end(headers: Any) -> dict[str, str]:
    """The headers a proxy passes on: hop-by-hop ones (and those `Connection` names) dropped."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
        if token.strip()
    }
    passed: dict[str, str] = {}
    for key, value in headers.items():
        lowered = key.lower()
        if lowered in HOP_BY_HOP or lowered in named:
            continue
        passed[key] = f"{passed[key]}, {value}" if key in passed else value
    return passed


async def _stream(request: web.BaseRequest) -> Any:
    """The request body as it arrives, chunk by chunk."""
    async for chunk in request.content.iter_chunked(CHUNK):
        yield chunk
