"""Slack incoming webhooks with a Block Kit message."""

from __future__ import annotations

import json
from typing import Any

from shipline.domain.events import EventKind, RunEvent
from shipline.notify.http import post

ICONS = {
    EventKind.STARTED: ":rocket:",
    EventKind.WAITING: ":hourglass_flowing_sand:",
    EventKind.SUCCEEDED: ":white_check_mark:",
    EventKind.FAILED: ":x:",
    EventKind.ERRORED: ":warning:",
    EventKind.CANCELLED: ":no_entry_sign:",
}


def slack_message(event: RunEvent, *, buttons: bool = False) -> dict[str, Any]:
    """The Block Kit message for `event`: run, environment, services, versions, what to do;
    with `buttons` (a Slack app is configured), a waiting run gets Approve and Reject."""
    title = f"{ICONS[event.kind]} {event.pipeline} to {event.environment} {event.kind.value}"
    versions = "\n".join(
        f"• `{name}` {version}" for name, version in sorted(event.services.items())
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Run*\n`{event.run_id}`"},
                {"type": "mrkdwn", "text": f"*Environment*\n{event.environment}"},
                {"type": "mrkdwn", "text": f"*Requested by*\n{event.actor}"},
                {"type": "mrkdwn", "text": f"*Stage*\n{event.stage or '-'}"},
            ],
        },
    ]
    if versions:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*Services*\n{versions}"[:3000]},
            }
        )
    if event.reason:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": event.reason[:3000]}})
    if event.report:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Report: {event.report}"}]}
        )
    if event.approve_command:
        text = f"*To approve*\n```{event.approve_command}```"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    if buttons and event.kind == EventKind.WAITING and event.approve_command:
        value = f"{event.run_id}:{event.stage or ''}"
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "action_id": "shipline-approve", "style": "primary",
             "text": {"type": "plain_text", "text": "Approve"}, "value": value},
            {"type": "button", "action_id": "shipline-reject", "style": "danger",
             "text": {"type": "plain_text", "text": "Reject"}, "value": value},
        ]})  # fmt: skip
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": event.at.isoformat()}]}
    )
    return {"text": title, "blocks": blocks}


class SlackNotifier:
    """Posts to one Slack incoming-webhook URL."""

    def __init__(self, name: str, url: str, *, timeout: float = 5.0, buttons: bool = False) -> None:
        self.name = name
        self._url = url
        self._timeout = timeout
        self._buttons = buttons

    def send(self, event: RunEvent) -> None:
        """Post the message once."""
        body = json.dumps(slack_message(event, buttons=self._buttons)).encode()
        post(self._url, body, {}, timeout=self._timeout)
