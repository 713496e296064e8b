"""`shipline ci detect | tag`: which services a change touches, and the image tag of a ref."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated

import typer

from shipline.cli.context import JsonFlag, state_of
from shipline.errors import UserError

ci_app = typer.Typer(help="CI: change detection, tags, builds.", no_args_is_help=True)


@ci_app.command("detect")
def detect(
    ctx: typer.Context,
    base: Annotated[str, typer.Option("--base", help="Base revision (e.g. origin/main).")],
    head: Annotated[str, typer.Option("--head", help="Head revision.")] = "HEAD",
    repo: Annotated[
        Path | None, typer.Option("--repo", help="Repository (default: the config's folder).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List the services changed on HEAD since it left BASE (merge-base semantics)."""
    from shipline.ci.git import changed_paths
    from shipline.domain.changes import affected_services

    state = state_of(ctx)
    ws = state.workspace()
    folder = repo or ws.config_path.parent
    changes = changed_paths(folder, base, head)
    config = ws.config
    if changes.everything:
        services = {s.name: ["base unknown"] for s in config.services}
        build_all = True
    else:
        affected = affected_services(config, changes.paths, config.ci.build_all_paths)
        services, build_all = affected.services, affected.build_all
    for warning in changes.warnings:
        state.output.error(f"warning: {warning}")
    if as_json:
        state.output.json(
            {
                "base": base,
                "head": head,
                "changedPaths": len(changes.paths),
                "buildAll": build_all,
                "services": list(services),
                "reasons": services,
            }
        )
        return
    if not services:
        state.output.line(f"no service changed ({len(changes.paths)} paths changed)")
        return
    state.output.table(
        f"{len(services)} services changed",
        ["service", "because"],
        [
            [name, "; ".join(why[:3]) + (" ..." if len(why) > 3 else "")]
            for name, why in services.items()
        ],
    )


@ci_app.command("tag")
def tag(
    ctx: typer.Context,
    ref: Annotated[str, typer.Option("--ref", help="Branch, tag or pull-request ref.")],
    strategy: Annotated[str, typer.Option(help="auto, semver, commit or custom.")] = "auto",
    custom: Annotated[
        str | None, typer.Option("--custom-tag", help="The tag for --strategy custom.")
    ] = None,
    sha: Annotated[
        str | None,
        typer.Option(
            "--sha", help="Commit SHA for --strategy commit (default: git rev-parse REF)."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Compute the image tag of a ref with the spec's tag strategies."""
    from shipline.domain.tags import Strategy, TagError, image_tag

    try:
        chosen = Strategy(strategy)
    except ValueError:
        raise UserError(
            f"unknown tag strategy '{strategy}'", hint="auto, semver, commit or custom"
        ) from None
    if chosen == Strategy.COMMIT and not sha:
        done = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            capture_output=True,
            text=True,
            check=False,
        )
        sha = done.stdout.strip() or None
    try:
        result = image_tag(ref, chosen, sha=sha, custom=custom)
    except TagError as exc:
        raise UserError(str(exc), hint="see `shipline ci tag --help` for the strategies") from None
    output = state_of(ctx).output
    if as_json:
        output.json(
            {
                "ref": ref,
                "strategy": chosen.value,
                "tag": result.tag,
                "push": result.push,
                "reason": result.reason,
            }
        )
    else:
        output.line(result.tag)
