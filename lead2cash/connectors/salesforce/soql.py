"""SOQL built only with simple-salesforce's quoting, and the change reader's keyset cursor.

Identifiers (object, field and relationship names) cannot be quoted in SOQL, so they are checked against a
strict pattern; every value (timestamps, ids, filter values) goes through ``format_soql``. No text from
config or data is ever pasted into a query.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from simple_salesforce.format import SoqlFormatter

UTC = dt.UTC
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}(?:\.[A-Za-z][A-Za-z0-9_]{0,79}){0,4}$")
_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")


def identifier(name: str) -> str:
    """A field path or object name, or ValueError: identifiers cannot be quoted, only checked."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValueError(f"not a Salesforce field or object name: {name!r}")
    return name


def record_id(value: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise ValueError(f"not a Salesforce record id: {value!r}")
    return value


class _Formatter(SoqlFormatter):
    """simple-salesforce's formatter, except that datetimes keep their milliseconds: SystemModstamp has
    millisecond precision, and a cursor rounded down to the second would re-read (or loop on) a tie."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        if isinstance(value, dt.datetime) and not format_spec:
            return format_datetime(value)
        return super().format_field(value, format_spec)


def format_soql(template: str, **values: Any) -> str:
    return _Formatter().vformat(template, (), values)


def format_datetime(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime in SOQL")
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_datetime(text: str) -> dt.datetime:
    """Salesforce's ``2024-05-01T10:00:00.000+0000`` (and the ISO forms with ``Z`` or ``+00:00``)."""
    if not isinstance(text, str):
        raise ValueError(f"not a datetime: {text!r}")
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return dt.datetime.strptime(text, fmt).astimezone(UTC)
        except ValueError:
            continue
    raise ValueError(f"not a Salesforce datetime: {text!r}")


@dataclass(frozen=True)
class ChildQuery:
    relationship: str
    fields: tuple[str, ...]
    # Set to watch the child records' own changes: an edit of a child does not move its parent's
    # SystemModstamp (Opportunity line items), so the reader follows the child object on a cursor of its
    # own and reads each parent named by ``parent_field`` again. ``parent_relationship`` applies the
    # parent's filters to the children (``Opportunity.IsWon``).
    object: str | None = None
    parent_field: str | None = None
    parent_relationship: str | None = None

    def __post_init__(self) -> None:
        identifier(self.relationship)
        for f in self.fields:
            identifier(f)
        for name in (self.object, self.parent_field, self.parent_relationship):
            if name is not None:
                identifier(name)


@dataclass(frozen=True)
class QuerySpec:
    object: str
    fields: tuple[str, ...]
    children: tuple[ChildQuery, ...] = ()
    # field -> value (or list of values): equality / IN, values quoted by format_soql
    filters: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        identifier(self.object)
        for f in self.fields:
            identifier(f)
        for name, value in self.filters:
            identifier(name)
            values = value if isinstance(value, list | tuple) else [value]
            for v in values:
                if not isinstance(v, str | bool | int | float) and v is not None:
                    raise ValueError(f"filter {name}: unsupported value type {type(v).__name__}")

    def select(self) -> str:
        fields = list(dict.fromkeys(("Id", "SystemModstamp", "IsDeleted", *self.fields)))
        parts = [", ".join(fields)]
        for child in self.children:
            child_fields = ", ".join(dict.fromkeys(("Id", *child.fields)))
            # Checked identifiers only (see identifier()); values never reach this string.
            parts.append(f"(SELECT {child_fields} FROM {child.relationship} ORDER BY Id ASC)")  # noqa: S608
        return ", ".join(parts)

    def filter_clause(self, values: dict[str, Any], via: str | None = None) -> list[str]:
        """Conditions as templates with named placeholders; the values go into ``values``. ``via``: the
        same conditions on the parent, from a child object (``Opportunity.IsWon = true``)."""
        clauses = []
        for i, (name, value) in enumerate(self.filters):
            values[f"f{i}"] = list(value) if isinstance(value, list | tuple) else value
            op = "IN" if isinstance(value, list | tuple) else "="
            clauses.append(f"{via + '.' if via else ''}{name} {op} {{f{i}}}")
        return clauses

    @property
    def watched_child(self) -> ChildQuery | None:
        return next((c for c in self.children if c.object and c.parent_field), None)


def changes_query(spec: QuerySpec, cursor: Cursor, upper: dt.datetime, limit: int) -> str:
    """The keyset page after ``cursor``: ``(SystemModstamp, Id)`` strictly greater, up to ``upper``."""
    values: dict[str, Any] = {"upper": upper, "limit": int(limit)}
    where = []
    if cursor.ts is not None and cursor.id is not None:
        values.update(ts=cursor.ts, id=record_id(cursor.id))
        where.append("(SystemModstamp > {ts} OR (SystemModstamp = {ts} AND Id > {id}))")
    where.append("SystemModstamp <= {upper}")
    where.extend(spec.filter_clause(values))
    template = (
        f"SELECT {spec.select()} FROM {spec.object} WHERE {' AND '.join(where)} "  # noqa: S608
        "ORDER BY SystemModstamp ASC, Id ASC LIMIT {limit}"
    )
    return format_soql(template, **values)


def sweep_query(spec: QuerySpec, after: str, limit: int, floor: dt.datetime | None = None) -> str:
    """A page of the reconciliation sweep: every live record (changed since ``floor``), keyset on Id."""
    values: dict[str, Any] = {"limit": int(limit)}
    where = []
    if after:
        values["after"] = record_id(after)
        where.append("Id > {after}")
    if floor is not None:
        values["floor"] = floor
        where.append("SystemModstamp >= {floor}")
    where.extend(spec.filter_clause(values))
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    template = f"SELECT {spec.select()} FROM {spec.object}{clause} ORDER BY Id ASC LIMIT {{limit}}"  # noqa: S608
    return format_soql(template, **values)


def by_ids_query(spec: QuerySpec, ids: Sequence[str]) -> str:
    """The records ``ids`` as the change cursor reads them (same fields, children and filters)."""
    values: dict[str, Any] = {"ids": [record_id(i) for i in ids]}
    where = ["Id IN {ids}", *spec.filter_clause(values)]
    template = f"SELECT {spec.select()} FROM {spec.object} WHERE {' AND '.join(where)} ORDER BY Id ASC"  # noqa: S608
    return format_soql(template, **values)


def child_changes_query(
    spec: QuerySpec, child: ChildQuery, after: tuple[dt.datetime, str | None], upper: dt.datetime, limit: int
) -> str:
    """The keyset page of ``child`` records changed after ``after`` (deleted ones too, with queryAll):
    only their parent's id is read. A position without an Id starts after every record of that stamp."""
    assert child.object and child.parent_field
    values: dict[str, Any] = {"ts": after[0], "upper": upper, "limit": int(limit)}
    if after[1] is not None:
        values["id"] = record_id(after[1])
        where = ["(SystemModstamp > {ts} OR (SystemModstamp = {ts} AND Id > {id}))"]
    else:
        where = ["SystemModstamp > {ts}"]
    where.append("SystemModstamp <= {upper}")
    where.extend(spec.filter_clause(values, via=child.parent_relationship))
    template = (
        f"SELECT Id, SystemModstamp, {child.parent_field} FROM {child.object} "  # noqa: S608
        f"WHERE {' AND '.join(where)} ORDER BY SystemModstamp ASC, Id ASC LIMIT {{limit}}"
    )
    return format_soql(template, **values)


def count_after_query(spec: QuerySpec, cursor: Cursor) -> str:
    """How many records lie past ``cursor`` (the change query without its upper bound)."""
    values: dict[str, Any] = {}
    where = []
    if cursor.ts is not None and cursor.id is not None:
        values.update(ts=cursor.ts, id=record_id(cursor.id))
        where.append("(SystemModstamp > {ts} OR (SystemModstamp = {ts} AND Id > {id}))")
    where.extend(spec.filter_clause(values))
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return format_soql(f"SELECT COUNT() FROM {spec.object}{clause}", **values)  # noqa: S608


def child_count_after_query(spec: QuerySpec, child: ChildQuery, cursor: Cursor) -> str:
    """How many ``child`` records (line items) changed past the cursor's child position."""
    assert child.object and child.parent_field
    values: dict[str, Any] = {}
    where = []
    if cursor.child_ts is not None:
        values["ts"] = cursor.child_ts
        if cursor.child_id is not None:
            values["id"] = record_id(cursor.child_id)
            where.append("(SystemModstamp > {ts} OR (SystemModstamp = {ts} AND Id > {id}))")
        else:
            where.append("SystemModstamp > {ts}")
    where.extend(spec.filter_clause(values, via=child.parent_relationship))
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return format_soql(f"SELECT COUNT() FROM {child.object}{clause}", **values)  # noqa: S608


def by_keys_query(obj: str, key_field: str, keys: Sequence[str], fields: Sequence[str]) -> str:
    names = ", ".join(dict.fromkeys(identifier(f) for f in ("Id", *fields)))
    template = f"SELECT {names} FROM {identifier(obj)} WHERE {identifier(key_field)} IN {{keys}}"  # noqa: S608
    return format_soql(template, keys=list(keys))


@dataclass(frozen=True)
class Cursor:
    """The source checkpoint: the keyset position of the last record handed to the inbox, and the state of
    the reconciliation sweep (``sweep_after`` is None when no sweep runs; "" when one just started).
    ``child_ts``/``child_id``: the position on the watched child object (line items), when there is one;
    ``child_id`` None means after every child stamped ``child_ts``.
    ``floor``: the start set by ``lead2cash checkpoint start``; the sweep leaves older records alone, so a
    first sync that starts at a date never bills the deals won before it."""

    ts: dt.datetime | None = None
    id: str | None = None
    sweep_after: str | None = None
    sweep_at: dt.datetime | None = None
    child_ts: dt.datetime | None = None
    child_id: str | None = None
    floor: dt.datetime | None = None

    # The lowest record id: a cursor at (when, FIRST_ID) reads every record stamped at ``when`` or later.
    FIRST_ID = "0" * 15

    @classmethod
    def starting_at(cls, when: dt.datetime) -> Cursor:
        if when.tzinfo is None:
            raise ValueError("naive datetime")
        # Just before ``when``: the keyset is strictly after (ts, id), and ids compare above FIRST_ID; the
        # line-item position likewise, so a line item changed at ``when`` is read (a source without one ignores it).
        return cls(ts=when, id=cls.FIRST_ID, sweep_at=when, child_ts=when, child_id=cls.FIRST_ID, floor=when)

    def dumps(self) -> str:
        data: dict[str, Any] = {
            "ts": format_datetime(self.ts) if self.ts else None,
            "id": self.id,
            "sweep_after": self.sweep_after,
            "sweep_at": format_datetime(self.sweep_at) if self.sweep_at else None,
        }
        if self.child_ts is not None:
            data["child_ts"] = format_datetime(self.child_ts)
            data["child_id"] = self.child_id
        if self.floor is not None:
            data["floor"] = format_datetime(self.floor)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def loads(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("checkpoint is not a JSON object")
        ts = parse_datetime(data["ts"]) if data.get("ts") else None
        rid = record_id(data["id"]) if data.get("id") else None
        if (ts is None) != (rid is None):
            raise ValueError("checkpoint needs both ts and id")
        after = data.get("sweep_after")
        if after:
            record_id(after)
        if after is not None and not isinstance(after, str):
            raise ValueError("sweep_after is not a record id")
        sweep_at = parse_datetime(data["sweep_at"]) if data.get("sweep_at") else None
        child_ts = parse_datetime(data["child_ts"]) if data.get("child_ts") else None
        child_id = record_id(data["child_id"]) if data.get("child_id") else None
        if child_id is not None and child_ts is None:
            raise ValueError("checkpoint has child_id without child_ts")
        floor = parse_datetime(data["floor"]) if data.get("floor") else None
        unknown = set(data) - {"ts", "id", "sweep_after", "sweep_at", "child_ts", "child_id", "floor"}
        if unknown:
            raise ValueError(f"unknown checkpoint field(s): {', '.join(sorted(unknown))}")
        return cls(ts, rid, after if after is not None else None, sweep_at, child_ts, child_id, floor)


@dataclass
class ReadResult:
    records: list[dict[str, Any]]
    cursor: Cursor
    more: bool
    server_time: dt.datetime | None = None
    calls: int = 0
    notes: dict[str, Any] = field(default_factory=dict)


def strip_attributes(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: strip_attributes(v) for k, v in value.items() if k != "attributes"}
    if isinstance(value, list):
        return [strip_attributes(v) for v in value]
    return value


def advance(cursor: Cursor, record: Mapping[str, Any]) -> Cursor:
    return replace(cursor, ts=parse_datetime(str(record["SystemModstamp"])), id=record_id(str(record["Id"])))
