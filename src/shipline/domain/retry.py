"""The one backoff rule: how long to wait before attempt `attempt + 1` (pure)."""

from __future__ import annotations


def backoff_delay(attempt: int, base: float, *, cap: float | None = None) -> float:
    """Exponential backoff after failed attempt `attempt` (1-based): base, 2·base, 4·base, …,
    at most `cap` seconds."""
    delay = float(base) * float(2 ** max(0, min(attempt - 1, 30)))
    return delay if cap is None else min(cap, delay)
