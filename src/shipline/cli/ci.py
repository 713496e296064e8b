"""`shipline ci detect | tag | build | cache`: which services a change touches, the image tag of a
ref, builds, and the dependency cache."""

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from shipline.cli.context import JsonFlag, state_of

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
    """List the services changed on HEAD since it left BASE (merge-base semantics).
    Example: shipline ci detect --base origin/main --head HEAD"""
    from shipline.engine.detection import detect_at

    state = state_of(ctx)
    found = detect_at(state.config_path(), os.environ, base, head, repo)
    services, build_all = found.services, found.build_all
    for warning in found.warnings:
        state.output.error(f"warning: {warning}")
    if as_json:
        state.output.json(
            {
                "base": base,
                "head": head,
                "changedPaths": found.changed_paths,
                "buildAll": build_all,
                "services": list(services),
                "reasons": services,
            }
        )
        return
    if not services:
        state.output.line(f"no service changed ({found.changed_paths} paths changed)")
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
    """Compute the image tag of a ref with the spec's tag strategies.
    Example: shipline ci tag --ref refs/tags/v1.4.0"""
    from shipline.engine.tagging import tag_of

    result = tag_of(ref, strategy, sha=sha, custom=custom, repo=Path.cwd())
    output = state_of(ctx).output
    if as_json:
        output.json(
            {
                "ref": ref,
                "strategy": strategy,
                "tag": result.tag,
                "push": result.push,
                "reason": result.reason,
            }
        )
    else:
        output.line(result.tag)


@ci_app.command("build")
def build(
    ctx: typer.Context,
    services: Annotated[
        str, typer.Option("--services", "-s", help="changed, all, or a,b,c.")
    ] = "changed",
    base: Annotated[
        str | None, typer.Option("--base", help="Base revision for --services changed.")
    ] = None,
    ref: Annotated[
        str | None, typer.Option("--ref", help="Ref to tag from (default: the current branch).")
    ] = None,
    strategy: Annotated[
        str, typer.Option(help="Tag strategy: auto, semver, commit, custom.")
    ] = "auto",
    custom: Annotated[
        str | None, typer.Option("--custom-tag", help="Tag for --strategy custom.")
    ] = None,
    push: Annotated[bool, typer.Option("--push", help="Push images to ci.registry.")] = False,
    scan: Annotated[
        bool, typer.Option("--scan", help="Scan Dockerfiles, images and the repository.")
    ] = False,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="Where to write the build manifest.")
    ] = None,
    repo: Annotated[
        Path | None, typer.Option("--repo", help="Repository (default: the config's folder).")
    ] = None,
    fresh_cache: Annotated[
        bool,
        typer.Option("--fresh-cache", help="Do not restore the dependency cache; save it anew."),
    ] = False,
    detach: Annotated[bool, typer.Option("--detach", help="Return at once (exit 3).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Build services with their stack recipes, build their images, scan and push them.
    Example: shipline ci build --services changed --base origin/main --scan"""
    from shipline.cli.remote import acting_user
    from shipline.cli.runs import watch
    from shipline.engine.assembly import run_service
    from shipline.engine.ci_service import BuildRequest, build_findings, submit_build

    state = state_of(ctx)
    ws = state.workspace()
    request = BuildRequest(
        services=services, base=base, ref=ref, strategy=strategy, custom=custom, push=push,
        scan=scan, manifest=manifest, repo=repo, fresh_cache=fresh_cache,
    )  # fmt: skip
    started = submit_build(ws, request, actor=acting_user(), warn=state.output.error)
    if started.record is None:
        state.output.line("no service changed: nothing to build")
        return
    path = started.manifest
    watch(
        state,
        run_service(ws),
        started.record.id,
        detach=detach,
        as_json=as_json,
        queued=f"run {started.record.id} queued: building {len(started.services)} service(s)"
        f" at {started.tag}",
        extra=lambda data: {
            "manifest": str(path) if data["phase"] == "succeeded" else None,
            "findings": build_findings(ws, int(data["id"])),
        },
        after=lambda data: _findings(state, build_findings(ws, int(data["id"]))),
    )
    if not as_json and not detach:
        state.output.line(f"manifest: {path}")


def _findings(state: Any, rows: list[dict[str, Any]]) -> None:
    """The build's findings per service and scanner (severity counts and report paths)."""
    if not rows:
        return
    state.output.table(
        "scan findings",
        ["service", "scanner", "findings", "fails the build", "report"],
        [
            [
                r["service"], r["scanner"],
                ", ".join(f"{k} {v}" for k, v in r["counts"].items()) or "none",
                f"yes ({r['blocking']})" if r["blocking"] else "no", ", ".join(r["reports"]),
            ]
            for r in rows
        ],
    )  # fmt: skip


cache_app = typer.Typer(help="The stack recipes' dependency cache.", no_args_is_help=True)
ci_app.add_typer(cache_app, name="cache")

StackOpt = Annotated[str | None, typer.Option("--stack", help="Only this stack's entries.")]


def _cache(ctx: typer.Context, stack: str | None) -> tuple[Any, Any]:
    """The command's state and the project's dependency cache; `stack` must be known."""
    from shipline.engine.ci_service import dependency_cache

    state = state_of(ctx)
    return state, dependency_cache(state.workspace(), stack)


@cache_app.command("list")
def cache_list(ctx: typer.Context, stack: StackOpt = None, as_json: JsonFlag = False) -> None:
    """Saved dependency caches: stack, key, paths, size, when saved and last restored.
    Example: shipline ci cache list --stack go"""
    state, cache = _cache(ctx, stack)
    entries = cache.entries(stack)
    if as_json:
        state.output.json([e.as_json() for e in entries])
        return
    if not entries:
        state.output.line("no dependency cache saved" + (f" for {stack}" if stack else ""))
        return
    state.output.table(
        "dependency caches",
        ["stack", "key", "paths", "size", "saved", "last restored"],
        [
            [e.stack, e.key, ", ".join(e.paths), f"{e.size:,} B", e.created, e.last_used or "-"]
            for e in entries
        ],
    )


@cache_app.command("clear")
def cache_clear(ctx: typer.Context, stack: StackOpt = None, as_json: JsonFlag = False) -> None:
    """Remove saved dependency caches (all, or one stack's): the next builds start fresh.
    Example: shipline ci cache clear --stack go"""
    state, cache = _cache(ctx, stack)
    removed = cache.clear(stack)
    if as_json:
        state.output.json({"removed": [e.as_json() for e in removed]})
        return
    state.output.line(f"removed {len(removed)} cache entr{'y' if len(removed) == 1 else 'ies'}")
