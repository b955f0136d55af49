"""The lost-response lookup finds a posting by its whole reference, as a tenant holds it: the header's
DocumentReferenceID (16 characters) in API_OPLACCTGDOCITEMCUBE_SRV. API_GLACCOUNTLINEITEM's ReferenceDocument
holds 10 (and, for a BKPFF posting, the document's own number), so a lookup there finds nothing and the entry
would be posted again; the binding refuses such a lookup instead."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import doubles
import pytest
import sap_factories as f
from sap_hub_config import sap_system, write_config

from lead2cash.errors import PermanentError
from lead2cash.hub import Hub

ROUTE = "invoices-to-sap"


def test_lost_response_with_a_16_character_reference_posts_once(tmp_path, sap_box, sap_admin):  # type: ignore[no-untyped-def]
    invoice = f.invoice(1, "EUR", number_prefix="LEA1C12-1")
    assert len(invoice.invoice_number) == 16
    hub = Hub.from_files([write_config(tmp_path, sap_system(sap_box))], configure_logs=False)
    doubles.REGISTRY["mem"].records.append(invoice.model_dump(mode="json"))
    # Every posting commits and its response is lost: only the lookup can confirm it.
    faults = {"journal_entry.post": {"commit_then_drop_rate": 1.0, "retry_after_s": 0}}
    sap_admin.put("/__sandbox/faults", json={"rules": faults}).raise_for_status()
    try:
        assert asyncio.run(hub.run_until_idle(timeout=30)), "route did not drain"
    finally:
        sap_admin.put("/__sandbox/faults", json={"rules": {}})
    try:
        assert hub.store.dlq_count() == 0, [d.error_message for d in hub.store.dlq_list()]
        effects = sap_admin.get("/__sandbox/effects").json()["journal_entry.post"]
        assert effects == {f"1010:{invoice.invoice_number}": 1}, "posted twice, or not at all"
        assert hub.metrics.recovered.labels(ROUTE)._value.get() == 1
        docs = sap_admin.get(
            "/__sandbox/sap/ledger/documents", params={"DocumentReferenceID": invoice.invoice_number}
        ).json()["documents"]
        ref = hub.store.xref_get("Invoice", invoice.id, "sap")
        assert ref == f"{docs[0]['AccountingDocument']}/1010/2024"
    finally:
        hub.close()


def test_lookup_finds_the_posting_by_document_reference_id(tmp_path, sap_box):  # type: ignore[no-untyped-def]
    invoice = f.invoice(2, "EUR", number_prefix="LEA1C12-2")
    hub = Hub.from_files([write_config(tmp_path, sap_system(sap_box))], configure_logs=False)
    target = hub.routes[ROUTE].target

    async def scenario() -> tuple[str | None, str | None, str | None]:
        before = await target.find("1010", invoice.invoice_number)  # type: ignore[attr-defined]
        posted = await target.deliver(invoice, "k")
        return before, posted, await target.find("1010", invoice.invoice_number)  # type: ignore[attr-defined]

    try:
        before, posted, found = asyncio.run(scenario())
    finally:
        hub.close()
    assert before is None
    assert posted is not None and found == posted


def test_a_lookup_field_shorter_than_the_reference_is_refused(tmp_path, sap_box):  # type: ignore[no-untyped-def]
    system = sap_system(sap_box)
    gl = system["base_url"] + "/sap/opu/odata/sap/API_GLACCOUNTLINEITEM"
    system["odata"] = {**system["odata"], "operational_acctg_doc_item": gl}
    system["lookup"] = {"entity_set": "GLAccountLineItem", "reference_field": "ReferenceDocument"}
    hub = Hub.from_files([write_config(tmp_path, system)], configure_logs=False)
    target = hub.routes[ROUTE].target
    try:
        with pytest.raises(PermanentError, match="ReferenceDocument holds 10 characters"):
            asyncio.run(target.find("1010", "LEA1C12-3-000003"))  # type: ignore[attr-defined]
    finally:
        hub.close()


def test_a_store_that_forgot_a_posting_looks_up_what_predates_the_hub(tmp_path, sap_box, sap_admin):  # type: ignore[no-untyped-def]
    """A restored (or lost) store has no record of what the hub posted after the backup. An invoice the
    billing engine created before this hub process started is looked up first and not posted again; one
    created after it started (beyond the declared clock skew) is one no forgotten history can have posted,
    and goes out without a lookup."""
    now = datetime.now(UTC)
    old = f.invoice(3, "EUR", number_prefix="LEA1C12-4").model_copy(
        update={"source_created_at": now - timedelta(hours=1)}
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    # A payload without a creation time (queued before the field existed): its last change stands in.
    stamped = f.invoice(5, "EUR", number_prefix="LEA1C12-6").model_copy(
        update={"source_modstamp": (now - timedelta(hours=1)).isoformat()}
    )
    first = Hub.from_files([write_config(tmp_path / "a", sap_system(sap_box))], configure_logs=False)
    doubles.REGISTRY["mem"].records.extend([old.model_dump(mode="json"), stamped.model_dump(mode="json")])
    try:
        assert asyncio.run(first.run_until_idle(timeout=30)), "route did not drain"
    finally:
        first.close()

    # The same invoice again through a hub on a store that never saw it, and a new one made after start.
    second = Hub.from_files([write_config(tmp_path / "b", sap_system(sap_box))], configure_logs=False)
    new = f.invoice(4, "EUR", number_prefix="LEA1C12-5").model_copy(
        update={"source_created_at": datetime.now(UTC) + timedelta(minutes=5)}
    )
    doubles.REGISTRY["mem"].records[:] = [
        old.model_dump(mode="json"),
        stamped.model_dump(mode="json"),
        new.model_dump(mode="json"),
    ]
    try:
        assert asyncio.run(second.run_until_idle(timeout=30)), "route did not drain"
        assert second.store.dlq_count() == 0, [d.error_message for d in second.store.dlq_list()]
        effects = sap_admin.get("/__sandbox/effects").json()["journal_entry.post"]
        assert effects[f"1010:{old.invoice_number}"] == 1, "the forgotten posting was posted again"
        assert effects[f"1010:{stamped.invoice_number}"] == 1, "the forgotten posting was posted again"
        assert effects[f"1010:{new.invoice_number}"] == 1
        assert second.metrics.recovered.labels(ROUTE)._value.get() == 2  # the old ones, found by lookup
    finally:
        second.close()
