"""Load remediator.yml with its rules, policies and inventory; collect every problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from remediator.actions.approval import check_always_for
from remediator.actions.params import BlockIpsParams, is_template, parse_block_ips
from remediator.actions.protected import Protected
from remediator.config.models import (
    Config,
    ConfigFile,
    Host,
    Policies,
    PoliciesFile,
    RulesFile,
    RuleSpec,
    check_policy_name,
)
from remediator.config.problems import Problem
from remediator.config.rulepolicies import check_rule_policies
from remediator.config.steps import OUTLINE, action_types
from remediator.config.suggest import did_you_mean, keys_of, model_at
from remediator.config.yamlfile import Loc, YamlDoc, load_yaml
from remediator.errors import ActionError, ConfigError

M = TypeVar("M", bound=BaseModel)


def _message(err: dict[str, Any], model: type[BaseModel], data: Any) -> str:
    kind, msg = err["type"], str(err["msg"])
    if kind == "extra_forbidden":
        *where, key = err["loc"]
        parent = model_at(model, where, data)
        return "unknown key" + (did_you_mean(str(key), keys_of(parent)) if parent else "")
    if kind == "missing":
        return "required key is missing"
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg[:1].lower() + msg[1:]


def validate(
    doc: YamlDoc, model: type[M], prefix: Loc = (), data: Any = None
) -> tuple[M | None, list[Problem]]:
    """Validate a document (or the `data` found at `prefix` in it), locating each error."""
    if data is None:
        data = doc.data
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = (*prefix, *(p for p in err["loc"] if isinstance(p, str | int)))
            problems.append(doc.problem(loc, _message(dict(err), model, data)))
        return None, problems


YAML_SUFFIXES = (".yml", ".yaml")  # what counts as a rules or policies file


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in YAML_SUFFIXES and p.is_file())


def _display(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _check_steps(doc: YamlDoc, i: int, rule: RuleSpec, has_ssh: bool) -> list[Problem]:
    """What a step's action needs beyond its params (parsed with the rule): SSH, a target."""
    problems: list[Problem] = []
    for j, step in enumerate(rule.steps):
        for k, part in enumerate(step.parts):
            loc: Loc = ("rules", i, "steps", j, *(("all", k) if step.is_all else ()))
            kind = action_types().get(part.action)
            if kind is None or not kind.needs_ssh:
                continue
            if rule.target is None:
                problems.append(
                    doc.problem(
                        ("rules", i, "target"), f"required: step {j} ({part.action}) acts on a host"
                    )
                )
            if not has_ssh:
                problems.append(
                    doc.problem(
                        (*loc, "action"),
                        f"{part.action} runs over SSH, so remediator.yml needs an `ssh:` section",
                    )
                )
    return problems


def _outline(doc: YamlDoc) -> RulesFile | None:
    """The rules of a file whose only problems are in steps' actions or params (see OUTLINE)."""
    try:
        return RulesFile.model_validate(doc.data, context=OUTLINE)
    except ValidationError:
        return None


def _check_silence(doc: YamlDoc, i: int, rule: RuleSpec, has_alertmanager: bool) -> list[Problem]:
    if rule.silence is None or has_alertmanager:
        return []
    why = (
        "needs an `alertmanager:` section in remediator.yml (url, and "
        "bearer_token_env or basic_auth if it asks for one) to create silences through"
    )
    return [doc.problem(("rules", i, "silence"), why)]


def _load_rules(
    folder: Path, base: Path, has_ssh: bool, has_alertmanager: bool
) -> tuple[list[RuleSpec], dict[str, str], list[Problem]]:
    rules: list[RuleSpec] = []
    origin: dict[str, str] = {}
    problems: list[Problem] = []
    for path in _yaml_files(folder):
        doc, errs = load_yaml(path, _display(path, base))
        problems.extend(errs)
        if errs or doc.data is None:
            continue
        parsed, errs = validate(doc, RulesFile)
        problems.extend(errs)
        if parsed is None:
            parsed = _outline(doc)
        if parsed is None:
            continue
        for i, rule in enumerate(parsed.rules):
            if rule.name in origin:
                problems.append(
                    doc.problem(
                        ("rules", i, "name"),
                        f"rule {rule.name!r} is already defined in {origin[rule.name]}",
                    )
                )
                continue
            origin[rule.name] = f"{doc.file}:{doc.line_of(('rules', i))}"
            problems.extend(_check_steps(doc, i, rule, has_ssh))
            problems.extend(_check_silence(doc, i, rule, has_alertmanager))
            rules.append(rule)
    return rules, origin, problems


