"""A rule's step: its action, and its `params` parsed by that action's own model; or
`all: [PART, ...]`, parts that start together (each an action and its params)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import (
    Field,
    SerializationInfo,
    SerializeAsAny,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from remediator.config.common import Duration, Model
from remediator.config.policies import ApprovalName
from remediator.config.suggest import did_you_mean

if TYPE_CHECKING:
    from remediator.actions.base import Action


# The context of a second pass over a rules file whose only problems are in its steps'
# actions or params: its rules load with empty params, so that `check` still reports, in
# the same run, what needs only their names, targets and actions (SSH, approval, chains).
OUTLINE = {"outline": True}


def _outline(info: ValidationInfo) -> bool:
    return isinstance(info.context, dict) and info.context.get("outline") is True


def action_types() -> Mapping[str, type[Action]]:
    """The registry of actions, by name (actions/__init__.py)."""
    # Imported here: every action module imports these models.
    from remediator.actions import ACTIONS

    return ACTIONS


def unknown_action(action: str) -> str | None:
    """Why `action` is no action (with the nearest one and the list), or None."""
    known = action_types()
    if action in known:
        return None
    near = did_you_mean(action, known)
    return f"unknown action {action!r}{near} (one of {', '.join(sorted(known))})"


# The `action` of a step that runs its parts together (`all: [...]`).
ALL = "all"


class ActionCall(Model):
    """An action with its `params` (parsed by the action's own model, once, here) and
    its `approval:`: a step, or one part of an `all:` step.

    Template strings in them stay as written: the action renders them per alert (plan).
    """

    action: str
    params: SerializeAsAny[Model] = Field(default_factory=dict, validate_default=True)
    # `required` (ask the `default` policy), `auto` (ask only when `always_for` says), a
    # policy's name (ask that policy), or unset: as the rule says, else `auto`.
    approval: ApprovalName | None = None

    @field_validator("action")
    @classmethod
    def _known_action(cls, action: str, info: ValidationInfo) -> str:
        why = unknown_action(action)
        if why is not None and not _outline(info) and not cls._may_be(action):
            raise ValueError(why)
        return action

    @classmethod
    def _may_be(cls, action: str) -> bool:
        """An action name this model takes besides the registry's (`all` on a step)."""
        return False

    # JSON Schema: a mapping, keyed by `action` to its params model (config/schema.py).
    @field_validator("params", mode="plain", json_schema_input_type=dict[str, Any])
    @classmethod
    def _parse_params(cls, params: Any, info: ValidationInfo) -> Model:
        kind = action_types().get(str(info.data.get("action")))
        if kind is None or _outline(info):  # an unknown action is reported above
            return Model()
        return kind.params_model.model_validate(params)

    @field_serializer("params")
    def _params_as_written(self, params: Model, info: SerializationInfo) -> Any:
        # As the rule gives them (defaults left out): what config_hash and dumps show.
        return params.model_dump(mode=info.mode, by_alias=True, exclude_unset=True)

    @classmethod
    def model_of(cls, key: str, data: Any) -> type[Model] | None:
        """The model of `params` for these step data (`check`'s did-you-mean reads it)."""
        action = data.get("action") if isinstance(data, dict) else None
        kind = action_types().get(action) if isinstance(action, str) else None
        return kind.params_model if key == "params" and kind is not None else None


class PartSpec(ActionCall):
    """One part of an `all:` step: an action, its params, maybe its own `approval:`."""

    @model_validator(mode="before")
    @classmethod
    def _no_step_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "verify" in data:
            raise ValueError(
                "`verify` on a part: the verify window belongs to the all: step (one window "
                "after the last part finishes): move `verify:` beside `all:`"
            )
        if isinstance(data, dict) and ALL in data:
            raise ValueError(
                "a nested `all:`: parts run together already; list these parts in the "
                "outer `all:` instead"
            )
        return data


class StepSpec(ActionCall):
    """One remediation step: an action, or `all: [PART, ...]` run together (action `all`)."""

    verify: Duration = 300.0
    # Left out of dumps when unset: config_hash stays as it was for steps without parts.
    parts_: list[PartSpec] | None = Field(default=None, alias=ALL, exclude_if=lambda v: v is None)

    @classmethod
    def _may_be(cls, action: str) -> bool:
        return action == ALL

    @model_validator(mode="before")
    @classmethod
    def _all_step(cls, data: Any) -> Any:
        if not isinstance(data, dict) or ALL not in data:
            return data
        beside = [key for key in ("action", "params") if key in data]
        if beside:
            raise ValueError(
                f"`{'` and `'.join(beside)}` beside `all:`: an all: step runs its parts; "
                "give each part its own action and params inside `all:`, or drop `all:`"
            )
        return {**data, "action": ALL}

    @field_validator("parts_")
    @classmethod
    def _two_parts(cls, parts: list[PartSpec] | None) -> list[PartSpec] | None:
        if parts is not None and len(parts) < 2:
            raise ValueError(
                f"`all:` has {len(parts)} part(s): it runs at least 2 together; write a "
                "single action as a plain step (action, params)"
            )
        return parts

    @model_validator(mode="after")
    def _action_all_has_parts(self) -> StepSpec:
        if self.action == ALL and self.parts_ is None:
            raise ValueError(
                "`action: all` needs its parts: write `all: [{action: A, params: {...}}, ...]`"
            )
        return self

    @property
    def parts(self) -> list[ActionCall]:
        """What runs: the parts of an `all:` step, else the step itself."""
        return list(self.parts_) if self.parts_ is not None else [self]

    @property
    def is_all(self) -> bool:
        """Whether the step runs parts together (`all:`)."""
        return self.parts_ is not None
