"""`shipline ci detect | tag | build | cache`: which services a change touches, the image tag of a
ref, builds, and the dependency cache."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Annotated, Any

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


def _git_out(repo: Path, *args: str) -> str | None:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or None if done.returncode == 0 else None


def _choose_services(
    state: Any, config: Any, folder: Path, services: str, base: str | None
) -> list[str]:
    """The spec's `services` parameter: changed (since --base), all, or a list."""
    from shipline.ci.git import changed_paths
    from shipline.domain.changes import affected_services
    from shipline.engine.pipelines import pick_services

    if services != "changed":
        return pick_services(config, services)
    if not base:
        raise UserError("--services changed needs --base REV", hint="or use --services all / a,b")
    changes = changed_paths(folder, base, "HEAD")
    for warning in changes.warnings:
        state.output.error(f"warning: {warning}")
    if changes.everything:
        return [s.name for s in config.services]
    return list(affected_services(config, changes.paths, config.ci.build_all_paths).services)


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
    """Build services with their stack recipes, build their images, scan and push them."""
    from shipline.cli.runs import watch
    from shipline.domain.tags import Strategy, TagError, image_tag
    from shipline.engine.identity import current_user
    from shipline.engine.pipelines import ci_pipeline
    from shipline.engine.service import run_service

    state = state_of(ctx)
    ws = state.workspace()
    config = ws.config
    folder = (repo or ws.config_path.parent).resolve()
    names = _choose_services(state, config, folder, services, base)
    if not names:
        state.output.line("no service changed: nothing to build")
        return
    commit = _git_out(folder, "rev-parse", "HEAD")
    ref = ref or _git_out(folder, "rev-parse", "--abbrev-ref", "HEAD") or "HEAD"
    try:
        chosen = image_tag(ref, Strategy(strategy), sha=commit, custom=custom)
    except (TagError, ValueError) as exc:
        raise UserError(str(exc)) from None
    if push and not chosen.push:
        state.output.error(f"note: {chosen.reason}: images are not pushed")
    path = manifest or ws.state_dir / "manifests" / f"build-{chosen.tag}.json"
    spec = ci_pipeline(
        config,
        repo=str(folder),
        services=names,
        tag=chosen.tag,
        push=push and chosen.push,
        scan=scan,
        commit=commit,
        ref=ref,
        artifacts=str(ws.state_dir / "artifacts"),
        manifest=str(path.resolve()),
        cache=str(ws.state_dir / "cache"),
        fresh_cache=fresh_cache,
    )
    service = run_service(ws)
    record = service.start(
        spec,
        actor=current_user(None, os.environ),
        services=dict.fromkeys(names, chosen.tag),
    )
    watch(
        state,
        service,
        record.id,
        detach=detach,
        as_json=as_json,
        queued=f"run {record.id} queued: building {len(names)} service(s) at {chosen.tag}",
        extra=lambda data: {"manifest": str(path) if data["phase"] == "succeeded" else None},
    )
    if not as_json and not detach:
        state.output.line(f"manifest: {path}")


cache_app = typer.Typer(help="The stack recipes' dependency cache.", no_args_is_help=True)
ci_app.add_typer(cache_app, name="cache")

StackOpt = Annotated[str | None, typer.Option("--stack", help="Only this stack's entries.")]


def _cache(ctx: typer.Context, stack: str | None) -> tuple[Any, Any]:
    """The command's state and the project's dependency cache; `stack` must be known."""
    from shipline.ci.cache import DependencyCache

    state = state_of(ctx)
    ws = state.workspace()
    if stack and stack not in ws.config.stacks:
        raise UserError(
            f"unknown stack '{stack}'", hint=f"known: {', '.join(sorted(ws.config.stacks))}"
        )
    return state, DependencyCache(ws.state_dir / "cache")


@cache_app.command("list")
def cache_list(ctx: typer.Context, stack: StackOpt = None, as_json: JsonFlag = False) -> None:
    """Saved dependency caches: stack, key, paths, size, when saved and last restored."""
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
    """Remove saved dependency caches (all, or one stack's): the next builds start fresh."""
    state, cache = _cache(ctx, stack)
    removed = cache.clear(stack)
    if as_json:
        state.output.json({"removed": [e.as_json() for e in removed]})
        return
    state.output.line(f"removed {len(removed)} cache entr{'y' if len(removed) == 1 else 'ies'}")
