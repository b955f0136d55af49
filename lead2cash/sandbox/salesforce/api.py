"""REST API handlers (``/services/data/vXX.X/...``) over a transport-neutral call/reply pair, so the HTTP
layer and ``/composite`` subrequests share one implementation."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from lead2cash.sandbox.salesforce import ids, soql
from lead2cash.sandbox.salesforce.schema import (
    API_VERSION,
    OBJECTS,
    SObject,
    child_relationships_of,
    sobject,
)
from lead2cash.sandbox.salesforce.store import Record, SfError, format_datetime, parse_datetime

if TYPE_CHECKING:
    from lead2cash.sandbox.salesforce.app import SalesforceSandbox

JSON_TYPE = "application/json;charset=UTF-8"
MAX_COLLECTION = 200
MAX_COMPOSITE = 25
DEFAULT_BATCH, MIN_BATCH, MAX_BATCH = 2000, 200, 2000
MAX_CURSORS = 256
_BATCH_RE = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)
_REF_RE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])+)\}")


def json_default(value: Any) -> Any:
    # The platform serialises currency/number fields as JSON doubles (``23.0``); amounts stay Decimal
    # inside the store and clients parse them back exactly.
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return json.dumps(value, default=json_default, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class Call:
    method: str
    segments: list[str]
    query: Mapping[str, str]
    body: bytes
    headers: Mapping[str, str]
    base: str  # /services/data/vXX.X

    def json(self) -> Any:
        if not self.body:
            raise SfError(400, "JSON_PARSER_ERROR", "The request body is empty")
        try:
            return json.loads(self.body, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SfError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from None


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON_TYPE
    write: bool = False  # a write was applied (commit-then-drop applies)


Handler = Callable[[Call], Reply]


def not_found() -> SfError:
    return SfError(404, "NOT_FOUND", "The requested resource does not exist")


def attributes(base: str, obj: str, rid: str) -> dict[str, str]:
    return {"type": obj, "url": f"{base}/sobjects/{obj}/{rid}"}


def full_record(base: str, obj: SObject, rec: Record, fields: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"attributes": attributes(base, obj.name, rec["Id"])}
    for name in fields or obj.fields:
        out[name] = rec.get(name)
    return out


def error_item(err: SfError) -> dict[str, Any]:
    """Errors inside collection/bulk results use ``statusCode`` rather than ``errorCode``."""
    return {"statusCode": err.code, "message": err.message, "fields": err.fields}


class RestApi:
    def __init__(self, sandbox: SalesforceSandbox) -> None:
        self.sb = sandbox
        self.cursors: OrderedDict[str, dict[str, Any]] = OrderedDict()

    @property
    def store(self):  # type: ignore[no-untyped-def]
        return self.sb.store

    # --- routing ----------------------------------------------------------------------------------------

    def route(self, method: str, seg: list[str]) -> tuple[str, Handler]:
        n = len(seg)
        head = seg[0] if seg else ""
        m = method
        if n == 0 and m == "GET":
            return "resources", self.resources
        if head == "limits" and n == 1 and m == "GET":
            return "limits", self.limits
        if head in ("query", "queryAll") and m == "GET" and n in (1, 2):
            return "query", self.query if n == 1 else self.query_more
        if head == "sobjects":
            if n == 1 and m == "GET":
                return "describe", self.describe_global
            obj = sobject(seg[1]) if n > 1 else None
            if obj is None:
                raise not_found()
            if n == 2:
                if m == "GET":
                    return "describe", self.basic_info
                if m == "POST":
                    return "sobject.create", self.create
            elif n == 3 and seg[2] == "describe" and m == "GET":
                return "describe", self.describe
            elif n == 3 and seg[2] in ("updated", "deleted") and m == "GET":
                return f"sobject.{seg[2]}", self.updated if seg[2] == "updated" else self.deleted
            elif n == 3:
                ops = {
                    "GET": ("sobject.get", self.get),
                    "PATCH": ("sobject.update", self.update),
                    "DELETE": ("sobject.delete", self.delete),
                }
                if m in ops:
                    return ops[m]
            elif n == 4:
                ops = {
                    "GET": ("sobject.get", self.get_by_external_id),
                    "PATCH": ("sobject.upsert", self.upsert),
                    "POST": ("sobject.upsert", self.upsert),
                    "DELETE": ("sobject.delete", self.delete_by_external_id),
                }
                if m in ops:
                    return ops[m]
        if head == "composite":
            if n == 1 and m == "POST":
                return "composite", self.composite
            if n >= 2 and seg[1] == "sobjects":
                if n == 2:
                    ops = {
                        "POST": ("collections.create", self.collection_create),
                        "PATCH": ("collections.update", self.collection_update),
                        "DELETE": ("collections.delete", self.collection_delete),
                    }
                    if m in ops:
                        return ops[m]
                if n == 3 and m in ("GET", "POST") and sobject(seg[2]):
                    return "collections.retrieve", self.collection_retrieve
                if n == 4 and m == "PATCH" and sobject(seg[2]):
                    return "collections.upsert", self.collection_upsert
        if head == "jobs" and n >= 2 and seg[1] == "ingest":
            return self.sb.bulk.route(m, seg[2:])
        raise not_found()

    # --- simple resources -------------------------------------------------------------------------------

    def resources(self, call: Call) -> Reply:
        names = ("sobjects", "query", "queryAll", "composite", "limits", "jobs")
        return Reply(200, {name: f"{call.base}/{name}" for name in names})

    def limits(self, call: Call) -> Reply:
        used, allocation = self.sb.api_used, self.sb.daily_api_limit
        body = {
            "DailyApiRequests": {"Max": allocation, "Remaining": max(allocation - used, 0)},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000 - self.sb.bulk.batches_today},
            "DailyBulkV2QueryFileStorageMB": {"Max": 976562, "Remaining": 976562},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024},
            "FileStorageMB": {"Max": 1024, "Remaining": 1024},
            "HourlyPublishedPlatformEvents": {"Max": 50000, "Remaining": 50000},
        }
        return Reply(200, body)

    # --- query ------------------------------------------------------------------------------------------

    def batch_size(self, call: Call) -> int:
        header = call.headers.get("sforce-query-options", "")
        m = _BATCH_RE.search(header)
        if not m:
            return DEFAULT_BATCH
        return min(max(int(m.group(1)), MIN_BATCH), MAX_BATCH)

    def query(self, call: Call) -> Reply:
        text = call.query.get("q")
        if not text:
            raise SfError(400, "MALFORMED_QUERY", "A query string has to be specified")
        all_rows = call.segments[0] == "queryAll"
        q = soql.compile_query(text, self.store)
        rows = q.run(self.store, all_rows)
        if q.count_only:
            return Reply(200, {"totalSize": len(rows), "done": True, "records": []})
        batch = self.batch_size(call)
        cursor = {
            "rows": rows,
            "query": q,
            "all": all_rows,
            "batch": batch,
            "base": call.base,
            "endpoint": call.segments[0],
        }
        if len(rows) <= batch:
            return Reply(200, self.page(cursor, "", 0))
        locator = ids.to18(self.sb.minter.mint("01g")[:15])
        self.cursors[locator] = cursor
        while len(self.cursors) > MAX_CURSORS:
            self.cursors.popitem(last=False)
        return Reply(200, self.page(cursor, locator, 0))

    def page(self, cursor: dict[str, Any], locator: str, start: int) -> dict[str, Any]:
        rows, batch = cursor["rows"], cursor["batch"]
        chunk = rows[start : start + batch]
        q, all_rows, base = cursor["query"], cursor["all"], cursor["base"]
        records = [soql.render(self.store, r, q.projection, all_rows, base) for r in chunk]
        body: dict[str, Any] = {"totalSize": len(rows), "done": start + batch >= len(rows)}
        if not body["done"]:
            body["nextRecordsUrl"] = f"{base}/{cursor['endpoint']}/{locator}-{start + batch}"
        body["records"] = records
        return body

    def query_more(self, call: Call) -> Reply:
        locator, _, offset = call.segments[1].partition("-")
        cursor = self.cursors.get(locator)
        if cursor is None or not offset.isdigit() or int(offset) > len(cursor["rows"]):
            raise SfError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        self.cursors.move_to_end(locator)
        return Reply(200, self.page(cursor, locator, int(offset)))

    # --- describe ---------------------------------------------------------------------------------------

    def _object_info(self, base: str, obj: SObject) -> dict[str, Any]:
        return {
            "activateable": False,
            "createable": True,
            "custom": False,
            "customSetting": False,
            "deletable": True,
            "deprecatedAndHidden": False,
            "feedEnabled": obj.name in ("Account", "Contact", "Opportunity"),
            "keyPrefix": obj.key_prefix,
            "label": obj.label,
            "labelPlural": obj.label_plural,
            "layoutable": True,
            "mergeable": obj.name in ("Account", "Contact"),
            "name": obj.name,
            "queryable": True,
            "replicateable": True,
            "retrieveable": True,
            "searchable": True,
            "triggerable": True,
            "undeletable": True,
            "updateable": True,
            "urls": {
                "sobject": f"{base}/sobjects/{obj.name}",
                "describe": f"{base}/sobjects/{obj.name}/describe",
                "rowTemplate": f"{base}/sobjects/{obj.name}/{{ID}}",
            },
        }

    def describe_global(self, call: Call) -> Reply:
        return Reply(
            200,
            {
                "encoding": "UTF-8",
                "maxBatchSize": 200,
                "sobjects": [self._object_info(call.base, o) for o in OBJECTS.values()],
            },
        )

    def basic_info(self, call: Call) -> Reply:
        obj = sobject(call.segments[1])
        assert obj is not None
        table = self.store.tables[obj.name]
        recent = sorted((r for r in table.values() if not r["IsDeleted"]), key=lambda r: r["Id"])[-3:]
        return Reply(
            200,
            {
                "objectDescribe": self._object_info(call.base, obj),
                "recentItems": [
                    {
                        "attributes": attributes(call.base, obj.name, r["Id"]),
                        "Id": r["Id"],
                        "Name": r.get("Name"),
                    }
                    for r in recent
                ],
            },
        )

    def describe(self, call: Call) -> Reply:
        obj = sobject(call.segments[1])
        assert obj is not None
        info = self._object_info(call.base, obj)
        info["urls"].update(
            {
                "uiEditTemplate": f"{self.sb.instance_url(call)}/{{ID}}/e",
                "uiDetailTemplate": f"{self.sb.instance_url(call)}/{{ID}}",
                "uiNewRecord": f"{self.sb.instance_url(call)}/{obj.key_prefix}/e",
            }
        )
        info.update(
            {
                "fields": [f.describe() for f in obj.fields.values()],
                "childRelationships": child_relationships_of(obj),
                "listviewable": None,
                "lookupLayoutable": None,
                "searchLayoutable": None,
                "recordTypeInfos": [
                    {
                        "available": True,
                        "defaultRecordTypeMapping": True,
                        "master": True,
                        "name": "Master",
                        "recordTypeId": "012000000000000AAA",
                        "urls": {
                            "layout": f"{call.base}/sobjects/{obj.name}/describe/layouts/012000000000000AAA"
                        },
                    }
                ],
            }
        )
        return Reply(200, info)

    # --- sObject rows -----------------------------------------------------------------------------------

    def _obj(self, call: Call) -> SObject:
        obj = sobject(call.segments[1])
        assert obj is not None
        return obj

    def _fields_param(self, call: Call, obj: SObject) -> list[str] | None:
        raw = call.query.get("fields")
        if not raw:
            return None
        out = []
        for name in raw.split(","):
            f = obj.field(name.strip())
            if f is None:
                raise SfError(
                    400, "INVALID_FIELD", f"No such column '{name.strip()}' on sobject of type {obj.name}"
                )
            out.append(f.name)
        return out

    def get(self, call: Call) -> Reply:
        obj = self._obj(call)
        rec = self.store.live(obj.name, call.segments[2])
        return Reply(200, full_record(call.base, obj, rec, self._fields_param(call, obj)))

    def get_by_external_id(self, call: Call) -> Reply:
        obj = self._obj(call)
        f = obj.field(call.segments[2])
        if f is None or not (f.external_id or f.name == "Id"):
            raise SfError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {call.segments[2]}",
            )
        rec = self.store.find_by_external_id(obj, f.name, call.segments[3])
        if rec is None:
            raise not_found()
        return Reply(200, full_record(call.base, obj, rec, self._fields_param(call, obj)))

    def create(self, call: Call) -> Reply:
        obj = self._obj(call)
        body = call.json()
        if not isinstance(body, dict):
            raise SfError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from START_ARRAY")
        rid = self.store.create(obj.name, body, self.sb.clock.now())
        self.sb.effects.record(f"{obj.name}.create", rid)
        location = {"Location": f"{call.base}/sobjects/{obj.name}/{rid}"}
        return Reply(201, {"id": rid, "success": True, "errors": []}, headers=location, write=True)

    def update(self, call: Call) -> Reply:
        obj = self._obj(call)
        body = call.json()
        rid = self.store.update(obj.name, call.segments[2], body, self.sb.clock.now())
        self.sb.effects.record(f"{obj.name}.update", rid)
        return Reply(204, write=True)

    def delete(self, call: Call) -> Reply:
        obj = self._obj(call)
        rid = self.store.delete(obj.name, call.segments[2], self.sb.clock.now())
        self.sb.effects.record(f"{obj.name}.delete", rid)
        return Reply(204, write=True)

    def upsert(self, call: Call) -> Reply:
        obj = self._obj(call)
        field_name, key = call.segments[2], call.segments[3]
        body = call.json()
        if not isinstance(body, dict):
            raise SfError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from START_ARRAY")
        result = self.store.upsert(obj.name, field_name, key, body, self.sb.clock.now())
        self.record_upsert(obj, field_name, key, result.id, result.created)
        status = 201 if result.created else 200
        headers = {"Location": f"{call.base}/sobjects/{obj.name}/{result.id}"} if result.created else {}
        return Reply(
            status,
            {"id": result.id, "success": True, "errors": [], "created": result.created},
            headers=headers,
            write=True,
        )

    def record_upsert(self, obj: SObject, field_name: str, key: str, rid: str, created: bool) -> None:
        self.sb.effects.record(f"upsert:{obj.name}", key)
        self.sb.effects.record(f"{obj.name}.{'create' if created else 'update'}", rid)
        del field_name

    def delete_by_external_id(self, call: Call) -> Reply:
        obj = self._obj(call)
        f = obj.field(call.segments[2])
        if f is None or not f.external_id:
            raise SfError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {call.segments[2]}",
            )
        rec = self.store.find_by_external_id(obj, f.name, call.segments[3])
        if rec is None:
            raise not_found()
        rid = self.store.delete(obj.name, rec["Id"], self.sb.clock.now())
        self.sb.effects.record(f"{obj.name}.delete", rid)
        return Reply(204, write=True)

    # --- getUpdated / getDeleted ------------------------------------------------------------------------

    def _window(self, call: Call) -> tuple[dt.datetime, dt.datetime]:
        try:
            start = parse_datetime(call.query["start"])
            end = parse_datetime(call.query["end"])
        except (KeyError, ValueError):
            raise SfError(400, "MALFORMED_QUERY", "start and end are required ISO 8601 date-times") from None
        if end <= start:
            raise SfError(400, "INVALID_REPLICATION_DATE", "startDate must chronologically precede endDate")
        return start, end

    def updated(self, call: Call) -> Reply:
        obj = self._obj(call)
        start, end = self._window(call)
        # Whole minutes, as the platform covers; never past the current minute.
        now = self.sb.clock.now().replace(second=0, microsecond=0)
        end = min(end.replace(second=0, microsecond=0), now)
        found = [
            r["Id"]
            for r in self.store.tables[obj.name].values()
            if not r["IsDeleted"] and start <= r["SystemModstamp"] < end
        ]
        return Reply(200, {"ids": found, "latestDateCovered": format_datetime(end)})

    def deleted(self, call: Call) -> Reply:
        obj = self._obj(call)
        start, end = self._window(call)
        now = self.sb.clock.now().replace(second=0, microsecond=0)
        end = min(end.replace(second=0, microsecond=0), now)
        records = [
            {"id": rid, "deletedDate": format_datetime(when)}
            for rid, when in self.store.deleted_at.items()
            if rid[:3] == obj.key_prefix and start <= when < end
        ]
        earliest = min((w for w in self.store.deleted_at.values()), default=self.sb.started_at)
        return Reply(
            200,
            {
                "deletedRecords": records,
                "earliestDateAvailable": format_datetime(earliest.replace(second=0, microsecond=0)),
                "latestDateCovered": format_datetime(end),
            },
        )

    # --- sObject collections ----------------------------------------------------------------------------

    def _collection_body(self, call: Call) -> tuple[bool, list[dict[str, Any]]]:
        body = call.json()
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise SfError(400, "JSON_PARSER_ERROR", "The request body must have a records array")
        records = body["records"]
        if len(records) > MAX_COLLECTION:
            raise SfError(
                400,
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {MAX_COLLECTION} records into this call",
            )
        if not records:
            raise SfError(400, "REQUIRED_FIELD_MISSING", "At least 1 record is required.")
        return bool(body.get("allOrNone", False)), records

    def _run_collection(
        self, all_or_none: bool, items: list[Any], apply: Callable[[Any, dt.datetime], dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[Callable[[], None]]]:
        """Apply each item with one shared stamp; on allOrNone failure roll back everything."""
        stamp = self.sb.clock.now()
        results: list[dict[str, Any]] = []
        effects: list[Callable[[], None]] = []
        failed = False
        self.store.begin()
        try:
            for item in items:
                try:
                    if all_or_none and failed:
                        raise _Skipped
                    outcome = apply(item, stamp)
                    effects.append(outcome.pop("_effect"))
                    results.append(outcome)
                except SfError as err:
                    failed = True
                    results.append({"id": None, "success": False, "errors": [error_item(err)]})
                except _Skipped:
                    results.append(_rolled_back())
            if all_or_none and failed:
                self.store.rollback()
                effects = []
                results = [r if not r["success"] else _rolled_back() for r in results]
            else:
                self.store.commit()
        except BaseException:
            self.store.rollback()
            raise
        return results, effects

    def collection_create(self, call: Call) -> Reply:
        all_or_none, records = self._collection_body(call)

        def apply(rec: dict[str, Any], stamp: dt.datetime) -> dict[str, Any]:
            obj = _record_type(rec)
            if rec.get("id") or rec.get("Id"):
                raise SfError(400, "INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
            rid = self.store.create(obj.name, _strip_meta(rec), stamp)
            return {
                "id": rid,
                "success": True,
                "errors": [],
                "_effect": lambda: self.sb.effects.record(f"{obj.name}.create", rid),
            }

        results, effects = self._run_collection(all_or_none, records, apply)
        for e in effects:
            e()
        return Reply(200, results, write=bool(effects))

    def collection_update(self, call: Call) -> Reply:
        all_or_none, records = self._collection_body(call)

        def apply(rec: dict[str, Any], stamp: dt.datetime) -> dict[str, Any]:
            obj = _record_type(rec)
            rid_in = rec.get("id") or rec.get("Id")
            if not rid_in:
                raise SfError(400, "MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
            rid = self.store.update(obj.name, str(rid_in), _strip_meta(rec), stamp)
            return {
                "id": rid,
                "success": True,
                "errors": [],
                "_effect": lambda: self.sb.effects.record(f"{obj.name}.update", rid),
            }

        results, effects = self._run_collection(all_or_none, records, apply)
        for e in effects:
            e()
        return Reply(200, results, write=bool(effects))

    def collection_upsert(self, call: Call) -> Reply:
        obj = sobject(call.segments[2])
        assert obj is not None
        f = obj.field(call.segments[3])
        if f is None or not (f.external_id or f.name == "Id"):
            raise SfError(
                404,
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {call.segments[3]}",
            )
        all_or_none, records = self._collection_body(call)

        def apply(rec: dict[str, Any], stamp: dt.datetime) -> dict[str, Any]:
            rtype = _record_type(rec)
            if rtype.name != obj.name:
                raise SfError(400, "INVALID_TYPE", f"Record type {rtype.name} does not match {obj.name}")
            key = next((v for k, v in rec.items() if k.lower() == f.name.lower()), None)
            if key in (None, ""):
                raise SfError(400, "MISSING_ARGUMENT", f"{f.name} not specified", [f.name])
            values = {k: v for k, v in _strip_meta(rec).items() if k.lower() != f.name.lower()}
            result = self.store.upsert(obj.name, f.name, str(key), values, stamp)
            return {
                "id": result.id,
                "success": True,
                "errors": [],
                "created": result.created,
                "_effect": lambda: self.record_upsert(obj, f.name, str(key), result.id, result.created),
            }

        results, effects = self._run_collection(all_or_none, records, apply)
        for e in effects:
            e()
        return Reply(200, results, write=bool(effects))

    def collection_delete(self, call: Call) -> Reply:
        raw = call.query.get("ids", "")
        id_list = [i for i in raw.split(",") if i]
        if not id_list:
            raise SfError(400, "REQUIRED_FIELD_MISSING", "At least 1 Id is required.")
        if len(id_list) > MAX_COLLECTION:
            raise SfError(400, "EXCEEDED_ID_LIMIT", f"cannot delete more than {MAX_COLLECTION} records")
        all_or_none = call.query.get("allOrNone", "false").lower() == "true"

        def apply(rid_in: str, stamp: dt.datetime) -> dict[str, Any]:
            norm = ids.normalize(rid_in)
            obj = OBJECTS.get(_prefix_object(norm)) if norm else None
            if obj is None:
                raise SfError(400, "MALFORMED_ID", f"malformed id {rid_in}", [])
            rid = self.store.delete(obj.name, rid_in, stamp)
            return {
                "id": rid,
                "success": True,
                "errors": [],
                "_effect": lambda: self.sb.effects.record(f"{obj.name}.delete", rid),
            }

        results, effects = self._run_collection(all_or_none, id_list, apply)
        for r, rid_in in zip(results, id_list, strict=True):
            if r["id"] is None:
                r["id"] = rid_in
        for e in effects:
            e()
        return Reply(200, results, write=bool(effects))

    def collection_retrieve(self, call: Call) -> Reply:
        obj = sobject(call.segments[2])
        assert obj is not None
        if call.method == "POST":
            body = call.json()
            id_list, names = body.get("ids", []), body.get("fields", [])
        else:
            id_list = [i for i in call.query.get("ids", "").split(",") if i]
            names = [n for n in call.query.get("fields", "").split(",") if n]
        if not names:
            raise SfError(400, "REQUIRED_FIELD_MISSING", "The fields parameter is required.")
        fields = []
        for n in names:
            f = obj.field(n)
            if f is None:
                raise SfError(400, "INVALID_FIELD", f"No such column '{n}' on sobject of type {obj.name}")
            fields.append(f.name)
        out = []
        for rid_in in id_list:
            norm = ids.normalize(rid_in)
            rec = self.store.tables[obj.name].get(norm) if norm else None
            out.append(full_record(call.base, obj, rec, fields) if rec and not rec["IsDeleted"] else None)
        return Reply(200, out)

    # --- composite --------------------------------------------------------------------------------------

    def composite(self, call: Call) -> Reply:
        body = call.json()
        subs = body.get("compositeRequest") if isinstance(body, dict) else None
        if not isinstance(subs, list) or not subs:
            raise SfError(400, "JSON_PARSER_ERROR", "compositeRequest is required")
        if len(subs) > MAX_COMPOSITE:
            raise SfError(
                400, "LIMIT_EXCEEDED", f"Limit Exceeded: maximum of {MAX_COMPOSITE} subrequests allowed"
            )
        all_or_none = bool(body.get("allOrNone", False))
        results: dict[str, Any] = {}
        responses: list[dict[str, Any]] = []
        pending_effects: list[tuple[str, str]] = []
        failed = False
        self.store.begin()
        recorder = _Recorder()
        real_effects = self.sb.effects
        self.sb.effects = recorder  # type: ignore[assignment]
        try:
            for sub in subs:
                ref_id = str(sub.get("referenceId", ""))
                if failed and all_or_none:
                    responses.append(_halted(ref_id))
                    continue
                try:
                    reply = self._run_sub(call, sub, results)
                except SfError as err:
                    reply = Reply(err.status, err.body())
                if reply.status >= 400:
                    failed = True
                else:
                    results[ref_id] = reply.body
                responses.append(
                    {
                        "body": reply.body,
                        "httpHeaders": reply.headers,
                        "httpStatusCode": reply.status,
                        "referenceId": ref_id,
                    }
                )
            if failed and all_or_none:
                self.store.rollback()
                recorder.items.clear()
                responses = [_halted(r["referenceId"]) if r["httpStatusCode"] < 400 else r for r in responses]
            else:
                self.store.commit()
        except BaseException:
            self.store.rollback()
            raise
        finally:
            self.sb.effects = real_effects
        pending_effects = recorder.items
        for kind, key in pending_effects:
            real_effects.record(kind, key)
        return Reply(200, {"compositeResponse": responses}, write=bool(pending_effects))

    def _run_sub(self, call: Call, sub: dict[str, Any], results: dict[str, Any]) -> Reply:
        method = str(sub.get("method", "GET")).upper()
        url = _resolve_refs(str(sub.get("url", "")), results)
        body = sub.get("body")
        if body is not None:
            body = _resolve_in_body(body, results)
        path, _, qs = url.partition("?")
        m = re.match(r"^/services/data/v(\d+\.\d+)/?(.*)$", path)
        if not m:
            raise SfError(400, "INVALID_URL", f"The URL {url} is not supported in a composite request")
        from urllib.parse import parse_qsl, unquote

        segments = [unquote(s) for s in m.group(2).split("/") if s]
        sub_call = Call(
            method=method,
            segments=segments,
            query=dict(parse_qsl(qs)),
            body=dumps(body) if body is not None else b"",
            headers={k.lower(): v for k, v in (sub.get("httpHeaders") or {}).items()},
            base=f"/services/data/v{m.group(1)}",
        )
        op, handler = self.route(method, segments)
        if op.startswith(("composite", "bulk")):
            raise SfError(400, "INVALID_URL", f"{url} is not supported in a composite request")
        reply = handler(sub_call)
        if reply.status == 204:
            reply.body = None
        return reply


class _Skipped(Exception):
    pass


class _Recorder:
    """Stands in for the effect counter during /composite so rolled-back writes are not counted."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def record(self, kind: str, key: str) -> None:
        self.items.append((kind, key))


