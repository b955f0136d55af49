"""Business errors from SAP: a closed period dead-letters with SAP's message and posts after the period is
opened and the dead letter replayed from the CLI; the today_if_closed rule posts into the open period; OAuth
and expired sessions (CSRF) work through the hub."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import doubles
import pytest
import sap_factories as f
from sap_hub_config import ROUTE, oauth_auth, sap_system, write_config
from typer.testing import CliRunner

from lead2cash.canonical_model import CreditNote, CreditNoteLine
from lead2cash.cli import app
from lead2cash.errors import TransientError
from lead2cash.hub import Hub


def _period(sap_admin, company_code: str, day: date, is_open: bool) -> None:  # type: ignore[no-untyped-def]
    body = {"company_code": company_code, "fiscal_year": day.year, "period": day.month, "open": is_open}
    sap_admin.put("/__sandbox/sap/periods", json=body).raise_for_status()


def test_closed_period_dead_letters_and_replays_after_opening(tmp_path, sap_box, sap_admin):  # type: ignore[no-untyped-def]
    path = write_config(tmp_path, sap_system(sap_box))
    hub = Hub.from_files([path], configure_logs=False)
    closed = f.invoice(1, "EUR", issue_date=date(2024, 10, 31), number_prefix="CLS")
    fine = f.invoice(2, "EUR", issue_date=date(2024, 11, 1), number_prefix="CLS")
    doubles.REGISTRY["mem"].records.extend([closed.model_dump(mode="json"), fine.model_dump(mode="json")])
    _period(sap_admin, "1010", closed.issue_date, False)
    try:
        assert asyncio.run(hub.run_until_idle(timeout=30))
        dead = hub.store.dlq_list("invoices-to-sap")
        assert [d.idempotency_key for d in dead] == [f"invoice:{closed.id}:v1"]
        assert dead[0].error_class == "permanent"
        assert "Posting period 010 2024 is not open" in dead[0].error_message
        assert "Error in document" not in dead[0].error_message.split("(")[0]  # the specific reason leads
        assert "201(F5)" in dead[0].error_message
        effects = sap_admin.get("/__sandbox/effects").json()["journal_entry.post"]
        assert effects == {f"1010:{fine.invoice_number}": 1}
        hub.close()

        _period(sap_admin, "1010", closed.issue_date, True)
        result = CliRunner().invoke(app, ["dlq", "replay", "-c", str(path), str(dead[0].id)])
        assert result.exit_code == 0, result.output
    finally:
        _period(sap_admin, "1010", closed.issue_date, True)
    effects = sap_admin.get("/__sandbox/effects").json()["journal_entry.post"]
    assert effects == {f"1010:{fine.invoice_number}": 1, f"1010:{closed.invoice_number}": 1}
    check = Hub.from_files([path], configure_logs=False)
    assert check.store.dlq_count("invoices-to-sap") == 0
    ref = check.store.xref_get("Invoice", closed.id, "sap")
    assert ref is not None and ref.endswith("/1010/2024")
    docs = sap_admin.get(
        "/__sandbox/sap/ledger/documents", params={"DocumentReferenceID": closed.invoice_number}
    )
    assert docs.json()["documents"][0]["PostingDate"] == "2024-10-31"
    check.close()


def test_today_if_closed_posts_into_the_current_period(tmp_path, sap_box, sap_admin):  # type: ignore[no-untyped-def]
    path = write_config(tmp_path, sap_system(sap_box, posting_date="today_if_closed"))
    hub = Hub.from_files([path], configure_logs=False)
    old = f.invoice(3, "GBP", issue_date=date(2023, 12, 30), number_prefix="TIC")
    doubles.REGISTRY["mem"].records.append(old.model_dump(mode="json"))
    _period(sap_admin, "1110", old.issue_date, False)
    try:
        assert asyncio.run(hub.run_until_idle(timeout=30))
    finally:
        _period(sap_admin, "1110", old.issue_date, True)
    assert hub.store.dlq_count() == 0
    docs = sap_admin.get(
        "/__sandbox/sap/ledger/documents", params={"DocumentReferenceID": old.invoice_number}
    )
    (doc,) = docs.json()["documents"]
    assert doc["PostingDate"] == datetime.now(UTC).date().isoformat()
    hub.close()


def test_oauth_and_expired_sessions(tmp_path, sap_box, sap_admin):  # type: ignore[no-untyped-def]
    system = sap_system(sap_box, auth=oauth_auth(sap_box))
    path = write_config(tmp_path, system, {**ROUTE, "concurrency": 4})
    hub = Hub.from_files([path], configure_logs=False)
    invoices = [f.invoice(n, "USD", number_prefix="OAU") for n in range(12)]
    doubles.REGISTRY["mem"].records.extend(i.model_dump(mode="json") for i in invoices)
    faults = {
        "business_partner.write": {"expire_session_rate": 0.5},
        "business_partner.read": {"expire_session_rate": 0.2},
        "journal_entry.post": {"expire_session_rate": 0.2},
    }
    sap_admin.put("/__sandbox/faults", json={"rules": faults}).raise_for_status()
    try:
        assert asyncio.run(hub.run_until_idle(timeout=30))
    finally:
        sap_admin.put("/__sandbox/faults", json={"rules": {}})
    injected = sap_admin.get("/__sandbox/faults").json()["injected"]
    assert sum(v for k, v in injected.items() if k.endswith("expired_session")) > 0
    assert hub.store.dlq_count() == 0, [d.error_message for d in hub.store.dlq_list()]
    effects = sap_admin.get("/__sandbox/effects").json()
    assert set(effects["journal_entry.post"].values()) == {1} and len(effects["journal_entry.post"]) == 12
    assert set(effects["business_partner.create"].values()) == {1}
    hub.close()


def test_credit_note_before_the_customers_first_invoice_waits_for_it(tmp_path, sap_box, sap_admin):  # type: ignore[no-untyped-def]
    """SAP posts a credit note on the partner route 2 creates with the customer's first invoice: a credit
    note that overtakes that invoice is retried (transient), never dead-lettered as permanent."""
    hub = Hub.from_files([write_config(tmp_path, sap_system(sap_box))], configure_logs=False)
    target = hub.routes["invoices-to-sap"].target
    inv = f.invoice(31, "EUR", issue_date=date(2024, 11, 20), number_prefix="CNW")
    line = inv.lines[0]
    tax = next(t for t in inv.taxes if t.code == line.tax_code)
    note = CreditNote.build(
        id=f"{inv.id}-cn1",
        credit_note_number=f"CNW-{inv.id[-4:]}-CN1",
        invoice_id=inv.id,
        invoice_number=inv.invoice_number,
        customer_id=inv.customer.id,
        status="finalized",
        reason="order_change",
        issue_date=date(2024, 11, 21),
        currency="EUR",
        lines=[
            CreditNoteLine(
                id="cnl-1",
                invoice_line_id=line.id,
                product_code=line.product_code,
                product_family=line.product_family,
                amount=abs(line.net_amount),
            )
        ],
        taxes=[
            tax.model_copy(
                update={
                    "amount": f.tax_amount(line.net_amount, str(tax.rate)),
                    "taxable_amount": line.net_amount,
                }
            )
        ],
    )

    async def scenario() -> tuple[str | None, str | None]:
        with pytest.raises(TransientError, match="no SAP business partner known for the customer yet"):
            await target.deliver(note, "credit-note:1")
        posted = await target.deliver(inv, "invoice:1")
        return posted, await target.deliver(note, "credit-note:1")

    try:
        invoice_doc, note_doc = asyncio.run(scenario())
    finally:
        hub.close()
    assert invoice_doc and note_doc and invoice_doc != note_doc
    effects = sap_admin.get("/__sandbox/effects").json()["journal_entry.post"]
    assert effects[f"1010:{note.credit_note_number}"] == 1 and effects[f"1010:{inv.invoice_number}"] == 1
