"""The dependency cache of stack recipes: folders (`cachePaths`) saved under the recipe's cache
key after a successful build, restored before the next build with the same key — a build agent
that starts clean does not download its dependencies again (as a pipeline's Cache task).

Entries are gzip'd tar archives under `.shipline/cache/<stack>/`, with a JSON sidecar (key, paths,
size, created, last used). Saving is atomic (a temporary file renamed), so parallel builds with the
same key never read half an archive; extraction refuses links and paths leaving the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shipline.errors import TechnicalError


class CacheError(TechnicalError):
    """A cache entry could not be read or written."""


@dataclass(frozen=True)
class CacheEntry:
    """One saved key."""

    stack: str
    key: str
    paths: tuple[str, ...]
    size: int
    created: str
    last_used: str | None

    def as_json(self) -> dict[str, Any]:
        """The entry as `ci cache list --json` shows it."""
        return {
            "stack": self.stack,
            "key": self.key,
            "paths": list(self.paths),
            "bytes": self.size,
            "created": self.created,
            "lastUsed": self.last_used,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class DependencyCache:
    """Saved dependency folders, by stack and cache key."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _archive(self, stack: str, key: str) -> Path:
        folder = re.sub(r"[^A-Za-z0-9_.-]", "_", stack)
        return self.root / folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.tar.gz"

    @staticmethod
    def _sidecar(archive: Path) -> Path:
        return archive.with_name(archive.name.removesuffix(".tar.gz") + ".json")

    def restore(self, stack: str, key: str, folder: Path) -> bool:
        """Unpack the entry of `key` into `folder`; False when there is none (a miss)."""
        archive = self._archive(stack, key)
        if not archive.is_file():
            return False
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(folder, filter="data")  # no links out, no absolute or .. paths
        except (tarfile.TarError, OSError) as exc:
            raise CacheError(
                f"cache entry for {key} could not be restored: {type(exc).__name__}",
                hint="clear it with: shipline ci cache clear --stack " + stack,
            ) from exc
        sidecar = self._sidecar(archive)
        try:
            meta = json.loads(sidecar.read_text())
            meta["lastUsed"] = _now()
            self._write_json(sidecar, meta)
        except (OSError, ValueError):
            pass  # the archive is what matters
        return True

    def save(self, stack: str, key: str, folder: Path, paths: list[str]) -> int | None:
        """Pack `paths` (relative to `folder`, those that exist) as the entry of `key`; returns
        its size in bytes, or None when none of the paths exists."""
        present = [p for p in paths if (folder / p).exists()]
        if not present:
            return None
        archive = self._archive(stack, key)
        archive.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=archive.parent, suffix=".tmp")
        os.close(fd)
        try:
            with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
                for path in present:
                    tar.add(folder / path, arcname=path)
            os.replace(tmp, archive)
        except (tarfile.TarError, OSError) as exc:
            Path(tmp).unlink(missing_ok=True)
            raise CacheError(f"cache entry for {key} could not be saved: {exc}") from exc
        size = archive.stat().st_size
        meta = {"stack": stack, "key": key, "paths": present, "bytes": size, "created": _now()}
        self._write_json(self._sidecar(archive), {**meta, "lastUsed": None})
        return size

    @staticmethod
    def _write_json(path: Path, data: dict[str, Any]) -> None:
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, path)

    def entries(self, stack: str | None = None) -> list[CacheEntry]:
        """Saved entries (of `stack`), newest first."""
        found: list[CacheEntry] = []
        if not self.root.is_dir():
            return found
        for sidecar in self.root.glob("*/*.json"):
            try:
                meta = json.loads(sidecar.read_text())
            except (OSError, ValueError):
                continue
            if stack and meta.get("stack") != stack:
                continue
            archive = sidecar.with_name(sidecar.stem + ".tar.gz")
            if not archive.is_file():
                continue
            found.append(
                CacheEntry(
                    str(meta.get("stack")),
                    str(meta.get("key")),
                    tuple(meta.get("paths", [])),
                    archive.stat().st_size,
                    str(meta.get("created")),
                    meta.get("lastUsed"),
                )
            )
        return sorted(found, key=lambda e: e.created, reverse=True)

    def clear(self, stack: str | None = None) -> list[CacheEntry]:
        """Remove the entries (of `stack`); returns what was removed."""
        removed = self.entries(stack)
        for entry in removed:
            archive = self._archive(entry.stack, entry.key)
            archive.unlink(missing_ok=True)
            self._sidecar(archive).unlink(missing_ok=True)
        return removed
