"""Cross-reference checks that the schema cannot express, each located in the files."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path, PurePosixPath
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shipline.config.source import PathKey, Source
from shipline.domain.identity import IdentityError, canonical_identity
from shipline.domain.models import (
    ApprovalMode,
    ApprovalPolicy,
    BuildRecipe,
    Config,
    PipelineKind,
)
from shipline.domain.scopes import Scope, layer_cache, layers
from shipline.domain.variables import (
    Layer,
    ResolvedVariable,
    VariableCycleError,
    expand,
    merge_layers,
)
from shipline.errors import ConfigError

BUILTIN_STORE_TYPES = {"file", "env", "azure-keyvault", "vault", "memory"}


class _Checker:
    def __init__(self, config: Config, source: Source) -> None:
        self.config = config
        self.source = source
        self.errors: list[ConfigError] = []

    def error(
        self, path: PathKey, message: str, hint: str | None = None, *, key: bool = False
    ) -> None:
        self.errors.append(
            ConfigError(message, location=self.source.locate(path, key=key), hint=hint)
        )

    def known(self, path: PathKey, kind: str, name: str, choices: Iterable[str]) -> bool:
        options = sorted(choices)
        if name in options:
            return True
        close = difflib.get_close_matches(name, options, n=1)
        if close:
            hint = f"did you mean '{close[0]}'?"
        elif options:
            hint = f"known {kind}s: {', '.join(options[:12])}" + (
                " ..." if len(options) > 12 else ""
            )
        else:
            hint = f"define it under '{kind_key(kind)}'"
        self.error(path, f"unknown {kind} '{name}'", hint)
        return False

    def groups(self, path: PathKey, names: list[str]) -> None:
        for i, name in enumerate(names):
            self.known((*path, i), "variable group", name, self.config.variable_groups)


def kind_key(kind: str) -> str:
    return {
        "stack": "stacks",
        "variable group": "variableGroups",
        "tier": "tiers",
        "target": "targets",
        "approver group": "approverGroups",
        "environment": "environments",
        "secret store": "secretStores",
        "infrastructure stack": "infrastructure.stacks",
        "infrastructure environment": "infrastructure.environments",
    }.get(kind, kind)


def check_references(config: Config, source: Source, root: Path | None = None) -> list[ConfigError]:
    """Every cross-reference problem in `config`, located through `source`; with the project
    folder `root`, also the files the configuration names (Kustomize overlays)."""
    c = _Checker(config, source)
    _check_services(c)
    _check_environments(c)
    if root is not None:
        _check_overlays(c, root)
        _check_start_folders(c, root)
    _check_ladder(c)
    _check_variables(c)
    from shipline.config.validate_infra import check_infrastructure

    check_infrastructure(c, root)
    from shipline.config.validate_access import check_access

    check_access(c)
    if not c.errors:  # layers need every group name to resolve
        _check_variable_cycles(c)
    for name, group in config.approver_groups.items():
        if not group.members:
            c.error(
                ("approverGroups", name),
                f"approver group '{name}' has no members",
                "add 'members: [user, ...]' or remove the group",
                key=True,
            )
        seen_members: dict[str, str] = {}
        for j, member in enumerate(group.members):
            try:
                person = canonical_identity(member)
            except IdentityError as exc:
                c.error(
                    ("approverGroups", name, "members", j),
                    f"member {member!r}: {exc}",
                    "user names are letters and digits with . _ - @ + ' (one script)",
                )
                continue
            if person in seen_members:
                c.error(
                    ("approverGroups", name, "members", j),
                    f"member {member!r} is {seen_members[person]!r} again",
                    "names compare without case and surrounding spaces; list each once",
                )
            seen_members[person] = member
    for i, trigger in enumerate(config.triggers):
        if not trigger.branch and not trigger.tag and not trigger.pull_request:
            c.error(
                ("triggers", i), "trigger matches nothing", "set 'branch', 'tag' or 'pullRequest'"
            )
        if trigger.deploy_to:
            envs = _env_names(config)
            c.known(("triggers", i, "deployTo"), "environment", trigger.deploy_to, envs)
    return c.errors


def _variable_path(config: Config, variable: ResolvedVariable) -> PathKey:
    """Where the winning definition of `variable` is written."""
    kind, _, name = variable.source.partition(" ")
    if kind == "environment":
        index = next(i for i, e in enumerate(config.environments) if e.name == name)
        return ("environments", index, "variables", variable.name)
    if kind == "service":
        index = next(i for i, s in enumerate(config.services) if s.name == name)
        return ("services", index, "variables", variable.name)
    return ("variableGroups", variable.source, "variables", variable.name)


def _check_variable_cycles(c: _Checker) -> None:
    """`$(a)` → `$(b)` → `$(a)` in a group or in any (environment, service) scope, reported
    once per loop. Only names that some definition writes with a reference can be in a loop, so
    each scope is merged over those names alone."""
    config = c.config
    cache = layer_cache(config)
    groups = list(cache.values())
    referring = {
        name.casefold()
        for layer in cache.values()
        for name, definition in layer.variables.items()
        if definition.value and "$(" in definition.value
    }
    for env in config.environments:
        referring |= {k.casefold() for k, v in env.variables.items() if v.value and "$(" in v.value}
    for service in config.services:
        referring |= {
            k.casefold() for k, v in service.variables.items() if v.value and "$(" in v.value
        }
    if not referring:
        return
    narrowed: dict[int, Layer] = {}

    def narrow(layer: Layer) -> Layer:
        if id(layer) not in narrowed:
            kept = {k: v for k, v in layer.variables.items() if k.casefold() in referring}
            narrowed[id(layer)] = Layer(layer.source, kept)
        return narrowed[id(layer)]

    seen: set[frozenset[str]] = set()
    scopes = (
        layers(config, Scope(env, service, PipelineKind.DEPLOY), {}, enforce_pipelines=False,
               cache=cache)
        for env in config.environments
        for service in [None, *config.services]
    )  # fmt: skip
    tried: set[tuple[int, ...]] = set()
    for stack in [*([layer] for layer in groups), *scopes]:
        relevant = [narrow(layer) for layer in stack]
        relevant = [layer for layer in relevant if layer.variables]
        key = tuple(id(layer) for layer in relevant)
        if key in tried:
            continue  # the same definitions in the same order: the same answer
        tried.add(key)
        merged = merge_layers(relevant)
        try:
            expand(merged)
        except VariableCycleError as exc:
            loop = frozenset(n.casefold() for n in exc.cycle)
            if loop not in seen:
                seen.add(loop)
                first = merged[exc.cycle[0].casefold()]
                c.error(
                    _variable_path(config, first),
                    str(exc),
                    "break the loop: one of them must not refer back",
                )


KUSTOMIZATIONS = ("kustomization.yaml", "kustomization.yml", "Kustomization")


def _check_overlays(c: _Checker, root: Path) -> None:
    """A target's `manifests` names, for every environment deployed through it, a folder with a
    kustomization."""
    for env in c.config.environments:
        target = c.config.targets.get(env.target)
        if target is None or not target.manifests:
            continue
        path = ("targets", env.target, "manifests")
        try:
            named = target.manifests.format(environment=env.name)
        except (KeyError, IndexError, ValueError) as exc:
            c.error(path, f"manifests: unknown placeholder {exc}", "only {environment} is known")
            return
        if not any((root / named / name).is_file() for name in KUSTOMIZATIONS):
            c.error(
                path,
                f"environment '{env.name}' has no overlay: {named}/ has no kustomization.yaml",
                "create the overlay, or point 'manifests' at the folder that holds it"
                " (relative to the project; {environment} is the environment's name)",
            )


def _check_start_folders(c: _Checker, root: Path) -> None:
    """A service's own start command runs in a folder of the project."""
    for index, service in enumerate(c.config.services):
        if service.start is None:
            continue
        folder = service.start.workdir or service.context or f"services/{service.name}"
        if not (root / folder).is_dir():
            c.error(
                ("services", index, "start", "workdir" if service.start.workdir else "command"),
                f"service '{service.name}' starts in {folder}/, which is not a folder",
                "set start.workdir to the service's folder, relative to shipline.yaml",
            )


