"""A small OData V2 server over in-memory tables, shaped like SAP Gateway.

Resource paths: ``Set``, ``Set('k')``, ``Set(K1='a',K2='b')``, ``.../nav``, ``.../$count``, ``$metadata``,
``$batch`` and the service document. Query options: ``$filter $select $expand $orderby $top $skip
$skiptoken $inlinecount $format``. Collections are paged on the server (``__next`` with ``$skiptoken``) once a
page holds ``page_size`` entities. Entity types marked ``sap:semantics="aggregate"`` group by the selected
dimensions and sum the measures, as analytical Gateway services do.

JSON only: SAP answers Atom XML when a client asks for neither JSON nor XML explicitly; the sandbox answers
JSON then too, and 415 when Atom is asked for explicitly.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote

from lead2cash.sandbox.sap.edm import EntitySet, EntityType, ServiceModel, format_value, parse_value
from lead2cash.sandbox.sap.filter import FilterError, compile_filter

JSON_TYPE = "application/json; charset=utf-8"
Row = dict[str, Any]
Key = tuple[Any, ...]


class ODataError(Exception):
    """An error answered in SAP Gateway's JSON error format."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str = "/IWBEP/CM_MGW_RT/000",
        target: str = "",
        details: list[dict[str, Any]] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.target = target
        self.details = details


def error_body(err: ODataError, service: str, component: str) -> dict[str, Any]:
    details = err.details or [
        {
            "code": err.code,
            "message": err.message,
            "propertyref": "",
            "severity": "error",
            "target": err.target,
            "transition": False,
        }
    ]
    return {
        "error": {
            "code": err.code,
            "message": {"lang": "en", "value": err.message},
            "innererror": {
                "application": {
                    "component_id": component,
                    "service_namespace": "/SAP/",
                    "service_id": service,
                    "service_version": "0001",
                },
                "transactionid": secrets.token_hex(16).upper(),
                "timestamp": time.strftime("%Y%m%d%H%M%S", time.gmtime()) + ".0000000",
                "Error_Resolution": {
                    "SAP_Transaction": 'For backend administrators: use ADT feed reader "SAP Gateway Error '
                    'Log" or run transaction /IWFND/ERROR_LOG on SAP Gateway hub system and search for '
                    "entries with the timestamp above for more details",
                    "SAP_Note": "See SAP Note 1797736 for error analysis "
                    "(https://service.sap.com/sap/support/notes/1797736)",
                },
                "errordetails": details,
            },
        }
    }


class Table:
    """Rows of one entity set by key, with hash indexes on chosen columns."""

    def __init__(self, keys: list[str], indexed: tuple[str, ...] = ()):
        self.keys = keys
        self.rows: dict[Key, Row] = {}
        self.indexes: dict[str, dict[Any, dict[Key, Row]]] = {c: {} for c in indexed}

    def key_of(self, row: Row) -> Key:
        return tuple(row[k] for k in self.keys)

    def insert(self, row: Row) -> None:
        key = self.key_of(row)
        if key in self.rows:
            self.delete(key)
        self.rows[key] = row
        for col, index in self.indexes.items():
            index.setdefault(row.get(col), {})[key] = row

    def delete(self, key: Key) -> None:
        row = self.rows.pop(key, None)
        if row is None:
            return
        for col, index in self.indexes.items():
            bucket = index.get(row.get(col))
            if bucket is not None:
                bucket.pop(key, None)
                if not bucket:
                    del index[row.get(col)]

    def get(self, key: Key) -> Row | None:
        return self.rows.get(key)

    def where(self, col: str, value: Any) -> list[Row]:
        index = self.indexes.get(col)
        if index is not None:
            return list(index.get(value, {}).values())
        return [r for r in self.rows.values() if r.get(col) == value]

    def clear(self) -> None:
        self.rows.clear()
        for index in self.indexes.values():
            index.clear()


