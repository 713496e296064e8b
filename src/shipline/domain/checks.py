"""Check verdicts: business-hours windows and the exclusive lock queue. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum

from shipline.domain.models import BusinessHours, Environment, LockPolicy
from shipline.domain.windows import in_window


class Verdict(StrEnum):
    """What a check says."""

    PASS = "pass"
    WAIT = "wait"
    FAIL = "fail"
    OVERRIDE = "override"  # outside the window, allowed as an emergency with extra approvals


@dataclass(frozen=True)
class WindowVerdict:
    """A business-hours verdict and, when it is closed, when it opens next."""

    verdict: Verdict
    reason: str
    opens_at: datetime | None = None


def next_opening(hours: BusinessHours, now: datetime, tz: tzinfo) -> datetime | None:
    """The first moment at or after `now` that lies inside a window (None if none within 8 days)."""
    local = now.astimezone(tz)
    best: datetime | None = None
    for offset in range(8):
        day = (local + timedelta(days=offset)).date()
        for window in hours.windows:
            if day.weekday() not in window.days:
                continue
            start = datetime.combine(day, window.start, tzinfo=tz)
            end = datetime.combine(day, window.end, tzinfo=tz)
            if end <= now:
                continue
            candidate = max(start, now)
            if best is None or candidate < best:
                best = candidate
        if best is not None:
            return best
    return best


def emergency_problem(environments: Sequence[Environment]) -> str | None:
    """Why an emergency (outside business hours, with the emergency approvals) cannot apply to
    a run through `environments`, or None: one of them must have business hours that allow one.
    Elsewhere the flag would be accepted and change nothing."""
    hours = {e.name: e.checks.business_hours for e in environments if e.checks.business_hours}
    if any(h.emergency is not None for h in hours.values()):
        return None
    if not hours:
        names = ", ".join(e.name for e in environments)
        verb = "has" if len(environments) == 1 else "have"
        return f"{names} {verb} no business hours to override"
    return (
        f"the business hours of {', '.join(hours)} allow no emergency"
        " (no checks.businessHours.emergency approvals)"
    )


def check_window(
    hours: BusinessHours, now: datetime, tz: tzinfo, *, emergency: bool = False
) -> WindowVerdict:
    """Inside a window: pass. Outside: override (emergency), else wait or fail as configured."""
    if in_window(list(hours.windows), now, tz):
        return WindowVerdict(Verdict.PASS, "inside the deployment window")
    opens = next_opening(hours, now, tz)
    when = f"; next window opens {opens.astimezone(tz):%a %Y-%m-%d %H:%M %Z}" if opens else ""
    if emergency:
        if hours.emergency is None:
            return WindowVerdict(
                Verdict.FAIL,
                "outside the deployment window and no emergency override is configured",
            )
        return WindowVerdict(
            Verdict.OVERRIDE,
            "outside the deployment window: emergency override needs "
            + ", ".join(hours.emergency.groups),
            opens,
        )
    if hours.outside == "fail":
        return WindowVerdict(Verdict.FAIL, "outside the deployment window" + when, opens)
    return WindowVerdict(Verdict.WAIT, "outside the deployment window" + when, opens)


@dataclass(frozen=True)
class QueuedRun:
    """A run that wants the lock of one (environment, service)."""

    run_id: str
    queued_at: datetime
    holding: bool = False
    requested_at: datetime | None = None  # when it was submitted (default: queued_at)


@dataclass(frozen=True)
class LockDecision:
    """Who may take the lock now, and which waiting runs are superseded."""

    grant: str | None
    superseded: tuple[str, ...] = ()


def _submission(run: QueuedRun) -> tuple[datetime, int, str]:
    return (run.requested_at or run.queued_at, len(run.run_id), run.run_id)


def latest_waiting(queue: Sequence[QueuedRun]) -> str | None:
    """The newest waiting run by submission: the one latest-only keeps."""
    waiting = sorted((r for r in queue if not r.holding), key=_submission)
    return waiting[-1].run_id if waiting else None


def assess_lock(policy: LockPolicy, queue: Sequence[QueuedRun]) -> LockDecision:
    """Sequential: first come, first served. Latest-only: the newest waiting run by submission
    supersedes the older waiting ones (also those still waiting for approval, whatever order a
    worker took them in); a holder is never pre-empted."""
    holder = next((r for r in queue if r.holding), None)
    waiting = sorted((r for r in queue if not r.holding), key=lambda r: (r.queued_at, r.run_id))
    superseded: tuple[str, ...] = ()
    if policy == LockPolicy.LATEST_ONLY and len(waiting) > 1:
        by_submission = sorted(waiting, key=_submission)
        superseded = tuple(r.run_id for r in by_submission[:-1])
        waiting = by_submission[-1:]
    if holder is not None:
        return LockDecision(None, superseded)
    return LockDecision(waiting[0].run_id if waiting else None, superseded)
