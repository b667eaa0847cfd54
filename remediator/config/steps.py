"""A rule's step: its action, and its `params` parsed by that action's own model."""

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


class StepSpec(Model):
    """One remediation step; `params` are parsed by the action's own model, once, here.

    Template strings in them stay as written: the action renders them per alert (plan).
    """

    action: str
    params: SerializeAsAny[Model] = Field(default_factory=dict, validate_default=True)
    verify: Duration = 300.0
    # `required` (ask the `default` policy), `auto` (ask only when `always_for` says), a
    # policy's name (ask that policy), or unset: as the rule says, else `auto`.
    approval: ApprovalName | None = None

    @field_validator("action")
    @classmethod
    def _known_action(cls, action: str, info: ValidationInfo) -> str:
        why = unknown_action(action)
        if why is not None and not _outline(info):
            raise ValueError(why)
        return action

    @field_validator("params", mode="plain")
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