@dataclass
class Context:
    """One request (or one changeset): effects run on commit, undo closures on rollback."""

    user: str
    on_commit: list[Callable[[], None]] = field(default_factory=list)
    undo: list[Callable[[], None]] = field(default_factory=list)
    applied: bool = False  # a write was committed

    def commit(self) -> None:
        if self.undo:
            self.applied = True
        for fn in self.on_commit:
            fn()
        self.on_commit.clear()
        self.undo.clear()

    def rollback(self) -> None:
        for fn in reversed(self.undo):
            fn()
        self.undo.clear()
        self.on_commit.clear()


@dataclass
class Result:
    status: int
    body: bytes = b""
    content_type: str | None = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


CreateHandler = Callable[[dict[str, Any], Context], Row]
UpdateHandler = Callable[[Row, dict[str, Any], Context], None]

_SEGMENT_RE = re.compile(r"([A-Za-z_$][A-Za-z0-9_]*)(?:\((.*)\))?$", re.S)
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _split_path(path: str) -> list[str]:
    """Split on '/' outside quoted key literals."""
    parts, buf, quoted = [], [], False
    for ch in path:
        if ch == "'":
            quoted = not quoted
        if ch == "/" and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return [p for p in parts if p]


def _parse_key_literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == "'" and text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if text.startswith("guid'"):
        return text[5:-1]
    return text


def _split_key(text: str) -> list[str]:
    parts, buf, quoted = [], [], False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    return parts


def key_predicate(etype: EntityType, row: Row) -> str:
    def lit(v: Any) -> str:
        return "'" + str(v).replace("'", "''") + "'"

    if len(etype.keys) == 1:
        return f"({lit(row[etype.keys[0]])})"
    return "(" + ",".join(f"{k}={lit(row[k])}" for k in etype.keys) + ")"


