"""Slack and signed webhooks against a real local HTTP server: payload, signature, retries, dead ends."""

from __future__ import annotations

import json
import logging
import socket
from datetime import UTC, datetime

import pytest

from shipline.domain.events import EventKind, RunEvent
from shipline.domain.masking import Masker
from shipline.domain.ports import Notifier
from shipline.engine.notifications import deliver
from shipline.notify.slack import SlackNotifier, slack_message
from shipline.notify.webhook import SIGNATURE_HEADER, WebhookNotifier, verify_signature
from tests.servers.receiver import receiver

SECRET_IN_REASON = "db-password-Hx9!"
EVENT = RunEvent(
    kind=EventKind.WAITING,
    run_id="run-42",
    pipeline="promote",
    environment="live",
    actor="riley",
    at=datetime(2026, 11, 26, 10, 0, tzinfo=UTC),
    services={"auth-service": "1.4.0", "backend-gateway": "2.0.1"},
    stage="deploy-live",
    reason=f"waiting for CAB (debug: {SECRET_IN_REASON})",
    approve_command="shipline approve run-42 --stage deploy-live --as USER",
)
NO_SLEEP: list[float] = []


def _sleep(seconds: float) -> None:
    NO_SLEEP.append(seconds)


def test_webhook_payload_and_signature() -> None:
    with receiver() as (url, record):
        results = deliver(
            [WebhookNotifier("hook", url, "signing-key-123")], EVENT, Masker(), sleep=_sleep
        )
    assert results[0].delivered and results[0].attempts == 1
    headers, body = record.requests[0]
    payload = json.loads(body)
    assert payload["event"] == "waiting"
    assert payload["services"] == {"auth-service": "1.4.0", "backend-gateway": "2.0.1"}
    assert payload["approveCommand"].startswith("shipline approve run-42")
    assert headers["X-Shipline-Event"] == "waiting"
    assert verify_signature("signing-key-123", body, headers[SIGNATURE_HEADER])
    assert not verify_signature("other-key", body, headers[SIGNATURE_HEADER])
    assert not verify_signature("signing-key-123", body + b" ", headers[SIGNATURE_HEADER])


def test_unsigned_webhook_has_no_signature_header() -> None:
    with receiver() as (url, record):
        deliver([WebhookNotifier("hook", url)], EVENT, Masker(), sleep=_sleep)
    assert SIGNATURE_HEADER not in record.requests[0][0]


def test_retries_with_backoff_then_delivers() -> None:
    NO_SLEEP.clear()
    with receiver() as (url, record):
        record.fail_next = 2
        results = deliver(
            [WebhookNotifier("hook", url)], EVENT, Masker(), attempts=3, backoff=0.5, sleep=_sleep
        )
    assert results[0].delivered and results[0].attempts == 3
    assert record.attempts == 3 and len(record.requests) == 1
    assert NO_SLEEP == [0.5, 1.0]


def test_dead_endpoint_is_logged_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
    with receiver() as (url, record), caplog.at_level(logging.WARNING, logger="shipline.notify"):
        results = deliver(
            [WebhookNotifier("dead", dead), SlackNotifier("slack", url)],
            EVENT,
            Masker(),
            attempts=2,
            sleep=_sleep,
        )
    assert [(r.notifier, r.delivered) for r in results] == [("dead", False), ("slack", True)]
    assert "unreachable" in (results[0].error or "")
    assert "notification dead of run run-42 not delivered after 2 attempts" in caplog.text
    assert len(record.requests) == 1


def test_server_error_every_time_fails_the_delivery_only() -> None:
    with receiver() as (url, record):
        record.fail_next = 10
        results = deliver([WebhookNotifier("hook", url)], EVENT, Masker(), attempts=3, sleep=_sleep)
    assert not results[0].delivered
    assert results[0].error == "endpoint answered 500"


def test_secrets_are_masked_in_every_payload() -> None:
    masker = Masker([SECRET_IN_REASON])
    with receiver() as (url, record):
        deliver(
            [WebhookNotifier("hook", url, "k3y-k3y"), SlackNotifier("slack", url)],
            EVENT,
            masker,
            sleep=_sleep,
        )
    assert len(record.requests) == 2
    for _, body in record.requests:
        assert SECRET_IN_REASON.encode() not in body
        assert b"***" in body


def test_slack_block_kit_message() -> None:
    message = slack_message(EVENT)
    assert message["text"].endswith("promote to live waiting")
    kinds = [block["type"] for block in message["blocks"]]
    assert kinds[0] == "header" and kinds[-1] == "context"
    text = json.dumps(message)
    for expected in ("run-42", "live", "auth-service", "1.4.0", "shipline approve run-42"):
        assert expected in text


def test_notifiers_satisfy_the_port() -> None:
    assert isinstance(WebhookNotifier("a", "http://x"), Notifier)
    assert isinstance(SlackNotifier("b", "http://x"), Notifier)


def test_build_notifiers_from_the_reference_config() -> None:
    from shipline.config.loader import load_config
    from shipline.engine.notifications import build_notifiers
    from shipline.secrets.memory import MemorySecretStore
    from tests.conftest import QUIKAPP

    config = load_config(QUIKAPP)
    empty = MemorySecretStore()
    notifiers, problems = build_notifiers(config, lambda _: empty, EventKind.FAILED)
    assert notifiers == []
    assert problems == ["notification 'slack': secret SLACK-WEBHOOK-URL is not set"]
    store = MemorySecretStore({"SLACK-WEBHOOK-URL": "https://hooks.example.invalid/T/B/x"})
    notifiers, problems = build_notifiers(config, lambda _: store, EventKind.FAILED)
    assert [n.name for n in notifiers] == ["slack"] and problems == []


def test_a_waiting_message_carries_approve_and_reject_buttons_when_a_slack_app_is_set() -> None:
    from dataclasses import replace

    from shipline.domain.inbound import read_slack_action

    event = replace(EVENT, run_id="42")
    assert all(b["type"] != "actions" for b in slack_message(event)["blocks"])
    actions = [b for b in slack_message(event, buttons=True)["blocks"] if b["type"] == "actions"]
    assert [e["action_id"] for e in actions[0]["elements"]] == [
        "shipline-approve", "shipline-reject",
    ]  # fmt: skip
    clicked = {"user": {"id": "U1"}, "actions": [actions[0]["elements"][1]]}
    vote = read_slack_action(json.dumps(clicked))
    assert (vote.run_id, vote.stage, vote.approve) == (42, "deploy-live", False)
    ended = replace(event, kind=EventKind.SUCCEEDED)
    assert all(b["type"] != "actions" for b in slack_message(ended, buttons=True)["blocks"])
