"""Typed models of remediator.yml and rules/*.yml (policies/*.yml: policies.py, re-exported
here). Unknown keys are errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from remediator.config.alertmanager import AlertmanagerConfig, SilenceOption
from remediator.config.channels import (
    EmailConfig,
    NotificationsConfig,
    SlackConfig,
)
from remediator.config.common import Duration, Model
from remediator.config.durations import parse_duration
from remediator.config.names import EnvName
from remediator.config.pgurl import is_postgres, parse_pg_url
from remediator.config.policies import (
    APPROVAL_WORDS,
    AlwaysFor,
    ApprovalName,
    ApprovalPolicy,
    Approvals,
    EscalationChain,
    EscalationStep,
    GroupLimit,
    MaintenanceWindow,
    Policies,
    PoliciesFile,
    Safety,
    SeverityPolicy,
    check_policy_name,
)
from remediator.config.server import (
    ServerConfig,
)
from remediator.config.steps import ActionCall, StepSpec
from remediator.matchers import Matcher, compile_regex, parse_matcher
from remediator.templates import check_template

# What JSON Schema checks of a matcher: a label name and an operator (the value is free).
MATCHER_PATTERN = r"^\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(=~|!~|!=|=)"
MatcherField = Annotated[
    Matcher,
    BeforeValidator(
        parse_matcher, json_schema_input_type=Annotated[str, Field(pattern=MATCHER_PATTERN)]
    ),
]
TemplateStr = Annotated[str, AfterValidator(check_template)]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"


def _check_regex(value: str) -> str:
    try:
        compile_regex(value)
    except re.error as exc:
        raise ValueError(f"invalid regex {value!r}: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(_check_regex)]


# --- remediator.yml -------------------------------------------------------------------


class SshConfig(Model):
    """How SSH-based actions log in; host keys are always checked against known_hosts."""

    username: str = "remediator"
    client_keys: list[str] = Field(default_factory=list)
    known_hosts: str = "~/.ssh/known_hosts"
    connect_timeout: Duration = 10.0
    command_timeout: Duration = 60.0
    connect_attempts: int = Field(default=3, ge=1, le=10)


class HostDefaults(Model):
    """Values every inventory host inherits."""

    port: int = Field(default=22, gt=0, lt=65536)
    user: str | None = None


class InventoryHost(Model):
    """One host remediation may act on."""

    address: str
    port: int | None = Field(default=None, gt=0, lt=65536)
    user: str | None = None
    groups: list[str] = Field(default_factory=list)


class Inventory(Model):
    """The only hosts actions may reach."""

    defaults: HostDefaults = HostDefaults()
    hosts: dict[Annotated[str, Field(pattern=NAME_PATTERN)], InventoryHost] = Field(
        default_factory=dict
    )


class Host(Model):
    """An inventory host with defaults applied; what actions connect to."""

    name: str
    address: str
    port: int
    user: str
    groups: tuple[str, ...] = ()


DAY_S = 86400.0
MIN_LEASE_S = 3.0
MAX_LEASE_S = 3600.0


def _store_mapping(value: Any) -> Any:
    # `store: sqlite:///PATH` is short for `store: {url: sqlite:///PATH}`.
    return {"url": value} if isinstance(value, str) else value


class StoreConfig(Model):
    """Where the store lives, and how long closed incidents stay in it."""

    url: str
    # Closed incidents (with their steps, approvals, audit and notifications) older than
    # this are deleted; see store/retention.py for what else is pruned and when.
    retention: Duration = 90 * DAY_S
    # How long a replica's claim on work (a step, a timer) or on stored webhooks holds; a
    # live replica renews its claims every third of it, so a dead one's items are taken by
    # another replica once its lease runs out.
    lease: Duration = 30.0

    @field_validator("url")
    @classmethod
    def _known_url(cls, url: str) -> str:
        if url.startswith("sqlite:///"):
            return url
        if is_postgres(url):
            parse_pg_url(url)  # its ValueError says what is wrong
            return url
        raise ValueError("use sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE")

    @field_validator("retention")
    @classmethod
    def _at_least_a_day(cls, retention: float) -> float:
        if retention < DAY_S:
            raise ValueError("must be at least 1d (deduplication keeps resolved alerts a day)")
        return retention

    @field_validator("lease")
    @classmethod
    def _lease_bounds(cls, lease: float) -> float:
        if not MIN_LEASE_S <= lease <= MAX_LEASE_S:
            raise ValueError(
                "must be between 3s (renewed every third of it: shorter would race the "
                "renewal) and 1h (a dead replica's work waits that long for another)"
            )
        return lease


class ConfigFile(Model):
    """The top-level remediator.yml as written."""

    server: ServerConfig
    store: Annotated[
        StoreConfig, BeforeValidator(_store_mapping, json_schema_input_type=str | StoreConfig)
    ]
    # The PostgreSQL password, from this environment variable when `store:` has none.
    store_password_env: EnvName | None = None
    rules: str
    policies: str | None = None
    dry_run: bool = False
    ssh: SshConfig | None = None
    slack: SlackConfig | None = None
    email: EmailConfig | None = None
    notifications: NotificationsConfig = NotificationsConfig()
    inventory: Inventory = Inventory()
    # Alertmanager's API: silences while a `silence:` rule's steps work.
    alertmanager: AlertmanagerConfig | None = None
    # Append every accepted webhook body to this JSON-lines file, for `remediator replay`.
    record: str | None = None

    @model_validator(mode="after")
    def _password_for_postgres(self) -> ConfigFile:
        if self.store_password_env is None:
            return self
        if not is_postgres(self.store.url):
            raise ValueError("store_password_env: only a postgresql:// store takes a password")
        if parse_pg_url(self.store.url).password is not None:
            raise ValueError(
                "store_password_env: the store URL has a password already; keep it in the "
                "environment variable only (a config file is read by more people than a secret)"
            )
        return self


# --- rules/*.yml ----------------------------------------------------------------------


class MaxRuns(Model):
    """`N per WINDOW`: at most N first steps per (rule, target) in a sliding window."""

    count: int
    window_s: float


class MaxTargets(Model):
    """`N per WINDOW`: at most N distinct targets one rule starts a first step on in a
    sliding window (its blast radius); past it the incident pages instead."""

    count: int = Field(ge=1)
    window_s: float


# `N per WINDOW` as written (JSON Schema checks the shape; check reads the duration too).
PER_PATTERN = r"^\s*[0-9]{1,9}\s+per\s+\S+\s*$"


def _per(key: str, example: str, least: int = 0) -> Any:
    def parse(value: Any) -> Any:
        if isinstance(value, str):
            m = re.fullmatch(r"\s*([0-9]{1,9})\s+per\s+(\S+)\s*", value)
            if not m or int(m.group(1)) < least:
                at_least = f" (N at least {least})" if least else ""
                raise ValueError(f"invalid {key} {value!r}: write it as `{example}`{at_least}")
            return {"count": int(m.group(1)), "window_s": parse_duration(m.group(2))}
        return value

    return parse


_parse_max_runs = _per("max_runs", "3 per 6h")
PerText = Annotated[str, Field(pattern=PER_PATTERN)]


def _http_url(value: str) -> str:
    from remediator.links import MAX_URL, safe_url

    if safe_url(value) is None:
        raise ValueError(
            f"not a plain http(s) URL with a host (printable ASCII, no spaces or quotes, "
            f"at most {MAX_URL} characters): {value[:80]!r}"
        )
    return value


class RuleSpec(Model):
    """One remediation rule."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    match: list[MatcherField] = Field(min_length=1)
    target: TemplateStr | None = None
    require: dict[str, Regex] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(default_factory=list)
    # A chain's name, or a template over the labels (`"{{ labels.severity }}"`): then
    # `escalate_fallback` names the chain paged when the rendered name is not a chain.
    escalate: TemplateStr | None = None
    escalate_fallback: str | None = None
    # Page the chain when the incident opens, while the steps run (needs `escalate`).
    page_at_start: bool = False
    # What each step's `approval:` is when the step says none.
    approval: ApprovalName | None = None
    cooldown: Duration = 300.0
    max_runs: Annotated[
        MaxRuns | None,
        BeforeValidator(_parse_max_runs, json_schema_input_type=PerText | MaxRuns | None),
    ] = None
    max_targets: Annotated[
        MaxTargets | None,
        BeforeValidator(
            _per("max_targets", "5 per 1h", least=1),
            json_schema_input_type=PerText | MaxTargets | None,
        ),
    ] = None
    hold_timeout: Duration = 900.0
    dry_run: bool = False
    continue_: bool = Field(default=False, alias="continue")
    # The runbook section for this rule's incidents (a link in Slack, email and `show`;
    # it wins over the alert's own `runbook_url` annotation).
    runbook_url: Annotated[str, AfterValidator(_http_url)] | None = None
    # Silence the alert in Alertmanager while a step works (needs `alertmanager:`).
    silence: SilenceOption = None

    def approval_of(self, step: StepSpec, part: ActionCall | None = None) -> str:
        """The `approval:` of a step (or of one part of it): its own, else the step's,
        else the rule's, else `auto`."""
        own = part.approval if part is not None else None
        return own or step.approval or self.approval or "auto"


class RulesFile(Model):
    """A rules/*.yml file."""

    rules: list[RuleSpec] = Field(default_factory=list)


class Config(Model):
    """Everything loaded and cross-checked; what the daemon runs on."""

    path: Path
    base_dir: Path
    file: ConfigFile
    rules: tuple[RuleSpec, ...]
    rule_files: dict[str, str]
    policies: Policies
    hosts: dict[str, Host]

    def resolve_path(self, value: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def host_by_name_or_address(self, value: str) -> Host | None:
        """The inventory host named `value` or whose address is `value`."""
        host = self.hosts.get(value)
        if host is not None:
            return host
        return next((h for h in self.hosts.values() if h.address == value), None)


__all__ = [
    "APPROVAL_WORDS",
    "AlwaysFor",
    "ApprovalPolicy",
    "Approvals",
    "Duration",
    "EscalationChain",
    "EscalationStep",
    "GroupLimit",
    "MaintenanceWindow",
    "Model",
    "Policies",
    "PoliciesFile",
    "Safety",
    "SeverityPolicy",
    "StepSpec",
    "check_policy_name",
]
