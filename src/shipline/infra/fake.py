"""An in-process `InfraTool` for fast tests: every TF_VAR_<name> of the work is one resource
`fake_value.<name>` and one output `<name>`; state, plans and locks are JSON files in the work's
data folder, so that staleness and locks behave as Terraform's do. It passes the same contract
suite as the Terraform adapter."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipline.domain.ports import InfraWork, LogSink
from shipline.errors import CheckFailed, StalePlan, StateLocked

PREFIX = "TF_VAR_"


class FakeInfra:
    """Terraform's behaviour in miniature."""

    def __init__(self, version: str = "1.11.0") -> None:
        self._version = version

    def version(self) -> str:
        """The version it claims."""
        return self._version

    @staticmethod
    def _state(work: InfraWork) -> dict[str, Any]:
        path = work.data_dir / "fake-state.json"
        if not path.exists():
            return {"serial": 0, "resources": {}}
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded

    @staticmethod
    def _locked(work: InfraWork) -> None:
        lock = work.data_dir / "fake-lock.json"
        if lock.exists():
            held = json.loads(lock.read_text())["id"]
            raise StateLocked(f"the state is locked by another operation (lock {held})",
                              lock_id=held)  # fmt: skip

    def lock(self, work: InfraWork) -> str:
        """Take the state lock as a dying operation would have (tests leave it behind)."""
        work.data_dir.mkdir(parents=True, exist_ok=True)
        held = str(uuid.uuid4())
        (work.data_dir / "fake-lock.json").write_text(json.dumps({"id": held}))
        return held

    def plan(
        self, work: InfraWork, out: Path, *, destroy: bool, log: LogSink
    ) -> Mapping[str, object]:
        """Compare the variables with the state; save the plan in `out`."""
        self._locked(work)
        state = self._state(work)
        desired = (
            {}
            if destroy
            else {k[len(PREFIX) :]: v for k, v in work.env.items() if k.startswith(PREFIX)}
        )
        have: dict[str, str] = state["resources"]
        changes: list[dict[str, Any]] = []
        for name in sorted(set(have) | set(desired)):
            if name not in have:
                actions = ["create"]
            elif name not in desired:
                actions = ["delete"]
            elif have[name] != desired[name]:
                actions = ["update"]
            else:
                actions = ["no-op"]
            changes.append({"address": f"fake_value.{name}", "change": {"actions": actions}})
        outputs = {
            c["address"].split(".", 1)[1]: {"actions": c["change"]["actions"]} for c in changes
        }
        doc = {"resource_changes": changes, "output_changes": outputs}
        out.write_text(json.dumps({"serial": state["serial"], "desired": desired}))
        log(f"fake plan: {sum(c['change']['actions'] != ['no-op'] for c in changes)} change(s)")
        return doc

    def apply(self, work: InfraWork, plan: Path, *, log: LogSink) -> None:
        """Apply the saved plan, or refuse it when the state moved since."""
        self._locked(work)
        saved = json.loads(plan.read_text())
        state = self._state(work)
        if saved["serial"] != state["serial"]:
            raise StalePlan("the approved plan is stale: the state changed after it was made")
        work.data_dir.mkdir(parents=True, exist_ok=True)
        (work.data_dir / "fake-state.json").write_text(
            json.dumps({"serial": state["serial"] + 1, "resources": saved["desired"]})
        )
        log("fake apply: done")

    def outputs(self, work: InfraWork, *, log: LogSink) -> dict[str, tuple[object, bool]]:
        """Every resource's value as an output."""
        return {k: (v, False) for k, v in self._state(work)["resources"].items()}

    def unlock(self, work: InfraWork, lock_id: str, *, log: LogSink) -> None:
        """Release the lock with this id."""
        lock = work.data_dir / "fake-lock.json"
        if not lock.exists() or json.loads(lock.read_text())["id"] != lock_id:
            raise CheckFailed(f"lock {lock_id} could not be released: no such lock")
        lock.unlink()
