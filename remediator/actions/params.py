"""Parameter models of the built-in actions, checked when rules load.

Values an operator writes are checked here, so `remediator check` reports them. Values
that come from a template (labels, annotations) are checked again after rendering, by
the same functions (`split_glob`, `parse_block_ips`, `check_target_url`), in `plan()`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from remediator.actions.urls import allowed_host_entry, check_http_url, check_url_template
from remediator.config.models import Duration, Model, TemplateStr
from remediator.config.names import ENV_NAME
from remediator.templates import check_template

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_BLOCK_IPS = 1000
# A label must not be able to block a whole provider (or everyone): at most a /16 or a /48.
BLOCK_MIN_PREFIX = {4: 16, 6: 48}
# Used with fullmatch: `$` would also match before a final newline ("10/second\n").
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_RATE = re.compile(r"([0-9]{1,9})/(second|minute|hour)")
_SPLIT_IPS = re.compile(r"[,\s]+")
_WILDCARDS = frozenset("*?[]")


def is_template(value: str) -> bool:
    """Whether `value` renders per alert (then it is checked after rendering too)."""
    return "{" in value


class SshParams(Model):
    """`ssh`: run argv on the target, each element shell-quoted."""

    argv: list[TemplateStr] = Field(min_length=1)
    # Exit statuses that count as success: GNU tar exits 1 when a file changed while it
    # was read, which live logs do (KALDRIX handoff's evidence capture).
    expect_exit: list[Annotated[int, Field(ge=0, le=255)]] = Field(default=[0], min_length=1)


class RestartServiceParams(Model):
    """`restart_service`: systemctl restart, then is-active."""

    service: TemplateStr
    # Restart only a unit that is not active (KALDRIX handoff "Critical: Network Outage").
    only_if_inactive: bool = False


class NotifyParams(Model):
    """`notify`: no action, only a message."""

    message: TemplateStr


# --- script ---------------------------------------------------------------------------


def _check_env_names(names: dict[str, str], what: str) -> None:
    for name in names:
        if not ENV_NAME.fullmatch(name):
            raise ValueError(f"{what} {name!r} is not an environment variable name")


class ScriptParams(Model):
    """`script`: run argv locally, without a shell, in a minimal environment."""

    argv: list[TemplateStr] = Field(min_length=1)
    timeout: Duration = Field(default=60.0, gt=0)
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        _check_env_names(env, "env name")
        return env


# --- http -----------------------------------------------------------------------------


def _check_json_templates(value: Any) -> None:
    """Every string inside `json` renders as a template; check that each compiles."""
    if isinstance(value, str):
        check_template(value)
    elif isinstance(value, dict):
        for item in value.values():
            _check_json_templates(item)
    elif isinstance(value, list):
        for item in value:
            _check_json_templates(item)


class HttpParams(Model):
    """`http`: one request to the target (or an allowed host); retried on connection
    errors and 5xx only."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    # Hosts besides the target's address this step may call: literal names, never templates.
    # Declared before `url`, whose check reads it.
    allowed_hosts: list[Annotated[str, AfterValidator(allowed_host_entry)]] = Field(
        default_factory=list
    )
    url: TemplateStr
    headers: dict[str, TemplateStr] = Field(default_factory=dict)
    headers_from_env: dict[str, str] = Field(default_factory=dict)
    json_: Any = Field(default=None, alias="json")
    timeout: Duration = Field(default=10.0, gt=0)
    attempts: int = Field(default=3, ge=1, le=10)
    expect_status: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None, min_length=1
    )

    @field_validator("headers", "headers_from_env")
    @classmethod
    def _header_names(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
        return headers

    @field_validator("json_")
    @classmethod
    def _json(cls, value: Any) -> Any:
        _check_json_templates(value)
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, url: str, info: ValidationInfo) -> str:
        if not is_template(url):
            check_http_url(url)
        check_url_template(url, info.data.get("allowed_hosts", []))
        return url

    @model_validator(mode="after")
    def _env_headers(self) -> HttpParams:
        _check_env_names({v: k for k, v in self.headers_from_env.items()}, "headers_from_env value")
        both = {h.lower() for h in self.headers} & {h.lower() for h in self.headers_from_env}
        if both:
            raise ValueError(f"header {sorted(both)[0]!r} is set in headers and headers_from_env")
        return self


# --- rotate_logs ----------------------------------------------------------------------


def check_abs_path(path: str, what: str) -> str:
    """An absolute path without `..` or control characters."""
    if not path.startswith("/"):
        raise ValueError(f"{what} {path!r} must be an absolute path")
    if ".." in path.split("/"):
        raise ValueError(f"{what} {path!r} must not contain `..`")
    if any(ord(c) < 32 or c == "\x7f" for c in path):
        raise ValueError(f"{what} {path!r} contains a control character")
    return path


