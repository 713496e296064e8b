"""Releases: immutable sets of service versions made from a build manifest (the rules here, the
printing in the CLI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shipline.engine.wiring import SqlStateStore
from shipline.engine.workspace import Workspace
from shipline.errors import NotFoundError, UserError


def read_manifest(path: Path) -> dict[str, Any]:
    """A build manifest written by `ci build` (exit 2 for anything else)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no manifest at {path}") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is not a build manifest: {exc}") from None
    if (
        not isinstance(data, dict)
        or data.get("kind") != "BuildManifest"
        or not isinstance(data.get("services"), dict)
    ):
        raise UserError(
            f"{path} is not a build manifest", hint="use the file `shipline ci build` wrote"
        )
    return data


def create_release(
    ws: Workspace, manifest_path: Path, *, name: str | None, actor: str
) -> dict[str, Any]:
    """Record the manifest's services as a release (audited); names are used once."""
    manifest = read_manifest(manifest_path)
    services = {
        svc: {
            "version": entry.get("version"),
            "tag": entry.get("tag"),
            "digest": entry.get("digest"),
            "image": entry.get("image"),
        }
        for svc, entry in sorted(manifest["services"].items())
    }
    if not services:
        raise UserError("the manifest lists no built service")
    unknown = sorted(set(services) - {s.name for s in ws.config.services})
    if unknown:
        raise UserError(f"the manifest names unknown service(s): {', '.join(unknown)}")
    chosen = name or str(manifest.get("tag") or f"run-{manifest.get('run')}")
    store = SqlStateStore.connect(ws.database_url)
    try:
        row = store.create_release(
            chosen,
            services,
            created_by=actor,
            commit=manifest.get("commit"),
            source=str(manifest_path.resolve()),
        )
    finally:
        store.close()
    ws.audit.append(actor, "release.create", name=chosen, services=sorted(services))
    return row


def list_releases(ws: Workspace) -> list[dict[str, Any]]:
    """Releases, newest first."""
    store = SqlStateStore.connect(ws.database_url)
    try:
        return store.list_releases()
    finally:
        store.close()


def get_release(ws: Workspace, name: str) -> dict[str, Any]:
    """The release called `name` (exit 2 when there is none)."""
    store = SqlStateStore.connect(ws.database_url)
    try:
        row = store.release(name)
    finally:
        store.close()
    if row is None:
        raise NotFoundError(f"no release '{name}'", hint="see `shipline release list`")
    return row
