"""Reading changes without ever skipping a record.

* Keyset cursor on ``(SystemModstamp, Id)``: ties on SystemModstamp (bulk loads stamp hundreds of records
  alike) are broken by Id, so a page boundary inside a tie neither skips nor repeats a record.
* The cursor stays ``safety_lag`` behind the **server's** clock: the HTTP ``Date`` header of the org's
  responses (whole seconds, read as the second that started, so never ahead of the org), or, when no
  response carried one, the ``latestDateCovered`` of ``/sobjects/{type}/updated`` (whole minutes). A transaction that commits late stamps its rows with its start time; as long
  as it commits within the lag its rows still lie ahead of the cursor. The local clock only chooses the
  window of that probe, never the watermark.
* ``queryAll`` returns deleted rows (``IsDeleted = true``, SystemModstamp moved at deletion) in the same
  order, so deletes travel the same cursor.
* An edit of a child record does not move its parent's SystemModstamp (an Opportunity line item: the
  Amount roll-up does not either), so a watched child object has a keyset cursor of its own, under the
  same safety lag, and every parent named by a changed (or deleted) child is read again by Id.
* A periodic reconciliation sweep re-reads every live record by Id, for changes that never move
  SystemModstamp (formula and roll-up fields). The route's idempotent consumer drops records whose key is
  already known, so a sweep over unchanged records produces no effects.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import threading
import time
from dataclasses import replace
from typing import Any

from simple_salesforce.api import Salesforce

from lead2cash.connectors.salesforce.soql import (
    Cursor,
    QuerySpec,
    ReadResult,
    advance,
    by_ids_query,
    changes_query,
    child_changes_query,
    child_count_after_query,
    count_after_query,
    format_datetime,
    parse_datetime,
    strip_attributes,
    sweep_query,
)


class ServerClock:
    """The org's clock, as the org reports it. ``estimate`` only positions the probe's window."""

    # A Date header older than this is refreshed by a probe rather than extrapolated.
    FRESH_S = 20.0

    def __init__(self) -> None:
        self._seen: dt.datetime | None = None
        self._seen_at = 0.0
        self._date: dt.datetime | None = None
        self._date_at = 0.0
        self._lock = threading.Lock()

    def observe_date(self, header: str | None) -> None:
        """Called for every response from the org (a requests response hook)."""
        if not header:
            return
        try:
            value = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        with self._lock:
            self._date, self._date_at = value, time.monotonic()

    def _from_date(self) -> dt.datetime | None:
        with self._lock:
            if self._date is None or time.monotonic() - self._date_at > self.FRESH_S:
                return None
            return self._date + dt.timedelta(seconds=time.monotonic() - self._date_at)

    def estimate(self) -> dt.datetime:
        dated = self._from_date()
        if dated is not None:
            return dated
        if self._seen is None:
            return dt.datetime.now(dt.UTC)
        return self._seen + dt.timedelta(seconds=time.monotonic() - self._seen_at)

    def read(self, sf: Salesforce, obj: str) -> dt.datetime:
        dated = self._from_date()
        if dated is not None:
            return dated
        guess = self.estimate()
        params = {
            "start": format_datetime(guess - dt.timedelta(minutes=10)),
            "end": format_datetime(guess + dt.timedelta(days=1)),
        }
        body = sf.restful(f"sobjects/{obj}/updated/", params=params) or {}
        dated = self._from_date()  # the probe's own response carried a Date header
        if dated is not None:
            return dated
        covered = parse_datetime(str(body["latestDateCovered"]))
        # latestDateCovered is whole minutes; the org is at least there, maybe up to a minute ahead.
        self._seen, self._seen_at = covered, time.monotonic()
        return covered


def fetch_all(sf: Salesforce, soql: str, include_deleted: bool) -> list[dict[str, Any]]:
    result = sf.query(soql, include_deleted=include_deleted)
    records = list(result.get("records", []))
    while not result.get("done", True) and result.get("nextRecordsUrl"):
        result = sf.query_more(result["nextRecordsUrl"], identifier_is_url=True)
        records.extend(result.get("records", []))
    for record in records:
        for name, value in list(record.items()):
            # A child subquery answers in pages too; follow them so no line item is left behind.
            if isinstance(value, dict) and "records" in value and not value.get("done", True):
                rows = list(value["records"])
                page = value
                while not page.get("done", True) and page.get("nextRecordsUrl"):
                    page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True)
                    rows.extend(page.get("records", []))
                record[name] = {**value, "records": rows, "done": True, "totalSize": len(rows)}
    return [strip_attributes(r) for r in records]


class ChangeReader:
    def __init__(
        self,
        spec: QuerySpec,
        *,
        safety_lag: float = 60.0,
        page_size: int = 2000,
        sweep_interval: float | None = 6 * 3600.0,
        clock: ServerClock | None = None,
    ) -> None:
        self.spec = spec
        self.safety_lag = safety_lag
        self.page_size = page_size
        self.sweep_interval = sweep_interval
        self.clock = clock or ServerClock()
        # While pages follow each other (``more``), the last probe is reused: an older reading of the
        # org's clock only makes the upper bound more conservative, and saves a call per page.
        self._burst_time: dt.datetime | None = None
        self._burst_at = 0.0

    def _now(self, sf: Salesforce) -> dt.datetime:
        if self._burst_time is not None and time.monotonic() - self._burst_at < 30.0:
            return self._burst_time
        return self.clock.read(sf, self.spec.object)

    def server_time(self, sf: Salesforce) -> dt.datetime:
        return self.clock.read(sf, self.spec.object)

    def count_after(self, sf: Salesforce, cursor: Cursor) -> int:
        """Records past the cursor: after a read that caught up, the ones within the safety lag (line items
        changed past the child position included: each makes its parent read again)."""
        count = int(sf.query(count_after_query(self.spec, cursor)).get("totalSize", 0))
        child = self.spec.watched_child
        if child is not None and cursor.child_ts is not None:
            count += int(sf.query(child_count_after_query(self.spec, child, cursor)).get("totalSize", 0))
        return count

    def read(self, sf: Salesforce, cursor: Cursor, limit: int) -> ReadResult:
        result = self._read(sf, cursor, limit)
        if result.more and result.server_time is not None:
            if self._burst_time != result.server_time:
                self._burst_time, self._burst_at = result.server_time, time.monotonic()
        else:
            self._burst_time = None
        return result

    def _read(self, sf: Salesforce, cursor: Cursor, limit: int) -> ReadResult:
        """One batch (runs in a worker thread): changes first; when they are caught up, a sweep page."""
        limit = max(1, min(limit, self.page_size))
        now = self._now(sf)
        upper = now - dt.timedelta(seconds=self.safety_lag)
        records: list[dict[str, Any]] = []
        new = cursor
        child = self.spec.watched_child
        if child is not None and cursor.child_ts is None:
            # A child changed up to ``upper`` shows in every parent read from now on: the first load
            # covers it. A cursor from before children were watched starts at its own position.
            new = replace(new, child_ts=cursor.ts or upper, child_id=None)
        if cursor.ts is None or cursor.ts < upper:
            rows = fetch_all(sf, changes_query(self.spec, cursor, upper, limit), include_deleted=True)
            records.extend(rows)
            if rows:
                new = advance(new, rows[-1])
            if len(rows) >= limit:
                return ReadResult(records, new, True, now)
        if child is not None and new.child_ts is not None and new.child_ts < upper:
            room = limit - len(records)
            if room <= 0:
                return ReadResult(records, new, True, now)
            query = child_changes_query(self.spec, child, (new.child_ts, new.child_id), upper, room)
            rows = fetch_all(sf, query, include_deleted=True)
            if rows:
                parents = list(
                    dict.fromkeys(str(r[child.parent_field]) for r in rows if r.get(child.parent_field))
                )
                seen = {(r["Id"], r.get("SystemModstamp")) for r in records}
                for start in range(0, len(parents), 200):
                    # queryAll: a deleted line shows among its parent's children (its stamp moves the
                    # parent's version), and a deleted parent is read as deleted.
                    found = fetch_all(
                        sf, by_ids_query(self.spec, parents[start : start + 200]), include_deleted=True
                    )
                    records.extend(r for r in found if (r["Id"], r.get("SystemModstamp")) not in seen)
                last = rows[-1]
                new = replace(
                    new, child_ts=parse_datetime(str(last["SystemModstamp"])), child_id=str(last["Id"])
                )
                if len(rows) >= room:
                    return ReadResult(records, new, True, now)
        if self.sweep_interval is None:
            return ReadResult(records, new, False, now)
        if new.sweep_at is None:
            # The first full load is itself a sweep.
            new = replace(new, sweep_at=now)
        elif new.sweep_after is None and (now - new.sweep_at).total_seconds() >= self.sweep_interval:
            new = replace(new, sweep_after="", sweep_at=now)
        if new.sweep_after is None:
            return ReadResult(records, new, False, now)
        room = limit - len(records)
        if room <= 0:
            return ReadResult(records, new, True, now)
        rows = fetch_all(sf, sweep_query(self.spec, new.sweep_after, room, new.floor), include_deleted=False)
        seen = {(r["Id"], r.get("SystemModstamp")) for r in records}
        records.extend(r for r in rows if (r["Id"], r.get("SystemModstamp")) not in seen)
        if len(rows) >= room:
            return ReadResult(records, replace(new, sweep_after=str(rows[-1]["Id"])), True, now)
        return ReadResult(records, replace(new, sweep_after=None), False, now)

    def reread(self, sf: Salesforce, record_id: str) -> list[dict[str, Any]]:
        """The record ``record_id`` as it is now, read like the cursor reads it (deleted included); empty
        when it is gone or no longer matches the source's filters."""
        return fetch_all(sf, by_ids_query(self.spec, [record_id]), include_deleted=True)
