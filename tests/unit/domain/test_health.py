"""The six post-deploy health checks, each passing and failing."""

from __future__ import annotations

import pytest

from shipline.domain.health import Observation, healthy, verify_health

GOOD = Observation(
    desired=3,
    running=3,
    ready=3,
    endpoint_ok=True,
    min_replicas=3,
    max_replicas=20,
    required_available=2,
    lowest_available=3,
)


def test_all_pass() -> None:
    checks = verify_health(GOOD)
    assert [c.name for c in checks] == [
        "pod status",
        "unhealthy pods",
        "service endpoints",
        "scaling",
        "disruption budget",
        "recent events",
    ]
    assert healthy(checks)


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        ({"ready": 2}, "pod status"),
        ({"running": 1}, "pod status"),
        ({"restarts": 4}, "unhealthy pods"),
        ({"crash_looping": 1}, "unhealthy pods"),
        ({"endpoint_ok": False, "endpoint_detail": "503 from the gateway"}, "service endpoints"),
        ({"endpoint_ok": None}, "service endpoints"),
        ({"desired": 25, "running": 25, "ready": 25}, "scaling"),
        ({"lowest_available": 1}, "disruption budget"),
        ({"error_events": ("BackOff: restarting failed container",)}, "recent events"),
    ],
)
def test_each_check_fails_alone(change: dict[str, object], failing: str) -> None:
    from dataclasses import replace

    checks = verify_health(replace(GOOD, **change))  # type: ignore[arg-type]
    assert [c.name for c in checks if not c.passed] == [failing]
    assert not healthy(checks)
    assert next(c for c in checks if c.name == failing).reason


def test_a_failed_check_says_what_to_look_at_with_the_specs_hints() -> None:
    from dataclasses import replace

    crashing = replace(GOOD, ready=2, restarts=4, crash_looping=1, service="api",
                       namespace="quikapp-dev", pod_problem=("api-7d9-x", "CrashLoopBackOff"))  # fmt: skip
    by_name = {c.name: c for c in verify_health(crashing)}
    assert not by_name["unhealthy pods"].passed
    assert "kubectl logs --previous api-7d9-x -n quikapp-dev" in str(by_name["unhealthy pods"].hint)
    pulling = replace(crashing, restarts=0, crash_looping=0,
                      pod_problem=("api-7d9-x", "ImagePullBackOff"))  # fmt: skip
    assert "registry" in str({c.name: c for c in verify_health(pulling)}["pod status"].hint)
    unready = replace(GOOD, ready=2, service="api", pod_problem=("api-1", "not-ready"))
    assert "readiness probe" in str({c.name: c for c in verify_health(unready)}["pod status"].hint)
    empty = replace(GOOD, endpoint_ok=False, endpoint_detail="no endpoints", service="api",
                    namespace="qa")  # fmt: skip
    hint = {c.name: c for c in verify_health(empty)}["service endpoints"].hint
    assert "kubectl get endpoints api -n qa" in str(hint)
    assert all(c.hint is None for c in verify_health(GOOD))


def test_a_clusters_own_autoscaler_and_budget_verdicts_replace_the_bounds_checks() -> None:
    from dataclasses import replace

    from shipline.domain.health import HealthCheck

    warned = HealthCheck("scaling", True, "HPA has no metrics", "check metrics", warning=True)
    broken = HealthCheck("disruption budget", False, "1 healthy, 2 required", "describe pdb")
    checks = verify_health(replace(GOOD, desired=99, autoscaler=warned, budget=broken))
    by_name = {c.name: c for c in checks}
    assert by_name["scaling"] is warned  # 99 replicas would fail the bounds check
    assert by_name["disruption budget"] is broken
    assert not healthy(checks)
