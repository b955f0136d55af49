"""Business partners: found by the configured search key (cross-reference first), extended to a new company
code when needed, created once with roles, address and company code data; the ensure action for Customers."""

from __future__ import annotations

import asyncio

import doubles
import sap_factories as f
from sap_hub_config import ROUTE, sap_system, write_config

from lead2cash.hub import Hub
from lead2cash.systems.sap.binding import SapSystem

BP = "/sap/opu/odata/sap/API_BUSINESS_PARTNER"


def test_existing_partner_is_found_by_search_key_and_extended(tmp_path, sap_box, sap_admin) -> None:  # type: ignore[no-untyped-def]
    # SEED00001 is a seeded partner with company code data in one company code only.
    seeded = f.customer(900, "GBP", refs={"salesforce": "seed00001"})
    inv = f.invoice(1, "GBP", number_prefix="EXT").model_copy(update={"customer": seeded})
    path = write_config(tmp_path, sap_system(sap_box))
    hub = Hub.from_files([path], configure_logs=False)
    doubles.REGISTRY["mem"].records.append(inv.model_dump(mode="json"))
    assert asyncio.run(hub.run_until_idle(timeout=30))
    assert hub.store.dlq_count() == 0, [d.error_message for d in hub.store.dlq_list()]
    effects = sap_admin.get("/__sandbox/effects").json()
    assert "business_partner.create" not in effects
    number = hub.store.xref_get("Customer", seeded.id, "sap")
    auth = ("LEAD2CASH", "Sandbox-Passw0rd")
    rows = sap_admin.get(
        f"{BP}/A_BusinessPartner", params={"$filter": "SearchTerm1 eq 'SEED00001'"}, auth=auth
    ).json()
    assert rows["d"]["results"][0]["BusinessPartner"] == number
    company = sap_admin.get(f"{BP}/A_CustomerCompany(Customer='{number}',CompanyCode='1110')", auth=auth)
    assert company.status_code == 200 and company.json()["d"]["ReconciliationAccount"] == "12100000"
    hub.close()


def test_new_partner_deep_insert_and_ensure_action(tmp_path, sap_box, sap_admin) -> None:  # type: ignore[no-untyped-def]
    route = {
        **ROUTE,
        "name": "customers-to-sap",
        "mapping": {"adapter": "canonical", "entity": "Customer"},
        "target": {"system": "s4", "action": "business_partner.ensure"},
        "idempotency_key": "customer:{id}:v{version}",
        "ordering_key": "{id}",
        "filter": None,
    }
    route = {k: v for k, v in route.items() if v is not None}
    system = sap_system(sap_box, business_partner={"search_field": "SearchTerm2", "payment_terms": "0001"})
    path = write_config(tmp_path, system, route)
    hub = Hub.from_files([path], configure_logs=False)
    customers = [f.customer(n, "JPY", name=f"Kaisha {n} K.K.") for n in range(5)]
    doubles.REGISTRY["mem"].records.extend([c.model_dump(mode="json") for c in customers] * 2)
    sap_admin.put(
        "/__sandbox/faults", json={"rules": {"business_partner.write": {"commit_then_drop_rate": 0.5}}}
    )
    try:
        assert asyncio.run(hub.run_until_idle(timeout=30))
    finally:
        sap_admin.put("/__sandbox/faults", json={"rules": {}})
    created = sap_admin.get("/__sandbox/effects").json()["business_partner.create"]
    assert set(created.values()) == {1} and len(created) == 5
    assert all(hub.store.xref_get("Customer", c.id, "sap") for c in customers), "lookups record the partner"
    number = hub.store.xref_get("Customer", customers[3].id, "sap")
    auth = ("LEAD2CASH", "Sandbox-Passw0rd")
    response = sap_admin.get(
        f"{BP}/A_BusinessPartner('{number}')",
        params={"$expand": "to_BusinessPartnerAddress,to_BusinessPartnerRole,to_Customer/to_CustomerCompany"},
        auth=auth,
    )
    assert response.status_code == 200, response.text
    bp = response.json()["d"]
    assert bp["SearchTerm2"] == customers[3].refs["salesforce"].upper()
    assert bp["OrganizationBPName1"] == "Kaisha 3 K.K."
    assert {r["BusinessPartnerRole"] for r in bp["to_BusinessPartnerRole"]["results"]} == {"FLCU00", "FLCU01"}
    assert bp["to_BusinessPartnerAddress"]["results"][0]["Country"] == "JP"
    (company,) = bp["to_Customer"]["to_CustomerCompany"]["results"]
    assert (company["CompanyCode"], company["PaymentTerms"]) == ("1510", "0001")
    system_binding = hub.systems["s4"]
    assert isinstance(system_binding, SapSystem)
    hub.close()
