"""The domain's types: what a shipline configuration describes.

These pydantic models are both the validated configuration and the domain objects that the
engine works with. Cross-references (a service's stack, a ladder's environments, ...) are checked
by `shipline.config.validate`, which knows where each value came from in the files.
"""

from __future__ import annotations

import itertools
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from shipline.domain.windows import Window, WindowSyntaxError, parse_window

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
PATHS_DOC = (
    "Gitignore-style patterns, relative to the repository root: `*` and `?` within a folder,"
    " `**` across folders, `[ab]` a character class, a leading `!` excludes (the last matching"
    " pattern wins), a trailing `/` matches folders; a pattern with no slash other than a"
    " trailing one matches at any depth, one with a slash (or a leading `/`) is anchored to the"
    " root; `./` at the start is the root."
)
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]


class Model(BaseModel):
    """Base of every config model: camelCase keys in YAML, unknown keys refused, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
    )


class VariableSpec(Model):
    """One variable: a plain value, or a secret that lives in a store under `ref`."""

    value: str | None = None
    secret: bool = False
    ref: str | None = None
    optional: bool = False
    # An infrastructure output, `STACK.OUTPUT` (or `OUTPUT` when there is one stack), from the
    # last apply in the infrastructure environment of this name (default: the deploy's own).
    output: str | None = Field(default=None, pattern=r"^([a-z0-9][a-z0-9-]*\.)?[A-Za-z_][\w-]*$")
    output_environment: str | None = None


def _coerce_variable(raw: object) -> object:
    """YAML scalars become plain values, written as Azure DevOps would show them."""
    if isinstance(raw, bool):
        return {"value": "true" if raw else "false"}
    if isinstance(raw, int | float | str):
        return {"value": str(raw)}
    if raw is None:
        return {"value": ""}
    return raw


Variables = dict[str, Annotated[VariableSpec, BeforeValidator(_coerce_variable)]]


class BuildRecipe(Model):
    """How a stack builds a service: shell commands run in the service's folder."""

    setup: list[str] = []
    cache_key: str | None = None
    cache_paths: list[str] = []  # folders saved under cache_key, relative to the service folder
    test: list[str] = []
    build: list[str] = []


class Stack(Model):
    """A tech stack: defaults for its services and its stack variable groups."""

    display_name: str | None = None
    build: BuildRecipe | None = None
    port: int = Field(strict=True, ge=1, le=65535)
    health_path: str = Field(pattern=r"^/")
    dockerfile: str | None = None
    paths: list[str] = Field(
        default=[], description="Changes here mark every service of the stack. " + PATHS_DOC
    )
    variable_groups: list[str] = []


class StartCommand(Model):
    """How a target that runs processes on this machine (`local`) starts the service itself,
    instead of the demo workload that stands in for it. Targets that run images (Kubernetes)
    run the image's own entrypoint and do not use it."""

    command: list[str] = Field(
        min_length=1,
        description="The program and its arguments (no shell). `{port}` is replaced by the "
        "port the replica must listen on, also given as the PORT environment variable.",
    )
    workdir: str | None = Field(
        default=None,
        description="Folder to run it in, relative to shipline.yaml (default: the service's "
        "`context`, else services/<name>).",
    )


class Service(Model):
    """A deployable unit. Port and health path default to its stack's."""

    name: Name
    stack: str
    port: int | None = Field(strict=True, default=None, ge=1, le=65535)
    health_path: str | None = Field(default=None, pattern=r"^/")
    paths: list[str] = Field(default=[], description="The service's own files. " + PATHS_DOC)
    shared_paths: list[str] = Field(
        default=[], description="Shared files (e.g. protos/) that mark it too. " + PATHS_DOC
    )
    image: str | None = None
    context: str | None = None  # build folder, relative to the repository (default services/<name>)
    dockerfile: str | None = None  # relative to the repository (default: the stack's)
    variable_groups: list[str] = []
    variables: Variables = {}
    start: StartCommand | None = None


# A Kubernetes resource quantity as requests take it: 250m, 0.5, 2, 128Mi, 1Gi, 500M
CPU_QUANTITY = r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$"
MEMORY_QUANTITY = r"^[0-9]+(\.[0-9]+)?([KMGTPE]i|[kMGTPE])?$"


