"""Business-hours verdicts (with the next opening, across DST) and the lock queue."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from shipline.domain.checks import (
    QueuedRun,
    Verdict,
    assess_lock,
    check_window,
    emergency_problem,
)
from shipline.domain.models import BusinessHours, Checks, Environment, LockPolicy

NY = ZoneInfo("America/New_York")
HOURS = BusinessHours.model_validate(
    {
        "timezone": "America/New_York",
        "windows": ["Mon-Thu 09:00-16:00", "Fri 09:00-12:00"],
        "emergency": {"groups": ["cto"]},
    }
)


@pytest.mark.parametrize(
    ("now", "verdict", "opens"),
    [
        (datetime(2026, 11, 23, 15, 0, tzinfo=UTC), Verdict.PASS, None),  # Mon 10:00 EST
        (
            datetime(2026, 11, 23, 12, 0, tzinfo=UTC),
            Verdict.WAIT,
            datetime(2026, 11, 23, 9, 0, tzinfo=NY),
        ),
        (
            datetime(2026, 11, 27, 18, 0, tzinfo=UTC),
            Verdict.WAIT,
            datetime(2026, 11, 30, 9, 0, tzinfo=NY),
        ),  # Fri 13:00 -> Mon
        (
            datetime(2026, 11, 28, 15, 0, tzinfo=UTC),
            Verdict.WAIT,
            datetime(2026, 11, 30, 9, 0, tzinfo=NY),
        ),  # Sat
        # Friday before DST starts (2026-03-08): the next window is Monday 09:00 EDT = 13:00 UTC
        (
            datetime(2026, 3, 6, 18, 0, tzinfo=UTC),
            Verdict.WAIT,
            datetime(2026, 3, 9, 13, 0, tzinfo=UTC),
        ),
        # Friday before DST ends (2026-11-01): Monday 09:00 EST = 14:00 UTC
        (
            datetime(2026, 10, 30, 17, 0, tzinfo=UTC),
            Verdict.WAIT,
            datetime(2026, 11, 2, 14, 0, tzinfo=UTC),
        ),
    ],
)
def test_window_verdicts(now: datetime, verdict: Verdict, opens: datetime | None) -> None:
    result = check_window(HOURS, now, NY)
    assert result.verdict == verdict
    assert result.opens_at == opens


def test_outside_with_fail_and_emergency() -> None:
    saturday = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
    failing = HOURS.model_copy(update={"outside": "fail"})
    assert check_window(failing, saturday, NY).verdict == Verdict.FAIL
    emergency = check_window(HOURS, saturday, NY, emergency=True)
    assert emergency.verdict == Verdict.OVERRIDE
    assert "cto" in emergency.reason
    no_override = HOURS.model_copy(update={"emergency": None})
    assert check_window(no_override, saturday, NY, emergency=True).verdict == Verdict.FAIL


def _env(name: str, hours: BusinessHours | None = None) -> Environment:
    return Environment(name=name, cluster="c", namespace=name, tier="t", target="x",
                       checks=Checks(business_hours=hours))  # fmt: skip


def test_an_emergency_needs_a_window_that_allows_one_among_the_runs_environments() -> None:
    plain = HOURS.model_copy(update={"emergency": None})
    assert emergency_problem([_env("qa"), _env("live", HOURS)]) is None
    assert emergency_problem([_env("qa")]) == "qa has no business hours to override"
    assert emergency_problem([_env("qa"), _env("uat1")]) == (
        "qa, uat1 have no business hours to override"
    )
    assert emergency_problem([_env("qa"), _env("live", plain)]) == (
        "the business hours of live allow no emergency"
        " (no checks.businessHours.emergency approvals)"
    )


def _q(*spec: str) -> list[QueuedRun]:
    """'r1' waiting, '*r1' holding; queued a minute apart in the order given."""
    return [
        QueuedRun(s.lstrip("*"), datetime(2026, 1, 1, 0, i, tzinfo=UTC), s.startswith("*"))
        for i, s in enumerate(spec)
    ]


@pytest.mark.parametrize(
    ("policy", "queue", "grant", "superseded"),
    [
        (LockPolicy.SEQUENTIAL, [], None, ()),
        (LockPolicy.SEQUENTIAL, ["r1", "r2"], "r1", ()),
        (LockPolicy.SEQUENTIAL, ["*r1", "r2"], None, ()),
        (LockPolicy.LATEST_ONLY, ["r1", "r2", "r3"], "r3", ("r1", "r2")),
        (LockPolicy.LATEST_ONLY, ["*r1", "r2", "r3"], None, ("r2",)),
        (LockPolicy.LATEST_ONLY, ["*r1"], None, ()),
    ],
    ids=["empty", "fifo", "held", "latest-only", "latest-only-held", "holder-alone"],
)
def test_lock(
    policy: LockPolicy, queue: list[str], grant: str | None, superseded: tuple[str, ...]
) -> None:
    decision = assess_lock(policy, _q(*queue))
    assert (decision.grant, decision.superseded) == (grant, superseded)


def test_latest_only_is_decided_by_submission_not_by_when_a_worker_took_a_run() -> None:
    early = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    late = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    queue = [  # run 7 was submitted after run 6 but a worker queued it first
        QueuedRun("7", early, requested_at=datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC)),
        QueuedRun("6", late, requested_at=datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)),
    ]
    decision = assess_lock(LockPolicy.LATEST_ONLY, queue)
    assert (decision.grant, decision.superseded) == ("7", ("6",))


def test_the_latest_waiting_run_is_the_newest_submitted() -> None:
    from shipline.domain.checks import latest_waiting

    at = datetime(2026, 1, 1, tzinfo=UTC)
    queue = [
        QueuedRun("9", at, requested_at=datetime(2026, 1, 1, 0, 0, 9, tzinfo=UTC)),
        QueuedRun("10", at, requested_at=datetime(2026, 1, 1, 0, 0, 10, tzinfo=UTC)),
        QueuedRun("3", at, holding=True),
    ]
    assert latest_waiting(queue) == "10"
    assert latest_waiting([QueuedRun("3", at, holding=True)]) is None
