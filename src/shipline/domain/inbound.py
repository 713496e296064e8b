"""Inbound requests from other systems: how a git server's push and a Slack button click are
verified and read. Pure: the caller gives the raw body, the headers and the clock."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SLACK_MAX_AGE_SECONDS = 300  # Slack's own replay window


class InboundError(ValueError):
    """A request that is not what it claims: a bad signature, a stale one, or no payload."""


def _header(headers: Mapping[str, str], name: str) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get(name.lower(), "")


def verify_git(secret: str, body: bytes, headers: Mapping[str, str]) -> str:
    """Check a git server's delivery and say which kind it is: GitHub signs the body with
    HMAC-SHA256 (`X-Hub-Signature-256: sha256=...`); an Azure DevOps service hook sends the
    shared secret as basic-auth password or as `X-Shipline-Secret`."""
    signature = _header(headers, "X-Hub-Signature-256")
    if signature:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(signature, expected):
            return "github"
        raise InboundError("the body's signature does not match")
    given = _header(headers, "X-Shipline-Secret")
    authorization = _header(headers, "Authorization")
    if not given and authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InboundError("malformed basic authorization") from exc
        given = decoded.partition(":")[2]
    if given and hmac.compare_digest(given.encode(), secret.encode()):
        return "azure-devops"
    raise InboundError("no valid signature or shared secret")


@dataclass(frozen=True)
class Push:
    """A ref that moved: its full name and the commit it points to now."""

    ref: str
    sha: str | None


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InboundError("the body is not JSON") from exc
    if not isinstance(data, dict):
        raise InboundError("the body is not a JSON object")
    return data


def read_push(kind: str, body: bytes, headers: Mapping[str, str]) -> Push | None:
    """The push a delivery reports, or None for events that are not pushes (ping, ...)."""
    data = _json(body)
    if kind == "github":
        if _header(headers, "X-GitHub-Event") not in ("push", ""):
            return None
        ref, sha = data.get("ref"), data.get("after")
        if not isinstance(ref, str) or data.get("deleted") is True:
            return None
        return Push(ref, sha if isinstance(sha, str) else None)
    if data.get("eventType") != "git.push":
        return None
    updates = (data.get("resource") or {}).get("refUpdates") or []
    if not updates or not isinstance(updates[0], dict):
        raise InboundError("a git.push without refUpdates")
    first = updates[0]
    name, sha = first.get("name"), first.get("newObjectId")
    if not isinstance(name, str):
        raise InboundError("a git.push ref update without a name")
    return Push(name, sha if isinstance(sha, str) else None)


def verify_slack(
    signing_secret: str, body: bytes, headers: Mapping[str, str], now_epoch: float
) -> None:
    """Slack's v0 request signature over `v0:TIMESTAMP:BODY`, at most five minutes old."""
    stamp = _header(headers, "X-Slack-Request-Timestamp")
    signature = _header(headers, "X-Slack-Signature")
    if not stamp or not signature:
        raise InboundError("not signed by Slack")
    try:
        age = abs(now_epoch - int(stamp))
    except ValueError as exc:
        raise InboundError("a malformed Slack timestamp") from exc
    if age > SLACK_MAX_AGE_SECONDS:
        raise InboundError("a stale Slack request (replayed?)")
    base = b"v0:" + stamp.encode() + b":" + body
    expected = "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, expected):
        raise InboundError("the Slack signature does not match")


@dataclass(frozen=True)
class SlackVote:
    """A click on Approve or Reject in a "waiting" message."""

    slack_user: str
    approve: bool
    run_id: int
    stage: str | None


def read_slack_action(payload: str) -> SlackVote:
    """The vote in an interactive payload (the `payload` form field, JSON)."""
    data = _json(payload.encode())
    user = (data.get("user") or {}).get("id")
    actions = data.get("actions") or []
    if not isinstance(user, str) or not actions or not isinstance(actions[0], dict):
        raise InboundError("an interaction without a user or an action")
    action = actions[0]
    kind = action.get("action_id")
    if kind not in ("shipline-approve", "shipline-reject"):
        raise InboundError(f"unknown action {kind!r}")
    run, _, stage = str(action.get("value", "")).partition(":")
    if not run.isdigit():
        raise InboundError("the action names no run")
    return SlackVote(user, kind == "shipline-approve", int(run), stage or None)