def _env_names(config: Config) -> set[str]:
    names = {env.name for env in config.environments}
    for env in config.environments:
        names.update(env.aliases)
    return names


def _check_cache(c: _Checker, stack: str, recipe: BuildRecipe | None) -> None:
    if recipe is None or not recipe.cache_paths:
        return
    if not recipe.cache_key:
        c.error(
            ("stacks", stack, "build", "cachePaths"),
            f"stack '{stack}' caches paths but has no cacheKey",
            "add 'cacheKey:' (e.g. npm-$(nodeVersion)-{hash:package-lock.json})",
        )
    for i, path in enumerate(recipe.cache_paths):
        parts = PurePosixPath(path).parts
        if not path or path.startswith("/") or ".." in parts:
            c.error(
                ("stacks", stack, "build", "cachePaths", i),
                f"cache path '{path}' must stay inside the service folder",
                "use a relative path without '..', e.g. node_modules or .m2/repository",
            )


def _check_services(c: _Checker) -> None:
    config = c.config
    for name, stack in config.stacks.items():
        c.groups(("stacks", name, "variableGroups"), stack.variable_groups)
        _check_cache(c, name, stack.build)
    seen: dict[str, int] = {}
    for i, service in enumerate(config.services):
        if service.name in seen:
            first = c.source.locate(("services", seen[service.name], "name"))
            c.error(
                ("services", i, "name"),
                f"duplicate service '{service.name}' (first defined at {first})",
                "service names must be unique; rename or remove one",
            )
        else:
            seen[service.name] = i
        c.known(("services", i, "stack"), "stack", service.stack, config.stacks)
        c.groups(("services", i, "variableGroups"), service.variable_groups)
        for var, spec in service.variables.items():
            if spec.secret:
                c.error(
                    ("services", i, "variables", var),
                    f"secret variable '{var}' must live in a variable group",
                    "move it to a group with a secret store",
                )


