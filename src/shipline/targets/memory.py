"""The fake target: desired state kept in one JSON file per environment, nothing runs.

It lets the engine's deploy pipelines run end to end in tests and on a laptop before the real
targets (local processes, Kubernetes) are configured. Writes are atomic and idempotent: applying
the same version twice changes nothing, as a real target's desired state would.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from shipline.errors import CheckFailed, TargetError


class MemoryTarget:
    """Desired versions per service for one environment, in `<state>/targets/memory-<env>.json`."""

    def __init__(self, state_dir: Path, environment: str) -> None:
        self.path = state_dir / "targets" / f"memory-{environment}.json"

    def _update(self, change: Any) -> dict[str, Any]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            with os.fdopen(fd, "r+", encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                text = handle.read()
                data: dict[str, Any] = (
                    json.loads(text) if text else {"services": {}, "revisions": 0}
                )
                if change(data):
                    data["revisions"] += 1
                    handle.seek(0)
                    handle.truncate()
                    json.dump(data, handle, sort_keys=True)
                return data
        except (OSError, ValueError) as exc:
            raise TargetError(f"memory target {self.path}: {exc}") from exc

    def apply(self, service: str, version: str) -> bool:
        """Make `version` the desired one; True when it changed."""
        changed = []

        def change(data: dict[str, Any]) -> bool:
            if data["services"].get(service) == version:
                return False
            data["services"][service] = version
            changed.append(True)
            return True

        self._update(change)
        return bool(changed)

    def version(self, service: str) -> str | None:
        """The desired version of `service`."""
        found = self._update(lambda data: False)["services"].get(service)
        return None if found is None else str(found)

    def verify(self, service: str, version: str) -> None:
        """Fail unless `service` is at `version`."""
        found = self.version(service)
        if found != version:
            raise CheckFailed(f"{service} is at {found or 'nothing'}, expected {version}")
