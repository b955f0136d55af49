"""The SOQL subset the sandbox answers, parsed with a lark LALR grammar and compiled to closures.

Supported: field lists with parent relationship paths (``Account.Name``, ``PricebookEntry.Product2.ProductCode``)
and child subqueries (``(SELECT ... FROM OpportunityLineItems)``), ``COUNT()``, WHERE with AND/OR/NOT and
parentheses, ``= != <> < <= > >=``, IN / NOT IN, LIKE, null, booleans, numbers, strings, date and datetime
literals and the date literals TODAY, YESTERDAY, TOMORROW, THIS_/LAST_/NEXT_ MONTH and YEAR, LAST_N_DAYS:n,
NEXT_N_DAYS:n; ORDER BY several fields with ASC/DESC and NULLS FIRST/LAST; LIMIT and OFFSET.

Like the platform: text comparisons are case-insensitive, ids compare exactly (15-character literals are
accepted), a datetime field only compares with a datetime literal and a date field with a date literal.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from lead2cash.sandbox.salesforce import ids
from lead2cash.sandbox.salesforce.schema import (
    DATA_PATH,
    ID_TYPES,
    NUMBER_TYPES,
    TEXT_TYPES,
    SObject,
    sobject,
)
from lead2cash.sandbox.salesforce.store import UTC, Record, SfError, Store, parse_datetime

GRAMMAR = r"""
start: query
query: "SELECT"i select_list "FROM"i NAME where? order_by? limit? offset?
subquery: "(" "SELECT"i select_list "FROM"i NAME where? order_by? limit? ")"
select_list: select_item ("," select_item)*
?select_item: count | path | subquery
count: "COUNT"i "(" ")"
path: NAME ("." NAME)*

where: "WHERE"i cond
?cond: and_cond | cond "OR"i and_cond -> or_
?and_cond: not_cond | and_cond "AND"i not_cond -> and_
?not_cond: atom | "NOT"i not_cond -> not_
?atom: "(" cond ")" | comparison
comparison: path OP value                       -> compare
          | path "IN"i "(" value ("," value)* ")"  -> in_
          | path "NOT"i "IN"i "(" value ("," value)* ")" -> not_in
          | path "LIKE"i STRING                  -> like

value: STRING | NUMBER | DATETIME | DATE | DATE_LITERAL | DATE_N | TRUE | FALSE | NULL

order_by: "ORDER"i "BY"i order_item ("," order_item)*
order_item: path DIRECTION? nulls?
nulls: "NULLS"i NULLS_POS
limit: "LIMIT"i INT
offset: "OFFSET"i INT

OP: "!=" | "<>" | "<=" | ">=" | "=" | "<" | ">"
DIRECTION: /ASC|DESC/i
NULLS_POS: /FIRST|LAST/i
TRUE.2: /true/i
FALSE.2: /false/i
NULL.2: /null/i
DATETIME.4: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?(Z|[+-]\d{2}:?\d{2})/
DATE.3: /\d{4}-\d{2}-\d{2}/
DATE_N.3: /(LAST_N_DAYS|NEXT_N_DAYS):\d+/i
DATE_LITERAL.2: /(TODAY|YESTERDAY|TOMORROW|THIS_MONTH|LAST_MONTH|NEXT_MONTH|THIS_YEAR|LAST_YEAR|NEXT_YEAR)(?![A-Za-z0-9_])/i
NUMBER: /[+-]?\d+(\.\d+)?/
INT: /\d+/
STRING: /'(\\.|[^'\\])*'/
NAME: /[A-Za-z_][A-Za-z0-9_]*/

