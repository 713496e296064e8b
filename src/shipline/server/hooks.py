"""Inbound hooks: a git server's push applies the trigger rules; a click on Approve or Reject in
Slack votes as the shipline identity the Slack user maps to. Each request is verified (HMAC or
shared secret) before anything is read from it; a refused one is audited."""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from shipline.domain.access import Principal
from shipline.domain.inbound import (
    InboundError,
    read_push,
    read_slack_action,
    verify_git,
    verify_slack,
)
from shipline.engine.access import require
from shipline.errors import NotAuthenticated, NotFoundError, ShiplineError
from shipline.server.api import server_of
from shipline.server.app import Server

router = APIRouter(prefix="/hooks", tags=["hooks"])
Srv = Annotated[Server, Depends(server_of)]
MAX_BODY = 1024 * 1024


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise NotAuthenticated("request too large")
    return body


def _secret(srv: Server, name: str | None, what: str) -> str:
    if not name:
        raise NotFoundError(f"no {what} is configured", hint="see `access:` in shipline.yaml")
    value = srv.ws.store().get(name)
    if not value:
        raise NotFoundError(f"the {what}'s secret '{name}' is not set")
    return value


@router.post("/git")
async def git_push(request: Request, srv: Srv) -> Response:
    """A push from GitHub (`X-Hub-Signature-256`) or an Azure DevOps service hook (shared
    secret): the trigger rules decide what runs; the reply lists it."""
    from starlette.concurrency import run_in_threadpool

    body = await _body(request)
    secret = await run_in_threadpool(
        _secret, srv, srv.config.access.git_webhook_secret, "git webhook"
    )
    try:
        kind = verify_git(secret, body, request.headers)
        push = read_push(kind, body, request.headers)
    except InboundError as exc:
        srv.ws.audit.append("webhook", "hook.refused", hook="git", reason=str(exc))
        raise NotAuthenticated(f"refused: {exc}") from None
    if push is None:
        return srv.reply({"ignored": "not a push"})
    return srv.reply(await run_in_threadpool(_apply_push, srv, kind, push.ref, push.sha))


def _apply_push(srv: Server, kind: str, ref: str, sha: str | None) -> dict[str, object]:
    from shipline.engine.promotion import run_triggers, trigger_plan
    from shipline.engine.tagging import tag_of

    plan = trigger_plan(srv.ws, ref)
    if not any(entry["action"] == "deploy" for entry in plan):
        return {"ref": ref, "runs": plan}
    tag = tag_of(ref, "auto", sha=sha, custom=None, repo=srv.ws.root).tag
    started = run_triggers(
        srv.ws, ref, tag=tag, release=None, actor=f"webhook:{kind}", service=srv.runs
    )
    return {"ref": ref, "tag": tag, "runs": started}


@router.post("/slack")
async def slack_action(request: Request, srv: Srv) -> Response:
    """A click on a "waiting" message's Approve or Reject button."""
    from starlette.concurrency import run_in_threadpool

    body = await _body(request)
    slack = srv.config.access.slack
    secret = await run_in_threadpool(
        _secret, srv, slack.signing_secret if slack else None, "Slack app"
    )
    try:
        verify_slack(secret, body, request.headers, time.time())
        payload = parse_qs(body.decode("utf-8", "replace")).get("payload", [""])[0]
        vote = read_slack_action(payload)
    except InboundError as exc:
        srv.ws.audit.append("slack", "hook.refused", hook="slack", reason=str(exc))
        raise NotAuthenticated(f"refused: {exc}") from None
    assert slack is not None
    user = slack.users.get(vote.slack_user)
    if user is None:
        srv.ws.audit.append("slack", "approval.refused", run=vote.run_id, slack=vote.slack_user,
                            reason="unmapped Slack user")  # fmt: skip
        text = "Your Slack user is not mapped to a shipline identity."
        return srv.reply({"response_type": "ephemeral", "text": text})
    try:
        text = await run_in_threadpool(
            _slack_vote, srv, user, vote.run_id, vote.stage, vote.approve
        )
    except ShiplineError as exc:
        text = f"Not recorded: {exc.message}"
    return srv.reply({"response_type": "ephemeral", "replace_original": False, "text": text})


def _slack_vote(srv: Server, user: str, run_id: int, stage: str | None, approve: bool) -> str:
    who = Principal(user, via="slack")
    require(srv.config, who, "approve", srv.runs.get(run_id).environment)
    effect = srv.runs.vote(run_id, user, approve=approve, stage=stage, comment="from Slack")
    word = "approved" if approve else "rejected"
    still = f"; still needed: {', '.join(effect.waiting_on)}" if effect.waiting_on else ""
    return f"Run {run_id} stage {effect.stage}: {word} by {user}{still}"
