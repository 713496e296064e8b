"""Infrastructure runs decided without I/O: what a saved plan changes (from `terraform show
-json`), whether a Terraform version meets a constraint, the path of an infrastructure
promotion, and whether a destroy may even be asked for."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shipline.domain.models import Infrastructure

ACTIONS = ("add", "change", "replace", "destroy")


@dataclass(frozen=True)
class PlanSummary:
    """What a plan would do, by resource address: what approvers approve."""

    add: tuple[str, ...] = ()
    change: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()
    destroy: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()  # outputs that change
    errored: bool = False

    @property
    def empty(self) -> bool:
        """No resource changes (outputs may still change)."""
        return not (self.add or self.change or self.replace or self.destroy)

    def counts(self) -> dict[str, int]:
        """How many resources per action."""
        return {name: len(getattr(self, name)) for name in ACTIONS}

    def line(self) -> str:
        """`Plan: 1 to add, 0 to change, 0 to destroy`, as Terraform says it (replacements
        counted as Terraform does: once to add and once to destroy)."""
        adds = len(self.add) + len(self.replace)
        destroys = len(self.destroy) + len(self.replace)
        return f"Plan: {adds} to add, {len(self.change)} to change, {destroys} to destroy"

    def to_json(self) -> dict[str, Any]:
        """The summary as a run keeps it (addresses only: no attribute values)."""
        return {
            **{name: list(getattr(self, name)) for name in ACTIONS},
            "outputs": list(self.outputs),
            "counts": self.counts(),
            "line": self.line(),
        }


def summarize_plan(doc: Mapping[str, Any]) -> PlanSummary:
    """The summary of a plan from its JSON representation. Values are never read: a plan's
    JSON holds variable values, secrets included."""
    found: dict[str, list[str]] = {name: [] for name in ACTIONS}
    for change in doc.get("resource_changes") or []:
        actions = list((change.get("change") or {}).get("actions") or [])
        address = str(change.get("address", "?"))
        if actions in (["create", "delete"], ["delete", "create"]):
            found["replace"].append(address)
        elif actions == ["create"]:
            found["add"].append(address)
        elif actions == ["update"]:
            found["change"].append(address)
        elif actions == ["delete"]:
            found["destroy"].append(address)
    outputs = sorted(
        name
        for name, change in (doc.get("output_changes") or {}).items()
        if (change.get("actions") or ["no-op"]) != ["no-op"]
    )
    return PlanSummary(
        **{name: tuple(sorted(found[name])) for name in ACTIONS},
        outputs=tuple(outputs),
        errored=bool(doc.get("errored")),
    )


VERSION = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-[\w.]+)?$")
CONSTRAINT = re.compile(r"^\s*(=|!=|>=|<=|>|<|~>)?\s*(v?\d+(?:\.\d+){0,2}(?:-[\w.]+)?)\s*$")


def _parts(text: str) -> tuple[int, int, int]:
    match = VERSION.match(text.strip())
    if not match:
        raise ValueError(f"'{text}' is not a version")
    return (int(match[1]), int(match[2] or 0), int(match[3] or 0))


def version_problem(constraint: str) -> str | None:
    """Why `constraint` is not a Terraform version constraint (None: it is)."""
    for part in constraint.split(","):
        if not CONSTRAINT.match(part):
            return f"'{part.strip()}' is not a version constraint (e.g. '>= 1.5.7', '~> 1.11')"
    return None


def version_allows(version: str, constraint: str) -> bool:
    """Whether `version` meets a Terraform version constraint (`>= 1.5.7, < 2.0.0`, `~> 1.5`,
    a bare version meaning exactly that one)."""
    have = _parts(version)
    for part in constraint.split(","):
        match = CONSTRAINT.match(part)
        if not match:
            raise ValueError(version_problem(constraint))
        operator, wanted_text = match[1] or "=", match[2]
        wanted = _parts(wanted_text)
        if operator == "~>":
            given = len(wanted_text.lstrip("v").split("-")[0].split("."))
            # ~> 1.5 allows 1.x from 1.5; ~> 1.5.7 allows 1.5.x from 1.5.7
            upper = (wanted[0] + 1, 0, 0) if given <= 2 else (wanted[0], wanted[1] + 1, 0)
            if not wanted <= have < upper:
                return False
            continue
        holds = {
            "=": have == wanted,
            "!=": have != wanted,
            ">": have > wanted,
            ">=": have >= wanted,
            "<": have < wanted,
            "<=": have <= wanted,
        }[operator]
        if not holds:
            return False
    return True


class InfraRefused(ValueError):
    """An infrastructure run that the rules refuse before anything is queued."""


def infra_path(infra: Infrastructure, start: str, stop: str) -> list[str]:
    """The environments from `start` to `stop` in promotion order."""
    order = infra.order()
    for name in (start, stop):
        if name not in order:
            raise InfraRefused(
                f"'{name}' is not an infrastructure environment (known: {', '.join(order)})"
            )
    first, last = order.index(start), order.index(stop)
    if first > last:
        raise InfraRefused(f"--start {start} comes after --stop {stop} in {' -> '.join(order)}")
    return order[first : last + 1]


def destroy_refusal(infra: Infrastructure, environment: str, confirm: str | None) -> str | None:
    """Why destroying `environment` may not even be asked for (None: it may, and its destroy
    approvers still decide)."""
    env = infra.environment(environment)
    if not confirm:
        return f"destroying {environment} needs --destroy-confirm {environment}"
    if confirm != environment:
        return f"--destroy-confirm {confirm} does not name the environment {environment}"
    if env.protected and not env.allow_destroy:
        return f"{environment} is protected: its infrastructure cannot be destroyed from here"
    return None


@dataclass(frozen=True)
class OutputValue:
    """One recorded output of an apply."""

    value: Any
    sensitive: bool = False


@dataclass(frozen=True)
class AppliedOutputs:
    """The outputs of the last apply of one (stack, environment), and which run made them."""

    run: int
    values: Mapping[str, OutputValue] = field(default_factory=dict)


def output_reference(reference: str, stacks: Sequence[str]) -> tuple[str, str]:
    """(stack, output) for `STACK.OUTPUT`, or `OUTPUT` when there is only one stack."""
    stack, dot, name = reference.rpartition(".")
    if dot:
        return stack, name
    if len(stacks) == 1:
        return stacks[0], name
    raise ValueError(f"output '{reference}': name its stack as STACK.{reference}")
