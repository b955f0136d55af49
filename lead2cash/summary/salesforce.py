"""Writing the billing summaries to the Salesforce Account: changed summaries are written in collections
(the connector's ``BatchWriter``: sObject Collections of up to 200 records), at most once per ``interval``
per customer (coalesced: the latest version at that time is what is written)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import structlog

from lead2cash.summary.model import MONEY_FIELDS, BillingSummary, major
from lead2cash.summary.state import SummaryState

log = structlog.get_logger("lead2cash.summary")

DEFAULT_FIELDS: Mapping[str, str] = {
    "period_start": "Billing_Period_Start__c",
    "period_end": "Billing_Period_End__c",
    "subscription_charges": "Billing_Subscription_Charges__c",
    "usage_charges": "Billing_Usage_Charges__c",
    "one_off_charges": "Billing_One_Off_Charges__c",
    "credits": "Billing_Credits__c",
    "taxes": "Billing_Taxes__c",
    "previous_balance": "Billing_Previous_Balance__c",
    "payments_received": "Billing_Payments_Received__c",
    "amount_due": "Billing_Amount_Due__c",
    "next_bill_date": "Billing_Next_Bill_Date__c",
    "last_invoice_number": "Billing_Last_Invoice_Number__c",
    "last_invoice_status": "Billing_Last_Invoice_Status__c",
    "updated_at": "Billing_Summary_Updated__c",
}


def account_record(
    summary: BillingSummary, fields: Mapping[str, str], match_field: str, updated_at_ms: int | None = None
) -> dict[str, Any]:
    data = summary.as_dict()
    record: dict[str, Any] = {match_field: summary.customer}
    for name, sf_field in fields.items():
        if name == "updated_at":
            at = (
                datetime.fromtimestamp((updated_at_ms or 0) / 1000, UTC)
                if updated_at_ms
                else datetime.now(UTC)
            )
            record[sf_field] = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        elif name in MONEY_FIELDS:
            record[sf_field] = major(data[name], summary.currency)
        else:
            record[sf_field] = data[name]
    return record


class SalesforceSink:
    def __init__(
        self,
        state: SummaryState,
        writer: Any,
        *,
        fields: Mapping[str, str],
        match_field: str = "Id",
        interval: float = 2.0,
        batch: int = 1000,
    ) -> None:
        self.state = state
        self.writer = writer  # lead2cash.connectors.salesforce.BatchWriter on the Account
        self.fields = dict(fields)
        self.match_field = match_field
        self.interval = interval
        self.batch = batch
        self._poked = asyncio.Event()
        self.written = 0
        self.on_written: Any = None  # called with [(customer, currency, version)] (figures)

    def poke(self, _changed: Any = None) -> None:
        self._poked.set()

    async def run(self, stopping: asyncio.Event) -> None:
        interval_ms = int(self.interval * 1000)
        while not stopping.is_set():
            try:
                wrote = await self.step()
                due = None if wrote else self.state.next_salesforce_due_ms(interval_ms)
            except Exception as exc:
                log.warning(
                    "billing summary not written to Salesforce; tried again",
                    error=str(exc).splitlines()[0][:300],
                )
                wrote, due = 0, None
                await asyncio.sleep(1.0)
            if wrote:
                continue
            # Sleep until the earliest waiting summary may be written, or a change is reported.
            wait = self.interval if due is None else max(0.01, (due - self.state.store.clock()) / 1000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), timeout=min(wait, self.interval))
            self._poked.clear()

    async def step(self) -> int:
        due = self.state.due_for_salesforce(int(self.interval * 1000), self.batch)
        if not due:
            return 0
        records = [account_record(s, self.fields, self.match_field) for s, _ in due]
        results = await asyncio.gather(*(self.writer.write(r) for r in records), return_exceptions=True)
        done, later = [], []
        for (summary, version), result in zip(due, results, strict=True):
            if isinstance(result, BaseException):
                permanent = getattr(getattr(result, "error_class", None), "value", "") == "permanent"
                log.warning(
                    "billing summary refused by Salesforce" if permanent else "billing summary write failed",
                    customer=summary.customer,
                    error=str(result).splitlines()[0][:300],
                )
                if not permanent:  # tried again after the interval
                    later.append((summary.customer, summary.currency))
                    continue
            # A refused record is not tried again until its summary changes (the reason is logged).
            done.append((summary.customer, summary.currency, version))
        self.state.written_to_salesforce(done, later)
        self.written += len(done)
        if self.on_written is not None:
            self.on_written(done)
        return len(done)
