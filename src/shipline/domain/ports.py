"""Ports: the small interfaces the engine uses to reach the world. Adapters implement them."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from shipline.domain.events import RunEvent


@runtime_checkable
class SecretStore(Protocol):
    """Holds secret values by name. Implementations never log or echo values."""

    def get(self, name: str) -> str | None:
        """The value stored under `name`, or None when there is none."""
        ...

    def set(self, name: str, value: str) -> None:
        """Store `value` under `name`, replacing any earlier value."""
        ...

    def delete(self, name: str) -> bool:
        """Remove `name`; False when it was not there."""
        ...

    def names(self) -> list[str]:
        """The stored names, sorted."""
        ...


@runtime_checkable
class Notifier(Protocol):
    """Announces run events somewhere (Slack, a webhook). Raises NotifyError when it fails."""

    name: str

    def send(self, event: RunEvent) -> None:
        """Deliver one event once; retrying is the caller's business."""
        ...
