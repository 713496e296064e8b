"""CI requests the CLI (and a web API) make: which services a change touches, the tag of a ref,
and starting a build run. Rules live here, not in the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipline.domain.changes import PathRules
from shipline.domain.tags import TagError, image_tag
from shipline.engine.detection import Detection, detect_with
from shipline.engine.pipelines import ci_pipeline, pick_services
from shipline.engine.tagging import strategy_of
from shipline.engine.wiring import rev_parse
from shipline.engine.workspace import Workspace
from shipline.errors import UserError

if TYPE_CHECKING:
    from shipline.engine.wiring import DependencyCache, RunRecord


def detect(ws: Workspace, base: str, head: str, repo: Path | None = None) -> Detection:
    """Services of `ws` changed on `head` since it left `base` (merge-base semantics)."""
    rules = PathRules.of(ws.config, ws.config.ci.build_all_paths)
    return detect_with(rules, repo or ws.config_path.parent, base, head)


def build_findings(ws: Workspace, run_id: int) -> list[dict[str, Any]]:
    """Every scan of a build run, per service: scanner, target, counts by severity, reports,
    and whether its findings are at a severity that fails the build (`ci.failOnSeverities`)."""
    rows: list[dict[str, Any]] = []
    for path in sorted((ws.state_dir / "artifacts" / f"run-{run_id}").glob("*/scans.json")):
        saved = json.loads(path.read_text())
        for scan in saved["scans"]:
            counts = {k: v for k, v in scan["counts"].items() if v}
            rows.append({
                "service": path.parent.name, "scanner": scan["tool"], "target": scan["target"],
                "counts": counts, "reports": scan["reports"],
                "blocking": sum(counts.get(s, 0) for s in saved["failOn"]),
            })  # fmt: skip
    return rows


def choose_services(
    ws: Workspace, folder: Path, services: str, base: str | None, warn: Callable[[str], None]
) -> list[str]:
    """A build's services: changed (since `base`), all, or a list."""
    if services != "changed":
        return pick_services(ws.config, services)
    if not base:
        raise UserError("--services changed needs --base REV", hint="or use --services all / a,b")
    found = detect(ws, base, "HEAD", folder)
    for warning in found.warnings:
        warn(f"warning: {warning}")
    return list(found.services)


@dataclass(frozen=True)
class BuildRequest:
    """What `ci build` asks for."""

    services: str = "changed"
    base: str | None = None
    ref: str | None = None
    strategy: str = "auto"
    custom: str | None = None
    push: bool = False
    scan: bool = False
    manifest: Path | None = None
    repo: Path | None = None
    fresh_cache: bool = False


@dataclass(frozen=True)
class BuildStarted:
    """A queued build run (None when nothing changed), its tag and where its manifest goes."""

    record: RunRecord | None
    services: list[str]
    tag: str
    manifest: Path


def submit_build(
    ws: Workspace, request: BuildRequest, *, actor: str, warn: Callable[[str], None]
) -> BuildStarted:
    """Queue a CI build run after its rules held; nothing when no service changed."""
    folder = (request.repo or ws.config_path.parent).resolve()
    names = choose_services(ws, folder, request.services, request.base, warn)
    commit = rev_parse(folder, "HEAD")
    ref = request.ref or rev_parse(folder, "--abbrev-ref", "HEAD") or "HEAD"
    try:
        chosen = image_tag(ref, strategy_of(request.strategy), sha=commit, custom=request.custom)
    except TagError as exc:
        raise UserError(str(exc)) from None
    path = request.manifest or ws.state_dir / "manifests" / f"build-{chosen.tag}.json"
    if not names:
        return BuildStarted(None, [], chosen.tag, path)
    if request.push and not chosen.push:
        warn(f"note: {chosen.reason}: images are not pushed")
    spec = ci_pipeline(
        ws.config,
        repo=str(folder),
        services=names,
        tag=chosen.tag,
        push=request.push and chosen.push,
        scan=request.scan,
        commit=commit,
        ref=ref,
        artifacts=str(ws.state_dir / "artifacts"),
        manifest=str(path.resolve()),
        cache=str(ws.state_dir / "cache"),
        fresh_cache=request.fresh_cache,
    )
    from shipline.engine.assembly import run_service

    record = run_service(ws).start(spec, actor=actor, services=dict.fromkeys(names, chosen.tag))
    return BuildStarted(record, names, chosen.tag, path)


def dependency_cache(ws: Workspace, stack: str | None) -> DependencyCache:
    """The project's dependency cache; `stack`, when given, must be known."""
    if stack and stack not in ws.config.stacks:
        raise UserError(
            f"unknown stack '{stack}'", hint=f"known: {', '.join(sorted(ws.config.stacks))}"
        )
    from shipline.engine import wiring

    cache: DependencyCache = wiring.DependencyCache(ws.state_dir / "cache")
    return cache
