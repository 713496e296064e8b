"""Inbound hook verification: GitHub HMAC, Azure DevOps shared secret, Slack's signed requests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from shipline.domain.inbound import (
    InboundError,
    Push,
    read_push,
    read_slack_action,
    verify_git,
    verify_slack,
)

SECRET = "hook-secret"
BODY = json.dumps({"ref": "refs/tags/v1.4.0", "after": "c" * 40}).encode()


def _github(body: bytes, secret: str = SECRET) -> dict[str, str]:
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={mac}", "X-GitHub-Event": "push"}


def test_github_pushes_are_verified_and_read() -> None:
    assert verify_git(SECRET, BODY, _github(BODY)) == "github"
    assert read_push("github", BODY, _github(BODY)) == Push("refs/tags/v1.4.0", "c" * 40)
    with pytest.raises(InboundError):
        verify_git(SECRET, BODY + b" ", _github(BODY))  # the body changed after signing
    with pytest.raises(InboundError):
        verify_git(SECRET, BODY, _github(BODY, "other"))
    ping = {"X-GitHub-Event": "ping"}
    assert read_push("github", b"{}", ping) is None
    deleted = json.dumps({"ref": "refs/heads/x", "deleted": True}).encode()
    assert read_push("github", deleted, {"X-GitHub-Event": "push"}) is None


def test_azure_devops_service_hooks_use_the_shared_secret() -> None:
    body = json.dumps({"eventType": "git.push", "resource": {"refUpdates": [
        {"name": "refs/heads/main", "newObjectId": "d" * 40}]}}).encode()  # fmt: skip
    basic = "Basic " + base64.b64encode(f"any:{SECRET}".encode()).decode()
    assert verify_git(SECRET, body, {"Authorization": basic}) == "azure-devops"
    assert verify_git(SECRET, body, {"X-Shipline-Secret": SECRET}) == "azure-devops"
    assert read_push("azure-devops", body, {}) == Push("refs/heads/main", "d" * 40)
    for headers in ({}, {"Authorization": "Basic !!!"}, {"X-Shipline-Secret": "guess"}):
        with pytest.raises(InboundError):
            verify_git(SECRET, body, headers)
    assert (
        read_push("azure-devops", json.dumps({"eventType": "build.complete"}).encode(), {}) is None
    )
    with pytest.raises(InboundError):
        read_push("azure-devops", b"not json", {})


def _slack(body: bytes, stamp: int, secret: str = SECRET) -> dict[str, str]:
    mac = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(stamp), "X-Slack-Signature": f"v0={mac}"}


def test_slack_requests_are_signed_and_fresh() -> None:
    now = 1_800_000_000
    verify_slack(SECRET, b"payload=x", _slack(b"payload=x", now), now + 10)
    with pytest.raises(InboundError, match="stale"):
        verify_slack(SECRET, b"payload=x", _slack(b"payload=x", now), now + 301)
    with pytest.raises(InboundError, match="does not match"):
        verify_slack(SECRET, b"payload=y", _slack(b"payload=x", now), now)
    with pytest.raises(InboundError):
        verify_slack(SECRET, b"payload=x", {}, now)


def test_slack_actions_name_a_run() -> None:
    vote = read_slack_action(json.dumps(
        {"user": {"id": "U1"}, "actions": [{"action_id": "shipline-approve", "value": "7:qa"}]}))  # fmt: skip
    assert (vote.slack_user, vote.approve, vote.run_id, vote.stage) == ("U1", True, 7, "qa")
    for bad in ({"actions": []}, {"user": {"id": "U1"}, "actions": [{"action_id": "other"}]},
                {"user": {"id": "U1"}, "actions": [{"action_id": "shipline-reject", "value": "x"}]}):  # fmt: skip
        with pytest.raises(InboundError):
            read_slack_action(json.dumps(bad))
