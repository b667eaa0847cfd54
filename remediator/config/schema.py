"""JSON Schema (draft 2020-12) of remediator.yml, a rules file and a policies file, made
from the models `check` validates with: `remediator schema KIND` prints it, schemas/ keeps
it for editors (each shipped YAML file names its schema in a `yaml-language-server` line).

A schema is a first line of defence while typing: it knows every key, type, default and
the shape of durations, matchers and `N per WINDOW`, and each action's params. What needs
more than one file (a chain a rule names, an inventory host, SSH configured) or a template
rendered stays with `remediator check`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from remediator.config.models import ConfigFile, PoliciesFile, RulesFile
from remediator.config.steps import ALL, ActionCall, StepSpec, action_types

Kind = Literal["remediator", "rules", "policies"]
KINDS: dict[Kind, tuple[type[BaseModel], str, str]] = {
    "remediator": (
        ConfigFile,
        "remediator.yml",
        "remediator's configuration: the HTTP listener, the store, where rules and policies "
        "live, SSH, Slack, email, notification retries and the inventory of hosts.",
    ),
    "rules": (
        RulesFile,
        "remediator rules file",
        "A rules/*.yml file: which alerts each rule matches, the steps it runs on which "
        "target, and the guards and escalation around them.",
    ),
    "policies": (
        PoliciesFile,
        "remediator policies file",
        "A policies/*.yml file: severities, escalation chains, approval policies and safety "
        "guards (sections may be split across files).",
    ),
}
DRAFT = "https://json-schema.org/draft/2020-12/schema"
# Where the committed copies live in the repository; each `$id` names its own.
SCHEMA_DIR = "schemas"


def file_name(kind: Kind) -> str:
    """The committed schema's file name: `rules.schema.json`."""
    return f"{kind}.schema.json"


class _Generator(GenerateJsonSchema):
    """pydantic's generator, with a step's `params` keyed by its `action`.

    The key is an `if: {action: NAME}` / `then: {params: NAME's params model}` per action
    rather than a `oneOf` over whole steps: an editor then names the one wrong key of the
    action written, where a `oneOf` would report a mismatch with each of the nine. What a
    params model checks in code across its keys (rotate_logs: `service` or `config`) is
    left to `check`.
    """

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        out = super().model_schema(schema)
        cls = schema["cls"]
        if issubclass(cls, ActionCall):
            self._keyed_by_action(out, is_step=issubclass(cls, StepSpec))
        return out

    def _keyed_by_action(self, out: JsonSchemaValue, is_step: bool) -> None:
        """`action` is one of the registry's; `params` is that action's params model."""
        props = out["properties"]
        kinds = action_types()
        props["action"] = {**props["action"], "enum": sorted(kinds)}
        keyed = []
        for name, kind in sorted(kinds.items()):
            params_schema = kind.params_model.__pydantic_core_schema__
            then: dict[str, Any] = {"properties": {"params": self.generate_inner(params_schema)}}
            if any(f.is_required() for f in kind.params_model.model_fields.values()):
                then["required"] = ["params"]
            when = {"properties": {"action": {"const": name}}, "required": ["action"]}
            keyed.append({"if": when, "then": then})
        out["allOf"] = keyed
        if is_step:
            # A step is an action (with params), or `all:` with its parts, never both.
            out["required"] = [key for key in out.get("required", []) if key != "action"]
            if not out["required"]:
                del out["required"]
            out["oneOf"] = [
                {"required": ["action"], "not": {"required": [ALL]}},
                {
                    "required": [ALL],
                    "not": {"anyOf": [{"required": ["action"]}, {"required": ["params"]}]},
                },
            ]
            # `all: null` is no step either; parts run together: one is a plain step.
            (parts,) = [v for v in props[ALL]["anyOf"] if v.get("type") == "array"]
            props[ALL] = {"title": props[ALL].get("title", "All"), **parts, "minItems": 2}


# pydantic's names of bounds it could not place on a union (a Duration's, written as a
# number or as text) and the JSON Schema keyword each is on the union's number branch.
_BOUNDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}


def _tidy(node: Any) -> None:
    """Say in JSON Schema what pydantic leaves unsaid: bounds it could not place on a union
    go onto the number branches below them (text is checked by `check`), and a mapping
    whose keys have a pattern (inventory hosts) takes no key outside it."""
    if isinstance(node, list):
        for item in node:
            _tidy(item)
        return
    if not isinstance(node, dict):
        return
    if "patternProperties" in node:
        node.setdefault("additionalProperties", False)
    bounds = {_BOUNDS[key]: node.pop(key) for key in list(node) if key in _BOUNDS}
    if bounds:
        pending = [node]
        while pending:
            branch = pending.pop()
            if branch.get("type") in ("number", "integer"):
                branch.update(bounds)
            pending += branch.get("anyOf", [])
    for value in node.values():
        _tidy(value)


def schema(kind: Kind) -> dict[str, Any]:
    """The JSON Schema of a `kind` file, as `remediator schema KIND` prints it."""
    model, title, description = KINDS[kind]
    body = model.model_json_schema(schema_generator=_Generator, mode="validation")
    _tidy(body)
    body.pop("title", None)
    body.pop("description", None)
    return {
        "$schema": DRAFT,
        "$id": f"https://remediator.invalid/{SCHEMA_DIR}/{file_name(kind)}",
        "title": title,
        "description": description,
        **body,
    }


def render(kind: Kind) -> str:
    """The schema as the committed file holds it (two-space JSON, a final newline)."""
    return json.dumps(schema(kind), indent=2, ensure_ascii=False) + "\n"