class Resources(Model):
    """Resource defaults of a tier (the spec's quikapp-kubernetes-* groups). On a Kubernetes
    target, a container that requests no CPU or memory of its own gets these requests, and an
    autoscaler without metrics scales on this CPU utilization; an overlay's own values win."""

    cpu_request: str = Field(default="100m", pattern=CPU_QUANTITY)
    memory_request: str = Field(default="256Mi", pattern=MEMORY_QUANTITY)
    min_replicas: int = Field(strict=True, default=1, ge=0, le=1000)
    max_replicas: int = Field(strict=True, default=3, ge=1, le=1000)
    cpu_target_utilization: int = Field(strict=True, default=80, ge=1, le=100)
    pod_disruption_budget: bool = False

    @field_validator("cpu_request", "memory_request", mode="before")
    @classmethod
    def _quantity_as_text(cls, value: Any) -> Any:
        """`cpuRequest: 2` or `0.5`, unquoted as Kubernetes manifests write them."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value

    @model_validator(mode="after")
    def _bounds(self) -> Resources:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) is above maxReplicas ({self.max_replicas})"
            )
        return self


class Tier(Model):
    """A class of environments (nonprod, preprod, prod) sharing defaults and variable groups."""

    resources: Resources = Resources()
    variable_groups: list[str] = []


class Target(Model):
    """Where an environment deploys to."""

    type: Name  # a registered target kind (`shipline.targets` entry points): local, memory, ...
    # kubernetes: the kubeconfig cluster its context must point at (checked before any change)
    cluster: str | None = None
    context: str | None = None  # the kubeconfig context (default: its current context)
    kubeconfig: str | None = None  # a path, relative to the project (default: KUBECONFIG)
    manifests: str | None = None  # the Kustomize overlay, e.g. k8s/overlays/{environment}

    def settings(self) -> dict[str, str | None]:
        """What the target's adapter is built with (paths as written)."""
        return {
            "cluster": self.cluster,
            "context": self.context,
            "kubeconfig": self.kubeconfig,
            "manifests": self.manifests,
        }


class ApproverGroup(Model):
    """A named set of people who may approve."""

    display_name: str | None = None
    members: list[str] = []


class ApprovalMode(StrEnum):
    """How several approver groups combine."""

    ANY = "any"
    ALL = "all"
    ORDERED = "ordered"
    MINIMUM = "minimum"


class ApprovalPolicy(Model):
    """The approvals a stage needs before it runs."""

    groups: list[str] = Field(min_length=1)
    mode: ApprovalMode = ApprovalMode.ANY
    minimum: int | None = Field(strict=True, default=None, ge=1, le=1000)
    timeout_minutes: int = Field(strict=True, default=1440, ge=1, le=525_600)  # a year
    instructions: str | None = None
    allow_requester: bool = False


def _window(raw: object) -> object:
    if isinstance(raw, str):
        try:
            return parse_window(raw)
        except WindowSyntaxError as exc:
            raise ValueError(str(exc)) from None
    return raw


WindowText = Annotated[
    Window,
    BeforeValidator(_window),
    PlainSerializer(str, return_type=str),
    WithJsonSchema({"type": "string", "examples": ["Mon-Thu 09:00-16:00"]}),
]


class BusinessHours(Model):
    """Deployment windows; outside them a stage waits (or fails), except in an emergency."""

    timezone: str = "UTC"
    windows: list[WindowText] = Field(min_length=1)
    outside: Literal["wait", "fail"] = "wait"
    emergency: ApprovalPolicy | None = None


class LockPolicy(StrEnum):
    """What happens to runs queued on one (environment, service)."""

    SEQUENTIAL = "sequential"
    LATEST_ONLY = "latest-only"


class Checks(Model):
    """Automatic gates of an environment."""

    business_hours: BusinessHours | None = None
    lock: LockPolicy = LockPolicy.SEQUENTIAL
    health: bool = True  # false: no post-deploy verification stage
    # How long a rollout may go without progress before it fails (Kubernetes'
    # progressDeadlineSeconds; default: the manifest's, else the target's own).
    progress_deadline_seconds: int | None = Field(strict=True, default=None, ge=1, le=86_400)


