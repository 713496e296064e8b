"""CI step actions: build one service (recipe, image, scans, push), scan the repository for
committed secrets, and write the build manifest."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from shipline.domain.variables import REFERENCE
from shipline.engine.actions import BUILTIN, StepContext
from shipline.engine.wiring import BUILDERS, BuildFailed, scanners
from shipline.errors import CheckFailed
from shipline.process import classify_exit, stream


def _run_commands(
    ctx: StepContext, phase: str, commands: list[str], cwd: Path, env: dict[str, str]
) -> int:
    for command in commands:
        ctx.check_cancelled()
        ctx.log(f"$ {command}")
        code, lines = stream(["sh", "-c", command], ctx.log, cwd=cwd, env=env)
        if code != 0:
            raise classify_exit(code, lines, f"{phase} command failed: {command}")
    return len(commands)


def cache_key(template: str | None, variables: dict[str, str], folder: Path) -> str | None:
    """The recipe's cache key: `$(var)` from the stack variables, `{hash:FILE}` a file's digest."""
    if not template:
        return None
    text = REFERENCE.sub(lambda m: variables.get(m.group(1), m.group(0)), template)

    def digest(match: re.Match[str]) -> str:
        path = folder / match.group(1)
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else "none"

    return re.sub(r"\{hash:([^}]+)\}", digest, text)


def _cache(params: dict[str, Any], recipe: dict[str, Any], key: str | None) -> Any:
    if not key or not recipe.get("cache_paths") or not params.get("cacheDir"):
        return None
    from shipline.engine.wiring import DependencyCache

    return DependencyCache(Path(str(params["cacheDir"])))


def _restore_cache(
    ctx: StepContext, params: dict[str, Any], recipe: dict[str, Any], key: str | None, into: Path
) -> str | None:
    """ "hit", "miss" (saved after a good build), or None when the recipe caches nothing."""
    cache = _cache(params, recipe, key)
    if cache is None or key is None:
        return None
    if params.get("freshCache"):
        ctx.log(f"cache: not restored (fresh cache asked); {key} is saved again after the build")
        return "miss"
    if cache.restore(str(params["stack"]), key, into):
        ctx.log(f"cache hit: {key} restored {', '.join(recipe['cache_paths'])}")
        return "hit"
    ctx.log(f"cache miss: {key}")
    return "miss"


def _save_cache(
    ctx: StepContext, params: dict[str, Any], recipe: dict[str, Any], key: str | None, into: Path
) -> None:
    cache = _cache(params, recipe, key)
    if cache is None or key is None:
        return
    size = cache.save(str(params["stack"]), key, into, list(recipe["cache_paths"]))
    if size is None:
        ctx.log(f"cache: none of {', '.join(recipe['cache_paths'])} exists; nothing saved")
    else:
        ctx.log(f"cache saved: {key} ({size:,} bytes)")


def build_service(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """Recipe (setup, test, build), image, scans, push; outputs the service's manifest entry."""
    repo = Path(str(params["repo"]))
    context = repo / str(params["context"])
    dockerfile = repo / str(params["dockerfile"])
    if not context.is_dir():
        raise BuildFailed(f"build folder {params['context']} does not exist")
    env = {
        **os.environ,
        **{k: str(v) for k, v in params.get("variables", {}).items()},
        "SHIPLINE_SERVICE": str(params["service"]),
        "SHIPLINE_VERSION": str(params["tag"]),
    }
    recipe: dict[str, Any] = params.get("recipe") or {}
    key = cache_key(
        recipe.get("cache_key"),
        {k: str(v) for k, v in params.get("variables", {}).items()},
        context,
    )
    if key:
        ctx.log(f"cache key: {key}")
    cached = _restore_cache(ctx, params, recipe, key, context)
    _run_commands(ctx, "setup", recipe.get("setup", []), context, env)
    tests = _run_commands(ctx, "test", recipe.get("test", []), context, env)
    _run_commands(ctx, "build", recipe.get("build", []), context, env)
    if cached == "miss":
        _save_cache(ctx, params, recipe, key, context)
    builder = BUILDERS[str(params["builder"])]()
    local = f"localhost/{params['image']}:{params['tag']}"
    builder.build(
        str(context),
        str(dockerfile),
        local,
        platforms=list(params.get("platforms", [])),
        build_args={k: str(v) for k, v in params.get("buildArgs", {}).items()},
        log=ctx.log,
    )
    scans: list[dict[str, Any]] = []
    artifacts = Path(str(params["artifacts"])) / f"run-{ctx.run_id}" / str(params["service"])
    if params.get("scan"):
        reports = [
            scanners.hadolint(str(dockerfile), artifacts),
            scanners.trivy("config", str(dockerfile.parent), artifacts),
        ]
        archive = artifacts / "image.tar"
        builder.save(local, str(archive), log=ctx.log)
        reports.append(scanners.trivy("image", str(archive), artifacts))
        archive.unlink(missing_ok=True)
        reports.append(scanners.trivy("secret", str(context), artifacts))
        scans = [r.summary() for r in reports]
        severity = [s.upper() for s in params.get("severity", ["HIGH", "CRITICAL"])]
        for report in reports:
            found = report.at_or_above(severity)
            if found:
                ctx.log(
                    f"warning: {report.tool}: {found} finding(s) at {','.join(severity)}"
                    f" in {report.target}"
                )
        fail_on = [s.upper() for s in params.get("failOn", [])]
        blocking = sum(r.at_or_above(fail_on) for r in reports) if fail_on else 0
        # What `ci build` summarises per service, kept whether or not the findings block it.
        (artifacts / "scans.json").write_text(json.dumps({"scans": scans, "failOn": fail_on}))
        if blocking:
            raise CheckFailed(f"scans found {blocking} finding(s) at {','.join(fail_on)}")
    digest = None
    destination = None
    if params.get("push"):
        destination = f"{params['registry']}/{params['image']}:{params['tag']}"
        digest = builder.push(
            local, destination, insecure=bool(params.get("insecure")), log=ctx.log
        )
        ctx.log(f"pushed {destination}@{digest}")
    entry = {
        "service": params["service"],
        "stack": params["stack"],
        "version": params["tag"],
        "tag": params["tag"],
        "image": destination or local,
        "digest": digest,
        "commit": params.get("commit"),
        "tests": {"commands": tests, "passed": tests},
        "scans": scans,
        "cacheKey": key,
        "cache": cached,
    }
    return {str(params["service"]): entry}