class ODataService:
    def __init__(
        self,
        model: ServiceModel,
        tables: dict[str, Table],
        component: str,
        decimals: dict[str, int],
        page_size: int = 1000,
        nav_links: dict[tuple[str, str], dict[str, str]] | None = None,
    ):
        self.model = model
        self.tables = tables
        self.component = component
        self.decimals = decimals
        self.page_size = page_size
        # (type name, nav name) -> {target column: source column}
        self.nav_links = nav_links or {}
        self.create_handlers: dict[str, CreateHandler] = {}
        self.update_handlers: dict[str, UpdateHandler] = {}
        self.root = f"/sap/opu/odata/sap/{model.name}"

    # --- entry point ------------------------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        query: str,
        body: bytes,
        headers: dict[str, str],
        base_url: str,
        ctx: Context,
    ) -> Result:
        try:
            return self._dispatch(method, path, query, body, headers, base_url, ctx)
        except ODataError as err:
            return self.error(err)

    def error(self, err: ODataError) -> Result:
        body = json.dumps(error_body(err, self.model.name, self.component)).encode()
        return Result(err.status, body, JSON_TYPE)

    def _dispatch(
        self,
        method: str,
        path: str,
        query: str,
        body: bytes,
        headers: dict[str, str],
        base_url: str,
        ctx: Context,
    ) -> Result:
        options = self._options(query)
        fmt = options.get("$format", "json")
        accept = headers.get("accept", "")
        if fmt in ("atom", "xml") or ("atom+xml" in accept and "json" not in accept):
            raise ODataError(
                415, "The sandbox serves OData JSON only; use $format=json", "/IWBEP/CM_MGW_RT/046"
            )
        segments = _split_path(path)
        if not segments:
            if method != "GET":
                raise ODataError(405, "Method not allowed on the service document", "/IWBEP/CM_MGW_RT/104")
            payload = {"d": {"EntitySets": list(self.model.sets)}}
            return Result(200, json.dumps(payload).encode())
        if segments == ["$metadata"]:
            return Result(200, self.model.xml, "application/xml")
        service_url = base_url + self.root
        entity_set, row, nav_chain, count = self._resolve(segments)
        if method == "GET":
            return self._get(entity_set, row, nav_chain, count, options, query, service_url)
        if method == "POST" and (row is None or nav_chain):
            return self._post(entity_set, row, nav_chain, body, service_url, ctx)
        if method in ("PUT", "PATCH", "MERGE") and row is not None and not nav_chain:
            return self._update(entity_set, row, body, method == "PUT", ctx)
        raise ODataError(
            405,
            f"Method '{method}' is not allowed for this resource",
            "/IWBEP/CM_MGW_RT/104",
        )

    def _options(self, query: str) -> dict[str, str]:
        options: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name.startswith("$"):
                if name not in {
                    "$filter",
                    "$select",
                    "$expand",
                    "$orderby",
                    "$top",
                    "$skip",
                    "$skiptoken",
                    "$inlinecount",
                    "$format",
                }:
                    raise ODataError(
                        400, f"System query option '{name}' is not supported", "/IWBEP/CM_MGW_RT/005"
                    )
                options[name] = value
        return options

    # --- resolution --------------------------------------------------------------------------------

    def _resolve(self, segments: list[str]) -> tuple[EntitySet, Row | None, list[tuple[Row, str]], bool]:
        count = False
        if segments[-1] == "$count":
            count = True
            segments = segments[:-1]
        m = _SEGMENT_RE.match(segments[0])
        if not m or m.group(1) not in self.model.sets:
            raise ODataError(404, f"Resource not found for segment '{segments[0]}'", "/IWBEP/CM_MGW_RT/021")
        entity_set = self.model.sets[m.group(1)]
        row: Row | None = None
        if m.group(2) is not None:
            row = self._lookup(entity_set, m.group(2), segments[0])
        nav_chain: list[tuple[Row, str]] = []
        for seg in segments[1:]:
            if row is None:
                raise ODataError(
                    400, f"Segment '{seg}' requires a single entity before it", "/IWBEP/CM_MGW_RT/021"
                )
            nav = entity_set.type.navigations.get(seg)
            if nav is None:
                raise ODataError(404, f"Resource not found for segment '{seg}'", "/IWBEP/CM_MGW_RT/021")
            nav_chain = [(row, seg)]
            target_set = self.model.sets[nav.target_set]
            if nav.many:
                entity_set, row = target_set, None
                continue
            related = self.related(entity_set.type, row, seg)
            entity_set = target_set
            if related is None:
                raise ODataError(404, f"Resource not found for segment '{seg}'", "/IWBEP/CM_MGW_RT/021")
            row, nav_chain = related, []
        return entity_set, row, nav_chain, count

    def _lookup(self, entity_set: EntitySet, key_text: str, segment: str) -> Row:
        etype = entity_set.type
        parts = _split_key(key_text)
        values: dict[str, Any] = {}
        if len(parts) == 1 and "=" not in parts[0].split("'")[0]:
            if len(etype.keys) != 1:
                raise ODataError(400, f"Invalid key predicate in segment '{segment}'", "/IWBEP/CM_MGW_RT/021")
            values[etype.keys[0]] = _parse_key_literal(parts[0])
        else:
            for part in parts:
                name, _, lit = part.partition("=")
                values[name.strip()] = _parse_key_literal(lit)
        if set(values) != set(etype.keys):
            raise ODataError(400, f"Invalid key predicate in segment '{segment}'", "/IWBEP/CM_MGW_RT/021")
        key = tuple(values[k] for k in etype.keys)
        table = self.tables[entity_set.name]
        row = table.get(key)
        if row is None and etype.aggregate:
            row = next(
                (r for r in self._aggregate(etype, list(table.rows.values()), None) if r["ID"] == key[0]),
                None,
            )
        if row is None:
            raise ODataError(404, f"Resource not found for segment '{etype.name}'", "/IWBEP/CM_MGW_RT/020")
        return row

    def related(self, etype: EntityType, row: Row, nav_name: str) -> Any:
        nav = etype.navigations[nav_name]
        link = self.nav_links[(etype.name, nav_name)]
        table = self.tables[nav.target_set]
        (first_target, first_source), *rest = link.items()
        candidates = table.where(first_target, row.get(first_source))
        matches = [r for r in candidates if all(r.get(t) == row.get(s) for t, s in rest)]
        if nav.many:
            return matches
        return matches[0] if matches else None

    # --- reads ---------------------------------------------------------------------------------------

    def _get(
        self,
        entity_set: EntitySet,
        row: Row | None,
        nav_chain: list[tuple[Row, str]],
        count: bool,
        options: dict[str, str],
        query: str,
        service_url: str,
    ) -> Result:
        etype = entity_set.type
        select = self._parse_select(options.get("$select"))
        expand = self._parse_expand(etype, options.get("$expand"))
        self._check_select(etype, select)
        if row is not None:
            if count:
                return Result(200, b"1", "text/plain")
            payload = {"d": self.serialize(entity_set, row, select, expand, service_url)}
            return Result(200, json.dumps(payload, ensure_ascii=False).encode())
        table = self.tables[entity_set.name]
        flt = None
        if "$filter" in options:
            try:
                flt = compile_filter(options["$filter"], etype.edm_types, etype.name, etype.max_lengths)
            except FilterError as exc:
                raise ODataError(400, str(exc), "/IWBEP/CM_MGW_RT/022") from None
        if nav_chain:
            parent, nav_name = nav_chain[0]
            parent_type = next(s.type for s in self.model.sets.values() if nav_name in s.type.navigations)
            rows = self.related(parent_type, parent, nav_name)
        else:
            rows = None
            if flt is not None:
                for col, value in flt.eq_pairs:
                    if col in table.indexes:
                        rows = table.where(col, value)
                        break
            if rows is None:
                rows = list(table.rows.values())
        if flt is not None:
            rows = [r for r in rows if flt(r)]
        if etype.aggregate:
            rows = self._aggregate(etype, rows, select)
            if (
                select is not None
            ):  # the currency of a selected amount comes with it, as in analytical services
                for name in list(select):
                    unit = etype.properties[name].unit if name in etype.properties else None
                    if unit:
                        select.setdefault(unit, True)
        if "$orderby" in options:
            rows = self._order(etype, rows, options["$orderby"])
        total = len(rows)
        if count:
            return Result(200, str(total).encode(), "text/plain")
        skip = self._int_option(options, "$skip")
        top = self._int_option(options, "$top", None)
        skiptoken = self._int_option(options, "$skiptoken")
        end = total if top is None else min(total, skip + top)
        start = skip + skiptoken
        page_end = min(end, start + self.page_size)
        results = [self.serialize(entity_set, r, select, expand, service_url) for r in rows[start:page_end]]
        d: dict[str, Any] = {"results": results}
        if options.get("$inlinecount") == "allpages":
            d["__count"] = str(total)
        if page_end < end:
            kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "$skiptoken"]
            kept.append(("$skiptoken", str(page_end - skip)))
            path = self._collection_path(entity_set, nav_chain)
            d["__next"] = f"{service_url}/{path}?" + "&".join(f"{k}={quote(v, safe=',()')}" for k, v in kept)
        return Result(200, json.dumps({"d": d}, ensure_ascii=False).encode())

    def _collection_path(self, entity_set: EntitySet, nav_chain: list[tuple[Row, str]]) -> str:
        if not nav_chain:
            return entity_set.name
        parent, nav_name = nav_chain[0]
        parent_set = next(s for s in self.model.sets.values() if nav_name in s.type.navigations)
        return f"{parent_set.name}{key_predicate(parent_set.type, parent)}/{nav_name}"

    @staticmethod
    def _int_option(options: dict[str, str], name: str, default: int | None = 0) -> Any:
        if name not in options:
            return default
        try:
            value = int(options[name])
        except ValueError:
            raise ODataError(
                400, f"Invalid value '{options[name]}' for {name}", "/IWBEP/CM_MGW_RT/005"
            ) from None
        if value < 0:
            raise ODataError(400, f"Invalid value '{value}' for {name}", "/IWBEP/CM_MGW_RT/005")
        return value

    def _order(self, etype: EntityType, rows: list[Row], orderby: str) -> list[Row]:
        for clause in reversed([c.strip() for c in orderby.split(",") if c.strip()]):
            name, _, direction = clause.partition(" ")
            if name not in etype.properties:
                raise ODataError(
                    400, f"Property {name} not found in type {etype.name}", "/IWBEP/CM_MGW_RT/022"
                )
            desc = direction.strip().lower() == "desc"
            present = [r for r in rows if r.get(name) is not None]
            missing = [r for r in rows if r.get(name) is None]
            present.sort(key=lambda r, n=name: r[n], reverse=desc)
            rows = missing + present if not desc else present + missing
        return rows

    def _aggregate(self, etype: EntityType, rows: list[Row], select: dict[str, Any] | None) -> list[Row]:
        if select is None:
            return rows
        measures = [n for n in select if n in etype.properties and etype.properties[n].unit]
        dims = [n for n in select if n in etype.properties and n not in measures and n != "ID"]
        for m in measures:
            unit = etype.properties[m].unit
            if unit and unit not in dims:
                dims.append(unit)
        groups: dict[tuple[Any, ...], Row] = {}
        for r in rows:
            gkey = tuple(r.get(d) for d in dims)
            agg = groups.get(gkey)
            if agg is None:
                agg = {d: r.get(d) for d in dims}
                agg["ID"] = ".".join(f"{d}~{'' if r.get(d) is None else r.get(d)}" for d in dims)
                for m in measures:
                    agg[m] = Decimal(0)
                groups[gkey] = agg
            for m in measures:
                agg[m] += r.get(m) or Decimal(0)
        return list(groups.values())

    def _parse_select(self, text: str | None) -> dict[str, Any] | None:
        if not text or text.strip() == "*":
            return None
        select: dict[str, Any] = {}
        for item in text.split(","):
            head, _, rest = item.strip().partition("/")
            if rest:
                sub = select.get(head)
                if not isinstance(sub, dict):
                    sub = {}
                    select[head] = sub
                sub.update(self._parse_select(rest) or {})
            else:
                select.setdefault(head, True)
        return select

    def _check_select(self, etype: EntityType, select: dict[str, Any] | None) -> None:
        """Every selected property exists, as the Gateway checks it (nested paths under their navigation)."""
        for name, sub in (select or {}).items():
            nav = etype.navigations.get(name)
            if nav is not None:
                if isinstance(sub, dict):
                    self._check_select(self.model.types[nav.target_type], sub)
                continue
            if name not in etype.properties or isinstance(sub, dict):
                raise ODataError(
                    400, f"Property {name} not found in type {etype.name}", "/IWBEP/CM_MGW_RT/022"
                )

    def _parse_expand(self, etype: EntityType, text: str | None) -> dict[str, Any]:
        tree: dict[str, Any] = {}
        if not text:
            return tree
        for item in text.split(","):
            node, current = tree, etype
            for name in item.strip().split("/"):
                nav = current.navigations.get(name)
                if nav is None:
                    raise ODataError(
                        400,
                        f"Property '{name}' is not a navigation property of '{current.name}'",
                        "/IWBEP/CM_MGW_RT/025",
                    )
                node = node.setdefault(name, {})
                current = self.model.types[nav.target_type]
        return tree

    def serialize(
        self,
        entity_set: EntitySet,
        row: Row,
        select: dict[str, Any] | None,
        expand: dict[str, Any],
        service_url: str,
    ) -> dict[str, Any]:
        etype = entity_set.type
        uri = f"{service_url}/{entity_set.name}{key_predicate(etype, row)}"
        out: dict[str, Any] = {"__metadata": {"id": uri, "uri": uri, "type": etype.qualified}}
        decimals = self.decimals
        for name, prop in etype.properties.items():
            if select is None or name in select:
                out[name] = format_value(prop, row.get(name), row, decimals)
        for name, nav in etype.navigations.items():
            if name in expand:
                sub_select = select.get(name) if select and isinstance(select.get(name), dict) else None
                target_set = self.model.sets[nav.target_set]
                related = self.related(etype, row, name)
                if nav.many:
                    out[name] = {
                        "results": [
                            self.serialize(target_set, r, sub_select, expand[name], service_url)
                            for r in related
                        ]
                    }
                else:
                    out[name] = (
                        self.serialize(target_set, related, sub_select, expand[name], service_url)
                        if related is not None
                        else None
                    )
            elif select is None or name in select:
                out[name] = {"__deferred": {"uri": f"{uri}/{name}"}}
        return out

    # --- writes --------------------------------------------------------------------------------------

    def _payload(self, body: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            raise ODataError(400, "Malformed JSON payload in request body", "/IWBEP/CM_MGW_RT/003") from None
        if not isinstance(payload, dict):
            raise ODataError(400, "Malformed JSON payload in request body", "/IWBEP/CM_MGW_RT/003")
        return payload.get("d", payload) if isinstance(payload.get("d"), dict) else payload

    def parse_entity(
        self, etype: EntityType, payload: dict[str, Any], creating: bool
    ) -> tuple[Row, dict[str, Any]]:
        """Split a JSON payload into typed property values and nested navigation payloads."""
        values: Row = {}
        navs: dict[str, Any] = {}
        for name, value in payload.items():
            if name == "__metadata":
                continue
            if name in etype.navigations:
                navs[name] = value
                continue
            prop = etype.properties.get(name)
            if prop is None:
                raise ODataError(400, f"Property '{name}' is invalid", "/IWBEP/CM_MGW_RT/020", target=name)
            if (creating and not prop.creatable) or (not creating and not prop.updatable):
                continue  # Gateway ignores read-only properties in payloads
            try:
                values[name] = parse_value(prop, value)
            except ValueError as exc:
                raise ODataError(400, str(exc), "/IWBEP/CM_MGW_RT/012", target=name) from None
        return values, navs

    def _post(
        self,
        entity_set: EntitySet,
        parent: Row | None,
        nav_chain: list[tuple[Row, str]],
        body: bytes,
        service_url: str,
        ctx: Context,
    ) -> Result:
        handler = self.create_handlers.get(entity_set.name)
        if handler is None or not entity_set.creatable:
            raise ODataError(405, f"Entity set '{entity_set.name}' is not creatable", "/IWBEP/CM_MGW_RT/104")
        payload = self._payload(body)
        if nav_chain:
            parent_row, nav_name = nav_chain[0]
            parent_type = next(s.type for s in self.model.sets.values() if nav_name in s.type.navigations)
            for target_col, source_col in self.nav_links[(parent_type.name, nav_name)].items():
                payload[target_col] = parent_row[source_col]
        row = handler(payload, ctx)
        expand = {n: {} for n in payload if n in entity_set.type.navigations}
        for name in list(expand):
            nav = entity_set.type.navigations[name]
            sub_payload = payload[name]
            nested = sub_payload if isinstance(sub_payload, dict) and "results" not in sub_payload else None
            if nested:
                target_type = self.model.types[nav.target_type]
                expand[name] = {n: {} for n in nested if n in target_type.navigations}
        out = {"d": self.serialize(entity_set, row, None, expand, service_url)}
        location = out["d"]["__metadata"]["uri"]
        return Result(201, json.dumps(out, ensure_ascii=False).encode(), JSON_TYPE, {"location": location})

    def _update(self, entity_set: EntitySet, row: Row, body: bytes, replace: bool, ctx: Context) -> Result:
        handler = self.update_handlers.get(entity_set.name)
        if handler is None or not entity_set.updatable:
            raise ODataError(405, f"Entity set '{entity_set.name}' is not updatable", "/IWBEP/CM_MGW_RT/104")
        handler(row, self._payload(body), ctx)
        return Result(204, b"", None)

    # --- $batch ----------------------------------------------------------------------------------------

    def batch(
        self,
        body: bytes,
        content_type: str,
        base_url: str,
        make_ctx: Callable[[], Context],
    ) -> Result:
        boundary = _boundary(content_type)
        if boundary is None:
            raise ODataError(400, "Batch request without boundary", "/IWBEP/CM_MGW_RT/009")
        out_boundary = "batch_" + secrets.token_hex(12)
        parts_out: list[bytes] = []
        for headers, content in _multipart(body, boundary):
            ptype = headers.get("content-type", "")
            if ptype.startswith("multipart/mixed"):
                cs_boundary = _boundary(ptype)
                if cs_boundary is None:
                    raise ODataError(400, "Changeset without boundary", "/IWBEP/CM_MGW_RT/009")
                parts_out.append(self._changeset(content, cs_boundary, base_url, make_ctx()))
            else:
                method, path, query, req_headers, req_body = _http_request(content)
                path = self._relative(path)
                if method != "GET":
                    raise ODataError(
                        400, "Modifying requests must be placed in a changeset", "/IWBEP/CM_MGW_RT/009"
                    )
                ctx = make_ctx()
                result = self.handle(method, path, query, req_body, req_headers, base_url, ctx)
                parts_out.append(_http_part(result))
        payload = b"".join(b"--" + out_boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts_out)
        payload += b"--" + out_boundary.encode() + b"--\r\n"
        return Result(202, payload, f"multipart/mixed; boundary={out_boundary}")

    def _relative(self, path: str) -> str:
        root = self.root.lstrip("/") + "/"
        return path[len(root) :] if path.startswith(root) else path

    def _changeset(self, body: bytes, boundary: str, base_url: str, ctx: Context) -> bytes:
        cs_out = "changeset_" + secrets.token_hex(12)
        results: list[bytes] = []
        for _headers, content in _multipart(body, boundary):
            method, path, query, req_headers, req_body = _http_request(content)
            path = self._relative(path)
            if method == "GET":
                raise ODataError(400, "GET requests are not allowed in a changeset", "/IWBEP/CM_MGW_RT/009")
            try:
                result = self._dispatch(method, path, query, req_body, req_headers, base_url, ctx)
            except ODataError as err:
                ctx.rollback()
                # A failed changeset answers with its single error response, and nothing of it is applied.
                return _http_part(self.error(err))
            results.append(_http_part(result))
        ctx.commit()
        inner = b"".join(b"--" + cs_out.encode() + b"\r\n" + r + b"\r\n" for r in results)
        inner += b"--" + cs_out.encode() + b"--"
        return f"Content-Type: multipart/mixed; boundary={cs_out}\r\n\r\n".encode() + inner


def _boundary(content_type: str) -> str | None:
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    return m.group(1) if m else None


def _multipart(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    delimiter = b"--" + boundary.encode()
    chunks = body.split(delimiter)
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk.lstrip(b"\r\n") if chunk.startswith((b"\r\n", b"\n")) else chunk
        head, body_part = _split_head(chunk)
        headers = _headers(head)
        parts.append((headers, body_part.rstrip(b"\r\n")))
    return parts


def _split_head(chunk: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        if sep in chunk:
            head, _, rest = chunk.partition(sep)
            return head, rest
    return chunk, b""


def _headers(head: bytes) -> dict[str, str]:
    headers = {}
    for line in head.decode("latin-1").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _http_request(content: bytes) -> tuple[str, str, str, dict[str, str], bytes]:
    head, body = _split_head(content)
    lines = head.decode("latin-1").splitlines()
    if not lines:
        raise ODataError(400, "Empty request in batch", "/IWBEP/CM_MGW_RT/009")
    request_line = lines[0].split()
    if len(request_line) < 2:
        raise ODataError(400, f"Invalid request line '{lines[0]}' in batch", "/IWBEP/CM_MGW_RT/009")
    method, target = request_line[0].upper(), request_line[1]
    path, _, query = target.partition("?")
    headers = _headers("\n".join(lines[1:]).encode("latin-1"))
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return method, path.lstrip("/"), query, headers, body


def _http_part(result: Result) -> bytes:
    lines = [f"HTTP/1.1 {result.status} {_STATUS_TEXT.get(result.status, '')}"]
    if result.content_type:
        lines.append(f"Content-Type: {result.content_type}")
    lines.append(f"Content-Length: {len(result.body)}")
    lines.append("dataserviceversion: 2.0")
    lines.extend(f"{k}: {v}" for k, v in result.headers.items())
    inner = ("\r\n".join(lines) + "\r\n\r\n").encode() + result.body
    return (
        b"Content-Type: application/http\r\nContent-Length: "
        + str(len(inner)).encode()
        + b"\r\ncontent-transfer-encoding: binary\r\n\r\n"
        + inner
    )
