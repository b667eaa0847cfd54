"""A small reading of PromQL: which labels an alerting rule's expression leaves on its alerts.

Enough for `remediator check --prometheus-rules`, not an evaluator. What it reads:

- `sum by (a, b) (...)`, `sum(...) by (a, b)`: exactly `a` and `b`; `sum(...)` alone: none;
  `without (x)`: the inner labels but `x`; `topk`/`bottomk`/`limitk` keep the inner labels.
- A selector (`up`, `node_cpu_seconds_total{mode="idle"}`) keeps its metric's labels. Which
  those are is not in the expression: the reading assumes `instance` and `job` (every
  scraped series carries its target's) and the labels its `=` matchers fix, and cannot
  tell about any other.
- Functions that keep their argument's labels (`rate`, `irate`, `*_over_time`, `abs`...),
  `histogram_quantile` (drops `le`), `label_replace`/`label_join` (add theirs), `absent`
  (the labels its selector fixes), `vector()` (none).
- Binary operators: with a number, the vector side's labels; between vectors, the left
  side's (`on (a)`: only `a`; `ignoring (x)`: the left's but `x`; `group_left (y)`: the
  left's and `y`; `group_right`: the right's and `y`); `and`/`unless`: the left's; `or`:
  the labels both sides carry.

Anything else (an unknown function, a syntax this does not know) is read as "cannot tell".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Every scraped series carries its target's `instance` and `job` (Prometheus adds them).
SCRAPE_LABELS = frozenset({"instance", "job"})

_AGGREGATION_NAMES = """sum avg min max count stddev stdvar group topk bottomk quantile
    count_values limitk limit_ratio"""
_AGGREGATIONS = frozenset(_AGGREGATION_NAMES.split())
_KEEP_INNER = frozenset({"topk", "bottomk", "limitk", "limit_ratio"})
# Functions whose result carries the labels of their (first) vector argument.
_KEEPING = """abs ceil floor round exp ln log2 log10 sqrt sgn clamp clamp_min clamp_max rate
    irate increase delta idelta deriv predict_linear holt_winters double_exponential_smoothing
    resets changes timestamp sort sort_desc sort_by_label sort_by_label_desc avg_over_time
    min_over_time max_over_time sum_over_time count_over_time quantile_over_time
    stddev_over_time stdvar_over_time last_over_time present_over_time mad_over_time
    histogram_count histogram_sum histogram_avg histogram_fraction histogram_stddev
    histogram_stdvar acos acosh asin asinh atan atanh cos cosh sin sinh tan tanh deg rad
    day_of_month day_of_week day_of_year days_in_month hour minute month year"""
_KEEP_LABELS = frozenset(_KEEPING.split())
_SCALARS = frozenset({"time", "pi", "scalar"})
_PRECEDENCE = {
    "or": 1,
    "and": 2,
    "unless": 2,
    **dict.fromkeys(("==", "!=", "<=", "<", ">=", ">"), 3),
    "+": 4,
    "-": 4,
    **dict.fromkeys(("*", "/", "%", "atan2"), 5),
    "^": 6,
}
_TOKEN = re.compile(
    r"""\s+|\#[^\n]*
    |(?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
    |(?P<num>0x[0-9a-fA-F]+|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?
        (?:(?:ms|[smhdwy])(?:[0-9]+(?:ms|[smhdwy]))*)?)
    |(?P<id>[a-zA-Z_:][a-zA-Z0-9_:]*)
    |(?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(){}\[\],:@])""",
    re.VERBOSE,
)


class PromQLError(ValueError):
    """An expression this reading does not understand."""


@dataclass(frozen=True)
class LabelSet:
    """The labels an expression's series carry.

    `exact`: `known` are all of them; otherwise other labels may be there too, except
    those in `dropped`. `pinned`: labels a selector fixes with `=` (what `absent` keeps).
    """

    known: frozenset[str]
    exact: bool
    origin: str
    dropped: frozenset[str] = frozenset()
    pinned: frozenset[str] = frozenset()
    scalar: bool = False

    def has(self, label: str) -> bool | None:
        """True: carried; False: not carried; None: this reading cannot tell."""
        if label in self.known:
            return True
        if self.exact or label in self.dropped:
            return False
        return None


def _scalar(origin: str) -> LabelSet:
    return LabelSet(frozenset(), True, origin, scalar=True)


def _unknown(origin: str) -> LabelSet:
    return LabelSet(frozenset(), False, origin)


def _names(labels: frozenset[str]) -> str:
    return ", ".join(sorted(labels))


@dataclass
class _Parser:
    tokens: list[tuple[str, str]]
    pos: int = 0
    text: str = field(default="")

    def peek(self, offset: int = 0) -> str:
        i = self.pos + offset
        return self.tokens[i][1] if i < len(self.tokens) else ""

    def kind(self) -> str:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else ""

    def take(self, expected: str | None = None) -> str:
        value = self.peek()
        if not value or (expected is not None and value != expected):
            raise PromQLError(f"expected {expected or 'more'} at {value or 'the end'!r}")
        self.pos += 1
        return value

    def label_list(self) -> frozenset[str]:
        self.take("(")
        names: set[str] = set()
        while self.peek() != ")":
            names.add(self.take())
            if self.peek() == ",":
                self.take()
        self.take(")")
        return frozenset(names)

    def expr(self, min_prec: int = 1) -> LabelSet:
        left = self.unary()
        while (op := self.peek()) in _PRECEDENCE and _PRECEDENCE[op] >= min_prec:
            self.take()
            on, ignoring, group, include = self.modifiers()
            next_prec = _PRECEDENCE[op] + (op != "^")  # `^` is right-associative
            right = self.expr(next_prec)
            left = _binary(op, left, right, on, ignoring, group, include)
        return left

    def modifiers(self) -> tuple[frozenset[str] | None, frozenset[str], str, frozenset[str]]:
        on: frozenset[str] | None = None
        ignoring: frozenset[str] = frozenset()
        group, include = "", frozenset[str]()
        if self.peek() == "bool":
            self.take()
        if self.peek() in ("on", "ignoring"):
            which = self.take()
            labels = self.label_list()
            on, ignoring = (labels, ignoring) if which == "on" else (None, labels)
        if self.peek() in ("group_left", "group_right"):
            group = self.take()
            include = self.label_list() if self.peek() == "(" else frozenset()
        return on, ignoring, group, include

    def unary(self) -> LabelSet:
        if self.peek() in ("-", "+"):
            self.take()
            return self.unary()
        return self.postfix(self.primary())

    def postfix(self, inner: LabelSet) -> LabelSet:
        while True:
            if self.peek() == "[":
                while self.take() != "]":
                    pass
            elif self.peek() in ("offset", "@"):
                self.take()
                if self.peek() == "-":
                    self.take()
                self.take()
                if self.peek() == "(":  # @ start() / end()
                    self.take("(")
                    self.take(")")
            else:
                return inner

    def primary(self) -> LabelSet:
        kind, value = self.kind(), self.peek()
        if kind in ("num", "str"):
            self.take()
            return _scalar(value)
        if value in ("Inf", "NaN", "inf", "nan"):
            self.take()
            return _scalar(value)
        if value == "(":
            self.take()
            inner = self.expr()
            self.take(")")
            return inner
        if value == "{":
            return self.selector("")
        if kind != "id":
            raise PromQLError(f"unexpected {value or 'end'!r}")
        self.take()
        if value in _AGGREGATIONS and self.peek() in ("(", "by", "without"):
            return self.aggregation(value)
        if self.peek() == "(":
            return self.call(value)
        return self.selector(value)

    def selector(self, metric: str) -> LabelSet:
        pinned: set[str] = set()
        if self.peek() == "{":
            self.take()
            while self.peek() != "}":
                name = self.take()
                op = self.take()
                raw = self.take()
                if op == "=" and raw[1:-1] and name != "__name__":
                    pinned.add(name)
                if self.peek() == ",":
                    self.take()
            self.take("}")
        shown = metric or "{...}"
        return LabelSet(
            SCRAPE_LABELS | pinned,
            False,
            f"the labels of `{shown}` (a selector: instance, job and its `=` matchers' "
            "labels are assumed)",
            pinned=frozenset(pinned),
        )

    def arguments(self) -> list[LabelSet]:
        self.take("(")
        args: list[LabelSet] = []
        while self.peek() != ")":
            args.append(self.expr())
            if self.peek() == ",":
                self.take()
        self.take(")")
        return args

    def aggregation(self, op: str) -> LabelSet:
        clause, labels = "", frozenset[str]()
        if self.peek() in ("by", "without"):
            clause = self.take()
            labels = self.label_list()
        args = self.arguments()
        if not clause and self.peek() in ("by", "without"):
            clause = self.take()
            labels = self.label_list()
        inner = next((a for a in reversed(args) if not a.scalar), _unknown(f"`{op}(...)`"))
        if op in _KEEP_INNER:
            return inner
        extra = frozenset(a.origin[1:-1] for a in args[:1] if op == "count_values")
        if clause == "without":
            return LabelSet(
                (inner.known - labels) | extra,
                inner.exact,
                f"`{op} without ({_names(labels)})` over {inner.origin}",
                inner.dropped | labels,
            )
        shown = f"`{op} by ({_names(labels)})`" if clause else f"`{op}(...)` (no by)"
        return LabelSet(labels | extra, True, shown)

    def call(self, name: str) -> LabelSet:
        args = self.arguments()
        vectors = [a for a in args if not a.scalar]
        if name in _SCALARS:
            return _scalar(f"`{name}()`")
        if name == "vector":
            return LabelSet(frozenset(), True, "`vector(...)`")
        if name in ("absent", "absent_over_time") and vectors:
            return LabelSet(vectors[0].pinned, True, f"`{name}(...)` (the labels it fixes)")
        if not vectors:
            return _unknown(f"`{name}(...)`")
        inner = vectors[0]
        if name in ("label_replace", "label_join") and len(args) > 1 and args[1].scalar:
            dst = args[1].origin[1:-1]
            return LabelSet(inner.known | {dst}, inner.exact, inner.origin, inner.dropped - {dst})
        if name == "histogram_quantile":
            return LabelSet(inner.known - {"le"}, inner.exact, inner.origin, inner.dropped | {"le"})
        if name in _KEEP_LABELS:
            return inner
        return _unknown(f"`{name}(...)`, a function this check does not read")


def _binary(
    op: str,
    left: LabelSet,
    right: LabelSet,
    on: frozenset[str] | None,
    ignoring: frozenset[str],
    group: str,
    include: frozenset[str],
) -> LabelSet:
    """The labels of `left op right` (see the module's docstring)."""
    if left.scalar and right.scalar:
        return _scalar(f"{left.origin} {op} {right.origin}")
    if left.scalar or right.scalar:
        return right if left.scalar else left
    if op in ("and", "unless"):
        return left
    if op == "or":
        origin = f"{left.origin}, or {right.origin}"
        exact = left.exact and right.exact
        return LabelSet(left.known & right.known, exact, origin, left.dropped | right.dropped)
    if group:
        many = left if group == "group_left" else right
        return LabelSet(many.known | include, many.exact, many.origin, many.dropped - include)
    if on is not None:
        return LabelSet(on, True, f"`{op} on ({_names(on)})`")
    return LabelSet(left.known - ignoring, left.exact, left.origin, left.dropped | ignoring)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise PromQLError(f"unexpected character {text[pos]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind is not None:
            out.append((kind, m.group(kind)))
    return out


def expr_labels(text: str) -> LabelSet:
    """The labels `text`'s series carry; PromQLError when this reading cannot parse it."""
    parser = _Parser(_tokens(text), text=text)
    result = parser.expr()
    if parser.pos != len(parser.tokens):
        raise PromQLError(f"unexpected {parser.peek()!r}")
    return result
