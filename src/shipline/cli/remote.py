"""The CLI as a client of a shipline server: `login` stores a personal token (0600), and the
commands that act as a person (approve, reject, cancel) then go through the server, which
verifies who is acting. Without a stored sign-in, shipline is in single-user mode."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from shipline.errors import NotAuthenticated, NotFoundError, PermissionDenied, UserError

TYPE_CHECKING = False  # typing is not imported at run time (the quick path loads this)
if TYPE_CHECKING:
    from typing import Any

LOGIN_ENV = "SHIPLINE_LOGIN_FILE"
STATUS_ERRORS: dict[int, type[UserError]] = {
    401: NotAuthenticated, 403: PermissionDenied, 404: NotFoundError,
}  # fmt: skip


def login_file() -> Path:
    """Where the sign-in is kept: SHIPLINE_LOGIN_FILE, or the user's config folder."""
    chosen = os.environ.get(LOGIN_ENV)
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "shipline" / "login.json"


class Remote:
    """A signed-in server: its address and the token."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self._token = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import urllib.error  # here: most commands never call a server, and urllib is slow to load
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read() or b"{}")
            except ValueError:
                detail = {}
            message = detail.get("error") or f"the server answered {exc.code}"
            if isinstance(message, list):  # a request the API's schema refused
                message = "; ".join(str(m.get("msg", m)) for m in message)
            kind = STATUS_ERRORS.get(exc.code, UserError)
            raise kind(f"{message}", hint=detail.get("hint")) from None
        except (urllib.error.URLError, OSError) as exc:
            raise UserError(f"cannot reach the server {self.url}: {exc}") from None

    def get(self, path: str) -> Any:
        return self.call("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.call("POST", path, body or {})


def current() -> Remote | None:
    """The stored sign-in, or None (single-user mode)."""
    path = login_file()
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return Remote(str(data["server"]), str(data["token"]))
    except (ValueError, KeyError, OSError) as exc:
        raise UserError(
            f"the sign-in in {path} is unreadable: {exc}", hint="shipline login again"
        ) from None


def sign_in(url: str, user: str, password: str) -> str:
    """Exchange name and password for a personal token, and keep it (0600)."""
    if not url.startswith(("http://", "https://")):
        raise UserError(f"not a server address: {url}", hint="e.g. https://shipline.example.com")
    answer = Remote(url, None).post(
        "/api/v1/login", {"name": user, "password": password, "label": "cli"}
    )
    path = login_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"server": url.rstrip("/"), "user": answer["name"], "token": answer["token"],
                   "tokenId": answer["id"]}, handle)  # fmt: skip
    return str(answer["name"])


def sign_out() -> str:
    """Revoke the stored token on the server and forget it."""
    path = login_file()
    remote = current()
    if remote is None:
        return "not signed in"
    data = json.loads(path.read_text())
    with contextlib.suppress(UserError):  # already revoked or expired: forget it all the same
        remote.call("DELETE", f"/api/v1/tokens/{int(data.get('tokenId', 0))}")
    path.unlink()
    return f"signed out of {remote.url}"


def refuse_as(given: str | None, remote: Remote) -> None:
    """With a server, the person is the signed-in one: naming someone else is refused."""
    if given is not None:
        raise UserError(
            f"--as is not accepted while signed in to {remote.url}: you act as yourself",
            hint="drop --as (see `shipline whoami`)",
        )


def acting_user() -> str:
    """Who a command acts as: the person signed in to the server (as the server verifies the
    stored token), or, in single-user mode, the local user (SHIPLINE_USER or the login name)."""
    remote = current()
    if remote is not None:
        return str(remote.get("/api/v1/me")["name"])
    from shipline.engine.identity import current_user

    return current_user(None, os.environ)


class RemoteRuns:
    """The runs of a server, as the CLI's followers read them (`get` and `details`)."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote

    def details(self, run_id: int) -> dict[str, Any]:
        found: dict[str, Any] = self.remote.get(f"/api/v1/runs/{run_id}")
        return found

    def get(self, run_id: int) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(phase=self.details(run_id)["phase"])


def start_on_server(
    state: Any, remote: Remote, path: str, body: dict[str, Any], *, detach: bool, as_json: bool
) -> None:
    """Start a run through the server (as the signed-in person, with their roles) and follow it
    as a local one is followed; the run's page on the server is named."""
    from shipline.cli.runs import watch

    run = remote.post(path, body)
    run_id = int(run["id"])
    watch(
        state, RemoteRuns(remote), run_id, detach=detach, as_json=as_json,
        queued=f"run {run_id} queued by {run['requestedBy']} on {remote.url}/runs/{run_id}",
        details=lambda runs, n: runs.details(n),
    )  # fmt: skip
