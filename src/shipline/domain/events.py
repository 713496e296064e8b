"""Run events that notifications announce."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class EventKind(StrEnum):
    """The moments of a run that people hear about."""

    STARTED = "started"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a rule or a test said no
    ERRORED = "errored"  # something broke
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class RunEvent:
    """One announcement: which run, where, with which versions, and what to do (if anything)."""

    kind: EventKind
    run_id: str
    pipeline: str
    environment: str
    actor: str
    at: datetime
    services: Mapping[str, str] = field(default_factory=dict)  # service -> version
    stage: str | None = None
    reason: str | None = None
    approve_command: str | None = None
    report: str | None = None  # the run's report page, once it ended


class _Masks(Protocol):
    def mask(self, text: str) -> str: ...


def mask_event(event: RunEvent, masker: _Masks) -> RunEvent:
    """The event with every text field passed through the masker."""

    def m(text: str | None) -> str | None:
        return None if text is None else masker.mask(text)

    return replace(
        event,
        run_id=masker.mask(event.run_id),
        pipeline=masker.mask(event.pipeline),
        environment=masker.mask(event.environment),
        actor=masker.mask(event.actor),
        services={masker.mask(k): masker.mask(v) for k, v in event.services.items()},
        stage=m(event.stage),
        reason=m(event.reason),
        approve_command=m(event.approve_command),
    )
