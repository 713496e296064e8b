"""The `memory` target: the fake's desired state kept in files of the state folder, one per
service (`targets/memory/ENV/SERVICE.json`).

Nothing runs; every worker and CLI process on the state folder sees the same services,
revisions and canaries, so the engine's deploy pipelines (rolling, canary, rollback, scale)
run end to end across processes and survive a killed worker. Each change is one locked
read-modify-write of its service's file, replaced whole (a killed process leaves the old
content or the new): runs of different services never wait for each other, and a change costs
what that service's history weighs, not everyone's. Secret values are never written: only
their names (and digests, so that a changed secret still counts as a change). A state folder
written by an older shipline (one `targets/memory.json`) is split into these files the first
time it is used.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from shipline.domain.ports import TargetContext
from shipline.errors import TargetError
from shipline.targets.fake import FakeTarget


class MemoryTarget(FakeTarget):
    """The fake target, persisted under `<state>/targets/memory/`."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__()
        self.root = state_dir / "targets" / "memory"
        self.legacy = state_dir / "targets" / "memory.json"

    @contextmanager
    def _state(self, environment: str, service: str | None = None) -> Iterator[dict[str, Any]]:
        if self.legacy.exists():
            self._split_legacy()
        folder = self.root / _safe(environment)
        if service is None:
            names = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        else:
            names = [_safe(service)]
        with ExitStack() as stack:
            handles = {
                name: stack.enter_context(_locked(folder / f"{name}.json")) for name in names
            }
            before = {}
            data: dict[str, Any] = {"services": {}}
            for name, handle in handles.items():
                text = handle.read()
                if text:
                    try:
                        data["services"][f"{environment}/{name}"] = json.loads(text)
                    except ValueError as exc:
                        raise TargetError(f"memory target {handle.name} is not valid JSON") from exc
                before[name] = text
            yield data
            for name, handle in handles.items():
                entry = data["services"].get(f"{environment}/{name}")
                after = "" if entry is None else json.dumps(entry, sort_keys=True)
                if after != before[name]:
                    _write(handle, after)

    def _split_legacy(self) -> None:
        """One `memory.json` of an older shipline into a file per service (once; locked)."""
        try:
            with _locked(self.legacy, create=False) as handle:
                text = handle.read()
                services = json.loads(text)["services"] if text else {}
                for key, entry in services.items():
                    environment, _, service = key.partition("/")
                    path = self.root / _safe(environment) / f"{_safe(service)}.json"
                    with _locked(path) as target:
                        if not target.read():
                            _write(target, json.dumps(entry, sort_keys=True))
                self.legacy.rename(self.legacy.with_suffix(".json.split"))
        except FileNotFoundError:
            return  # another process split it first
        except (ValueError, KeyError, AttributeError) as exc:
            raise TargetError(f"memory target {self.legacy} is not valid JSON") from exc


def _safe(name: str) -> str:
    """A name as one path component (configuration names are already plain)."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise TargetError(f"memory target: {name!r} cannot name a file")
    return name


@contextmanager
def _locked(path: Path, *, create: bool = True) -> Iterator[_Held]:
    """`path` held under an exclusive lock (on `PATH.lock` beside it, so that the file itself
    can be replaced whole): read it with `.read()`, replace it with `_write`."""
    if not create and not path.exists():
        raise FileNotFoundError(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(
            path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
    except OSError as exc:
        raise TargetError(f"memory target {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "r+", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield _Held(path)


class _Held:
    """A file held under its lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)

    def read(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""


def _write(held: _Held, text: str) -> None:
    """Replace the held file whole (a temporary file renamed over it): a process killed while
    writing leaves the old content or the new, never a part."""
    tmp = held.path.with_name(f".{held.path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, held.path)


def create(context: TargetContext) -> MemoryTarget:
    """The `memory` target kind of a state folder."""
    return MemoryTarget(context.state_dir)
