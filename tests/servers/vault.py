"""A local stand-in for HashiCorp Vault's KV v2 engine, speaking the REST calls hvac makes.

No Vault server is installable here, so the real hvac client talks to this HTTP server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlparse

from tests.servers.serve import serve

TOKEN = "s.test-token"
MOUNT = "secret"


def _handler(store: dict[str, dict[str, Any]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: dict[str, Any] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self) -> tuple[str, str] | None:
            if self.headers.get("X-Vault-Token") != TOKEN:
                self._send(403, {"errors": ["permission denied"]})
                return None
            path = urlparse(self.path).path
            prefix = f"/v1/{MOUNT}/"
            if not path.startswith(prefix):
                self._send(404, {"errors": []})
                return None
            kind, _, rest = path[len(prefix) :].partition("/")
            return kind, rest

        def do_GET(self) -> None:
            route = self._route()
            if route is None:
                return
            kind, path = route
            if "list=true" in self.path:
                self._list(path)
                return
            if kind != "data" or path not in store:
                self._send(404, {"errors": []})
                return
            entry = store[path]
            metadata = {"version": entry["version"], "deletion_time": "", "destroyed": False}
            self._send(200, {"data": {"data": entry["data"], "metadata": metadata}})

        def do_LIST(self) -> None:
            route = self._route()
            if route is not None:
                self._list(route[1])

        def _list(self, prefix: str) -> None:
            prefix = prefix.rstrip("/") + "/" if prefix else ""
            keys = sorted(
                {
                    k[len(prefix) :].split("/")[0] + ("/" if "/" in k[len(prefix) :] else "")
                    for k in store
                    if k.startswith(prefix)
                }
            )
            if not keys:
                self._send(404, {"errors": []})
                return
            self._send(200, {"data": {"keys": keys}})

        def do_POST(self) -> None:
            route = self._route()
            if route is None:
                return
            _kind, path = route
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            version = store.get(path, {"version": 0})["version"] + 1
            store[path] = {"data": body["data"], "version": version}
            self._send(200, {"data": {"version": version}})

        do_PUT = do_POST  # noqa: N815

        def do_DELETE(self) -> None:
            route = self._route()
            if route is None:
                return
            store.pop(route[1], None)
            self._send(204)

    return Handler


@contextmanager
def vault_server() -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
    """Serve a fake Vault on http://127.0.0.1:PORT; yield (url, state)."""
    store: dict[str, dict[str, Any]] = {}
    with serve(_handler(store)) as base:
        yield base, store
