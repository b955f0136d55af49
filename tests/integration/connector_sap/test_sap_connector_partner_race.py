"""A business partner created by another route or system in the same run, its general data first and its
customer data a moment later: the posting waits for it (transient, retried with the route's policy) instead
of dead-lettering "Customer ... does not exist" at once; only a partner that never becomes a customer ends as
a dead letter, once the retry policy is spent, with a reason that says so."""

from __future__ import annotations

import asyncio
import threading
import time

import doubles
import sap_factories as f
from sap_hub_config import ROUTE, sap_system, write_config

from lead2cash.hub import Hub

BP = "/sap/opu/odata/sap/API_BUSINESS_PARTNER"
AUTH = ("LEAD2CASH", "Sandbox-Passw0rd")


def _csrf(sap_admin) -> dict[str, str]:  # type: ignore[no-untyped-def]
    r = sap_admin.get(f"{BP}/", headers={"x-csrf-token": "Fetch"}, auth=AUTH)
    return {"x-csrf-token": r.headers["x-csrf-token"], "accept": "application/json"}


def _partner_without_customer(sap_admin, search_key: str) -> str:  # type: ignore[no-untyped-def]
    """What another route creates first: the partner's general data, no customer role yet."""
    r = sap_admin.post(
        f"{BP}/A_BusinessPartner",
        json={"BusinessPartnerCategory": "2", "OrganizationBPName1": "Race Ltd", "SearchTerm1": search_key},
        headers=_csrf(sap_admin),
        auth=AUTH,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["d"]["BusinessPartner"])


def _make_customer(sap_admin, number: str) -> None:  # type: ignore[no-untyped-def]
    """... and a moment later its customer roles (the customer record comes with FLCU01)."""
    headers = _csrf(sap_admin)
    for role in ("FLCU01", "FLCU00"):
        r = sap_admin.post(
            f"{BP}/A_BusinessPartnerRole",
            json={"BusinessPartner": number, "BusinessPartnerRole": role},
            headers=headers,
            auth=AUTH,
        )
        assert r.status_code == 201, r.text


def _hub(tmp_path, sap_box, attempts: int) -> Hub:  # type: ignore[no-untyped-def]
    route = {
        **ROUTE,
        "retry": {"attempts": attempts, "initial_backoff": "100ms", "max_backoff": "400ms", "jitter": "10ms"},
    }
    return Hub.from_files([write_config(tmp_path, sap_system(sap_box), route)], configure_logs=False)


def test_posting_waits_for_a_partner_another_route_is_creating(tmp_path, sap_box, sap_admin) -> None:  # type: ignore[no-untyped-def]
    customer = f.customer(950, "EUR", refs={"salesforce": "race00001"})
    number = _partner_without_customer(sap_admin, "RACE00001")
    invoices = [
        f.invoice(n, "EUR", number_prefix="RACE").model_copy(update={"customer": customer}) for n in (1, 2, 3)
    ]
    hub = _hub(tmp_path, sap_box, attempts=30)
    doubles.REGISTRY["mem"].records.extend(i.model_dump(mode="json") for i in invoices)
    timer = threading.Timer(1.0, _make_customer, (sap_admin, number))
    timer.start()
    try:
        started = time.monotonic()
        assert asyncio.run(hub.run_until_idle(timeout=60))
        elapsed = time.monotonic() - started
    finally:
        timer.join()
    assert hub.store.dlq_count() == 0, [d.error_message for d in hub.store.dlq_list()]
    assert elapsed >= 0.9, "posted before the partner was a customer"
    assert hub.store.xref_get("Customer", customer.id, "sap") == number
    effects = sap_admin.get("/__sandbox/effects").json()
    # The one partner is the other route's (the sandbox counts every create): the hub made none.
    assert effects["business_partner.create"] == {"RACE00001": 1}, "the hub created a second partner"
    posted = effects["journal_entry.post"]
    assert len(posted) == 3 and set(posted.values()) == {1}
    company = sap_admin.get(f"{BP}/A_CustomerCompany(Customer='{number}',CompanyCode='1010')", auth=AUTH)
    assert company.status_code == 200
    hub.close()


def test_a_partner_that_never_becomes_a_customer_is_a_dead_letter_once_retries_are_spent(
    tmp_path, sap_box, sap_admin
) -> None:  # type: ignore[no-untyped-def]
    customer = f.customer(951, "EUR", refs={"salesforce": "race00002"})
    number = _partner_without_customer(sap_admin, "RACE00002")
    invoice = f.invoice(9, "EUR", number_prefix="RACE").model_copy(update={"customer": customer})
    hub = _hub(tmp_path, sap_box, attempts=4)
    doubles.REGISTRY["mem"].records.append(invoice.model_dump(mode="json"))
    assert asyncio.run(hub.run_until_idle(timeout=60))
    (letter,) = hub.store.dlq_list()
    assert letter.error_class == "exhausted"
    assert f"business partner {number} is not a customer yet" in (letter.error_message or "")
    assert len(letter.attempts) == 4, "dead-lettered before the retry policy was spent"
    assert "journal_entry.post" not in sap_admin.get("/__sandbox/effects").json()
    hub.close()
