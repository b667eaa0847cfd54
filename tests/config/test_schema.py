"""`remediator schema`: JSON Schema of remediator.yml, rules and policies files, made from
the models `check` uses; schemas/ keeps it, and every shipped YAML file validates with it
(and names it on its first line, for editors)."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, ValidationError

from remediator.cli import main
from remediator.config.schema import KINDS, Kind, file_name, render, schema

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"


def shipped_files() -> list[tuple[Kind, Path]]:
    """Every shipped remediator.yml with the rules and policies files it loads."""
    out: list[tuple[Kind, Path]] = []
    for config in [REPO / "remediator.yml", *sorted(REPO.glob("examples/*/remediator.yml"))]:
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        out.append(("remediator", config))
        for kind in ("rules", "policies"):
            folder = config.parent / data[kind]
            out += [(kind, p) for p in sorted(folder.glob("*.yml"))]
    return out


SHIPPED = shipped_files()


def validator(kind: Kind) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema(kind))


def draft7(kind: Kind) -> jsonschema.Draft7Validator:
    """The schema read as draft-07, as the YAML language server (VS Code's YAML
    extension) still reads every schema: it uses no keyword draft-07 lacks."""
    return jsonschema.Draft7Validator(schema(kind))


def errors(kind: Kind, text: str) -> list[str]:
    """jsonschema's messages, with those of each anyOf branch (what editors show)."""
    data = yaml.safe_load(textwrap.dedent(text))
    pending = list(validator(kind).iter_errors(data))
    found = []
    while pending:
        error = pending.pop()
        found.append(error.message)
        pending += error.context or []
    return found


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_committed_schema_is_the_generated_one(kind: Kind) -> None:
    """schemas/KIND.schema.json is what `remediator schema KIND` prints: a model changed
    without regenerating fails here, saying how to regenerate."""
    committed = (SCHEMAS / file_name(kind)).read_text(encoding="utf-8")
    assert committed == render(kind), (
        f"schemas/{file_name(kind)} is out of date with the models: run `make schemas` "
        f"(or `remediator schema {kind} > schemas/{file_name(kind)}`) and commit it"
    )


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_schema_is_draft_2020_12_with_id_title_and_description(kind: Kind) -> None:
    """Each schema is a valid draft 2020-12 schema that says what file it describes."""
    doc = schema(kind)
    jsonschema.Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"].endswith(f"/schemas/{file_name(kind)}")
    assert doc["title"]
    assert doc["description"]


# Every keyword the schemas may use: JSON Schema 2020-12's, nothing of pydantic's own.
KEYWORDS = {
    "$schema", "$id", "$ref", "$defs", "title", "description", "default", "type", "enum",
    "const", "properties", "additionalProperties", "required", "items", "minItems",
    "propertyNames", "patternProperties", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "anyOf", "oneOf", "allOf", "not", "if", "then", "format",
}  # fmt: skip


