"""`did you mean ...?`: the nearest known name for a misspelt one, in `check` messages."""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`; did you mean `x`?` for the known name nearest `name`, or '' when none is near."""
    close = difflib.get_close_matches(name, sorted(set(known)), n=1)
    return f"; did you mean `{close[0]}`?" if close else ""


def keys_of(model: type[BaseModel]) -> list[str]:
    """The keys a model takes, as written in YAML (`from`, not `from_`)."""
    return [field.alias or name for name, field in model.model_fields.items()]


def _unwrap(tp: Any) -> Any:
    """Annotated[X, ...] -> X; `X | None` -> X; a union of one model with plain types -> it."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin is Union or origin is types.UnionType:
            args = [a for a in get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if len(args) == 1:
                tp = args[0]
            elif len(models) == 1:
                tp = models[0]
            else:
                return None
        else:
            return tp


def _child(model: type[BaseModel], key: str, data: Any) -> Any:
    """The type of `key` in `model`; a model may name it from the data (`model_of`)."""
    model_of = getattr(model, "model_of", None)
    chosen = model_of(key, data) if model_of is not None else None
    if chosen is not None:
        return chosen
    found = [f for name, f in model.model_fields.items() if key in (name, f.alias)]
    return found[0].annotation if found else None


def _item(data: Any, part: str | int) -> Any:
    try:
        return data[part]
    except (KeyError, IndexError, TypeError):
        return None


def model_at(
    root: type[BaseModel], loc: Sequence[str | int], data: Any = None
) -> type[BaseModel] | None:
    """The model that validates the mapping at `loc` in `data` under `root`, if one does."""
    tp: Any = root
    for part in loc:
        tp = _unwrap(tp)
        origin = get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            tp = _child(tp, part, data)
        elif origin in (list, tuple) and isinstance(part, int):
            tp = get_args(tp)[0]
        elif origin is dict and isinstance(part, str):
            tp = get_args(tp)[1]
        else:
            return None
        data = _item(data, part)
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None
