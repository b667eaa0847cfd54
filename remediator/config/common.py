"""What every config model shares: the strict base and the duration type."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from remediator.config.durations import parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration)]


class Model(BaseModel):
    """Base: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
