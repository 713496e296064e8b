"""The REST API (`/api/v1`): the CLI's verbs over HTTP, each checked against the caller's role.

HTTP statuses mean what the CLI's exit codes mean: 200/201 done, 202 queued (exit 3: the run goes
on), 400 bad input, 401 no verified identity, 403 not allowed, 404 unknown, 409 a rule said no
or a vote that would not count, 429 too many sign-ins, 503 a part of the system failed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from shipline.domain.access import Principal
from shipline.engine.access import may, permissions, require
from shipline.engine.wiring import RunRecord
from shipline.errors import UserError
from shipline.server.app import Server

router = APIRouter(prefix="/api/v1", tags=["api"])
ENDED = {"succeeded", "failed", "errored", "cancelled"}


def server_of(request: Request) -> Server:
    server: Server = request.app.state.server
    return server


def principal_of(request: Request) -> Principal:
    return server_of(request).principal(request)


Who = Annotated[Principal, Depends(principal_of)]
Srv = Annotated[Server, Depends(server_of)]


class StartRun(BaseModel):
    """A run to start: a deploy (tag or release) or an action on what is deployed."""

    pipeline: Literal["deploy", "restart", "rollback", "scale"] = "deploy"
    environment: str = Field(min_length=1, max_length=63)
    services: str | None = Field(default=None, max_length=4000)
    tag: str | None = Field(default=None, max_length=128)
    release: str | None = Field(default=None, max_length=128)
    set: list[str] = Field(default=[], max_length=100)
    skip_tests: bool = False
    replicas: int | None = Field(default=None, ge=0, le=1000)
    revision: int | None = Field(default=None, ge=0)
    force: bool = False
    emergency: bool = False
    reason: str | None = Field(default=None, max_length=2000)


class Vote(BaseModel):
    """A vote on a run's waiting stage."""

    stage: str | None = Field(default=None, max_length=100)
    comment: str | None = Field(default=None, max_length=2000)


class Cancel(BaseModel):
    """Why a run is being cancelled."""

    reason: str | None = Field(default=None, max_length=2000)


class NewToken(BaseModel):
    """A personal token to create."""

    label: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=4)
    days: int = Field(default=90, ge=1, le=366)


class NewUser(BaseModel):
    """A local person to create (or whose password and admin flag to change)."""

    name: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1000)
    admin: bool = False


def _run_environment(srv: Server, run_id: int) -> str | None:
    return srv.runs.get(run_id).environment


class Login(BaseModel):
    """Name and password, exchanged for a personal token (what `shipline login` does)."""

    name: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1000)
    label: str = Field(default="cli", min_length=1, max_length=100)
    days: int = Field(default=30, ge=1, le=366)


@router.post("/login", status_code=201)
def login(request: Request, srv: Srv, body: Login) -> Response:
    """A personal token for a person who proves their password (rate-limited, audited)."""
    source = request.client.host if request.client else ""
    name = srv.accounts.check_password(body.name, body.password, source=source)
    scopes = ["view", "deploy", "approve"]
    token_id, token = srv.accounts.create_token(name, body.label, scopes, body.days, actor=name)
    return srv.reply({"name": name, "id": token_id, "token": token, "scopes": scopes}, 201)


@router.get("/me")
def me(srv: Srv, who: Who) -> Response:
    """Who the caller is, and what they may do per environment."""
    return srv.reply(
        {
            "name": who.name,
            "admin": who.admin,
            "via": who.via,
            "scopes": sorted(who.scopes) if who.scopes is not None else None,
            "permissions": permissions(srv.config, who),
        }
    )


@router.get("/status")
def status(srv: Srv, who: Who, env: str | None = None) -> Response:
    """Which version of each service runs where, with its health and release."""
    from shipline.engine.status import service_status

    require(srv.config, who, "view", env)
    found = service_status(srv.ws, env) if env else srv.status_rows()
    rows = [r for r in found if may(srv.config, who, "view", r["environment"])]
    return srv.reply(rows)