def split_glob(glob: str) -> tuple[str, str]:
    """'/var/backups/*.tar.gz' -> ('/var/backups', '*.tar.gz'), for `find DIR -name PATTERN`."""
    check_abs_path(glob, "prune glob")
    directory, _, pattern = glob.rpartition("/")
    if not pattern or pattern in (".", ".."):
        raise ValueError(f"prune glob {glob!r} must end in a file name pattern, like *.tar.gz")
    if _WILDCARDS & set(directory):
        raise ValueError(f"prune glob {glob!r}: only the file name part may hold wildcards")
    return directory or "/", pattern


class PruneParams(Model):
    """Delete files matching `glob` (wildcards in the file name only) older than `older_than`."""

    glob: str
    older_than: Duration = Field(ge=60)

    @field_validator("glob")
    @classmethod
    def _glob(cls, glob: str) -> str:
        split_glob(glob)
        return glob


class RotateLogsParams(Model):
    """`rotate_logs`: `logrotate -f CONFIG`, then an optional prune."""

    service: TemplateStr | None = None
    config: TemplateStr | None = None
    prune: PruneParams | None = None

    @field_validator("config")
    @classmethod
    def _config(cls, config: str | None) -> str | None:
        if config is not None and not is_template(config):
            check_abs_path(config, "config")
        return config

    @model_validator(mode="after")
    def _service_or_config(self) -> RotateLogsParams:
        if self.service is None and self.config is None:
            raise ValueError("set service (for /etc/logrotate.d/<service>) or config")
        return self


# --- nftables: rate_limit, block_ips, firewall_lockdown -------------------------------


class RateLimitParams(Model):
    """`rate_limit`: drop new connections to `port` above `rate` (nftables)."""

    port: int = Field(ge=1, le=65535)
    rate: str
    burst: int = Field(default=5, ge=1, le=1_000_000)
    protocol: Literal["tcp", "udp"] = "tcp"

    @field_validator("rate")
    @classmethod
    def _rate(cls, rate: str) -> str:
        m = _RATE.fullmatch(rate)
        if m is None or int(m.group(1)) == 0:
            raise ValueError(f"rate {rate!r} must look like 10/second (or /minute, /hour)")
        return f"{int(m.group(1))}/{m.group(2)}"


def parse_network(text: str) -> IpNetwork:
    """An address or CIDR, normalised ('10.0.0.5/8' -> 10.0.0.0/8); ValueError otherwise."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or network") from None
    if isinstance(net, ipaddress.IPv6Network) and net.network_address.scope_id is not None:
        raise ValueError(f"{text!r}: an address with a zone (%...) cannot be filtered")
    # Rebuilt from integers, so nothing of the input text can reach an nft script.
    return type(net)((int(net.network_address), net.prefixlen))


def _block_entry(text: str) -> IpNetwork:
    net = parse_network(text)
    if net.prefixlen < BLOCK_MIN_PREFIX[net.version]:
        limit = BLOCK_MIN_PREFIX[net.version]
        raise ValueError(f"{text!r} is too broad to block: the prefix must be /{limit} or longer")
    if net.is_loopback or net.network_address.is_unspecified:
        raise ValueError(f"{text!r} is a loopback or unspecified address")
    return net


def _tokens(values: list[str]) -> list[str]:
    return [token for value in values for token in _SPLIT_IPS.split(value) if token]


def parse_block_ips(values: list[str]) -> list[IpNetwork]:
    """Split on commas and whitespace, validate each entry, drop repeats; ValueError if bad."""
    found = dict.fromkeys(_block_entry(token) for token in _tokens(values))
    if not found:
        raise ValueError("no IP addresses to block")
    if len(found) > MAX_BLOCK_IPS:
        raise ValueError(f"{len(found)} addresses to block; the limit is {MAX_BLOCK_IPS}")
    return list(found)


class BlockIpsParams(Model):
    """`block_ips`: add addresses or networks to the nftables drop sets."""

    ips: TemplateStr | list[TemplateStr]
    timeout: Duration | None = Field(default=None, ge=1)

    @field_validator("ips")
    @classmethod
    def _ips(cls, ips: str | list[str]) -> str | list[str]:
        items = [ips] if isinstance(ips, str) else ips
        literal = [v for v in items if not is_template(v)]
        if len(literal) == len(items):
            parse_block_ips(items)  # all known now: also refuses an empty list
        for token in _tokens(literal):
            _block_entry(token)
        return ips

    def entries(self) -> list[str]:
        """`ips` as a list."""
        return [self.ips] if isinstance(self.ips, str) else list(self.ips)


class FirewallLockdownParams(Model):
    """`firewall_lockdown`: drop all inbound except SSH from `allow_from`."""

    allow_from: list[str] = Field(min_length=1)
    ssh_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("allow_from")
    @classmethod
    def _allow_from(cls, allow_from: list[str]) -> list[str]:
        return [str(parse_network(cidr)) for cidr in allow_from]
