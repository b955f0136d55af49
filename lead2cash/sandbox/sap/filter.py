"""OData V2 ``$filter`` for the SAP sandbox: a lark grammar compiled once, expressions compiled to closures.

Supported: ``eq ne gt ge lt le``, ``and or not``, parentheses, the functions ``substringof startswith
endswith tolower toupper length trim indexof``, and the literals ``'text'`` (``''`` escapes a quote), numbers,
``12.5M`` decimals, ``true``/``false``/``null``, ``datetime'...'``, ``datetimeoffset'...'``, ``guid'...'`` and
``time'...'``. Literal types are checked against the property's Edm type when the filter is compiled, as the
Gateway does ("Invalid parametertype used at function 'eq'"), and a string literal compared with a property
must fit the property's ``MaxLength`` (the Gateway converts it to the ABAP field's type and refuses what does
not fit, rather than comparing a value the field can never hold). Arithmetic operators are not supported.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import LarkError

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: _NOT not_expr -> not_
         | comparison
?comparison: primary (COMP_OP primary)?
?primary: literal
        | func_call
        | prop
        | "(" or_expr ")"
func_call: NAME "(" [or_expr ("," or_expr)*] ")"
prop: NAME
?literal: STRING -> string
        | DATETIMEOFFSET -> datetimeoffset
        | DATETIME -> datetime
        | GUID -> guid
        | TIME -> time
        | DECIMAL -> decimal
        | NUMBER -> number
        | TRUE -> true
        | FALSE -> false
        | NULL -> null

_OR.3: /or\b/
_AND.3: /and\b/
_NOT.3: /not\b/
COMP_OP.3: /(eq|ne|gt|ge|lt|le)\b/
TRUE.3: /true\b/
FALSE.3: /false\b/
NULL.3: /null\b/
DATETIMEOFFSET.4: /datetimeoffset'[^']*'/
DATETIME.4: /datetime'[^']*'/
GUID.4: /guid'[^']*'/
TIME.4: /time'[^']*'/
STRING: /'(?:[^']|'')*'/
DECIMAL.2: /-?\d+(\.\d+)?[mM]/
NUMBER: /-?\d+(\.\d+)?([eE][+-]?\d+)?[lLdDfF]?/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
%ignore /\s+/
"""

_parser = Lark(GRAMMAR, parser="lalr", maybe_placeholders=False)


class FilterError(ValueError):
    """An invalid ``$filter``; the message is what the Gateway would say."""


# Edm type family per property type, for literal type checks.
_FAMILY = {
    "Edm.String": "string",
    "Edm.Boolean": "bool",
    "Edm.Decimal": "number",
    "Edm.Double": "number",
    "Edm.Single": "number",
    "Edm.Int16": "number",
    "Edm.Int32": "number",
    "Edm.Int64": "number",
    "Edm.Byte": "number",
    "Edm.DateTime": "datetime",
    "Edm.DateTimeOffset": "datetime",
    "Edm.Guid": "guid",
    "Edm.Time": "time",
}

Row = dict[str, Any]
Evaluator = Callable[[Row], Any]


class _Node:
    __slots__ = ("eq_pairs", "family", "fn", "literal", "pos", "prop")

    def __init__(
        self,
        fn: Evaluator,
        family: str | None,
        pos: int = 0,
        prop: str | None = None,
        literal: bool = False,
    ):
        self.fn = fn
        self.family = family  # None = unknown/any (null literal)
        self.pos = pos
        self.prop = prop
        self.literal = literal
        self.eq_pairs: list[tuple[str, Any]] = []


def _parse_datetime(text: str, pos: int) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"Invalid date/time literal '{text}' (Position: {pos})") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_TIME_RE = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:\.\d+)?S)?$")


def _parse_time(text: str, pos: int) -> timedelta:
    m = _TIME_RE.match(text)
    if not m:
        raise FilterError(f"Invalid time literal '{text}' (Position: {pos})")
    h, mi, s = (int(g or 0) for g in m.groups())
    return timedelta(hours=h, minutes=mi, seconds=s)


