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
