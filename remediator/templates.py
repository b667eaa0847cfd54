"""Jinja2 sandboxed templates for targets, argv elements, URLs and messages.

Labels come from the monitored fleet and are hostile input: templates render in the
sandbox with undefined names as errors, and a rendered value is one argv element,
never re-split by a shell.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from remediator.errors import TemplateError


def host_filter(value: object) -> str:
    """Strip a trailing `:port` and IPv6 brackets: 'web1:9100' -> 'web1'."""
    text = str(value)
    if text.startswith("["):
        end = text.find("]")
        if end > 0:
            return text[1:end]
    if text.count(":") == 1:
        return text.split(":", 1)[0]
    return text


def _make_env() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    env.filters["host"] = host_filter
    return env


_ENV = _make_env()


@lru_cache(maxsize=4096)
def compile_template(source: str) -> jinja2.Template:
    """Compile once; raises ValueError on a syntax error (for config validation)."""
    try:
        return _ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"invalid template {source!r}: {exc.message}") from None


def check_template(source: str) -> str:
    """Pydantic hook: a string that must compile as a template."""
    compile_template(source)
    return source


def render(source: str, context: dict[str, Any]) -> str:
    """Render against an alert's context; any failure is a TemplateError."""
    if "{" not in source:
        return source
    try:
        return compile_template(source).render(context)
    except ValueError as exc:
        raise TemplateError(str(exc)) from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template {source!r}: {exc.message}") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template {source!r}: {exc}") from None
    except Exception as exc:  # a filter meeting a label it cannot take: `"x" | round`
        raise TemplateError(
            f"template {source!r}: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