%import common.WS
%ignore WS
"""

_PARSER = Lark(GRAMMAR, parser="lalr", lexer="contextual", maybe_placeholders=False)
MAX_OFFSET = 2000
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}


def _position_message(soql: str, line: int, column: int, text: str) -> str:
    lines = soql.splitlines() or [soql]
    src = lines[line - 1] if 0 < line <= len(lines) else soql
    return f"\n{src}\n{' ' * max(column - 1, 0)}^\nERROR at Row:{line}:Column:{column}\n{text}"


def malformed(soql: str, token: Token | None, text: str, code: str = "MALFORMED_QUERY") -> SfError:
    line = getattr(token, "line", 1) or 1
    column = getattr(token, "column", 1) or 1
    return SfError(400, code, _position_message(soql, line, column, text))


# --- compiled query -------------------------------------------------------------------------------------


Getter = Callable[[Record], Any]
Predicate = Callable[[Record], bool]


@dataclass
class Projection:
    """What one record turns into: fields, nested parent objects and child subqueries, in select order."""

    obj: SObject
    items: list[tuple[str, Any]] = field(default_factory=list)  # ("f", name) | ("r", rel) | ("c", Query)
    parents: dict[str, tuple[str, SObject, Projection]] = field(default_factory=dict)  # rel -> fk, target

    def parent(self, rel: str, fk: str, target: SObject) -> Projection:
        if rel not in self.parents:
            self.parents[rel] = (fk, target, Projection(target))
            self.items.append(("r", rel))
        return self.parents[rel][2]

    def add_field(self, name: str) -> None:
        if ("f", name) not in self.items:
            self.items.append(("f", name))


@dataclass
class Query:
    obj: SObject
    projection: Projection
    count_only: bool = False
    where: Predicate | None = None
    order: list[tuple[Getter, bool, bool]] = field(default_factory=list)  # getter, desc, nulls_first
    limit: int | None = None
    offset: int = 0
    # for child subqueries
    relationship: str = ""
    child_fk: str = ""

    def select(self, store: Store, rows: list[Record] | Any, all_rows: bool) -> list[Record]:
        where = self.where
        if all_rows:
            out = [r for r in rows if where(r)] if where else list(rows)
        else:
            out = [r for r in rows if not r["IsDeleted"] and (where is None or where(r))]
        for getter, desc, nulls_first in reversed(self.order):
            none_key = (0,) if nulls_first != desc else (2,)

            def key(r: Record, g: Getter = getter, nk: tuple[int] = none_key) -> tuple[Any, ...]:
                v = g(r)
                return nk if v is None else (1, v.casefold() if isinstance(v, str) and g.text else v)  # type: ignore[attr-defined]

            out.sort(key=key, reverse=desc)
        if self.offset:
            out = out[self.offset :]
        if self.limit is not None:
            out = out[: self.limit]
        return out

    def run(self, store: Store, all_rows: bool) -> list[Record]:
        return self.select(store, store.tables[self.obj.name].values(), all_rows)


def render(
    store: Store, rec: Record, proj: Projection, all_rows: bool, base: str = DATA_PATH
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "attributes": {"type": proj.obj.name, "url": f"{base}/sobjects/{proj.obj.name}/{rec['Id']}"}
    }
    for kind, item in proj.items:
        if kind == "f":
            out[item] = rec.get(item)
        elif kind == "r":
            fk, target, sub = proj.parents[item]
            parent_id = rec.get(fk)
            parent = store.tables[target.name].get(parent_id) if parent_id else None
            out[item] = render(store, parent, sub, all_rows, base) if parent is not None else None
        else:
            q: Query = item
            children = q.select(store, store.children(q.obj.name, q.child_fk, rec["Id"]), all_rows)
            out[q.relationship] = (
                {
                    "totalSize": len(children),
                    "done": True,
                    "records": [render(store, c, q.projection, all_rows, base) for c in children],
                }
                if children
                else None
            )
    return out


# --- compiler -------------------------------------------------------------------------------------------


class Compiler:
    def __init__(self, soql: str, store: Store) -> None:
        self.soql = soql
        self.store = store
        self.today = store.clock.today()

    def invalid_field(self, token: Token, obj: SObject) -> SfError:
        return malformed(
            self.soql,
            token,
            f"No such column '{token}' on entity '{obj.name}'. If you are attempting to use a custom field, "
            "be sure to append the '__c' after the custom field name. Please reference your WSDL or the "
            "describe call for the appropriate names.",
            "INVALID_FIELD",
        )

    def resolve(self, obj: SObject, path: Tree) -> tuple[list[tuple[str, SObject, Token]], Any, Token]:
        """Walk ``A.B.Field``: the parent hops (fk, target, token) and the final Field."""
        names: list[Token] = list(path.children)  # type: ignore[arg-type]
        hops: list[tuple[str, SObject, Token]] = []
        current = obj
        for token in names[:-1]:
            ref = current.relationships_lower.get(token.lower())
            if ref is None:
                raise malformed(
                    self.soql,
                    token,
                    f"Didn't understand relationship '{token}' in field path. If you are attempting to use a "
                    "custom relationship, be sure to append the '__r' after the custom relationship name. "
                    "Please reference your WSDL or the describe call for the appropriate names.",
                    "INVALID_FIELD",
                )
            target = sobject(ref.reference_to or "")
            assert target is not None
            hops.append((ref.name, target, token))
            current = target
        f = current.field(names[-1])
        if f is None:
            raise self.invalid_field(names[-1], current)
        return hops, f, names[-1]

    def getter(self, obj: SObject, path: Tree) -> tuple[Getter, Any]:
        hops, f, _ = self.resolve(obj, path)
        name = f.name
        tables = self.store.tables
        if not hops:

            def get(r: Record) -> Any:
                return r.get(name)

        else:
            steps = [(fk, tables[target.name]) for fk, target, _ in hops]

            def get(r: Record) -> Any:
                cur: Record | None = r
                for fk, table in steps:
                    ref = cur.get(fk)  # type: ignore[union-attr]
                    cur = table.get(ref) if ref else None
                    if cur is None:
                        return None
                return cur.get(name)

        get.text = f.type in TEXT_TYPES  # type: ignore[attr-defined]
        return get, f

    def compile(self) -> Query:
        try:
            tree = _parse_cached(self.soql)
        except UnexpectedEOF:
            raise malformed(self.soql, None, "unexpected token: <EOF>") from None
        except UnexpectedToken as exc:
            raise malformed(self.soql, exc.token, f"unexpected token: '{exc.token}'") from None
        except UnexpectedCharacters as exc:
            tok = Token(
                "X", self.soql[exc.pos_in_stream : exc.pos_in_stream + 1], line=exc.line, column=exc.column
            )
            raise malformed(self.soql, tok, f"unexpected token: '{tok}'") from None
        except UnexpectedInput as exc:  # pragma: no cover - other lark input errors
            raise malformed(self.soql, None, str(exc)) from None
        return self.query(tree.children[0], parent=None)  # type: ignore[arg-type]

    def query(self, node: Tree, parent: SObject | None) -> Query:
        parts = node.children
        select_list, from_token = parts[0], parts[1]
        assert isinstance(select_list, Tree) and isinstance(from_token, Token)
        if parent is None:
            obj = sobject(from_token)
            if obj is None:
                raise malformed(
                    self.soql,
                    from_token,
                    f"sObject type '{from_token}' is not supported. If you are attempting to use a custom "
                    "object, be sure to append the '__c' after the entity name. Please reference your WSDL or "
                    "the describe call for the appropriate names.",
                    "INVALID_TYPE",
                )
            q = Query(obj, Projection(obj))
        else:
            rel = next((r for name, r in parent.children.items() if name.lower() == from_token.lower()), None)
            if rel is None:
                raise malformed(
                    self.soql,
                    from_token,
                    f"Didn't understand relationship '{from_token}' in FROM part of query call. If you are "
                    "attempting to use a custom relationship, be sure to append the '__r' after the custom "
                    "relationship name. Please reference your WSDL or the describe call for the appropriate "
                    "names.",
                    "INVALID_TYPE",
                )
            obj = sobject(rel.child)
            assert obj is not None
            q = Query(obj, Projection(obj), relationship=rel.name, child_fk=rel.field)
        for item in select_list.children:
            assert isinstance(item, Tree)
            if item.data == "count":
                if parent is not None or len(select_list.children) > 1:
                    raise malformed(
                        self.soql, from_token, "COUNT() must be the only element in the SELECT list"
                    )
                q.count_only = True
            elif item.data == "subquery":
                if parent is not None:
                    raise malformed(
                        self.soql, from_token, "Nesting of semi join sub-selects is not supported"
                    )
                q.projection.items.append(("c", self.query(item, parent=obj)))
            else:
                hops, f, _ = self.resolve(obj, item)
                proj = q.projection
                for fk, target, token in hops:
                    rel_name = next(r for r, fld in proj.obj.relationships.items() if fld.name == fk)
                    del token
                    proj = proj.parent(rel_name, fk, target)
                proj.add_field(f.name)
        for clause in parts[2:]:
            assert isinstance(clause, Tree)
            if clause.data == "where":
                q.where = self.condition(obj, clause.children[0])  # type: ignore[arg-type]
            elif clause.data == "order_by":
                for oi in clause.children:
                    assert isinstance(oi, Tree)
                    getter, _ = self.getter(obj, oi.children[0])  # type: ignore[arg-type]
                    desc, nulls_first = False, None
                    for extra in oi.children[1:]:
                        if isinstance(extra, Token):
                            desc = extra.upper() == "DESC"
                        else:
                            nulls_first = str(extra.children[0]).upper() == "FIRST"
                    q.order.append((getter, desc, (not desc) if nulls_first is None else nulls_first))
            elif clause.data == "limit":
                q.limit = int(clause.children[0])  # type: ignore[arg-type]
            elif clause.data == "offset":
                tok = clause.children[0]
                q.offset = int(tok)  # type: ignore[arg-type]
                if q.offset > MAX_OFFSET:
                    raise malformed(
                        self.soql,
                        tok,
                        f"Maximum SOQL offset allowed is {MAX_OFFSET}",
                        "NUMBER_OUTSIDE_VALID_RANGE",
                    )
        return q

    # --- WHERE ------------------------------------------------------------------------------------------

    def condition(self, obj: SObject, node: Tree) -> Predicate:
        kind = node.data
        if kind == "or_":
            left, right = (self.condition(obj, c) for c in node.children)  # type: ignore[arg-type]
            return lambda r: left(r) or right(r)
        if kind == "and_":
            left, right = (self.condition(obj, c) for c in node.children)  # type: ignore[arg-type]
            return lambda r: left(r) and right(r)
        if kind == "not_":
            inner = self.condition(obj, node.children[0])  # type: ignore[arg-type]
            return lambda r: not inner(r)
        path = node.children[0]
        getter, f = self.getter(obj, path)  # type: ignore[arg-type]
        if kind == "compare":
            op, value = str(node.children[1]), node.children[2]
            return self.compare(getter, f, op, value)  # type: ignore[arg-type]
        if kind in ("in_", "not_in"):
            values = [self.literal(f, v) for v in node.children[1:]]  # type: ignore[arg-type]
            if any(isinstance(v, tuple) for v in values):
                raise malformed(self.soql, None, "date literals are not supported in IN lists")
            text = f.type in TEXT_TYPES
            members = frozenset(v.casefold() if text and isinstance(v, str) else v for v in values)
            negate = kind == "not_in"

            def member(r: Record) -> bool:
                v = getter(r)
                if text and v is not None:
                    v = v.casefold()
                return (v in members) != negate

            return member
        # LIKE: % and _ wildcards, case-insensitive
        pattern_text = self.unquote(node.children[1])  # type: ignore[arg-type]
        if f.type not in TEXT_TYPES and f.type not in ID_TYPES:
            raise malformed(
                self.soql,
                path.children[-1],
                f"invalid operator on {f.type} field: LIKE",  # type: ignore[union-attr]
                "INVALID_QUERY_FILTER_OPERATOR",
            )
        regex = re.compile(
            "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern_text) + r"\Z",
            re.IGNORECASE | re.DOTALL,
        )
        return lambda r: (v := getter(r)) is not None and regex.match(v) is not None

    @staticmethod
    def unquote(token: Token) -> str:
        body = str(token)[1:-1]
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)

    def type_error(self, f: Any, token: Token, expected: str) -> SfError:
        return malformed(
            self.soql,
            token,
            f"value of filter criterion for field '{f.name}' must be of type {expected} and should not be "
            "enclosed in quotes",
            "INVALID_FIELD",
        )

    def literal(self, f: Any, node: Tree) -> Any:
        token: Token = node.children[0]  # type: ignore[assignment]
        kind = token.type
        t = f.type
        if kind == "NULL":
            return None
        if t == "boolean":
            if kind not in ("TRUE", "FALSE"):
                raise self.type_error(f, token, "boolean")
            return kind == "TRUE"
        if t in NUMBER_TYPES:
            if kind != "NUMBER":
                raise self.type_error(f, token, "double" if t != "int" else "int")
            return Decimal(str(token)) if t != "int" else int(Decimal(str(token)))
        if t in ("date", "datetime"):
            if kind in ("DATE_LITERAL", "DATE_N"):
                return self.date_range(str(token), datetime=t == "datetime")
            if t == "date" and kind == "DATE":
                return dt.date.fromisoformat(str(token))
            if t == "datetime" and kind == "DATETIME":
                return parse_datetime(str(token))
            raise self.type_error(f, token, "dateTime" if t == "datetime" else "date")
        if kind != "STRING":
            raise malformed(self.soql, token, f"unexpected token: '{token}'")
        text = self.unquote(token)
        if t in ID_TYPES:
            norm = ids.normalize(text)
            if norm is None:
                raise malformed(
                    self.soql, token, f"invalid ID field: {text}", "INVALID_QUERY_FILTER_OPERATOR"
                )
            return norm
        return text

    def date_range(self, text: str, datetime: bool) -> tuple[Any, Any]:
        today = self.today
        word, _, n_text = text.upper().partition(":")
        day = dt.timedelta(days=1)
        if word == "TODAY":
            start, end = today, today + day
        elif word == "YESTERDAY":
            start, end = today - day, today
        elif word == "TOMORROW":
            start, end = today + day, today + 2 * day
        elif word == "LAST_N_DAYS":
            start, end = today - int(n_text) * day, today + day
        elif word == "NEXT_N_DAYS":
            start, end = today + day, today + (int(n_text) + 1) * day
        elif word.endswith("_YEAR"):
            year = today.year + {"THIS": 0, "LAST": -1, "NEXT": 1}[word.split("_")[0]]
            start, end = dt.date(year, 1, 1), dt.date(year + 1, 1, 1)
        else:  # *_MONTH
            shift = {"THIS": 0, "LAST": -1, "NEXT": 1}[word.split("_")[0]]
            months = today.year * 12 + today.month - 1 + shift
            start = dt.date(months // 12, months % 12 + 1, 1)
            months += 1
            end = dt.date(months // 12, months % 12 + 1, 1)
        if datetime:
            return (
                dt.datetime.combine(start, dt.time(), UTC),
                dt.datetime.combine(end, dt.time(), UTC),
            )
        return start, end

    def compare(self, getter: Getter, f: Any, op: str, node: Tree) -> Predicate:
        value = self.literal(f, node)
        if op == "<>":
            op = "!="
        if value is None:
            if op == "=":
                return lambda r: getter(r) is None
            if op == "!=":
                return lambda r: getter(r) is not None
            raise malformed(self.soql, node.children[0], f"invalid operator with null: {op}")  # type: ignore[arg-type]
        if isinstance(value, tuple):  # a date literal: a half-open range [start, end)
            start, end = value
            ranges: dict[str, Callable[[Any], bool]] = {
                "=": lambda v: start <= v < end,
                "!=": lambda v: not (start <= v < end),
                "<": lambda v: v < start,
                "<=": lambda v: v < end,
                ">": lambda v: v >= end,
                ">=": lambda v: v >= start,
            }
            check = ranges[op]
            return lambda r: (v := getter(r)) is not None and check(v)
        if f.type in TEXT_TYPES:
            value = value.casefold()
            base = getter
            getter = lambda r: (v := base(r)) and v.casefold()  # noqa: E731
        if op == "=":
            return lambda r: getter(r) == value
        if op == "!=":
            return lambda r: getter(r) != value
        cmp = {
            "<": lambda v: v < value,
            "<=": lambda v: v <= value,
            ">": lambda v: v > value,
            ">=": lambda v: v >= value,
        }[op]
        return lambda r: (v := getter(r)) is not None and cmp(v)


@functools.lru_cache(maxsize=512)
def _parse_cached(soql: str) -> Tree:
    return _PARSER.parse(soql)


def compile_query(soql: str, store: Store) -> Query:
    return Compiler(soql, store).compile()