def scan_repository(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """gitleaks over the repository's history."""
    folder = Path(str(params["artifacts"])) / f"run-{ctx.run_id}" / "repository"
    report = scanners.gitleaks(str(params["repo"]), folder)
    if report.at_or_above(["HIGH"]):
        ctx.log(
            f"warning: gitleaks found {report.at_or_above(['HIGH'])} committed secret(s)"
            " (values redacted in the report)"
        )
        if params.get("failOnSecrets"):
            raise CheckFailed("gitleaks found committed secrets")
    return {"gitleaks": report.summary()}


def write_manifest(ctx: StepContext, params: dict[str, Any]) -> dict[str, Any]:
    """The build manifest: every built service's version, tag, digest, commit, tests and scans."""
    built = {
        k: v
        for k, v in ctx.inputs.get("build", {}).items()
        if isinstance(v, dict) and "digest" in v
    }
    manifest = {
        "apiVersion": "shipline/v1",
        "kind": "BuildManifest",
        "run": ctx.run_id,
        "commit": params.get("commit"),
        "ref": params.get("ref"),
        "tag": params.get("tag"),
        "pushed": bool(params.get("push")),
        "services": dict(sorted(built.items())),
        "repositoryScan": ctx.inputs.get("scan-repository", {}).get("gitleaks"),
    }
    path = Path(str(params["path"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    ctx.log(f"manifest written to {path}")
    return {"manifest": str(path)}


BUILTIN["ci.build"] = build_service
BUILTIN["ci.scan-repository"] = scan_repository
BUILTIN["ci.manifest"] = write_manifest
