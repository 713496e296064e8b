"""The demo workload: a tiny HTTP service that stands in for each QuikApp service locally.

Standard library only. It serves its health path, `/version`, `/` and `/api/echo`, counts its
answers for Prometheus at `/metrics` (`shipline_demo_responses_total{class}` and the
`shipline_demo_request_duration_seconds` histogram; health checks and scrapes not counted), and
can be made bad on purpose through its environment, so that canary analysis and health
verification fail honestly:

  SHIPLINE_DEMO_ERROR_RATE     fraction of requests answered 500 (0..1)
  SHIPLINE_DEMO_LATENCY_MS     added latency per request
  SHIPLINE_DEMO_CRASH_AT_START exit at once with status 3 (a crash loop under a supervisor)
  SHIPLINE_DEMO_FAIL_HEALTH    the health path answers 503

Run: python -m shipline.targets.local.workload --port 8080 --service api --version 1.0.0
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _settings(environ: dict[str, str]) -> dict[str, Any]:
    return {
        "error_rate": float(environ.get("SHIPLINE_DEMO_ERROR_RATE", "0") or 0),
        "latency": float(environ.get("SHIPLINE_DEMO_LATENCY_MS", "0") or 0) / 1000,
        "fail_health": environ.get("SHIPLINE_DEMO_FAIL_HEALTH", "") not in ("", "0", "false"),
    }


BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Meter:
    """The workload's own request counters, in Prometheus's text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.responses: dict[str, int] = {}
        self.buckets = [0] * len(BUCKETS_SECONDS)
        self.count = 0
        self.total = 0.0

    def observe(self, status: int, seconds: float) -> None:
        with self._lock:
            key = f"{status // 100}xx"
            self.responses[key] = self.responses.get(key, 0) + 1
            for i, bound in enumerate(BUCKETS_SECONDS):
                if seconds <= bound:
                    self.buckets[i] += 1
            self.count += 1
            self.total += seconds

    def text(self) -> str:
        with self._lock:
            lines = ["# TYPE shipline_demo_responses_total counter"]
            lines += [f'shipline_demo_responses_total{{class="{k}"}} {v}'
                      for k, v in sorted(self.responses.items())]  # fmt: skip
            lines.append("# TYPE shipline_demo_request_duration_seconds histogram")
            for bound, n in zip(BUCKETS_SECONDS, self.buckets, strict=True):
                lines.append(f'shipline_demo_request_duration_seconds_bucket{{le="{bound}"}} {n}')
            lines.append(f'shipline_demo_request_duration_seconds_bucket{{le="+Inf"}} {self.count}')
            lines.append(f"shipline_demo_request_duration_seconds_sum {self.total}")
            lines.append(f"shipline_demo_request_duration_seconds_count {self.count}")
        return "\n".join(lines) + "\n"


def make_handler(
    service: str,
    version: str,
    health: str,
    settings: dict[str, Any],
    rng: random.Random,
    meter: Meter | None = None,
) -> type[BaseHTTPRequestHandler]:
    """The request handler of one workload process."""
    counted = meter or Meter()

    class Handler(BaseHTTPRequestHandler):
        server_version = f"{service}/{version}"
        protocol_version = "HTTP/1.1"  # keep-alive, as a real service behind a proxy
        # An answer is two writes (head, body): with Nagle's algorithm the body of an answer on
        # a kept-alive connection waits for the peer's delayed acknowledgement (about 40 ms).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return

        def setup(self) -> None:
            super().setup()
            self.started = time.monotonic()

        def parse_request(self) -> bool:
            self.started = time.monotonic()  # per request, on a kept-alive connection too
            return super().parse_request()

        def _send(self, status: int, body: dict[str, Any]) -> None:
            if self.path.split("?", 1)[0] not in (health, "/metrics"):
                counted.observe(status, time.monotonic() - self.started)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Service-Version", version)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _echo(self) -> None:
            """`/api/echo` with a body: answer with what was sent (its size and digest)."""
            length = int(self.headers.get("Content-Length") or 0)
            received = self.rfile.read(length) if length else b""
            if rng.random() < settings["error_rate"]:
                self._send(500, {"error": "injected failure", "version": version})
                return
            self._send(
                200,
                {
                    "service": service,
                    "version": version,
                    "method": self.command,
                    "bytes": len(received),
                    "sha256": hashlib.sha256(received).hexdigest(),
                    "forwardedFor": self.headers.get("X-Forwarded-For"),
                    "headers": sorted(k.lower() for k in self.headers),
                    "peerPort": self.client_address[1],
                },
            )

        do_POST = do_PUT = do_PATCH = do_DELETE = _echo  # noqa: N815

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_OPTIONS(self) -> None:
            self.send_response(204)
            self.send_header("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics" and path != health:
                data = counted.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if path == health:
                if settings["fail_health"]:
                    self._send(503, {"status": "DOWN", "service": service})
                else:
                    self._send(200, {"status": "UP", "service": service, "version": version})
                return
            if settings["latency"]:
                time.sleep(settings["latency"])
            if path == "/version":
                self._send(200, {"service": service, "version": version, "pid": os.getpid()})
                return
            if path not in ("/", "/api/echo"):
                self._send(404, {"error": "not found", "path": path})
                return
            if rng.random() < settings["error_rate"]:
                self._send(500, {"error": "injected failure", "version": version})
                return
            self._send(200, {"service": service, "version": version, "path": path})

    return Handler


def main(argv: list[str] | None = None) -> int:
    """Serve until killed."""
    parser = argparse.ArgumentParser(prog="shipline-workload")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--health", default="/health")
    parser.add_argument("--service", default="service")
    parser.add_argument("--version", default="0.0.0")
    parser.add_argument(
        "--owner", default="", help="who started it (so its processes can be found)"
    )
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    if environ.get("SHIPLINE_DEMO_CRASH_AT_START", "") not in ("", "0", "false"):
        print(
            f"{args.service} {args.version}: crashing at start (SHIPLINE_DEMO_CRASH_AT_START)",
            file=sys.stderr,
        )
        return 3
    settings = _settings(environ)
    server = ThreadingHTTPServer(
        (args.host, args.port),
        make_handler(args.service, args.version, args.health, settings, random.Random()),
    )
    print(f"{args.service} {args.version} listening on {args.host}:{args.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
