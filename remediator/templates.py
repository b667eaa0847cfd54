"""Jinja2 sandboxed templates for targets, argv elements, URLs and messages.

Labels come from the monitored fleet and are hostile input: templates render in the
sandbox with undefined names as errors, and a rendered value is one argv element,
never re-split by a shell.

URL templates (`render_url`) percent-encode the value of every `{{ }}` expression, so a
label is always one path segment or one query value: `/`, `?`, `#`, `&`, `=`, `@`, `%`
and `\\` arrive encoded. Values the operator controls and marks `UrlSafe` (the
`target.*` values the http action passes in) and the output of `urlquote` are inserted
as they are. This is a `finalize` hook rather than an explicit filter so that a rule
cannot forget it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import jinja2
from jinja2 import nodes
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


class UrlSafe(str):
    """Text a URL template inserts unencoded: operator-given values, `urlquote` output."""

    __slots__ = ()


def urlquote(value: object) -> str:
    """Percent-encode all but letters, digits and `-._~`: one path segment or query value."""
    if isinstance(value, UrlSafe):
        return value
    return UrlSafe(quote(str(value), safe=""))


def _make_env(**options: Any) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True, **options
    )
    env.filters["host"] = host_filter
    env.filters["urlquote"] = urlquote
    return env


_ENV = _make_env()
_URL_ENV = _make_env(finalize=urlquote)


def _compile(env: jinja2.Environment, source: str) -> jinja2.Template:
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"invalid template {source!r}: {exc.message}") from None


@lru_cache(maxsize=4096)
def compile_template(source: str) -> jinja2.Template:
    """Compile once; raises ValueError on a syntax error (for config validation)."""
    return _compile(_ENV, source)


@lru_cache(maxsize=1024)
def _compile_url(source: str) -> jinja2.Template:
    return _compile(_URL_ENV, source)


def check_template(source: str) -> str:
    """Pydantic hook: a string that must compile as a template."""
    compile_template(source)
    return source


def render(source: str, context: dict[str, Any]) -> str:
    """Render against an alert's context; any failure is a TemplateError."""
    if "{" not in source:
        return source
    return _render(compile_template, source, context)


def render_url(source: str, context: dict[str, Any]) -> str:
    """Render a URL template: every expression's value percent-encoded unless UrlSafe."""
    if "{" not in source:
        return source
    return _render(_compile_url, source, context)


def template_parts(source: str) -> list[str | frozenset[str]]:
    """The template as literal text and, per `{{ }}` expression, the names it reads.

    ValueError for a syntax error or a `{% %}` block: a URL template whose parts are
    only text and expressions can be checked before it renders (see actions/urls.py).
    """
    try:
        body = _URL_ENV.parse(source).body
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"invalid template {source!r}: {exc.message}") from None
    parts: list[str | frozenset[str]] = []
    for node in body:
        if not isinstance(node, nodes.Output):
            raise ValueError(
                f"template {source!r}: only text and {{{{ }}}} expressions are allowed"
            )
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                parts.append(child.data)
            else:
                parts.append(frozenset(n.name for n in child.find_all(nodes.Name)))
    return parts


def _render(
    compile_: Callable[[str], jinja2.Template], source: str, context: dict[str, Any]
) -> str:
    try:
        return compile_(source).render(context)
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
