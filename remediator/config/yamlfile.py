"""Load YAML while remembering the line of every mapping key and sequence item."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from remediator.config.problems import Problem, format_path

Loc = tuple[str | int, ...]


@dataclass
class YamlDoc:
    """A parsed YAML document and where each of its parts came from."""

    file: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int:
        """The line of the deepest part of `loc` that exists in the file."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return 1

    def problem(self, loc: Loc, message: str) -> Problem:
        """A problem located at `loc` in this document."""
        return Problem(self.file, self.line_of(loc), format_path(loc), message)


class _Builder:
    def __init__(self, doc: YamlDoc, constructor: yaml.constructor.SafeConstructor) -> None:
        self.doc = doc
        self.constructor = constructor
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.doc.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool):
                    key = str(key)
                child = (*loc, str(key))
                if key in out:
                    line = key_node.start_mark.line + 1
                    path = format_path(child)
                    self.problems.append(Problem(self.doc.file, line, path, "duplicate key"))
                self.doc.lines[child] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        return self.constructor.construct_object(node, deep=True)


TOO_DEEP = "invalid YAML: nested too deeply, or an alias that contains itself (`&a [*a]`)"


def parse_yaml(text: str, file: str) -> tuple[YamlDoc, list[Problem]]:
    """Parse one YAML document; syntax errors come back as problems, never raised."""
    doc = YamlDoc(file=file, data=None)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        message = f"invalid YAML: {exc.problem or exc}"
        return doc, [Problem(file, line, "", message)]
    except yaml.YAMLError as exc:
        return doc, [Problem(file, 1, "", f"invalid YAML: {exc}")]
    except RecursionError:
        return doc, [Problem(file, 1, "", TOO_DEEP)]
    if node is None:
        return doc, []
    builder = _Builder(doc, yaml.SafeLoader(""))
    try:
        doc.data = builder.build(node, ())
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        return doc, [Problem(file, line, "", f"invalid YAML: {exc.problem or exc}")]
    except RecursionError:
        return doc, [Problem(file, 1, "", TOO_DEEP)]
    return doc, builder.problems


def load_yaml(path: Path, display: str) -> tuple[YamlDoc, list[Problem]]:
    """Read and parse a YAML file; an unreadable file is a problem, not an exception."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return YamlDoc(file=display, data=None), [Problem(display, 1, "", f"cannot read: {exc}")]
    return parse_yaml(text, display)
