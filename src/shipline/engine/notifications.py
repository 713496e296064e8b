"""Deliver run events to every configured notifier: masked, retried with backoff, never fatal."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shipline.domain.events import EventKind, RunEvent, mask_event
from shipline.domain.masking import Masker
from shipline.domain.models import Config
from shipline.domain.ports import Notifier, SecretStore
from shipline.domain.retry import backoff_delay
from shipline.engine.wiring import SlackNotifier, WebhookNotifier
from shipline.errors import NotifyError

log = logging.getLogger("shipline.notify")


@dataclass(frozen=True)
class Delivery:
    """How delivering one event to one notifier went."""

    notifier: str
    delivered: bool
    attempts: int
    error: str | None = None


def deliver(
    notifiers: Sequence[Notifier],
    event: RunEvent,
    masker: Masker,
    *,
    attempts: int = 3,
    backoff: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Delivery]:
    """Send `event` (masked) to each notifier; a failure is logged and reported, never raised."""
    safe = mask_event(event, masker)
    results = []
    for notifier in notifiers:
        error: str | None = None
        for attempt in range(1, attempts + 1):
            try:
                notifier.send(safe)
            except NotifyError as exc:
                error = masker.mask(exc.message)
                if attempt < attempts:
                    sleep(backoff_delay(attempt, backoff))
                continue
            results.append(Delivery(notifier.name, True, attempt))
            break
        else:
            log.warning(
                "notification %s of run %s not delivered after %d attempts: %s",
                notifier.name,
                safe.run_id,
                attempts,
                error,
            )
            results.append(Delivery(notifier.name, False, attempts, error))
    return results


def build_notifiers(
    config: Config, store: Callable[[str], SecretStore], kind: EventKind
) -> tuple[list[Notifier], list[str]]:
    """Notifiers configured for `kind`, with their URLs read from the default secret store.

    A notification whose URL secret is missing is skipped and named in the problems returned.
    """
    notifiers: list[Notifier] = []
    problems: list[str] = []
    for spec in config.notifications:
        if kind.value not in spec.events:
            continue
        secrets = store(config.default_secret_store or "")
        url = secrets.get(spec.url_secret)
        if not url:
            problems.append(f"notification '{spec.name}': secret {spec.url_secret} is not set")
            continue
        if spec.type == "slack":
            notifiers.append(SlackNotifier(spec.name, url, buttons=config.access.slack is not None))
        else:
            signing = secrets.get(spec.signing_secret) if spec.signing_secret else None
            notifiers.append(WebhookNotifier(spec.name, url, signing))
    return notifiers, problems
