"""Writes: one record per caller, many records per API call.

The router delivers one entity per ``deliver`` call, concurrently. ``BatchWriter`` collects the calls that
arrive within ``window`` seconds and sends them as one sObject Collections request (<= 200 records; update
by Id or upsert by an external id), or as one Bulk API 2.0 job when at least ``bulk_threshold`` records are
waiting. Every caller gets its own record's outcome: successes are confirmed, a failed record raises the
error class of its own error code, and a failed request fails only the callers in it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from simple_salesforce.api import Salesforce

from lead2cash.connectors.salesforce.client import SalesforceClient
from lead2cash.connectors.salesforce.errors import classify
from lead2cash.connectors.salesforce.governor import RouteBudget
from lead2cash.connectors.salesforce.soql import by_keys_query, identifier
from lead2cash.errors import DeliveryError, TransientError

COLLECTION_MAX = 200


def wire_value(value: Any) -> Any:
    """A JSON-ready value. A Decimal becomes a JSON number only when the number's text is exactly the
    Decimal's (shortest float repr round-trips it: true for money up to 15 significant digits); else text,
    which Salesforce parses into number fields as well."""
    if isinstance(value, Decimal):
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else format(value, "f")
    if isinstance(value, dict):
        return {k: wire_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [wire_value(v) for v in value]
    return value


def dumps(body: Any) -> str:
    return json.dumps(wire_value(body), default=str)


def _csv_value(value: Any) -> str:
    if value is None:
        return "#N/A"  # Bulk API's explicit null
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


class BatchWriter:
    def __init__(
        self,
        client: SalesforceClient,
        budget: RouteBudget,
        obj: str,
        match_field: str = "Id",
        *,
        window: float = 0.005,
        bulk_threshold: int = 2000,
        bulk_wait: float = 0.2,
    ) -> None:
        self.client = client
        self.budget = budget
        self.obj = identifier(obj)
        self.match_field = identifier(match_field)
        self.window = window
        self.bulk_threshold = bulk_threshold
        self.bulk_wait = bulk_wait
        self._pending: list[tuple[str, dict[str, Any], asyncio.Future[str]]] = []
        self._flush: asyncio.Task[None] | None = None
        self.requests = 0  # collection requests and bulk jobs sent

    async def write(self, record: dict[str, Any]) -> str:
        """Apply ``record`` (which carries its match field); returns the record's Salesforce Id."""
        key = record.get(self.match_field)
        if not isinstance(key, str) or not key:
            raise ValueError(f"record has no {self.match_field}")
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.append((key, record, future))
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self._flush_soon())
        return await future

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.window)
        while self._pending:
            batch, self._pending = self._pending, []
            # Two writes of one record never share a request: Salesforce rejects duplicate ids in a
            # collection, and their order must hold.
            first: list[tuple[str, dict[str, Any], asyncio.Future[str]]] = []
            later: list[tuple[str, dict[str, Any], asyncio.Future[str]]] = []
            seen: set[str] = set()
            for item in batch:
                (later if item[0] in seen else first).append(item)
                seen.add(item[0])
            self._pending = later + self._pending
            if len(first) >= self.bulk_threshold:
                await self._guard(first, self._send_bulk(first))
            else:
                chunks = [first[i : i + COLLECTION_MAX] for i in range(0, len(first), COLLECTION_MAX)]
                await asyncio.gather(*(self._guard(c, self._send_collection(c)) for c in chunks))

    async def _guard(
        self, items: Sequence[tuple[str, dict[str, Any], asyncio.Future[str]]], send: Any
    ) -> None:
        try:
            await send
        except DeliveryError as exc:
            for _, _, future in items:
                if not future.done():
                    future.set_exception(exc)
        except Exception as exc:  # never leave a caller waiting
            for _, _, future in items:
                if not future.done():
                    future.set_exception(TransientError(f"Salesforce write failed: {type(exc).__name__}"))

    async def _send_collection(
        self, items: Sequence[tuple[str, dict[str, Any], asyncio.Future[str]]]
    ) -> None:
        records = [{"attributes": {"type": self.obj}, **record} for _, record, _ in items]
        body = dumps({"allOrNone": False, "records": records})
        if self.match_field == "Id":
            path, what = "composite/sobjects", f"{self.obj} collection update"
        else:
            path, what = f"composite/sobjects/{self.obj}/{self.match_field}", f"{self.obj} collection upsert"

        def send(sf: Salesforce) -> Any:
            return sf.restful(path, method="PATCH", data=body)

        self.requests += 1
        results = await self.client.call(self.budget, send, what)
        if not isinstance(results, list) or len(results) != len(items):
            raise TransientError(f"{what}: unexpected response shape")
        for (key, _, future), result in zip(items, results, strict=True):
            if future.done():
                continue
            if result.get("success"):
                future.set_result(str(result.get("id") or key))
            else:
                future.set_exception(classify(None, result, what=f"{self.obj} {self.match_field}={key}"))

    async def _send_bulk(self, items: Sequence[tuple[str, dict[str, Any], asyncio.Future[str]]]) -> None:
        rows = [{k: _csv_value(v) for k, v in record.items()} for _, record, _ in items]
        match, obj, wait = self.match_field, self.obj, self.bulk_wait

        def send(sf: Salesforce) -> list[tuple[str, str]]:
            handler = getattr(sf.bulk2, obj)
            if match == "Id":
                jobs = handler.update(records=rows, wait=wait)
            else:
                jobs = handler.upsert(records=rows, external_id_field=match, wait=wait)
            return [
                (handler.get_successful_records(j["job_id"]), handler.get_failed_records(j["job_id"]))
                for j in jobs
            ]

        self.requests += 1
        outcomes = await self.client.call(self.budget, send, f"{obj} bulk {match}")
        by_key = {key: future for key, _, future in items}
        for ok_csv, failed_csv in outcomes:
            for row in csv.DictReader(io.StringIO(ok_csv)):
                future = by_key.get(row.get(match) or row.get("sf__Id") or "")
                if future is not None and not future.done():
                    future.set_result(row.get("sf__Id") or row.get(match) or "")
            for row in csv.DictReader(io.StringIO(failed_csv)):
                future = by_key.get(row.get(match) or "")
                if future is not None and not future.done():
                    future.set_exception(_bulk_error(obj, match, row))
        for key, future in by_key.items():
            if not future.done():
                future.set_exception(TransientError(f"{obj} bulk: record {key} was not processed"))

    async def fetch(self, keys: Sequence[str], fields: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Current values of ``fields`` of the records with these match keys (the crash-recovery lookup)."""
        soql = by_keys_query(self.obj, self.match_field, keys, fields)

        def run(sf: Salesforce) -> Any:
            return sf.query(soql)

        result = await self.client.call(self.budget, run, f"{self.obj} lookup")
        return {str(r.get(self.match_field)): r for r in result.get("records", [])}


def _bulk_error(obj: str, match: str, row: dict[str, str]) -> DeliveryError:
    # sf__Error reads "CODE:message:field,field" (or "--" when no field is named)
    code, _, rest = (row.get("sf__Error") or "").partition(":")
    message, sep, fields = rest.rpartition(":")
    item = {
        "statusCode": code,
        "message": message if sep else rest,
        "fields": [f for f in fields.split(",") if f and f != "--"] if sep else [],
    }
    return classify(None, {"errors": [item]}, what=f"{obj} {match}={row.get(match)}")