def _rolled_back() -> dict[str, Any]:
    return {
        "id": None,
        "success": False,
        "errors": [
            {
                "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                "message": "Record rolled back because not all records were valid and the request was using "
                "AllOrNone header",
                "fields": [],
            }
        ],
    }


def _halted(ref_id: str) -> dict[str, Any]:
    return {
        "body": [
            {
                "errorCode": "PROCESSING_HALTED",
                "message": "The transaction was rolled back since another operation in the same transaction "
                "failed.",
            }
        ],
        "httpHeaders": {},
        "httpStatusCode": 400,
        "referenceId": ref_id,
    }


def _record_type(rec: Any) -> SObject:
    if not isinstance(rec, dict):
        raise SfError(400, "JSON_PARSER_ERROR", "each record must be an object")
    rtype = (rec.get("attributes") or {}).get("type")
    obj = sobject(str(rtype)) if rtype else None
    if obj is None:
        raise SfError(400, "INVALID_TYPE", f"sObject type '{rtype}' is not supported.")
    return obj


def _strip_meta(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k not in ("attributes", "id", "Id")}


def _prefix_object(rid: str) -> str:
    from lead2cash.sandbox.salesforce.schema import BY_PREFIX

    obj = BY_PREFIX.get(rid[:3])
    return obj.name if obj else ""


def _lookup(results: dict[str, Any], ref: str, path: str) -> Any:
    if ref not in results:
        raise SfError(
            400, "PROCESSING_HALTED", f"Invalid reference specified. No value for {ref}{path} found"
        )
    value = results[ref]
    for part in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
        key, index = part
        try:
            value = value[int(index)] if index else value[key]
        except (KeyError, IndexError, TypeError):
            raise SfError(
                400, "PROCESSING_HALTED", f"Invalid reference specified. No value for {ref}{path} found"
            ) from None
    return value


def _resolve_refs(text: str, results: dict[str, Any]) -> str:
    return _REF_RE.sub(lambda m: str(_lookup(results, m.group(1), m.group(2))), text)


def _resolve_in_body(value: Any, results: dict[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _REF_RE.fullmatch(value)
        if whole:
            return _lookup(results, whole.group(1), whole.group(2))
        return _resolve_refs(value, results)
    if isinstance(value, dict):
        return {k: _resolve_in_body(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_in_body(v, results) for v in value]
    return value


__all__ = ["API_VERSION", "Call", "Reply", "RestApi", "dumps"]
