"""`shipline release create | list | show`: releases are immutable sets of service versions."""

from pathlib import Path
from typing import Annotated, Any

import typer

from shipline.cli.context import JsonFlag, state_of

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
    """Turn a build manifest into a release that promotion moves up the ladder.
    Example: shipline release create --from-manifest .shipline/manifests/build-1.4.0.json"""
    from shipline.cli.remote import acting_user
    from shipline.engine.releases import create_release

    state = state_of(ctx)
    row = create_release(state.workspace(), from_manifest, name=name, actor=acting_user())
    chosen, services = row["name"], row["services"]
    if as_json:
        state.output.json(_release_json(row))
    else:
        state.output.line(f"release {chosen}: {len(services)} service(s)")


@release_app.command("list")
def list_(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List releases, newest first.
    Example: shipline release list"""
    from shipline.engine.releases import list_releases

    state = state_of(ctx)
    rows = [_release_json(r) for r in list_releases(state.workspace())]
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
    """Show a release's services, tags and digests.
    Example: shipline release show 1.4.0"""
    from shipline.engine.releases import get_release

    state = state_of(ctx)
    row = get_release(state.workspace(), name)
    data = _release_json(row)
    if as_json:
        state.output.json(data)
        return
    state.output.table(
        f"release {name}",
        ["service", "tag", "digest"],
        [[svc, v["tag"], v["digest"] or ""] for svc, v in data["services"].items()],
    )
