"""Generic JSON webhooks, signed with HMAC-SHA256 so receivers can trust them.

Headers: `X-Shipline-Event` (the kind), `X-Shipline-Delivery` (unique id) and, with a signing
secret, `X-Shipline-Signature: sha256=<hex HMAC of the raw body>`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

from shipline.domain.events import RunEvent
from shipline.notify.http import post

SIGNATURE_HEADER = "X-Shipline-Signature"


def webhook_payload(event: RunEvent) -> dict[str, Any]:
    """The JSON document a webhook receives."""
    return {
        "event": event.kind.value,
        "run": event.run_id,
        "pipeline": event.pipeline,
        "environment": event.environment,
        "actor": event.actor,
        "at": event.at.isoformat(),
        "services": dict(sorted(event.services.items())),
        "stage": event.stage,
        "reason": event.reason,
        "approveCommand": event.approve_command,
        "report": event.report,
    }


def sign(secret: str, body: bytes) -> str:
    """The signature header value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str) -> bool:
    """True when `header` is the signature of `body` (constant-time compare)."""
    return hmac.compare_digest(sign(secret, body), header)


class WebhookNotifier:
    """Posts signed JSON to one URL."""

    def __init__(
        self, name: str, url: str, signing_secret: str | None = None, *, timeout: float = 5.0
    ):
        self.name = name
        self._url = url
        self._secret = signing_secret
        self._timeout = timeout

    def send(self, event: RunEvent) -> None:
        """Post the payload once."""
        body = json.dumps(webhook_payload(event), sort_keys=True).encode()
        headers = {"X-Shipline-Event": event.kind.value, "X-Shipline-Delivery": str(uuid.uuid4())}
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        post(self._url, body, headers, timeout=self._timeout)