def _check_channels(doc: YamlDoc, parsed: PoliciesFile, file: ConfigFile) -> list[Problem]:
    """A chain that notifies through Slack or email needs that section in remediator.yml."""
    problems = []
    for name, chain in parsed.escalations.items():
        for i, step in enumerate(chain.steps):
            for j, target in enumerate(step.notify):
                kind = target.partition(":")[0]
                if getattr(file, kind) is None:
                    msg = f"notifies {target!r} but remediator.yml has no `{kind}:` section"
                    problems.append(
                        doc.problem(("escalations", name, "steps", i, "notify", j), msg)
                    )
    return problems


def _check_approvals(doc: YamlDoc, parsed: PoliciesFile) -> list[Problem]:
    """Policy names; `always_for` entries name a known action (and one word) and a known
    policy: a typo must not pass."""
    if parsed.approvals is None:
        return []
    known = parsed.approvals.policies
    problems = []
    for name in known:
        msg = check_policy_name(name)
        if msg is not None:
            problems.append(doc.problem(("approvals", name), msg))
    for i, entry in enumerate(parsed.approvals.always_for):
        msg = check_always_for(entry.action)
        if msg is not None:
            problems.append(doc.problem(("approvals", "always_for", i), msg))
        if entry.policy is not None and entry.policy not in known:
            msg = (
                f"approval policy {entry.policy!r} is not defined: add `approvals."
                f"{entry.policy}:` or name one of {', '.join(known)}"
            )
            problems.append(doc.problem(("approvals", "always_for", i, "policy"), msg))
    return problems


def _alias_bare_chains(doc: YamlDoc) -> None:
    """`escalations.NAME: [...]` is short for `{steps: [...]}`: its steps' problems are
    reported as `escalations.NAME.steps[i]`, so their lines are found under that path too."""
    chains = doc.data.get("escalations") if isinstance(doc.data, dict) else None
    if not isinstance(chains, dict):
        return
    bare = {name for name, chain in chains.items() if isinstance(chain, list)}
    for loc, line in list(doc.lines.items()):
        if len(loc) > 2 and loc[0] == "escalations" and loc[1] in bare:
            doc.lines[(*loc[:2], "steps", *loc[2:])] = line


