"""Journal entries in bulk: the deliveries in flight go as one JournalEntryCreateRequestConfirmation_In
message; each entry's confirmation ends its own delivery (a failed entry never fails its neighbours), and a
bulk message whose response is lost is settled entry by entry by the lookup by reference, never posted twice."""

from __future__ import annotations

import asyncio
from datetime import date

import doubles
import sap_factories as f
from sap_hub_config import ROUTE, sap_system, write_config

from lead2cash.hub import Hub


def _hub(tmp_path, sap_box, **system):  # type: ignore[no-untyped-def]
    route = {**ROUTE, "concurrency": 64, "batch_size": 200}
    return Hub.from_files(
        [write_config(tmp_path, sap_system(sap_box, **system), route)], configure_logs=False
    )


def test_entries_in_flight_go_in_one_message_and_fail_alone(tmp_path, sap_box, sap_admin) -> None:  # type: ignore[no-untyped-def]
    # January 2023 is closed in company code 1010: that one invoice's entry is refused in SAP's log.
    r = sap_admin.put(
        "/__sandbox/sap/periods",
        json={"company_code": "1010", "fiscal_year": 2023, "period": 1, "open": False},
    )
    assert r.status_code == 200, r.text
    invoices = [f.invoice(n, "EUR", customer_n=n % 24, number_prefix="BULK") for n in range(1, 49)]
    invoices[20] = f.invoice(21, "EUR", customer_n=1, number_prefix="BULK", issue_date=date(2023, 1, 16))
    hub = _hub(tmp_path, sap_box)
    system = hub.routes["invoices-to-sap"].target.system  # type: ignore[attr-defined]
    doubles.REGISTRY["mem"].records.extend(i.model_dump(mode="json") for i in invoices)
    try:
        assert asyncio.run(hub.run_until_idle(timeout=60))
    finally:
        sap_admin.put(
            "/__sandbox/sap/periods",
            json={"company_code": "1010", "fiscal_year": 2023, "period": 1, "open": True},
        )
    (letter,) = hub.store.dlq_list()
    assert letter.error_class == "permanent" and letter.idempotency_key == "invoice:inv-BULK-21:v1"
    assert "is not open" in letter.error_message
    posted = sap_admin.get("/__sandbox/effects").json()["journal_entry.post"]
    assert len(posted) == 47 and set(posted.values()) == {1}
    assert all(
        hub.store.xref_get("Invoice", i.id, "sap") for i in invoices if i.invoice_number != "BULK-000021"
    )
    # 48 entries in a handful of messages: the router starts a delivery per customer at a time (the
    # ordering key), up to 64 at once; the first ones wait for their new partners.
    assert system.soap.calls <= 8, system.soap.calls
    assert system.bulk.items == 48 and system.bulk.calls == system.soap.calls
    # 24 customers, new to SAP: their searches go as one or two reads (then one create each).
    assert system.partners.reads <= 3, system.partners.reads
    hub.close()


def test_a_lost_bulk_response_is_settled_by_the_lookup(tmp_path, sap_box, sap_admin) -> None:  # type: ignore[no-untyped-def]
    invoices = [f.invoice(n, "EUR", customer_n=n % 3, number_prefix="LOST") for n in range(1, 31)]
    hub = _hub(tmp_path, sap_box)
    doubles.REGISTRY["mem"].records.extend(i.model_dump(mode="json") for i in invoices)
    sap_admin.put("/__sandbox/faults", json={"rules": {"journal_entry.post": {"commit_then_drop_rate": 0.5}}})
    try:
        assert asyncio.run(hub.run_until_idle(timeout=60))
    finally:
        sap_admin.put("/__sandbox/faults", json={"rules": {}})
    assert hub.store.dlq_count() == 0, [d.error_message for d in hub.store.dlq_list()]
    posted = sap_admin.get("/__sandbox/effects").json()["journal_entry.post"]
    assert len(posted) == 30 and set(posted.values()) == {1}, "an entry was posted twice"
    hub.close()


def test_a_message_refused_for_one_entrys_form_posts_its_neighbours(tmp_path, sap_box, sap_admin) -> None:  # type: ignore[no-untyped-def]
    """SAP refuses a bulk message as a whole when one entry violates the schema (a SOAP sender fault: nothing
    posted); the entries then go one by one, so only the faulty one fails."""
    from lead2cash.adapters import sap as adapter
    from lead2cash.errors import PermanentError

    hub = _hub(tmp_path, sap_box)
    target = hub.routes["invoices-to-sap"].target
    system = target.system  # type: ignore[attr-defined]
    invoices = [f.invoice(n, "EUR", customer_n=n, number_prefix="FORM") for n in (1, 2, 3)]

    async def scenario() -> list:  # type: ignore[type-arg]
        bodies = []
        for invoice in invoices:
            entry = target._entry(invoice)  # type: ignore[attr-defined]
            debtors = await target._debtors(invoice, entry)  # type: ignore[attr-defined]
            bodies.append(adapter.journal_entry_to_soap(entry, debtors, system.soap_header))
        bodies[1]["CompanyCode"] = "TOOLONG"  # the schema's CompanyCode holds 4 characters
        return await system._post_bulk(bodies)

    try:
        first, second, third = asyncio.run(scenario())
    finally:
        hub.close()
    assert first.posted and third.posted
    assert isinstance(second, PermanentError) and "SOAP fault" in second.message
    assert system.soap.calls == 4  # the refused message, then each entry alone
    posted = sap_admin.get("/__sandbox/effects").json()["journal_entry.post"]
    assert sorted(posted) == ["1010:FORM-000001", "1010:FORM-000003"]
