"""The `memory` target: the fake's desired state kept in one JSON file per state folder.

Nothing runs; every worker and CLI process on the state folder sees the same services,
revisions and canaries, so the engine's deploy pipelines (rolling, canary, rollback, scale)
run end to end across processes and survive a killed worker. Each change is one locked
read-modify-write of the file, written whole. Secret values are never written: only their
names (and digests, so that a changed secret still counts as a change).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shipline.domain.ports import TargetContext
from shipline.errors import TargetError
from shipline.targets.fake import FakeTarget


class MemoryTarget(FakeTarget):
    """The fake target, persisted in `<state>/targets/memory.json`."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__()
        self.path = state_dir / "targets" / "memory.json"

    @contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise TargetError(f"memory target {self.path}: {exc.strerror}") from exc
        with os.fdopen(fd, "r+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            text = handle.read()
            try:
                data: dict[str, Any] = json.loads(text) if text else {"services": {}}
            except ValueError as exc:
                raise TargetError(f"memory target {self.path} is not valid JSON") from exc
            before = json.dumps(data, sort_keys=True)
            yield data
            after = json.dumps(data, sort_keys=True)
            if after != before:
                handle.seek(0)
                handle.truncate()
                handle.write(after)
                handle.flush()
                os.fsync(handle.fileno())


def create(context: TargetContext) -> MemoryTarget:
    """The `memory` target kind of a state folder."""
    return MemoryTarget(context.state_dir)
