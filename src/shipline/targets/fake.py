"""The in-memory DeployTarget: revisions and status without processes, for fast tests.
It passes the same contract suite as the local target."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from shipline.errors import CheckFailed, NotFoundError


class FakeTarget:
    """Desired state applied instantly; a spec whose env has FAKE_UNHEALTHY=1 fails its rollout."""

    def __init__(self) -> None:
        self._current: dict[tuple[str, str], Any] = {}
        self._revisions: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def plan(self, spec: Any) -> dict[str, Any]:
        current = self._current.get((spec.environment, spec.service))
        before = current.public() if current else None
        changes = {
            k: {"from": (before or {}).get(k), "to": v}
            for k, v in spec.public().items()
            if before is None or before.get(k) != v
        }
        return {
            "service": spec.service,
            "environment": spec.environment,
            "create": current is None,
            "changes": changes,
        }

    def apply(self, spec: Any, *, cause: str = "deploy", log: Any = lambda line: None) -> int:
        if spec.env.get("FAKE_UNHEALTHY") == "1":
            raise CheckFailed(f"{spec.service} {spec.version}: new replica not healthy")
        key = (spec.environment, spec.service)
        self._current[key] = spec
        revisions = self._revisions.setdefault(key, [])
        revisions.append(
            {
                "revision": len(revisions) + 1,
                "at": datetime.now(UTC).isoformat(),
                "cause": cause,
                **spec.public(),
                "_spec": spec,
            }
        )
        log(f"{spec.service} {spec.version} applied")
        return len(revisions)

    def status(self, environment: str, service: str) -> dict[str, Any]:
        spec = self._current.get((environment, service))
        if spec is None:
            raise NotFoundError(f"{service} is not deployed to {environment}")
        return {
            "service": service,
            "environment": environment,
            "version": spec.version,
            "desired": spec.replicas,
            "running": spec.replicas,
            "ready": spec.replicas,
            "restarts": 0,
            "revision": len(self._revisions[(environment, service)]),
        }

    def history(self, environment: str, service: str) -> list[dict[str, Any]]:
        self.status(environment, service)
        return [
            {k: v for k, v in r.items() if not k.startswith("_")}
            for r in self._revisions[(environment, service)]
        ]

    def rollback(self, environment: str, service: str, revision: int = 0, **kw: Any) -> int:
        revisions = self._revisions.get((environment, service)) or []
        target = len(revisions) - 1 if revision == 0 else revision
        if not 1 <= target <= len(revisions):
            raise NotFoundError(f"{service} in {environment} has no revision {target}")
        spec = revisions[target - 1]["_spec"]
        return self.apply(replace(spec), cause=f"rollback to revision {target}", **kw)
