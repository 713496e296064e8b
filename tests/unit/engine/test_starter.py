"""The starter's look at whether this worker runs the newest application version."""

from __future__ import annotations

from typing import Any

import pytest

from shipline.engine import durable


class _Versions:
    """A system database that counts its version lookups."""

    def __init__(self) -> None:
        self.looks = 0
        self.latest = True

    def _is_latest_version(self, app_version: str) -> bool:
        self.looks += 1
        return self.latest


def test_the_version_is_looked_up_once_per_period_not_per_claim(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(durable.time, "monotonic", lambda: clock[0])
    starter = durable._Starter([], poll=1.0)
    versions: Any = _Versions()
    assert [starter._is_latest(versions) for _ in range(5)] == [True] * 5
    assert versions.looks == 1
    versions.latest = False  # an upgraded peer registered a newer version
    clock[0] += durable.VERSION_LOOK_SECONDS - 0.01
    assert starter._is_latest(versions) is True
    clock[0] += 0.02
    assert starter._is_latest(versions) is False
    assert versions.looks == 2


def test_the_interval_shipline_sets_is_the_one_dbos_starts_its_background_jobs_with() -> None:
    import inspect

    import dbos._workflow_commands as jobs

    # dbos reads the module's interval when it starts the thread: a renamed knob fails here
    assert "_BACKGROUND_JOBS_INTERVAL_SEC" in inspect.getsource(jobs.background_jobs_thread)
    before = jobs._BACKGROUND_JOBS_INTERVAL_SEC
    try:
        durable._quiet_background_jobs()
        assert jobs._BACKGROUND_JOBS_INTERVAL_SEC == durable.BACKGROUND_JOBS_SECONDS
    finally:
        jobs._BACKGROUND_JOBS_INTERVAL_SEC = before
