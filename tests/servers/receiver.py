"""A real local HTTP server that records what webhooks post, and can fail on purpose."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.servers.serve import serve


@dataclass
class Received:
    """Requests seen, and how many of the next ones should fail with 500."""

    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_next: int = 0
    attempts: int = 0


@contextmanager
def receiver() -> Iterator[tuple[str, Received]]:
    """Serve on http://127.0.0.1:PORT/hook; yield (url, record)."""
    record = Received()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            record.attempts += 1
            if record.fail_next > 0:
                record.fail_next -= 1
                self.send_response(500)
                self.end_headers()
                return
            record.requests.append(({k: v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    with serve(Handler) as base:
        yield f"{base}/hook", record