class RollingStrategy(Model):
    """Replace replicas a few at a time, never below the minimum available."""

    type: Literal["rolling"] = "rolling"
    max_surge: int = Field(strict=True, default=1, ge=0, le=1000)
    max_unavailable: int = Field(strict=True, default=0, ge=0, le=1000)
    max_parallel: int = Field(strict=True, default=1, ge=1, le=64)  # services rolling at once

    @model_validator(mode="after")
    def _progresses(self) -> RollingStrategy:
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise ValueError("maxSurge and maxUnavailable cannot both be 0: nothing could move")
        return self


class AnalysisThresholds(Model):
    """When a canary interval counts as failed, and what too little traffic means."""

    max_error_rate: float = Field(strict=True, default=0.05, ge=0, le=1)
    max_p95_latency_ms: float | None = Field(strict=True, default=None, gt=0, le=3_600_000)
    failure_limit: int = Field(strict=True, default=2, ge=1, le=1000)
    interval_seconds: float = Field(strict=True, default=60, gt=0, le=3600)
    min_requests: int = Field(
        strict=True, default=10, ge=1, le=10**9
    )  # fewer canary requests: inconclusive
    latency_tolerance: float = Field(
        strict=True, default=1.5, ge=1, le=1000
    )  # canary p95 up to this x stable's: shared
    inconclusive_limit: int = Field(
        strict=True, default=3, ge=0, le=1000
    )  # extra intervals a step may bake when unsure
    on_inconclusive: Literal["rollback", "pause", "promote"] = "rollback"


