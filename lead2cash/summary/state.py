"""The billing summary's tables in the hub's store: each batch of confirmed deliveries is applied, the
summaries of the customers it touched recomputed, and the route's cursor moved, in one transaction."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, func, select, tuple_, update

from lead2cash.store import Store
from lead2cash.store.schema import billing_summaries, summary_cursors, summary_invoices, summary_usage
from lead2cash.summary.model import (
    BillingSummary,
    ChargeDef,
    InvoiceFacts,
    Period,
    UsageState,
    compose,
    first_period,
)


@dataclass(frozen=True)
class UsageItem:
    """One usage event confirmed in Lago, with the period and charge it falls into."""

    customer: str
    subscription: str
    metric: str
    period_start: str
    timestamp: str
    properties: Mapping[str, Any]
    charge: ChargeDef


CHUNK = 500  # customers per statement (SQLite's bound parameters)


class CursorMoved(Exception):
    """The route's cursor is not where the batch was read from: another keeper applied it."""


class SummaryState:
    def __init__(self, store: Store) -> None:
        self.store = store

    # -- cursors ---------------------------------------------------------------------------------------
    def cursor(self, route: str) -> int:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(summary_cursors.c.seq).where(summary_cursors.c.route == route)).first()
        return int(row[0]) if row else 0

    # -- apply -----------------------------------------------------------------------------------------
    def apply(
        self,
        route: str,
        seq: int,
        usage: Sequence[UsageItem],
        invoices: Sequence[InvoiceFacts],
        periods: Mapping[str, Sequence[Period]],
        charges: Mapping[str, Mapping[str, ChargeDef]],
        customers: Iterable[str] = (),
        expected: int | None = None,
    ) -> dict[tuple[str, str], BillingSummary]:
        """Apply a batch and move ``route``'s cursor to ``seq``; returns the summaries that changed.
        ``periods``: customer -> its subscriptions' current periods; ``charges``: subscription -> metric
        code -> charge."""
        s = self.store
        touched = set(customers) | {u.customer for u in usage} | {i.customer for i in invoices}
        changed: dict[tuple[str, str], BillingSummary] = {}
        with s.engine.begin() as conn:
            at = conn.execute(select(summary_cursors.c.seq).where(summary_cursors.c.route == route)).first()
            if expected is not None and (int(at[0]) if at else 0) != expected:
                raise CursorMoved(route)  # another process applied this batch first: rolled back
            keys = {(u.subscription, u.metric, u.period_start) for u in usage}
            states: dict[tuple[str, str, str], UsageState] = {}
            if keys:
                rows = conn.execute(
                    select(summary_usage).where(
                        tuple_(
                            summary_usage.c.subscription, summary_usage.c.metric, summary_usage.c.period_start
                        ).in_(list(keys))
                    )
                )
                states = {
                    (r.subscription, r.metric, r.period_start): UsageState.from_json(r.state) for r in rows
                }
            fresh = {k for k in keys if k not in states}
            owner = {(u.subscription, u.metric, u.period_start): u.customer for u in usage}
            for u in usage:
                key = (u.subscription, u.metric, u.period_start)
                states.setdefault(key, UsageState()).add(u.charge, u.timestamp, u.properties)
            inserts = [
                {
                    "subscription": k[0],
                    "metric": k[1],
                    "period_start": k[2],
                    "customer": owner[k],
                    "state": st.to_json(),
                }
                for k, st in states.items()
                if k in fresh
            ]
            updates = [
                {"s": k[0], "m": k[1], "p": k[2], "state": st.to_json()}
                for k, st in states.items()
                if k not in fresh
            ]
            if inserts:
                conn.execute(summary_usage.insert(), inserts)
            if updates:
                conn.execute(
                    update(summary_usage)
                    .where(
                        summary_usage.c.subscription == bindparam("s"),
                        summary_usage.c.metric == bindparam("m"),
                        summary_usage.c.period_start == bindparam("p"),
                    )
                    .values(state=bindparam("state")),
                    updates,
                )
            newest: dict[str, InvoiceFacts] = {}
            for inv in invoices:
                known = newest.get(inv.lago_id)
                if known is None or known.updated <= inv.updated:
                    newest[inv.lago_id] = inv
            if newest:
                stored = {
                    r.lago_id: r.updated
                    for r in conn.execute(
                        select(summary_invoices.c.lago_id, summary_invoices.c.updated).where(
                            summary_invoices.c.lago_id.in_(list(newest))
                        )
                    )
                }
                for inv in newest.values():
                    if inv.lago_id not in stored:
                        conn.execute(
                            s._insert(summary_invoices).values(
                                lago_id=inv.lago_id,
                                customer=inv.customer,
                                updated=inv.updated,
                                facts=inv.to_json(),
                            )
                        )
                    elif stored[inv.lago_id] <= inv.updated:  # an older state arriving late is dropped
                        conn.execute(
                            update(summary_invoices)
                            .where(summary_invoices.c.lago_id == inv.lago_id)
                            .values(updated=inv.updated, facts=inv.to_json())
                        )
            changed.update(self._recompute(conn, sorted(touched), periods, charges))
            self._move(conn, route, seq)
        return changed

    def _move(self, conn: Any, route: str, seq: int) -> None:
        stmt = self.store._insert(summary_cursors).values(route=route, seq=seq)
        conn.execute(stmt.on_conflict_do_update(index_elements=["route"], set_={"seq": seq}))

    def _recompute(
        self,
        conn: Any,
        customers: Sequence[str],
        periods: Mapping[str, Sequence[Period]],
        charges: Mapping[str, Mapping[str, ChargeDef]],
    ) -> dict[tuple[str, str], BillingSummary]:
        """The summaries of ``customers`` from their stored invoices and usage, saved where they changed;
        a few statements per chunk of customers, not per customer."""
        out: dict[tuple[str, str], BillingSummary] = {}
        for i in range(0, len(customers), CHUNK):
            chunk = list(customers[i : i + CHUNK])
            invoices: dict[str, list[InvoiceFacts]] = defaultdict(list)
            q = select(summary_invoices.c.customer, summary_invoices.c.facts)
            for r in conn.execute(q.where(summary_invoices.c.customer.in_(chunk))):
                invoices[r.customer].append(InvoiceFacts.from_json(r.facts))
            usage: dict[tuple[str, str, str], Any] = {}
            for r in conn.execute(select(summary_usage).where(summary_usage.c.customer.in_(chunk))):
                usage[(r.subscription, r.period_start, r.metric)] = r.state
            stored = {
                (r.customer, r.currency): (r.doc, r.version)
                for r in conn.execute(
                    select(
                        billing_summaries.c.customer,
                        billing_summaries.c.currency,
                        billing_summaries.c.doc,
                        billing_summaries.c.version,
                    ).where(billing_summaries.c.customer.in_(chunk))
                )
            }
            fresh: list[BillingSummary] = []
            for customer in chunk:
                mine = periods.get(customer, ())
                docs = invoices.get(customer, [])
                currencies = {d.currency for d in docs} | {p.currency for p in mine}
                for currency in sorted(c for c in currencies if c):
                    accrued = 0
                    for p in mine:
                        if p.currency != currency:
                            continue
                        start = p.start.isoformat()
                        for metric, charge in charges.get(p.subscription, {}).items():
                            state = usage.get((p.subscription, start, metric))
                            if state is not None:
                                accrued += charge.price(UsageState.from_json(state).units(charge), currency)
                    fresh.append(compose(customer, currency, first_period(mine, currency), docs, accrued))
            out.update(self._save_many(conn, fresh, stored))
        return out

    def _save_many(
        self,
        conn: Any,
        summaries: Sequence[BillingSummary],
        stored: Mapping[tuple[str, str], tuple[str, int]],
    ) -> dict[tuple[str, str], BillingSummary]:
        now = self.store.clock()
        inserts, updates, out = [], [], {}
        for summary in summaries:
            key = (summary.customer, summary.currency)
            doc = summary.to_json()
            known = stored.get(key)
            if known is None:
                inserts.append(
                    {"customer": key[0], "currency": key[1], "doc": doc, "version": 1, "updated_at_ms": now}
                )
            elif known[0] != doc:
                updates.append({"c": key[0], "cur": key[1], "doc": doc, "v": known[1] + 1, "at": now})
            else:
                continue
            out[key] = summary
        if inserts:
            conn.execute(billing_summaries.insert(), inserts)
        if updates:
            conn.execute(
                update(billing_summaries)
                .where(
                    billing_summaries.c.customer == bindparam("c"),
                    billing_summaries.c.currency == bindparam("cur"),
                )
                .values(doc=bindparam("doc"), version=bindparam("v"), updated_at_ms=bindparam("at")),
                updates,
            )
        return out

    def _save(self, conn: Any, summary: BillingSummary) -> bool:
        where = and_(
            billing_summaries.c.customer == summary.customer, billing_summaries.c.currency == summary.currency
        )
        row = conn.execute(select(billing_summaries.c.doc, billing_summaries.c.version).where(where)).first()
        stored = {} if row is None else {(summary.customer, summary.currency): (row.doc, row.version)}
        return bool(self._save_many(conn, [summary], stored))

    def replace_all(self, summaries: Iterable[BillingSummary]) -> int:
        """Store these summaries as they are (``summary rebuild`` without ``--check``)."""
        n = 0
        with self.store.engine.begin() as conn:
            for summary in summaries:
                n += self._save(conn, summary)
        return n

    # -- reads -----------------------------------------------------------------------------------------
    def summaries(self, customer: str | None = None) -> list[tuple[BillingSummary, int, int]]:
        """(summary, version, updated_at_ms), by customer and currency."""
        q = select(billing_summaries).order_by(billing_summaries.c.customer, billing_summaries.c.currency)
        if customer is not None:
            q = q.where(billing_summaries.c.customer == customer)
        with self.store.engine.connect() as conn:
            return [(BillingSummary.from_json(r.doc), r.version, r.updated_at_ms) for r in conn.execute(q)]

    # -- Salesforce ------------------------------------------------------------------------------------
    def due_for_salesforce(self, interval_ms: int, limit: int) -> list[tuple[BillingSummary, int]]:
        """Summaries changed since their last write and not written within ``interval_ms``."""
        before = self.store.clock() - interval_ms
        q = (
            select(billing_summaries)
            .where(
                billing_summaries.c.version > billing_summaries.c.sf_version,
                billing_summaries.c.sf_at_ms <= before,
            )
            .order_by(billing_summaries.c.updated_at_ms)
            .limit(limit)
        )
        with self.store.engine.connect() as conn:
            return [(BillingSummary.from_json(r.doc), r.version) for r in conn.execute(q)]

    def next_salesforce_due_ms(self, interval_ms: int) -> int | None:
        """When the earliest changed summary may be written (None: none is waiting)."""
        q = select(func.min(billing_summaries.c.sf_at_ms)).where(
            billing_summaries.c.version > billing_summaries.c.sf_version
        )
        with self.store.engine.connect() as conn:
            at = conn.execute(q).scalar()
        return None if at is None else int(at) + interval_ms

    def written_to_salesforce(
        self, written: Sequence[tuple[str, str, int]], later: Sequence[tuple[str, str]] = ()
    ) -> None:
        now = self.store.clock()
        with self.store.engine.begin() as conn:
            for customer, currency in later:
                conn.execute(
                    update(billing_summaries)
                    .where(billing_summaries.c.customer == customer, billing_summaries.c.currency == currency)
                    .values(sf_at_ms=now)
                )
            for customer, currency, version in written:
                conn.execute(
                    update(billing_summaries)
                    .where(billing_summaries.c.customer == customer, billing_summaries.c.currency == currency)
                    .values(sf_version=version, sf_at_ms=now)
                )