def _literal(tree: Tree) -> _Node:
    token: Token = tree.children[0] if tree.children else Token("NULL", "null")
    pos = token.start_pos or 0
    kind = tree.data
    raw = str(token)
    value: Any
    family: str | None
    if kind == "string":
        value, family = raw[1:-1].replace("''", "'"), "string"
    elif kind == "datetime":
        value, family = _parse_datetime(raw[len("datetime'") : -1], pos), "datetime"
    elif kind == "datetimeoffset":
        value, family = _parse_datetime(raw[len("datetimeoffset'") : -1], pos), "datetime"
    elif kind == "guid":
        try:
            value, family = uuid.UUID(raw[len("guid'") : -1]), "guid"
        except ValueError:
            raise FilterError(f"Invalid GUID literal {raw} (Position: {pos})") from None
    elif kind == "time":
        value, family = _parse_time(raw[len("time'") : -1], pos), "time"
    elif kind in ("decimal", "number"):
        try:
            value, family = Decimal(raw.rstrip("mMlLdDfF")), "number"
        except InvalidOperation:
            raise FilterError(f"Invalid number literal {raw} (Position: {pos})") from None
    elif kind == "true":
        value, family = True, "bool"
    elif kind == "false":
        value, family = False, "bool"
    else:
        value, family = None, None
    return _Node(lambda _row, v=value: v, family, pos, literal=True)


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "eq":
        return bool(a == b)
    if op == "ne":
        return bool(a != b)
    if a is None or b is None:
        return False
    try:
        if op == "gt":
            return bool(a > b)
        if op == "ge":
            return bool(a >= b)
        if op == "lt":
            return bool(a < b)
        return bool(a <= b)
    except TypeError:
        return False


def _str(v: Any) -> str:
    return "" if v is None else str(v)


_FUNCS: dict[str, tuple[tuple[str, ...], str, Callable[..., Any]]] = {
    # name: (argument families, result family, implementation)
    "substringof": (("string", "string"), "bool", lambda sub, s: _str(sub) in _str(s)),
    "startswith": (("string", "string"), "bool", lambda s, p: _str(s).startswith(_str(p))),
    "endswith": (("string", "string"), "bool", lambda s, p: _str(s).endswith(_str(p))),
    "tolower": (("string",), "string", lambda s: _str(s).lower()),
    "toupper": (("string",), "string", lambda s: _str(s).upper()),
    "trim": (("string",), "string", lambda s: _str(s).strip()),
    "length": (("string",), "number", lambda s: Decimal(len(_str(s)))),
    "indexof": (("string", "string"), "number", lambda s, p: Decimal(_str(s).find(_str(p)))),
}