class CanaryMetrics(Model):
    """Where canary analysis reads each version's requests, errors and latency."""

    source: Literal["gateway", "prometheus"] = "gateway"
    url: str | None = None  # Prometheus's base URL, for source: prometheus
    # The metrics' prefix: `<series>_responses_total{class}` and the
    # `<series>_request_duration_seconds` histogram, by environment, service and version.
    # shipline_gateway: the local target's gateways; shipline_demo: the demo workload's own.
    series: str = Field(default="shipline_gateway", pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    probe_rps: float = Field(
        strict=True, default=50, ge=0, le=10_000
    )  # the analysis's own requests per second (0: none)


class PauseSpec(Model):
    """Wait `duration` seconds, or (no duration) until a person promotes or aborts."""

    duration: float | None = Field(strict=True, default=None, ge=0, le=2_592_000)


class SetWeightStep(Model):
    """Send `setWeight` % of the traffic to the canary."""

    set_weight: int = Field(strict=True, ge=0, le=100)


class PauseStep(Model):
    """`pause: {duration: 60}` bakes; `pause: {}` waits for `shipline canary promote`."""

    pause: PauseSpec


class AnalysisRun(Model):
    """Analyse `intervals` intervals at the current weight (the bake, judged)."""

    intervals: int = Field(strict=True, default=1, ge=1, le=10_000)


class AnalysisStep(Model):
    """An analysis at the current weight."""

    analysis: AnalysisRun


def _canary_step_kind(raw: object) -> str | None:
    """Which kind of canary step `raw` is, so that an error names that kind only."""
    if isinstance(raw, int | float | str) and not isinstance(raw, bool):
        return "weight"
    if isinstance(raw, dict):
        for key, tag in (("setWeight", "setWeight"), ("pause", "pause"), ("analysis", "analysis")):
            if key in raw:
                return tag
    if isinstance(raw, SetWeightStep):
        return "setWeight"
    if isinstance(raw, PauseStep):
        return "pause"
    if isinstance(raw, AnalysisStep):
        return "analysis"
    return None


CanaryStepSpec = Annotated[
    Annotated[Annotated[int, Field(strict=True, ge=1, le=100)], Tag("weight")]
    | Annotated[SetWeightStep, Tag("setWeight")]
    | Annotated[PauseStep, Tag("pause")]
    | Annotated[AnalysisStep, Tag("analysis")],
    Discriminator(
        _canary_step_kind,
        custom_error_type="canary_step",
        custom_error_message="a canary step is a weight (10), {setWeight: N}, {pause: {...}}"
        " or {analysis: {intervals: N}}",
    ),
]


ObjectName = Annotated[
    str, Field(pattern=r"^[a-z0-9{}]([-a-z0-9.{}]*[a-z0-9{}])?$", max_length=253)
]  # a Kubernetes object's name; `{service}` stands for the service's


class NginxRouting(Model):
    """Split traffic with NGINX Ingress canary annotations on a copy of the stable Ingress."""

    stable_ingress: ObjectName = "{service}"  # the Ingress that routes to the stable Service


class GatewayApiRouting(Model):
    """Split traffic with the weights of a Gateway API HTTPRoute's backends."""

    http_route: ObjectName = "{service}"  # the HTTPRoute whose rules name the stable Service


class TrafficRouting(Model):
    """Where a canary's share of the traffic is set (Argo Rollouts' `trafficRouting`). Without
    one the target's default applies (Kubernetes: the replica ratio behind one Service)."""

    nginx: NginxRouting | None = None
    gateway_api: GatewayApiRouting | None = None

    @model_validator(mode="after")
    def _one(self) -> TrafficRouting:
        if (self.nginx is None) == (self.gateway_api is None):
            raise ValueError("trafficRouting names exactly one of nginx or gatewayApi")
        return self

    def router(self, service: str) -> tuple[str, str]:
        """(kind, object name) for `service`: ("nginx", INGRESS) or ("gateway-api", ROUTE)."""
        if self.nginx is not None:
            return "nginx", self.nginx.stable_ingress.format(service=service)
        assert self.gateway_api is not None
        return "gateway-api", self.gateway_api.http_route.format(service=service)


class CanaryStrategy(Model):
    """Shift traffic by weight steps, bake and analyse at each step, then promote.

    `steps` are weights (`[10, 50, 100]`: each weight is baked `bakeSeconds` and analysed), or
    Argo Rollouts-style steps (`{setWeight: 20}`, `{pause: {duration: 60}}`, `{pause: {}}`,
    `{analysis: {intervals: 3}}`).
    """

    type: Literal["canary"] = "canary"
    steps: list[CanaryStepSpec] = [10, 50, 100]
    # services whose canaries run at once, each on its own (one failing stops no other)
    max_parallel: int = Field(strict=True, default=1, ge=1, le=64)
    traffic_routing: TrafficRouting | None = None
    bake_seconds: float = Field(strict=True, default=300, ge=0, le=604_800)
    analysis: AnalysisThresholds = AnalysisThresholds()
    metrics: CanaryMetrics = CanaryMetrics()

    @field_validator("steps", mode="after")
    @classmethod
    def _steps_lead_to_promotion(cls, steps: list[Any]) -> list[Any]:
        weights = [
            s if isinstance(s, int) else s.set_weight
            for s in steps
            if isinstance(s, int | SetWeightStep)
        ]
        if not weights:
            raise ValueError("a canary needs steps with weights, ending at 100")
        for before, after in itertools.pairwise(weights):
            if after <= before:
                raise ValueError(f"canary weights must increase (got {before} then {after})")
        if weights[-1] != 100:
            raise ValueError(f"the last canary weight is {weights[-1]}; end the steps at 100")
        if not any(0 < w < 100 for w in weights):
            raise ValueError("a canary needs a weight between 1 and 99 before 100")
        last = steps[-1]
        if (last if isinstance(last, int) else getattr(last, "set_weight", None)) != 100:
            raise ValueError("nothing runs after weight 100 (promotion); end the steps with it")
        plain = any(isinstance(s, int) for s in steps)
        gated = any(isinstance(s, AnalysisStep | PauseStep) for s in steps)
        if not plain and not gated:
            raise ValueError("no {analysis: ...} or {pause: ...} step checks the canary")
        return steps


Strategy = Annotated[RollingStrategy | CanaryStrategy, Field(discriminator="type")]


class TestGate(Model):
    """A test stage after an environment's deploy and verification: a command (run in the
    project's folder, with the environment's addresses and versions in its environment) whose
    exit code decides, and whose JUnit XML, when it writes one, is read and kept."""

    name: Name
    type: Literal["integration", "qa", "security", "performance", "load", "smoke"]
    command: list[str] = Field(min_length=1)
    junit: str | None = None  # the JUnit XML it writes, in its $SHIPLINE_ARTIFACTS folder
    timeout_minutes: int = Field(strict=True, default=30, ge=1, le=1440)
    # A tool that may be absent (OWASP ZAP): the gate says it did not run, and the rest runs.
    skip_if_missing: bool = False


class Environment(Model):
    """A rung of the ladder."""

    name: Name
    display_name: str | None = None
    purpose: str | None = None
    aliases: list[Name] = []
    cluster: str
    namespace: str
    tier: str
    target: str
    strategy: Strategy = RollingStrategy()
    approvals: ApprovalPolicy | None = None
    checks: Checks = Checks()
    variable_groups: list[str] = []
    variables: Variables = {}
    tests: list[TestGate] = []  # test gates, in order, after verification
    skippable: bool = False  # a promotion may pass over this rung
    protected: bool = False  # deploys name their services (no default of "all")


class VariableGroup(Model):
    """Named variables, some secret, shared by the pipelines it allows."""

    description: str | None = None
    source: str | None = None
    secret_store: str | None = None
    secret_prefix: str | None = None
    pipelines: list[str] | None = None
    variables: Variables = {}

    def secret_ref(self, name: str, spec: VariableSpec) -> str:
        """The key of a secret variable in its store: `ref`, or the spec's ENV-SECRET-NAME form."""
        if spec.ref:
            return spec.ref
        kebab = "".join(f"-{c}" if c.isupper() else c for c in name).upper()
        return f"{self.secret_prefix}-{kebab}" if self.secret_prefix else kebab


class SecretStoreSpec(Model):
    """A configured secret store; settings beyond `type` go to its adapter."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str


class Notification(Model):
    """Where run events are announced."""

    name: Name
    type: Literal["slack", "webhook"]
    url_secret: str
    signing_secret: str | None = None
    events: list[Literal["started", "waiting", "succeeded", "failed", "errored", "cancelled"]] = [
        "started",
        "waiting",
        "succeeded",
        "failed",
        "errored",
        "cancelled",
    ]


class Trigger(Model):
    """A rule that starts a pipeline when a branch or tag moves."""

    branch: str | None = None
    tag: str | None = None
    pull_request: bool = False
    deploy_to: str | None = None
    push: bool = True


class PipelineKind(StrEnum):
    """Kinds of runs; variable groups name the ones they allow."""

    CI = "ci"
    DEPLOY = "deploy"
    PREVIEW = "preview"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    RESTART = "restart"
    SCALE = "scale"
    TERRAFORM = "terraform"


class CiSettings(Model):
    """CI settings: what rebuilds everything, how many builds at once, where images go."""

    build_all_paths: list[str] = Field(
        default=[], description="Changes here mark every service. " + PATHS_DOC
    )
    concurrency: int = Field(strict=True, default=4, ge=1, le=64)
    builder: Literal["buildah", "podman", "docker", "memory"] = "buildah"
    registry: str | None = None
    insecure_registry: bool = False
    platforms: list[str] = []
    severity: list[str] = ["HIGH", "CRITICAL"]
    fail_on_severities: list[str] = []
    fail_on_secrets: bool = False  # gitleaks findings in the repository fail the build


class InfraBackend(Model):
    """Where Terraform keeps an environment's state: the backend the root module declares, with
    its `-backend-config` settings (`{environment}` and `{stack}` filled in; `$(var)` allowed)
    and environment variables for what must not be saved (PG_CONN_STR, ARM_ACCESS_KEY)."""

    type: Name = "local"
    config: dict[str, str] = {}
    env: dict[str, str] = {}


class InfraStack(Model):
    """A Terraform root module and how each environment runs it."""

    root: str  # the folder, relative to the project
    var_files: list[str] = ["environments/{environment}.tfvars"]  # relative to root; optional
    backend: InfraBackend = InfraBackend()
    variable_groups: list[str] = []  # their variables reach Terraform as TF_VAR_<name>


class InfraEnvironment(Model):
    """An environment infrastructure is applied to, with its own approvers (the spec's
    terraform-staging-approval, terraform-prod-approval and terraform-prod-destroy)."""

    name: Name
    approvals: ApprovalPolicy | None = None  # who approves a plan before it is applied
    auto_approve: bool = False  # `--auto-approve` allowed here (the spec: dev and qa)
    destroy_approvals: ApprovalPolicy | None = None  # default: `approvals`
    protected: bool = False  # destroy refused unless `allowDestroy`
    allow_destroy: bool = False
    variable_groups: list[str] = []
    backend: InfraBackend | None = None  # replaces the stack's for this environment


class Infrastructure(Model):
    """Terraform stacks, the environments they are applied to, and their promotion order."""

    tool: Name = "terraform"  # a registered infrastructure tool (`shipline.infra_tools`)
    terraform_version: str | None = None  # a Terraform version constraint, e.g. ">= 1.5.7"
    stacks: dict[str, InfraStack] = {}
    environments: list[InfraEnvironment] = []
    ladder: list[str] = []  # default: the environments in the order given
    lock_timeout_seconds: int = Field(strict=True, default=300, ge=0, le=86_400)

    def environment(self, name: str) -> InfraEnvironment:
        """The infrastructure environment called `name`; KeyError when there is none."""
        for env in self.environments:
            if env.name == name:
                return env
        raise KeyError(name)

    def order(self) -> list[str]:
        """The promotion order."""
        return list(self.ladder) or [env.name for env in self.environments]


Permission = Literal["view", "deploy", "approve", "admin"]


class AccessGrant(Model):
    """Who may do what where: people (or `group:NAME`, an approver group's members) get
    permissions on environments (`*` for all)."""

    members: list[str] = Field(min_length=1)
    permissions: list[Permission] = Field(min_length=1)
    environments: list[str] = ["*"]


class OidcSpec(Model):
    """Single sign-on through an OpenID Connect provider (Entra ID, Keycloak, Dex, ...).

    `clientSecret` names a secret in the default secret store, never the value."""

    issuer: str
    client_id: str
    client_secret: str | None = None
    username_claim: str = "preferred_username"
    scopes: list[str] = ["openid", "profile", "email"]
    display_name: str = "Single sign-on"


class SlackApp(Model):
    """Slack interactive approvals: the app's signing secret (a secret's name in the default
    store) and which Slack user is which shipline identity."""

    signing_secret: str
    users: dict[str, str] = {}


class Access(Model):
    """The server's roles. Without `grants`, every signed-in person may view and deploy
    everywhere; approving is then decided by the approver groups alone."""

    admins: list[str] = []
    viewers: list[str] = ["*"]
    grants: list[AccessGrant] = []
    oidc: OidcSpec | None = None
    slack: SlackApp | None = None
    git_webhook_secret: str | None = None


class Config(Model):
    """A whole, validated shipline configuration."""

    api_version: Literal["shipline/v1"] = "shipline/v1"
    project: Name
    include: list[str] = []
    stacks: dict[str, Stack] = {}
    services: list[Service] = []
    tiers: dict[str, Tier] = {}
    targets: dict[str, Target] = {}
    approver_groups: dict[str, ApproverGroup] = {}
    environments: list[Environment] = []
    ladder: list[str] = []
    global_variable_groups: list[str] = []
    variable_groups: dict[str, VariableGroup] = {}
    secret_stores: dict[str, SecretStoreSpec] = {}
    default_secret_store: str | None = None
    notifications: list[Notification] = []
    triggers: list[Trigger] = []
    ci: CiSettings = CiSettings()
    infrastructure: Infrastructure = Infrastructure()
    access: Access = Access()

    def service(self, name: str) -> Service:
        """The service called `name`; KeyError when there is none."""
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    def environment(self, name: str) -> Environment:
        """The environment called `name` or aliased so; KeyError when there is none."""
        for env in self.environments:
            if env.name == name or name in env.aliases:
                return env
        raise KeyError(name)

    def ladder_environments(self) -> list[Environment]:
        """Environments in ladder order."""
        by_name = {env.name: env for env in self.environments}
        return [by_name[name] for name in self.ladder if name in by_name]

    def service_port(self, service: Service) -> int:
        """The service's port, or its stack's."""
        return service.port if service.port is not None else self.stacks[service.stack].port

    def service_health_path(self, service: Service) -> str:
        """The service's health path, or its stack's."""
        if service.health_path is not None:
            return service.health_path
        return self.stacks[service.stack].health_path
