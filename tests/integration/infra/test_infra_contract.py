"""One contract for every `InfraTool`: the Terraform adapter (a real terraform binary, a root
module of built-in `terraform_data` resources, the local backend) and the fake that fast tests
use. Plans are saved and applied exactly; a plan made stale by another apply is refused; a held
state lock is StateLocked; destroy empties the outputs."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from shipline.domain.infra import summarize_plan
from shipline.domain.ports import InfraTool, InfraWork
from shipline.errors import CheckFailed, StalePlan, StateLocked
from shipline.infra.fake import FakeInfra
from shipline.infra.terraform import TerraformInfra

MODULE = """terraform {
  backend "local" {}
}

variable "alpha" {
  type = string
}

resource "terraform_data" "alpha" {
  input = var.alpha
}

output "alpha" {
  value = terraform_data.alpha.output
}
"""

Hold = Callable[[InfraWork], AbstractContextManager[None]]


@contextmanager
def _hold_fake(tool: FakeInfra, work: InfraWork) -> Iterator[None]:
    held = tool.lock(work)
    try:
        yield
    finally:
        tool.unlock(work, held, log=lambda line: None)


@contextmanager
def _hold_state_file(work: InfraWork) -> Iterator[None]:
    """What a running terraform does to the local backend's state file."""
    path = Path(work.backend_config["path"])
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    finally:
        os.close(fd)


def _fake() -> tuple[InfraTool, Hold]:
    tool = FakeInfra()
    return tool, lambda work: _hold_fake(tool, work)


def _terraform() -> tuple[InfraTool, Hold]:
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed (expected at /usr/local/bin/terraform)")
    return TerraformInfra(), _hold_state_file


@pytest.fixture(params=[_fake, _terraform], ids=["fake", "terraform"])
def tool(request: pytest.FixtureRequest) -> tuple[InfraTool, Hold]:
    made: tuple[InfraTool, Hold] = request.param()
    return made


def _work(tmp_path: Path, alpha: str) -> InfraWork:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    (root / "main.tf").write_text(MODULE)
    return InfraWork(
        root=root,
        data_dir=tmp_path / "data",
        backend="local",
        backend_config={"path": str(tmp_path / "state" / "terraform.tfstate")},
        env={"TF_VAR_alpha": alpha},
        lock_timeout_seconds=0,
    )


def _plan(tool: InfraTool, work: InfraWork, out: Path, *, destroy: bool = False):  # type: ignore[no-untyped-def]
    (work.data_dir).mkdir(parents=True, exist_ok=True)
    Path(work.backend_config["path"]).parent.mkdir(parents=True, exist_ok=True)
    return summarize_plan(tool.plan(work, out, destroy=destroy, log=lambda line: None))


def test_plan_apply_outputs_and_a_second_plan_is_empty(
    tool: tuple[InfraTool, Hold], tmp_path: Path
) -> None:
    infra, _ = tool
    work = _work(tmp_path, "one")
    first = _plan(infra, work, tmp_path / "a.plan")
    assert first.add and not (first.change or first.replace or first.destroy)
    infra.apply(work, tmp_path / "a.plan", log=lambda line: None)
    assert infra.outputs(work, log=lambda line: None)["alpha"] == ("one", False)
    assert _plan(infra, work, tmp_path / "b.plan").empty
    changed = _plan(infra, _work(tmp_path, "two"), tmp_path / "c.plan")
    assert changed.change or changed.replace


def test_a_plan_made_stale_by_another_apply_is_refused(
    tool: tuple[InfraTool, Hold], tmp_path: Path
) -> None:
    infra, _ = tool
    base = _work(tmp_path, "one")
    _plan(infra, base, tmp_path / "base.plan")
    infra.apply(base, tmp_path / "base.plan", log=lambda line: None)
    older, newer = _work(tmp_path, "two"), _work(tmp_path, "three")
    _plan(infra, older, tmp_path / "older.plan")
    _plan(infra, newer, tmp_path / "newer.plan")
    infra.apply(newer, tmp_path / "newer.plan", log=lambda line: None)
    with pytest.raises(StalePlan):
        infra.apply(older, tmp_path / "older.plan", log=lambda line: None)
    assert infra.outputs(base, log=lambda line: None)["alpha"] == ("three", False)


def test_a_held_state_lock_is_state_locked(tool: tuple[InfraTool, Hold], tmp_path: Path) -> None:
    infra, hold = tool
    work = _work(tmp_path, "one")
    _plan(infra, work, tmp_path / "a.plan")
    infra.apply(work, tmp_path / "a.plan", log=lambda line: None)
    with hold(work), pytest.raises(StateLocked):
        _plan(infra, _work(tmp_path, "two"), tmp_path / "b.plan")
    with pytest.raises(CheckFailed):
        infra.unlock(work, "no-such-lock", log=lambda line: None)


def test_destroy_plans_every_resource_away(tool: tuple[InfraTool, Hold], tmp_path: Path) -> None:
    infra, _ = tool
    work = _work(tmp_path, "one")
    _plan(infra, work, tmp_path / "a.plan")
    infra.apply(work, tmp_path / "a.plan", log=lambda line: None)
    gone = _plan(infra, work, tmp_path / "d.plan", destroy=True)
    assert gone.destroy and not (gone.add or gone.change)
    infra.apply(work, tmp_path / "d.plan", log=lambda line: None)
    assert infra.outputs(work, log=lambda line: None) == {}
    assert infra.version()