@router.get("/runs")
def list_runs(
    srv: Srv,
    who: Who,
    env: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """Runs, newest first, that the caller may see (`env`: a name or an alias)."""
    from shipline.engine.reads import by_environment, run_summary

    def listed(name: str | None) -> list[RunRecord]:
        return srv.runs.store.list_runs(limit=limit, environment=name)

    if env:
        env, found = by_environment(env, listed, lambda: srv.config)
    else:
        found = listed(None)
    require(srv.config, who, "view", env)
    rows = [run_summary(r) for r in found if may(srv.config, who, "view", r.environment)]
    return srv.reply(rows)


@router.post("/runs", status_code=202)
def start_run(srv: Srv, who: Who, body: StartRun) -> Response:
    """Start a deploy (or restart, rollback, scale); 202 with the queued run."""
    from shipline.engine.pipelines import find_environment
    from shipline.engine.reads import run_summary
    from shipline.engine.submit import submit_action, submit_deploy

    environment = find_environment(srv.config, body.environment).name
    require(srv.config, who, "deploy", environment)
    if body.pipeline == "deploy":
        record = submit_deploy(
            srv.ws, env=environment, services=body.services, tag=body.tag, actor=who.name,
            parameters=body.set, release=body.release, skip_tests=body.skip_tests,
            force=body.force, emergency=body.emergency, reason=body.reason, service=srv.runs,
        )  # fmt: skip
    else:
        extra: dict[str, Any] = {}
        if body.pipeline == "scale":
            if body.replicas is None:
                raise UserError("a scale needs replicas")
            extra["replicas"] = body.replicas
        if body.pipeline == "rollback":
            extra["revision"] = body.revision or 0
        record = submit_action(
            srv.ws, env=environment, services=body.services, action=body.pipeline,
            actor=who.name, service=srv.runs, **extra,
        )  # fmt: skip
    return srv.reply(run_summary(record), 202)


class Promotion(BaseModel):
    """A promotion up the ladder: what succeeded in `source`, into `targets` in order."""

    source: str = Field(min_length=1, max_length=63)
    targets: str = Field(min_length=1, max_length=1000)
    services: str | None = Field(default=None, max_length=4000)
    tag: str | None = Field(default=None, max_length=128)
    release: str | None = Field(default=None, max_length=128)
    skip_tests: bool = False
    canary: bool = False
    emergency: bool = False
    reason: str | None = Field(default=None, max_length=2000)


@router.post("/promotions", status_code=202)
def start_promotion(srv: Srv, who: Who, body: Promotion) -> Response:
    """Start a promotion; the caller may deploy to every environment it reaches."""
    from shipline.engine.promotion import submit_promotion
    from shipline.engine.reads import run_summary

    record = submit_promotion(
        srv.ws, source=body.source, targets=body.targets, services=body.services,
        tag=body.tag, release=body.release, actor=who.name, skip_tests=body.skip_tests,
        canary=body.canary, emergency=body.emergency, reason=body.reason,
        allowed=lambda env: require(srv.config, who, "deploy", env),
        service=srv.runs,  # the server's own: one store, not one opened (and left) per request
    )  # fmt: skip
    return srv.reply(run_summary(record), 202)


@router.post("/promotions/preview")
def promotion_preview(srv: Srv, who: Who, body: Promotion) -> Response:
    """What the promotion would do, queuing nothing: refused as it would be (the caller's
    roles included), else each environment's gates and each service's version now and after."""
    from shipline.engine.promotion import preview_promotion

    shown = preview_promotion(
        srv.ws, source=body.source, targets=body.targets, services=body.services,
        tag=body.tag, release=body.release, skip_tests=body.skip_tests, canary=body.canary,
        emergency=body.emergency, reason=body.reason,
        allowed=lambda env: require(srv.config, who, "deploy", env), service=srv.runs,
    )  # fmt: skip
    return srv.reply(shown)


@router.get("/runs/{run_id}")
def show_run(srv: Srv, who: Who, run_id: int) -> Response:
    """A run with its stages, steps, votes and report."""
    from shipline.engine.runs import run_details

    require(srv.config, who, "view", _run_environment(srv, run_id))
    return srv.reply(run_details(srv.runs, run_id))


def _log_rows(srv: Server, run_id: int, after: int) -> list[dict[str, Any]]:
    return [
        {"id": r["id"], "at": r["at"].isoformat(), "stage": r["stage"], "step": r["step"],
         "line": r["line"]}
        for r in srv.runs.store.logs(run_id, after)
    ]  # fmt: skip


@router.get("/runs/{run_id}/logs")
def run_logs(srv: Srv, who: Who, run_id: int, after: Annotated[int, Query(ge=0)] = 0) -> Response:
    """A run's log lines after id `after`, in order."""
    require(srv.config, who, "view", _run_environment(srv, run_id))
    return srv.reply(_log_rows(srv, run_id, after))


@router.get("/runs/{run_id}/logs/stream")
async def stream_logs(
    srv: Srv, who: Who, run_id: int, after: Annotated[int, Query(ge=0)] = 0
) -> Response:
    """A run's log lines as server-sent events (`event: log`), then `event: end` with its
    phase once it has ended."""
    env = await asyncio.to_thread(_run_environment, srv, run_id)
    require(srv.config, who, "view", env)

    async def events() -> AsyncIterator[str]:
        cursor = after
        marks_seen: tuple[int, ...] = ()
        while True:
            rows = await asyncio.to_thread(_log_rows, srv, run_id, cursor)
            for row in rows:
                cursor = row["id"]
                yield f"event: log\ndata: {srv.mask(json.dumps(row))}\n\n"
            phase = (await asyncio.to_thread(srv.runs.get, run_id)).phase
            if phase in ENDED and not rows:
                yield f"event: end\ndata: {json.dumps({'phase': phase})}\n\n"
                return
            marks_seen = await srv.feed.next(marks_seen, 15.0)
            yield ": keep-alive\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@router.post("/runs/{run_id}/cancel")
def cancel_run(srv: Srv, who: Who, run_id: int, body: Cancel | None = None) -> Response:
    """Ask a run to stop."""
    require(srv.config, who, "deploy", _run_environment(srv, run_id))
    srv.runs.cancel(run_id, who.name, body.reason if body else None)
    return srv.reply({"run": run_id, "cancelling": True})


def _vote(srv: Server, who: Principal, run_id: int, body: Vote | None, approve: bool) -> Response:
    require(srv.config, who, "approve", _run_environment(srv, run_id))
    effect = srv.runs.vote(
        run_id, who.name, approve=approve, stage=body.stage if body else None,
        comment=body.comment if body else None,
    )  # fmt: skip
    return srv.reply(
        {"run": run_id, "stage": effect.stage, "by": who.name, "approve": approve,
         "outcome": str(effect.outcome), "waitingOn": list(effect.waiting_on)}
    )  # fmt: skip


@router.post("/runs/{run_id}/approve")
def approve_run(srv: Srv, who: Who, run_id: int, body: Vote | None = None) -> Response:
    """Approve the run's waiting stage as the caller (never as anyone else)."""
    return _vote(srv, who, run_id, body, True)


@router.post("/runs/{run_id}/reject")
def reject_run(srv: Srv, who: Who, run_id: int, body: Vote | None = None) -> Response:
    """Reject the run's waiting stage as the caller."""
    return _vote(srv, who, run_id, body, False)


class CanaryDecision(BaseModel):
    """Promote a running canary past its pause or analysis, or abort it."""

    action: Literal["promote", "abort"]
    comment: str | None = Field(default=None, max_length=2000)
    service: str | None = Field(default=None, min_length=1, max_length=63)  # default: each


@router.post("/runs/{run_id}/canary")
def canary(srv: Srv, who: Who, run_id: int, body: CanaryDecision) -> Response:
    """Decide a running canary as the caller (the deploy stage's approver rules apply)."""
    require(srv.config, who, "approve", _run_environment(srv, run_id))
    step = srv.runs.canary(
        run_id, who.name, promote=body.action == "promote", comment=body.comment,
        service=body.service,
    )  # fmt: skip
    return srv.reply({"run": run_id, "step": step, "action": body.action, "by": who.name})


@router.get("/releases")
def releases(srv: Srv, who: Who) -> Response:
    """Releases, newest first."""
    from shipline.engine.releases import list_releases

    require(srv.config, who, "view")
    return srv.reply(list_releases(srv.ws))


@router.get("/releases/{name}")
def release(srv: Srv, who: Who, name: str) -> Response:
    """One release: its services, versions and digests."""
    from shipline.engine.releases import get_release

    require(srv.config, who, "view")
    return srv.reply(get_release(srv.ws, name))


@router.get("/history")
def history(srv: Srv, who: Who, env: str, service: str) -> Response:
    """A service's revisions in an environment, oldest first."""
    from shipline.engine.history import read_history
    from shipline.engine.pipelines import find_environment, pick_services

    environment = find_environment(srv.config, env)
    require(srv.config, who, "view", environment.name)
    (name,) = pick_services(srv.config, service)[:1] or [service]
    return srv.reply([r.as_dict() for r in read_history(srv.ws, environment, name)])


@router.get("/audit")
def audit(
    srv: Srv,
    who: Who,
    env: str | None = None,
    service: str | None = None,
    actor: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> Response:
    """Audit records, newest first, filtered (`env`: a name or an alias)."""
    from shipline.domain.audit import select_records
    from shipline.engine.reads import by_environment

    kept = srv.ws.audit.records()

    def listed(name: str | None) -> list[dict[str, Any]]:
        return select_records(
            kept, environment=name, service=service, actor=actor, since=since, until=until
        )

    if env:
        env, records = by_environment(env, listed, lambda: srv.config)
    else:
        records = listed(None)
    require(srv.config, who, "view", env)
    return srv.reply(list(records[:limit]))


@router.get("/events")
async def events(srv: Srv, who: Who) -> Response:
    """Server-sent events: `event: changed` whenever a run, stage, log line or vote is added
    or changes (one shared poll of the store serves every client)."""
    require(srv.config, who, "view")

    async def stream() -> AsyncIterator[str]:
        marks: tuple[int, ...] = ()
        yield "retry: 2000\n\n"
        while True:
            now = await srv.feed.next(marks, 15.0)
            if now != marks:
                marks = now
                yield f"event: changed\ndata: {json.dumps(list(marks))}\n\n"
            else:
                yield ": keep-alive\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream")


@router.get("/tokens")
def list_tokens(srv: Srv, who: Who) -> Response:
    """The caller's personal tokens (an administrator sees everyone's); never their values."""
    require(srv.config, who, "view")
    return srv.reply(srv.accounts.tokens(None if who.admin else who.name))


@router.post("/tokens", status_code=201)
def create_token(srv: Srv, who: Who, body: NewToken) -> Response:
    """A new personal token for the caller, with scopes no wider than a token may ask."""
    require(srv.config, who, "view")
    if who.scopes is not None and not set(body.scopes) <= who.scopes:
        raise UserError("a token cannot make a token with wider scopes than its own")
    token_id, token = srv.accounts.create_token(
        who.name, body.label, body.scopes, body.days, actor=who.name
    )
    return srv.reply({"id": token_id, "token": token, "scopes": sorted(body.scopes)}, 201)


@router.delete("/tokens/{token_id}")
def revoke_token(srv: Srv, who: Who, token_id: int) -> Response:
    """Revoke a token (one's own; an administrator any)."""
    require(srv.config, who, "view")
    srv.accounts.revoke_token(token_id, actor=who.name, owner=None if who.admin else who.name)
    return srv.reply({"id": token_id, "revoked": True})


@router.get("/users")
def users(srv: Srv, who: Who) -> Response:
    """Everyone (administrators only)."""
    require(srv.config, who, "admin", "*")
    return srv.reply(srv.accounts.users())


@router.post("/users", status_code=201)
def add_user(srv: Srv, who: Who, body: NewUser) -> Response:
    """Create or update a local person (administrators only)."""
    require(srv.config, who, "admin", "*")
    name = srv.accounts.add_user(body.name, body.password, admin=body.admin, actor=who.name)
    return srv.reply({"name": name, "admin": body.admin}, 201)


@router.post("/users/{name}/disable")
def disable_user(srv: Srv, who: Who, name: str) -> Response:
    """Disable a person: sessions end, tokens stop (administrators only)."""
    require(srv.config, who, "admin", "*")
    srv.accounts.disable_user(name, actor=who.name)
    return srv.reply({"name": name, "disabled": True})
