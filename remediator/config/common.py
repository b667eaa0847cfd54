"""What every config model shares: the strict base and the duration type."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from remediator.config.durations import DURATION_PATTERN, parse_duration

# What JSON Schema says a duration is (`remediator schema`): seconds, or text like 1h30m.
DurationInput = Annotated[float, Field(ge=0)] | Annotated[str, Field(pattern=DURATION_PATTERN)]
Duration = Annotated[float, BeforeValidator(parse_duration, json_schema_input_type=DurationInput)]


class Model(BaseModel):
    """Base: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
