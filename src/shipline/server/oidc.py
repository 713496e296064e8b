"""Single sign-on with OpenID Connect: the authorization-code flow with PKCE, a state bound to
the browser by a cookie, a nonce, and the ID token's signature checked against the provider's
published keys (issuer, audience, expiry, nonce). Azure AD / Entra ID, Keycloak, Dex and any
conforming provider work the same way."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from shipline.domain.models import OidcSpec
from shipline.errors import NotAuthenticated, NotFoundError, TechnicalError
from shipline.server.api import server_of
from shipline.server.app import Server

router = APIRouter(prefix="/auth/oidc", include_in_schema=False)
Srv = Annotated[Server, Depends(server_of)]
STATE_COOKIE = "shipline_oidc"
PENDING_SECONDS = 600


@dataclass(frozen=True)
class _Pending:
    nonce: str
    verifier: str
    redirect_uri: str
    next: str
    expires: float


class OidcClient:
    """One provider: its discovery document and keys (fetched once), and the sign-ins begun."""

    def __init__(self, spec: OidcSpec) -> None:
        self.spec = spec
        self._discovery: dict[str, Any] | None = None
        self._keys: Any = None
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    def _fetch(self, url: str, data: bytes | None = None) -> dict[str, Any]:
        request = urllib.request.Request(url, data=data)
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                found = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise NotAuthenticated(f"the identity provider refused: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise TechnicalError(f"cannot reach the identity provider: {exc}") from None
        if not isinstance(found, dict):
            raise TechnicalError("the identity provider answered something else than JSON")
        return found

    def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            url = self.spec.issuer.rstrip("/") + "/.well-known/openid-configuration"
            found = self._fetch(url)
            if found.get("issuer") != self.spec.issuer:
                raise TechnicalError("the provider's discovery document names another issuer")
            self._discovery = found
        return self._discovery

    def begin(self, redirect_uri: str, target: str) -> tuple[str, str]:
        """The provider's authorization URL, and the state to bind to the browser."""
        state, nonce, verifier = (secrets.token_urlsafe(24) for _ in range(3))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        query = {
            "response_type": "code", "client_id": self.spec.client_id,
            "redirect_uri": redirect_uri, "scope": " ".join(self.spec.scopes), "state": state,
            "nonce": nonce, "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }  # fmt: skip
        now = time.monotonic()
        with self._lock:
            for key in [k for k, v in self._pending.items() if v.expires < now]:
                del self._pending[key]
            self._pending[state] = _Pending(
                nonce, verifier, redirect_uri, target, now + PENDING_SECONDS
            )
        endpoint = str(self.discovery()["authorization_endpoint"])
        return f"{endpoint}?{urllib.parse.urlencode(query)}", state

    def finish(
        self, state: str, bound: str, code: str, client_secret: str | None
    ) -> tuple[str, str]:
        """The verified person's name and where they were going, from the provider's answer."""
        with self._lock:
            pending = self._pending.pop(state, None)
        if pending is None or not bound or not secrets.compare_digest(state, bound):
            raise NotAuthenticated("the sign-in was not started here or has expired; try again")
        if pending.expires < time.monotonic():
            raise NotAuthenticated("the sign-in took too long; try again")
        form = {
            "grant_type": "authorization_code", "code": code,
            "redirect_uri": pending.redirect_uri, "client_id": self.spec.client_id,
            "code_verifier": pending.verifier,
        }  # fmt: skip
        if client_secret:
            form["client_secret"] = client_secret
        answer = self._fetch(
            str(self.discovery()["token_endpoint"]), urllib.parse.urlencode(form).encode()
        )
        token = answer.get("id_token")
        if not isinstance(token, str):
            raise NotAuthenticated("the identity provider sent no ID token")
        claims = self._verify(token)
        if claims.get("nonce") != pending.nonce:
            raise NotAuthenticated("the ID token is not for this sign-in (nonce)")
        name = claims.get(self.spec.username_claim)
        if not isinstance(name, str) or not name:
            raise NotAuthenticated(f"the ID token has no '{self.spec.username_claim}' claim")
        return name, pending.next

    def _verify(self, token: str) -> dict[str, Any]:
        import jwt

        if self._keys is None:
            self._keys = jwt.PyJWKClient(str(self.discovery()["jwks_uri"]), cache_keys=True)
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=["RS256", "ES256", "PS256"],
                audience=self.spec.client_id, issuer=self.spec.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )  # fmt: skip
        except jwt.PyJWTError as exc:
            raise NotAuthenticated(f"the ID token is not valid: {exc}") from None
        return claims


def _client(srv: Server) -> OidcClient:
    spec = srv.config.access.oidc
    if spec is None:
        raise NotFoundError("single sign-on is not configured", hint="see access.oidc")
    if srv.oidc is None:
        srv.oidc = OidcClient(spec)
    client: OidcClient = srv.oidc
    return client


@router.get("/login")
def oidc_login(request: Request, srv: Srv, next: str = "/") -> Response:
    from shipline.server.web import _safe_next

    client = _client(srv)
    callback = str(request.url_for("oidc_callback"))
    url, state = client.begin(callback, _safe_next(next))
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(STATE_COOKIE, state, httponly=True, samesite="lax",
                        secure=srv.secure_cookies, max_age=PENDING_SECONDS)  # fmt: skip
    return response


@router.get("/callback", name="oidc_callback")
def oidc_callback(
    request: Request, srv: Srv, state: str = "", code: str = "", error: str = ""
) -> Response:
    from shipline.server.web import open_session

    client = _client(srv)
    if error or not code:
        srv.ws.audit.append("oidc", "login.failed", source="oidc", reason=error or "no code")
        raise NotAuthenticated(f"single sign-on did not complete: {error or 'no code'}")
    secret_name = client.spec.client_secret
    secret = srv.ws.store().get(secret_name) if secret_name else None
    try:
        name, target = client.finish(state, request.cookies.get(STATE_COOKIE, ""), code, secret)
    except NotAuthenticated as exc:
        srv.ws.audit.append("oidc", "login.failed", source="oidc", reason=exc.message)
        raise
    who = srv.accounts.single_sign_on(name, issuer=client.spec.issuer)
    response = open_session(srv, who, target)
    response.delete_cookie(STATE_COOKIE)
    return response
