"""What `promote --dry-run` says of a canary rung's canaries: how many, and how long."""

from __future__ import annotations

from typing import Any

import pytest

from shipline.engine.promotion import _canaries, _rollout

STRATEGY = {"type": "canary", "steps": [10, 50, 100], "bakeSeconds": 300,
            "analysis": {"intervalSeconds": 60}}  # fmt: skip


def _versions(now: list[str | None]) -> dict[str, dict[str, Any]]:
    return {f"s{i}": {"now": v, "after": "2.0.0", **_rollout("canary", v, "2.0.0")}
            for i, v in enumerate(now)}  # fmt: skip


@pytest.mark.parametrize(
    ("wide", "in_all"),
    [(1, 1800.0), (2, 1200.0), (3, 600.0), (22, 600.0)],  # three canaries of 600 s each
)
def test_canaries_take_their_bake_max_parallel_at_a_time(wide: int, in_all: float) -> None:
    versions = _versions(["1.0.0", "1.0.0", "1.0.0", None, "2.0.0"])  # a first deploy, one there
    found = _canaries({**STRATEGY, "maxParallel": wide}, versions)
    assert found == {"count": 3, "seconds": 600.0, "inAll": in_all}


def test_a_canary_that_waits_for_a_person_has_no_length() -> None:
    strategy = {"type": "canary", "steps": [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]}
    assert _canaries(strategy, _versions(["1.0.0"])) == {"count": 1, "seconds": None,
                                                         "inAll": None}  # fmt: skip


def test_a_rolling_rung_has_no_canaries() -> None:
    assert _canaries({"type": "rolling"}, _versions(["1.0.0"])) is None
