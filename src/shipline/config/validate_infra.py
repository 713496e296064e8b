"""Cross-reference checks of the `infrastructure` section and of variables that take an
infrastructure output, each located in the files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from shipline.config.source import PathKey
from shipline.domain.infra import output_reference, version_problem

if TYPE_CHECKING:
    from shipline.config.validate import _Checker


def check_infrastructure(c: _Checker, root: Path | None) -> None:
    """Stacks, environments, approvals, the promotion order and output references."""
    from shipline.config.validate import _check_policy

    infra = c.config.infrastructure
    base: PathKey = ("infrastructure",)
    if infra.terraform_version:
        problem = version_problem(infra.terraform_version)
        if problem:
            c.error((*base, "terraformVersion"), problem, "e.g. terraformVersion: '>= 1.5.7'")
    for name, stack in infra.stacks.items():
        where: PathKey = (*base, "stacks", name)
        c.groups((*where, "variableGroups"), stack.variable_groups)
        if root is not None and not (root / stack.root).is_dir():
            c.error(
                (*where, "root"),
                f"Terraform root '{stack.root}' is not a folder in the project",
                "give the folder of the root module, relative to shipline.yaml",
            )
    seen: set[str] = set()
    for i, env in enumerate(infra.environments):
        where = (*base, "environments", i)
        if env.name in seen:
            c.error((*where, "name"), f"infrastructure environment '{env.name}' is listed twice")
        seen.add(env.name)
        c.groups((*where, "variableGroups"), env.variable_groups)
        for key, policy in (
            ("approvals", env.approvals),
            ("destroyApprovals", env.destroy_approvals),
        ):
            if policy is not None:
                _check_policy(c, (*where, key), policy)
        if env.allow_destroy and not env.protected:
            c.error(
                (*where, "allowDestroy"),
                "'allowDestroy' only applies to a protected environment",
                "remove it, or add 'protected: true'",
            )
    for i, name in enumerate(infra.ladder):
        c.known((*base, "ladder", i), "infrastructure environment", name, seen)
    if infra.environments and not infra.stacks:
        c.error(base, "infrastructure environments but no stacks", "add 'stacks:'", key=True)
    _check_outputs(c, seen)


def _check_outputs(c: _Checker, environments: set[str]) -> None:
    stacks = list(c.config.infrastructure.stacks)
    for name, group in c.config.variable_groups.items():
        for var, spec in group.variables.items():
            where: PathKey = ("variableGroups", name, "variables", var)
            if spec.output is None:
                if spec.output_environment is not None:
                    c.error((*where, "outputEnvironment"), "'outputEnvironment' without 'output'")
                continue
            if spec.secret:
                c.error(
                    (*where, "output"),
                    f"'{var}' is secret and takes an infrastructure output",
                    "outputs shipline keeps are not secret; keep secrets in a store",
                )
                continue
            try:
                stack, _ = output_reference(spec.output, stacks)
            except ValueError as exc:
                c.error((*where, "output"), str(exc))
                continue
            c.known((*where, "output"), "infrastructure stack", stack, stacks)
            if spec.output_environment is not None:
                c.known(
                    (*where, "outputEnvironment"),
                    "infrastructure environment",
                    spec.output_environment,
                    environments,
                )
