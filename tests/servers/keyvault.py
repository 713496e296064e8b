"""A local stand-in for Azure Key Vault that speaks the part of its REST API the SDK uses.

No real vault is reachable from the test machines, so the real azure-keyvault-secrets client
talks to this HTTPS server instead: the bearer-token challenge, get / set / delete / list.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tests.servers.serve import serve
from tests.servers.tls import make_certificate

TOKEN = "test-access-token"


class _Vault:
    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []


def _handler(vault: _Vault, base: list[str]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(
            self,
            status: int,
            body: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None,
        ) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {TOKEN}":
                return True
            challenge = (
                'Bearer authorization="https://login.microsoftonline.com/tenant-id", '
                'resource="https://vault.azure.net"'
            )
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self._send(
                401,
                {"error": {"code": "Unauthorized", "message": "no token"}},
                {"WWW-Authenticate": challenge},
            )
            return False

        def _bundle(self, name: str) -> dict[str, Any]:
            return {
                "value": vault.secrets[name],
                "id": f"{base[0]}/secrets/{name}/0123456789abcdef",
                "attributes": {"enabled": True, "created": 1700000000, "updated": 1700000000},
            }

        def _name(self) -> str | None:
            parts = urlparse(self.path).path.strip("/").split("/")
            return parts[1] if len(parts) >= 2 and parts[0] == "secrets" else None

        def _missing(self, name: str) -> None:
            self._send(404, {"error": {"code": "SecretNotFound", "message": f"{name} not found"}})

        def do_GET(self) -> None:
            if not self._authorized():
                return
            vault.requests.append(("GET", self.path))
            path = urlparse(self.path).path.rstrip("/")
            if path == "/secrets":
                items = [
                    {"id": f"{base[0]}/secrets/{n}", "attributes": {"enabled": True}}
                    for n in sorted(vault.secrets)
                ]
                self._send(200, {"value": items, "nextLink": None})
                return
            name = self._name()
            if name is None or name not in vault.secrets:
                self._missing(name or "?")
                return
            self._send(200, self._bundle(name))

        def do_PUT(self) -> None:
            if not self._authorized():
                return
            vault.requests.append(("PUT", self.path))
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            name = self._name()
            assert name
            vault.secrets[name] = body["value"]
            self._send(200, self._bundle(name))

        def do_DELETE(self) -> None:
            if not self._authorized():
                return
            vault.requests.append(("DELETE", self.path))
            name = self._name()
            if name is None or name not in vault.secrets:
                self._missing(name or "?")
                return
            bundle = self._bundle(name)
            del vault.secrets[name]
            self._send(200, bundle)  # no recoveryId: the vault has no soft-delete, no polling

    return Handler


@contextmanager
def key_vault_server(folder: Path) -> Iterator[tuple[str, Path, _Vault]]:
    """Serve a fake vault on https://127.0.0.1:PORT; yield (url, CA file, state)."""
    cert, key = make_certificate(folder)
    vault = _Vault()
    base: list[str] = [""]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with serve(_handler(vault, base), context) as url:
        base[0] = url
        yield url, cert, vault
