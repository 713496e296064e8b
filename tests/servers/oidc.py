"""A small OpenID Connect issuer on loopback, for single sign-on tests: discovery, an
authorization endpoint that signs in a chosen person at once, a token endpoint that checks the
code and PKCE verifier and returns an RS256 ID token, and the JWKS with its public key."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.servers.serve import serve


@dataclass
class Issuer:
    """What the issuer knows and how a test steers it."""

    url: str = ""
    client_id: str = "shipline"
    client_secret: str = "oidc-client-secret-123"
    person: str = "olivia@quikapp.example"
    key: Any = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    forge_with: Any = None  # sign ID tokens with another key (a forgery)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims = {"iss": self.url, "aud": self.client_id, "sub": "s-" + self.person,
                  "preferred_username": self.person, "nonce": nonce, "iat": now,
                  "exp": now + 300}  # fmt: skip
        signer = self.forge_with or self.key
        return jwt.encode(claims, signer, algorithm="RS256", headers={"kid": "k1"})


def _handler(issuer: Issuer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def _json(self, data: Any, status: int = 200) -> None:
            body = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            parsed = urllib.parse.urlparse(self.path)
            query = dict(urllib.parse.parse_qsl(parsed.query))
            if parsed.path == "/.well-known/openid-configuration":
                self._json({"issuer": issuer.url, "authorization_endpoint": issuer.url + "/authorize",
                            "token_endpoint": issuer.url + "/token", "jwks_uri": issuer.url + "/jwks"})  # fmt: skip
            elif parsed.path == "/jwks":
                public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(issuer.key.public_key()))
                self._json({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]})
            elif parsed.path == "/authorize":
                code = secrets.token_urlsafe(16)
                issuer.codes[code] = query
                target = query["redirect_uri"] + "?" + urllib.parse.urlencode(
                    {"code": code, "state": query["state"]})  # fmt: skip
                self.send_response(302)
                self.send_header("Location", target)
                self.end_headers()
            else:
                self._json({"error": "not found"}, 404)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
            asked = issuer.codes.pop(form.get("code", ""), None)
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if (asked is None or form.get("client_secret") != issuer.client_secret
                    or asked["code_challenge"] != challenge
                    or form.get("redirect_uri") != asked["redirect_uri"]):  # fmt: skip
                self._json({"error": "invalid_grant"}, 400)
                return
            self._json({"access_token": "at", "token_type": "Bearer",
                        "id_token": issuer.id_token(asked["nonce"])})  # fmt: skip

    return Handler


@contextmanager
def oidc_issuer() -> Iterator[Issuer]:
    """An issuer on a loopback port while the block runs."""
    issuer = Issuer()
    with serve(_handler(issuer)) as url:
        issuer.url = url
        yield issuer
