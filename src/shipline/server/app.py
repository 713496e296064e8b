"""The shipline server: one ASGI application (FastAPI) for the REST API, the web dashboard and
inbound hooks, on the same state store as the workers. It holds no delivery rule: every request
is authenticated here, authorised by `engine.access`, and carried out by the engine functions
the CLI calls. Everything it sends passes the workspace's masker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from shipline.domain.access import Principal
from shipline.engine.accounts import Accounts
from shipline.engine.runs import RunService
from shipline.engine.workspace import Workspace
from shipline.errors import (
    NotAuthenticated,
    NotFoundError,
    PermissionDenied,
    ShiplineError,
    TechnicalError,
    TooManyAttempts,
    UserError,
    VoteNotCounted,
)

log = logging.getLogger("shipline.server")
COOKIE = "shipline_session"
STATUS_SECONDS = 1.0  # how long one reading of every target serves every dashboard
CSRF_HEADER = "X-CSRF-Token"
HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
}


class RunFeed:
    """One poll of the store's newest ids per interval, shared by every live client: a client
    waits for the marks to move instead of asking the store itself."""

    def __init__(self, service: RunService, interval: float = 0.5) -> None:
        self._service = service
        self.interval = interval
        self.marks: tuple[int, ...] = ()
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def _poll(self) -> None:
        while True:
            try:
                marks = await asyncio.to_thread(self._service.store.marks)
            except ShiplineError:
                marks = self.marks
            if marks != self.marks:
                self.marks = marks
                async with self._changed:
                    self._changed.notify_all()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def next(self, seen: tuple[int, ...], timeout: float) -> tuple[int, ...]:
        """The marks once they differ from `seen` (or after `timeout`, unchanged)."""
        self.start()
        if self.marks != seen and self.marks:
            return self.marks
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
        return self.marks


@dataclass
class Server:
    """What every request handler reaches: the project, its runs and its people."""

    ws: Workspace
    runs: RunService
    accounts: Accounts
    secure_cookies: bool = True
    feed: RunFeed = field(init=False)
    oidc: Any = None  # the single sign-on client, made on first use
    _status: tuple[float, list[dict[str, Any]]] | None = None
    _status_lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.feed = RunFeed(self.runs)

    @property
    def config(self) -> Any:
        return self.ws.config

    def status_rows(self) -> list[dict[str, Any]]:
        """`service_status` for every environment, shared by every request for a second:
        fifty dashboards refreshing on one change ask the targets once, not fifty times."""
        from shipline.engine.status import service_status

        now = time.monotonic()
        with self._status_lock:
            if self._status is not None and now - self._status[0] < STATUS_SECONDS:
                return self._status[1]
            rows = service_status(self.ws)
            self._status = (time.monotonic(), rows)
            return rows

    def mask(self, text: str) -> str:
        return self.ws.masker.mask(text)

    def reply(self, data: Any, status: int = 200) -> Response:
        """A JSON response, masked."""
        body = self.mask(json.dumps(data, default=str))
        return Response(body, status_code=status, media_type="application/json")

    def principal(self, request: Request) -> Principal:
        """The verified person behind a request: a bearer token or a session cookie. A cookie
        session's unsafe API calls must carry its CSRF token in a header."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return self.accounts.token(header[7:].strip())
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            raise NotAuthenticated(
                "sign in, or send a personal token as 'Authorization: Bearer TOKEN'"
            )
        principal, csrf = self.accounts.session(cookie)
        request.state.csrf = csrf
        unsafe = request.method not in ("GET", "HEAD", "OPTIONS")
        given = request.headers.get(CSRF_HEADER, "")
        if (
            unsafe
            and request.url.path.startswith("/api/")
            and not secrets.compare_digest(given, csrf)
        ):
            raise PermissionDenied("missing or wrong CSRF token")
        return principal


STATUS = [
    (NotAuthenticated, 401),
    (TooManyAttempts, 429),
    (PermissionDenied, 403),
    (NotFoundError, 404),
    (VoteNotCounted, 409),
    (UserError, 400),
    (TechnicalError, 503),
    (ShiplineError, 409),  # a rule said no (exit 1 on the CLI)
]


def http_status(exc: ShiplineError) -> int:
    """The HTTP status for an error, as the CLI's exit code means it."""
    return next(code for kind, code in STATUS if isinstance(exc, kind))


def create_app(ws: Workspace, *, secure_cookies: bool = True) -> FastAPI:
    """The server for `ws`'s project."""
    from shipline.engine.assembly import accounts, run_service
    from shipline.server import api, hooks, oidc, web

    ws.learn_secrets(local=True)
    # remote stores (Key Vault, Vault) may take seconds to answer: learnt beside serving
    threading.Thread(target=ws.learn_secrets, kwargs={"local": False}, daemon=True).start()
    server = Server(ws, run_service(ws), accounts(ws), secure_cookies=secure_cookies)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await server.feed.stop()

    app = FastAPI(
        lifespan=lifespan,
        title=f"shipline — {ws.config.project}",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.server = server

    @app.exception_handler(ShiplineError)
    async def _shipline_error(request: Request, exc: ShiplineError) -> Response:
        status = http_status(exc)
        page = not request.url.path.startswith(("/api/", "/hooks/", "/auth/"))
        if page and status == 401:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        if not request.url.path.startswith(("/api/", "/hooks/")):
            return web.error_page(server, request, exc, status)
        body: dict[str, Any] = {"error": exc.message}
        if exc.hint:
            body["hint"] = exc.hint
        return server.reply(body, status)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # the client gets no detail; the server's log gets it, masked
        log.error("%s %s failed: %s", request.method, request.url.path,
                  ws.masker.mask(f"{type(exc).__name__}: {exc}"))  # fmt: skip
        return JSONResponse({"error": "internal error; see the server's log"}, status_code=500)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if server.secure_cookies:
            response.headers.setdefault(
                "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
            )
        return response

    app.include_router(api.router)
    app.include_router(hooks.router)
    app.include_router(oidc.router)
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app