def _keywords(node: Any) -> set[str]:
    if isinstance(node, list):
        return set().union(*map(_keywords, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = set(node)
    for key, value in node.items():
        if key in ("properties", "patternProperties", "$defs"):  # names, not keywords
            found |= set().union(*map(_keywords, value.values())) if value else set()
        elif key not in ("default", "enum", "const"):
            found |= _keywords(value)
    return found


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_schema_speaks_only_json_schema(kind: Kind) -> None:
    """No pydantic-only keyword (`ge`, `gt`) is left where editors would ignore it: a
    bound on a duration written as number or text applies to the number."""
    assert _keywords(schema(kind)) <= KEYWORDS


def test_the_schema_command_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    """`remediator schema rules` prints the rules schema as JSON, and exits 0."""
    assert main(["schema", "rules"]) == 0
    assert json.loads(capsys.readouterr().out) == schema("rules")


def test_every_shipped_file_is_checked() -> None:
    """The parametrized checks below cover the repo's and every example's files."""
    kinds = {kind for kind, _ in SHIPPED}
    configs = [p for kind, p in SHIPPED if kind == "remediator"]
    assert kinds == {"remediator", "rules", "policies"}
    assert len(configs) == 1 + len(list(REPO.glob("examples/*/remediator.yml"))) >= 5


@pytest.mark.parametrize(
    ("kind", "path"), SHIPPED, ids=[str(p.relative_to(REPO)) for _, p in SHIPPED]
)
def test_every_shipped_file_validates_against_its_schema(kind: Kind, path: Path) -> None:
    """The shipped YAML is valid to its schema (durations, matchers, `3 per 6h`, short
    forms such as `store: sqlite:///...` and each action's params included), read as
    draft 2020-12 and as draft-07 (what editors' YAML language server reads)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    found = [f"{list(e.absolute_path)}: {e.message}" for e in validator(kind).iter_errors(data)]
    assert found == []
    assert list(draft7(kind).iter_errors(data)) == []


@pytest.mark.parametrize(
    ("kind", "path"), SHIPPED, ids=[str(p.relative_to(REPO)) for _, p in SHIPPED]
)
def test_every_shipped_file_names_its_schema_on_its_first_line(kind: Kind, path: Path) -> None:
    """Editors with the YAML language server validate as operators type: the first line
    points at the committed schema by a path relative to the file."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    relative = os.path.relpath(SCHEMAS / file_name(kind), path.parent)
    assert first == f"# yaml-language-server: $schema={relative}"
    assert (path.parent / relative).resolve().is_file()


RULE = """\
rules:
  - name: restart-web
    match: [alertname = Down]
    target: "{{ labels.instance | host }}"
    steps:
      - action: restart_service
        params: {service: nginx}
"""

# (kind, YAML, an excerpt of what jsonschema says): mistakes the schema rejects, and so do
# the models `check` uses.
MISTAKES = [
    ("rules", RULE.replace("    target:", "    tagret:"), "'tagret' was unexpected"),
    ("rules", RULE.replace("restart_service", "restart"), "'restart' is not one of"),
    ("rules", RULE.replace("service: nginx", "argv: [reboot]"), "'argv' was unexpected"),
    ("rules", RULE.replace("        params: {service: nginx}\n", ""), "'params' is a required"),
    ("rules", RULE + "    cooldown: 5 minutes\n", "'5 minutes' is not valid"),
    ("rules", RULE.replace("alertname = Down", "alertname Down"), "does not match"),
    ("rules", RULE + "    max_runs: 3/6h\n", "'3/6h' is not valid"),
    (
        "rules",
        RULE.replace("restart_service", "block_ips").replace(
            "service: nginx", "ips: 192.0.2.7, timeout: 0"
        ),
        "0 is less than the minimum of 1",
    ),
    (
        "rules",
        RULE.replace(
            "      - action: restart_service\n        params: {service: nginx}\n",
            "      - all:\n          - {action: notify, params: {message: hi}}\n",
        ),
        "is too short",
    ),
    (
        "rules",
        RULE.replace(
            "      - action: restart_service\n",
            "      - all:\n"
            "          - {action: notify, params: {message: a}}\n"
            "          - {action: notify, params: {message: b}}\n"
            "        action: restart_service\n",
        ),
        "is not valid under any of the given schemas",
    ),
    (
        "rules",
        RULE.replace(
            "      - action: restart_service\n        params: {service: nginx}\n",
            "      - all:\n"
            "          - {action: notify, params: {message: a}, verify: 5m}\n"
            "          - {action: notify, params: {message: b}}\n",
        ),
        "'verify' was unexpected",
    ),
    (
        "policies",
        "approvals:\n  default: {approvers: [U1], on_timeout: ignore}\n",
        "'ignore' is not one of",
    ),
    ("policies", "escalations:\n  P0: [{notify: ['pager:ops']}]\n", "is not valid under any"),
    ("policies", "safety:\n  groups: {web: {max_unavailable: a quarter}}\n", "'a quarter'"),
    ("policies", "safety:\n  quarantine: 3\n", "'quarantine' was unexpected"),
    (
        "remediator",
        "server: {webhook_auth: {bearer_token_env: T}}\nstore: sqlite:///s.db\nrules: r/\n"
        "inventory: {hosts: {'web 1': {address: 10.0.0.1}}}\n",
        "'web 1' does not match any of the regexes",
    ),
    (
        "remediator",
        "server: {webhook_auth: {bearer_token_env: T}}\nrules: rules/\n",
        "'store' is a required property",
    ),
    (
        "remediator",
        "server: {webhook_auth: {bearer_token_env: T}}\nstore: sqlite:///s.db\nrules: r/\n"
        "slack: {channel: '#ops', mode: websocket}\n",
        "'websocket' is not one of",
    ),
]


@pytest.mark.parametrize(("kind", "text", "says"), MISTAKES)
def test_obvious_mistakes_fail_the_schema_as_they_fail_check(
    kind: Kind, text: str, says: str
) -> None:
    """Unknown keys, unknown actions, another action's params, missing params, bad
    durations, matchers and `N per WINDOW`, a one-part or mixed `all:`, a `verify` on a
    part, values outside a choice: the schema rejects each (draft-07 readers too), as the
    models do."""
    found = errors(kind, text)
    assert any(says in message for message in found), found
    assert not draft7(kind).is_valid(yaml.safe_load(text))
    model: type[BaseModel] = KINDS[kind][0]
    with pytest.raises(ValidationError):
        model.model_validate(yaml.safe_load(text))


SHORT_FORMS = [
    ("rules", RULE + "    max_runs: {count: 3, window_s: 3600}\n    cooldown: 90\n"),
    (
        "rules",
        RULE.replace(
            "      - action: restart_service\n        params: {service: nginx}\n",
            "      - all:\n"
            "          - {action: notify, params: {message: a}}\n"
            "          - {action: rotate_logs, params: {service: nginx}, approval: auto}\n"
            "        verify: 1m30s\n",
        ),
    ),
    ("policies", "escalations:\n  P0: {steps: [{notify: ['slack:#ops']}], repeat: 2}\n"),
    ("policies", "approvals:\n  default: {approvers: [U1]}\n  always_for: [{action: ssh}]\n"),
    ("policies", "safety:\n  groups: {web: {max_unavailable: 25%}, db: {max_unavailable: 1}}\n"),
    (
        "remediator",
        "server: {webhook_auth: {bearer_token_env: T}}\nrules: r/\n"
        "store: {url: 'sqlite:///s.db', retention: 30d}\n",
    ),
]


@pytest.mark.parametrize(("kind", "text"), SHORT_FORMS)
def test_every_form_the_models_take_the_schema_takes(kind: Kind, text: str) -> None:
    """Long and short forms the models accept (a mapping store, a chain with `repeat`, an
    `always_for` mapping, a percentage, seconds as numbers, an `all:` step) are valid."""
    model: type[BaseModel] = KINDS[kind][0]
    model.model_validate(yaml.safe_load(text))
    assert errors(kind, text) == []
    assert draft7(kind).is_valid(yaml.safe_load(text))


def _keys(node: Any) -> set[str]:
    """Every property name in a schema, nested definitions included."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                found |= set(value)
            found |= _keys(value)
    elif isinstance(node, list):
        for item in node:
            found |= _keys(item)
    return found


DOCS = REPO / "docs"


def _documented(doc: Path, defs: dict[str, Any], root: dict[str, Any]) -> list[str]:
    """The keys of these schema parts that the doc never mentions as `key`."""
    text = doc.read_text(encoding="utf-8")
    # `key`, or as a dotted path (`prune.glob`).
    return sorted(
        key for key in _keys([root, defs]) if not re.search(rf"`(?:[\w.]+\.)?{key}`", text)
    )


def _split(kind: Kind) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(the file's own properties, its definitions but the actions' params, the params)."""
    doc = schema(kind)
    defs = doc.get("$defs", {})
    params = {name: d for name, d in defs.items() if name.endswith("Params")}
    own = {name: d for name, d in defs.items() if name not in params}
    return {"properties": doc["properties"]}, own, params


def test_every_key_of_remediator_yml_is_in_docs_configuration_md() -> None:
    """docs/configuration.md names every key of remediator.yml, nested sections included:
    a new key without its documentation fails here."""
    root, defs, _ = _split("remediator")
    assert _documented(DOCS / "configuration.md", defs, root) == []


@pytest.mark.parametrize("kind", ["rules", "policies"])
def test_every_key_of_rules_and_policies_files_is_in_docs_rules_md(kind: Kind) -> None:
    """docs/rules.md names every key of a rules file (rules, steps, `all:` parts) and of
    a policies file (severities, chains, approval policies, safety, groups, maintenance)."""
    root, defs, _ = _split(kind)
    assert _documented(DOCS / "rules.md", defs, root) == []


def test_every_param_of_every_action_is_in_docs_actions_md() -> None:
    """docs/actions.md, which rules.md points at for params, names each action's params."""
    _, _, params = _split("rules")
    assert params
    assert _documented(DOCS / "actions.md", params, {}) == []