def _check_groups(doc: YamlDoc, parsed: PoliciesFile, file: ConfigFile) -> list[Problem]:
    """A percentage `max_unavailable` that rounds down to 0 members allows no automated
    action on the group at all: an error, with the smallest percentage that allows one."""
    problems = []
    for name, limit in (parsed.safety.groups if parsed.safety else {}).items():
        members = sum(name in h.groups for h in file.inventory.hosts.values())
        if members == 0 or limit.allowed(members) > 0:
            continue
        least = -(-100 // members)  # the smallest percentage that is one member
        msg = (
            f"{limit.shown(members)}: no member of {name} could ever be remediated; write "
            f"at least `{least}%` or a count (`max_unavailable: 1`)"
        )
        problems.append(doc.problem(("safety", "groups", name, "max_unavailable"), msg))
    return problems


def _load_policies(folder: Path, base: Path, file: ConfigFile) -> tuple[Policies, list[Problem]]:
    merged: dict[str, Any] = {"severities": {}, "escalations": {}}
    problems: list[Problem] = []
    for path in _yaml_files(folder):
        doc, errs = load_yaml(path, _display(path, base))
        problems.extend(errs)
        if errs or doc.data is None:
            continue
        _alias_bare_chains(doc)
        parsed, errs = validate(doc, PoliciesFile)
        problems.extend(errs)
        if parsed is None:
            continue
        problems.extend(_check_channels(doc, parsed, file))
        problems.extend(_check_approvals(doc, parsed))
        problems.extend(_check_groups(doc, parsed, file))
        for section in ("severities", "escalations"):
            for name, value in getattr(parsed, section).items():
                if name in merged[section]:
                    problems.append(
                        doc.problem((section, name), f"{section[:-1]} {name!r} is defined twice")
                    )
                merged[section][name] = value
        for section in ("approvals", "safety"):
            value = getattr(parsed, section)
            if value is not None:
                if section in merged:
                    problems.append(
                        doc.problem((section,), f"`{section}` is defined in more than one file")
                    )
                merged[section] = value
    return Policies(**merged), problems


def _folder(
    cfg_doc: YamlDoc, base: Path, key: str, value: str
) -> tuple[Path | None, list[Problem]]:
    folder = Path(value).expanduser()
    folder = folder if folder.is_absolute() else base / folder
    if not folder.is_dir():
        return None, [cfg_doc.problem((key,), f"{folder} is not a folder")]
    return folder, []


def _hosts(file: ConfigFile, ssh_user: str) -> dict[str, Host]:
    inv = file.inventory
    out = {}
    for name, h in inv.hosts.items():
        out[name] = Host(
            name=name,
            address=h.address,
            port=h.port or inv.defaults.port,
            user=h.user or inv.defaults.user or ssh_user,
            groups=tuple(h.groups),
        )
    return out


def _check_self_lockout(config: Config) -> list[Problem]:
    """A block_ips step whose literal addresses hold an inventory host or the ops network."""
    protected = Protected.from_config(config)
    problems = []
    for rule in config.rules:
        file_name, _, line = config.rule_files[rule.name].rpartition(":")
        for j, step in enumerate(rule.steps):
            for k, part in enumerate(step.parts):
                if not isinstance(part.params, BlockIpsParams):
                    continue
                entries = part.params.entries()
                try:
                    protected.check(parse_block_ips([e for e in entries if not is_template(e)]))
                except ValueError:
                    continue  # no literal entries
                except ActionError as exc:
                    where = f"all[{k}]." if step.is_all else ""
                    path = f"rule {rule.name}.steps[{j}].{where}params.ips"
                    problems.append(Problem(file_name, int(line), path, str(exc)))
    return problems


def load_config(path: Path) -> Config:
    """Load and cross-check everything; raise ConfigError listing every problem."""
    path = path.expanduser()
    base = path.resolve().parent
    doc, problems = load_yaml(path, str(path))
    if problems:
        raise ConfigError(problems)
    if not isinstance(doc.data, dict):
        raise ConfigError([doc.problem((), "expected a mapping with server, store and rules")])
    file, problems = validate(doc, ConfigFile)
    if file is None:
        raise ConfigError(problems)
    rules: list[RuleSpec] = []
    origin: dict[str, str] = {}
    rules_dir, errs = _folder(doc, base, "rules", file.rules)
    problems.extend(errs)
    if rules_dir is not None:
        rules, origin, errs = _load_rules(
            rules_dir, base, file.ssh is not None, file.alertmanager is not None
        )
        problems.extend(errs)
    policies = Policies()
    if file.policies is not None:
        policies_dir, errs = _folder(doc, base, "policies", file.policies)
        problems.extend(errs)
        if policies_dir is not None:
            policies, errs = _load_policies(policies_dir, base, file)
            problems.extend(errs)
    problems.extend(check_rule_policies(rules, origin, policies))
    if problems:
        raise ConfigError(problems)
    ssh_user = file.ssh.username if file.ssh else "remediator"
    config = Config(
        path=path,
        base_dir=base,
        file=file,
        rules=tuple(rules),
        rule_files=origin,
        policies=policies,
        hosts=_hosts(file, ssh_user),
    )
    problems = _check_self_lockout(config)
    if problems:
        raise ConfigError(problems)
    return config