def _check_policy(c: _Checker, path: PathKey, policy: ApprovalPolicy) -> None:
    for j, group in enumerate(policy.groups):
        c.known((*path, "groups", j), "approver group", group, c.config.approver_groups)
    if len(set(policy.groups)) != len(policy.groups):
        c.error((*path, "groups"), "an approver group is listed twice", "list each group once")
    if policy.mode == ApprovalMode.MINIMUM:
        if policy.minimum is None:
            c.error((*path, "mode"), "mode 'minimum' needs 'minimum: N'", "add 'minimum: 2'")
        elif policy.minimum > len(policy.groups):
            c.error(
                (*path, "minimum"),
                f"minimum {policy.minimum} is more than the {len(policy.groups)} groups listed",
                "lower 'minimum' or list more groups",
            )
    elif policy.minimum is not None:
        c.error((*path, "minimum"), "'minimum' only applies to mode 'minimum'", "remove it")


def _check_environments(c: _Checker) -> None:
    config = c.config
    owners: dict[str, tuple[str, PathKey]] = {}
    for i, env in enumerate(config.environments):
        base: PathKey = ("environments", i)
        if env.name in owners:
            c.error(
                (*base, "name"),
                f"duplicate environment '{env.name}'",
                "environment names must be unique",
            )
        else:
            owners[env.name] = (env.name, (*base, "name"))
        c.known((*base, "tier"), "tier", env.tier, config.tiers)
        c.known((*base, "target"), "target", env.target, config.targets)
        c.groups((*base, "variableGroups"), env.variable_groups)
        if env.approvals:
            _check_policy(c, (*base, "approvals"), env.approvals)
        metrics = getattr(env.strategy, "metrics", None)
        if metrics is not None and metrics.source == "prometheus" and not metrics.url:
            c.error(
                (*base, "strategy", "metrics", "source"),
                "canary metrics from Prometheus need its URL",
                "add 'url: http://HOST:9090' beside 'source: prometheus'",
            )
        hours = env.checks.business_hours
        if hours:
            try:
                ZoneInfo(hours.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                c.error(
                    (*base, "checks", "businessHours", "timezone"),
                    f"unknown timezone '{hours.timezone}'",
                    "use an IANA name such as 'America/New_York' or 'UTC'",
                )
            if hours.emergency:
                _check_policy(c, (*base, "checks", "businessHours", "emergency"), hours.emergency)
    for i, env in enumerate(config.environments):
        for j, alias in enumerate(env.aliases):
            path: PathKey = ("environments", i, "aliases", j)
            if alias in owners and owners[alias][0] != env.name:
                other = owners[alias][0]
                what = "the name" if alias == other else "an alias"
                c.error(
                    path,
                    f"alias '{alias}' clashes with {what} of environment '{other}'",
                    "aliases must be unique across all environment names and aliases",
                )
            else:
                owners[alias] = (env.name, path)


def _check_ladder(c: _Checker) -> None:
    config = c.config
    names = {env.name for env in config.environments}
    aliases = {alias: env.name for env in config.environments for alias in env.aliases}
    seen: set[str] = set()
    for i, name in enumerate(config.ladder):
        if name not in names and name in aliases:
            c.error(
                ("ladder", i),
                f"'{name}' is an alias; the ladder lists environment names",
                f"write '{aliases[name]}'",
            )
            seen.add(aliases[name])
            continue
        if not c.known(("ladder", i), "environment", name, names):
            continue
        if name in seen:
            c.error(("ladder", i), f"'{name}' appears twice on the ladder", "list it once")
        seen.add(name)
    if config.environments and not config.ladder:
        c.error(("environments",), "no ladder", "add 'ladder: [dev, qa, ...]' in promotion order")
        return
    for i, env in enumerate(config.environments):
        if env.name not in seen and config.ladder:
            c.error(
                ("environments", i, "name"),
                f"environment '{env.name}' is not on the ladder",
                "add it to 'ladder' where it belongs in promotion order",
            )


def _store_types() -> set[str]:
    types = set(BUILTIN_STORE_TYPES)
    types.update(ep.name for ep in entry_points(group="shipline.secret_stores"))
    return types


def _check_variables(c: _Checker) -> None:
    config = c.config
    c.groups(("globalVariableGroups",), config.global_variable_groups)
    for name, tier in config.tiers.items():
        c.groups(("tiers", name, "variableGroups"), tier.variable_groups)
    stores = config.secret_stores
    if stores:
        types = _store_types()
        for store_name, store_spec in stores.items():
            c.known(
                ("secretStores", store_name, "type"), "secret store type", store_spec.type, types
            )
    if config.default_secret_store:
        c.known(("defaultSecretStore",), "secret store", config.default_secret_store, stores)
    kinds = {kind.value for kind in PipelineKind}
    for name, group in config.variable_groups.items():
        base: PathKey = ("variableGroups", name)
        if group.secret_store:
            c.known((*base, "secretStore"), "secret store", group.secret_store, stores)
        for j, pipeline in enumerate(group.pipelines or []):
            c.known((*base, "pipelines", j), "pipeline", pipeline, kinds)
        has_secret = False
        for var, spec in group.variables.items():
            if spec.secret and spec.value:
                c.error(
                    (*base, "variables", var, "value"),
                    f"secret variable '{var}' has its value written in the configuration",
                    "remove the value and store it: "
                    f"shipline secrets set {group.secret_ref(var, spec)}",
                )
            if not spec.secret and spec.ref:
                c.error(
                    (*base, "variables", var, "ref"),
                    f"'{var}' has a store reference but is not secret",
                    "add 'secret: true' or remove 'ref'",
                )
            has_secret = has_secret or spec.secret
        if has_secret and not (group.secret_store or config.default_secret_store):
            c.error(
                base,
                f"variable group '{name}' has secrets but no secret store",
                "set 'secretStore: NAME' on the group or 'defaultSecretStore' at the top",
                key=True,
            )


def _check_var_files(c: _Checker, root: Path) -> None:
    """A Terraform stack's `varFiles`, when written out (the default pattern is optional), exist
    for every infrastructure environment: one that is missing is left out of its runs."""
    infra = c.config.infrastructure
    for name, stack in infra.stacks.items():
        if "var_files" not in stack.model_fields_set:
            continue
        for index, pattern in enumerate(stack.var_files):
            for env in infra.environments:
                named = pattern.replace("{environment}", env.name).replace("{stack}", name)
                if not (root / stack.root / named).is_file():
                    c.error(
                        ("infrastructure", "stacks", name, "varFiles", index),
                        f"var file {stack.root}/{named} does not exist: infrastructure runs"
                        f" of '{env.name}' go without it",
                        "create it, or take it out of varFiles",
                    )


# Target settings only the kubernetes kind reads, and the built-in kinds that read none of them.
KUBERNETES_SETTINGS = ("cluster", "context", "kubeconfig", "manifests")
BUILT_IN_WITHOUT_CLUSTER = ("local", "memory", "fake")


def check_unsupported(
    config: Config, source: Source, root: Path | None = None
) -> list[ConfigError]:
    """Warnings, located: configuration that is valid but that nothing here acts on, so that
    nothing is silently ignored (with the project folder `root`: var files named but absent)."""
    c = _Checker(config, source)
    if root is not None:
        _check_var_files(c, root)
    installed = {ep.name for ep in entry_points(group="shipline.targets")}
    for name, target in config.targets.items():
        if target.type not in installed:
            c.error(
                ("targets", name, "type"),
                f"target type '{target.type}' is not installed here: runs to its environments"
                " are refused",
                f"installed: {', '.join(sorted(installed))}",
            )
    for name, target in config.targets.items():
        if target.type in BUILT_IN_WITHOUT_CLUSTER:
            for key in KUBERNETES_SETTINGS:
                if getattr(target, key) is not None:
                    c.error(
                        ("targets", name, key),
                        f"'{key}' is not used by a {target.type} target",
                        "remove it: kubernetes targets read it",
                    )
        elif target.type == "kubernetes" and target.cluster:
            for i, env in enumerate(config.environments):
                if env.target == name and env.cluster != target.cluster:
                    c.error(
                        ("environments", i, "cluster"),
                        f"environment '{env.name}' says cluster '{env.cluster}'; its target"
                        f" '{name}' deploys to cluster '{target.cluster}'",
                        "make them the same (the target's cluster is the one its kubeconfig"
                        " context must point at)",
                    )
    for i, service in enumerate(config.services):
        if not service.paths and not config.stacks[service.stack].paths:
            c.error(
                ("services", i, "name"),
                f"service '{service.name}' has no paths: no change ever marks it for a build",
                f"add 'paths: [services/{service.name}/**]' (gitignore-style patterns)",
            )
    return c.errors
