"""`shipline release create | list | show`: releases are immutable sets of service versions."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from shipline.cli.context import JsonFlag, state_of
from shipline.errors import UserError

release_app = typer.Typer(
    help="Releases: immutable sets of service versions.", no_args_is_help=True
)


def _release_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": row["name"],
        "createdAt": row["created_at"].isoformat(),
        "createdBy": row["created_by"],
        "commit": row["commit"],
        "services": row["services"],
        "source": row["source"],
    }


def _read_manifest(path: Path) -> dict[str, Any]:
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


@release_app.command("create")
def create(
    ctx: typer.Context,
    from_manifest: Annotated[
        Path, typer.Option("--from-manifest", help="A build manifest from `ci build`.")
    ],
    name: Annotated[
        str | None, typer.Option("--name", help="Release name (default: the manifest's tag).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Turn a build manifest into a release that promotion moves up the ladder."""
    from shipline.engine.identity import current_user
    from shipline.store.sql import SqlStateStore

    state = state_of(ctx)
    ws = state.workspace()
    manifest = _read_manifest(from_manifest)
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
    store = SqlStateStore.connect(ws.database_url)
    chosen = name or str(manifest.get("tag") or f"run-{manifest.get('run')}")
    row = store.create_release(
        chosen,
        services,
        created_by=current_user(None, os.environ),
        commit=manifest.get("commit"),
        source=str(from_manifest.resolve()),
    )
    ws.audit.append(row["created_by"], "release.create", name=chosen, services=sorted(services))
    if as_json:
        state.output.json(_release_json(row))
    else:
        state.output.line(f"release {chosen}: {len(services)} service(s)")


@release_app.command("list")
def list_(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List releases, newest first."""
    from shipline.store.sql import SqlStateStore

    state = state_of(ctx)
    rows = [
        _release_json(r)
        for r in SqlStateStore.connect(state.workspace().database_url).list_releases()
    ]
    if as_json:
        state.output.json(rows)
        return
    state.output.table(
        f"{len(rows)} releases",
        ["release", "services", "commit", "created by", "created at"],
        [
            [
                r["name"],
                len(r["services"]),
                (r["commit"] or "")[:12],
                r["createdBy"],
                r["createdAt"][:19],
            ]
            for r in rows
        ],
    )


@release_app.command("show")
def show(ctx: typer.Context, name: str, as_json: JsonFlag = False) -> None:
    """Show a release's services, tags and digests."""
    from shipline.errors import NotFoundError
    from shipline.store.sql import SqlStateStore

    state = state_of(ctx)
    row = SqlStateStore.connect(state.workspace().database_url).release(name)
    if row is None:
        raise NotFoundError(f"no release '{name}'", hint="see `shipline release list`")
    data = _release_json(row)
    if as_json:
        state.output.json(data)
        return
    state.output.table(
        f"release {name}",
        ["service", "tag", "digest"],
        [[svc, v["tag"], v["digest"] or ""] for svc, v in data["services"].items()],
    )