class _Compiler:
    def __init__(self, properties: dict[str, str], type_name: str, max_lengths: dict[str, int]):
        self.properties = properties  # name -> Edm type
        self.type_name = type_name
        self.max_lengths = max_lengths

    def node(self, tree: Tree | Token) -> _Node:
        if isinstance(tree, Token):  # pragma: no cover - grammar always wraps tokens
            raise FilterError(f"Unexpected token '{tree}'")
        data = tree.data
        if data == "prop":
            name = str(tree.children[0])
            edm = self.properties.get(name)
            if edm is None:
                raise FilterError(f"Property {name} not found in type {self.type_name}")
            return _Node(
                lambda row, n=name: row.get(n),
                _FAMILY.get(edm, "string"),
                tree.children[0].start_pos or 0,
                prop=name,
            )
        if data in (
            "string",
            "datetime",
            "datetimeoffset",
            "guid",
            "time",
            "decimal",
            "number",
            "true",
            "false",
            "null",
        ):
            return _literal(tree)
        if data == "comparison":
            left, op_token, right = tree.children
            return self.comparison(self.node(left), str(op_token), self.node(right), op_token.start_pos or 0)
        if data == "and_expr":
            parts = [self.boolean(self.node(c), "and") for c in tree.children]
            fns = [p.fn for p in parts]
            result = _Node(lambda row: all(f(row) for f in fns), "bool")
            for p in parts:
                result.eq_pairs.extend(p.eq_pairs)
            return result
        if data == "or_expr":
            fns = [self.boolean(self.node(c), "or").fn for c in tree.children]
            return _Node(lambda row: any(f(row) for f in fns), "bool")
        if data == "not_":
            inner = self.boolean(self.node(tree.children[0]), "not").fn
            return _Node(lambda row: not inner(row), "bool")
        if data == "func_call":
            return self.function(tree)
        raise FilterError(f"Unsupported expression '{data}'")  # pragma: no cover

    def boolean(self, node: _Node, where: str) -> _Node:
        if node.family not in ("bool", None):
            raise FilterError(f"Invalid parametertype used at function '{where}' (Position: {node.pos})")
        return node

    def comparison(self, left: _Node, op: str, right: _Node, pos: int) -> _Node:
        lf, rf = left.family, right.family
        if lf is not None and rf is not None and lf != rf:
            raise FilterError(f"Invalid parametertype used at function '{op}' (Position: {pos})")
        for prop_node, other in ((left, right), (right, left)):
            limit = self.max_lengths.get(prop_node.prop or "")
            if limit is not None and other.literal and other.family == "string":
                value = other.fn({})
                if len(value) > limit:
                    raise FilterError(
                        f"Value '{value}' for property '{prop_node.prop}' exceeds length {limit} "
                        f"(Position: {other.pos})"
                    )
        lfn, rfn = left.fn, right.fn
        node = _Node(lambda row: _compare(op, lfn(row), rfn(row)), "bool", pos)
        if op == "eq" and left.prop and right.literal:
            node.eq_pairs.append((left.prop, right.fn({})))
        elif op == "eq" and right.prop and left.literal:
            node.eq_pairs.append((right.prop, left.fn({})))
        return node

    def function(self, tree: Tree) -> _Node:
        name_token = tree.children[0]
        name = str(name_token)
        args = [self.node(c) for c in tree.children[1:] if c is not None]
        spec = _FUNCS.get(name)
        if spec is None:
            raise FilterError(f"Function '{name}' is not supported (Position: {name_token.start_pos})")
        families, result, impl = spec
        if len(args) != len(families):
            raise FilterError(
                f"Wrong number of parameters for function '{name}' (Position: {name_token.start_pos})"
            )
        for arg, fam in zip(args, families, strict=True):
            if arg.family not in (fam, None):
                raise FilterError(f"Invalid parametertype used at function '{name}' (Position: {arg.pos})")
        fns = [a.fn for a in args]
        return _Node(lambda row: impl(*(f(row) for f in fns)), result, name_token.start_pos or 0)


class CompiledFilter:
    """A predicate over rows, plus the ``Prop eq literal`` pairs of its top-level conjunction (index hints)."""

    __slots__ = ("eq_pairs", "predicate")

    def __init__(self, predicate: Evaluator, eq_pairs: list[tuple[str, Any]]):
        self.predicate = predicate
        self.eq_pairs = eq_pairs

    def __call__(self, row: Row) -> bool:
        return bool(self.predicate(row))


@lru_cache(maxsize=512)
def _parse(text: str) -> Tree:
    try:
        return _parser.parse(text)
    except LarkError as exc:
        pos = getattr(exc, "column", None) or getattr(exc, "pos_in_stream", None) or 0
        raise FilterError(f"Invalid filter expression: '{text}' (Position: {pos})") from None


def compile_filter(
    text: str, properties: dict[str, str], type_name: str, max_lengths: dict[str, int] | None = None
) -> CompiledFilter:
    """Compile ``text`` for an entity type whose properties map names to Edm types (and, for strings, to
    their ``MaxLength``)."""
    if not text.strip():
        raise FilterError("Invalid filter expression: ''")
    tree = _parse(text)
    compiler = _Compiler(properties, type_name, max_lengths or {})
    node = compiler.boolean(compiler.node(tree), "filter")
    return CompiledFilter(node.fn, node.eq_pairs)
