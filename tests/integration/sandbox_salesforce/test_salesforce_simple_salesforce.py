"""Drive the sandbox with simple-salesforce itself: the client the hub's connector uses."""

from __future__ import annotations

import pytest
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceMalformedRequest


def test_query_all_paginates_and_query_more(fresh):
    sf = fresh.simple()
    result = sf.query_all(
        "SELECT Id, Opportunity.Account.Name FROM OpportunityLineItem ORDER BY Id",
        headers={"Sforce-Query-Options": "batchSize=200"},
    )
    assert result["done"] is True and len(result["records"]) == result["totalSize"] > 200
    first = sf.query("SELECT Id FROM OpportunityLineItem", headers={"Sforce-Query-Options": "batchSize=200"})
    more = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert len(first["records"]) == 200 and more["records"][0]["Id"] not in {
        r["Id"] for r in first["records"]
    }


def test_crud_upsert_and_describe(fresh):
    sf = fresh.simple()
    created = sf.Account.create(
        {"Name": "Simple Salesforce Ltd", "BillingCountry": "United Kingdom", "CurrencyIsoCode": "GBP"}
    )
    assert created["success"] and created["id"].startswith("001")
    assert sf.Account.get(created["id"])["Name"] == "Simple Salesforce Ltd"
    assert sf.Account.update(created["id"], {"BillingCity": "Leeds"}) == 204
    status = sf.Opportunity.upsert(
        "Lead2Cash_Key__c/L2C-1",
        {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2030-01-31", "AccountId": created["id"]},
    )
    assert status == 201
    assert sf.Opportunity.upsert("Lead2Cash_Key__c/L2C-1", {"Billing_Invoice_Number__c": "INV-1"}) == 200
    assert (
        sf.Opportunity.get_by_custom_id("Lead2Cash_Key__c", "L2C-1")["Billing_Invoice_Number__c"] == "INV-1"
    )
    describe = sf.Opportunity.describe()
    key = next(f for f in describe["fields"] if f["name"] == "Lead2Cash_Key__c")
    assert key["externalId"] is True and key["unique"] is True
    assert {r["relationshipName"] for r in describe["childRelationships"]} >= {"OpportunityLineItems"}
    assert sf.Account.delete(created["id"]) == 204
    with pytest.raises(SalesforceMalformedRequest):
        sf.query("SELECT FROM Account")


def test_limits_collections_and_expired_session(fresh):
    sf = fresh.simple()
    limits = sf.restful("limits/")
    assert limits["DailyApiRequests"]["Max"] == 15000
    assert sf.api_usage["api-usage"].total == 15000
    rows = [{"attributes": {"type": "Contact"}, "LastName": f"Bulk{i}"} for i in range(3)]
    result = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": rows})
    assert [r["success"] for r in result] == [True] * 3
    fresh.admin("POST", "expire-sessions")
    with pytest.raises(SalesforceExpiredSession):
        sf.restful("limits/")


def test_bulk2_upsert(fresh):
    sf = fresh.simple()
    records = [
        {"Lead2Cash_Key__c": f"BK-{i}", "Name": f"Backfill {i}", "CurrencyIsoCode": "EUR"} for i in range(5)
    ]
    records.append({"Lead2Cash_Key__c": "BK-bad", "Name": "Bad", "CurrencyIsoCode": "XXX"})
    results = sf.bulk2.Account.upsert(records=records, external_id_field="Lead2Cash_Key__c", wait=0.1)
    assert results[0]["numberRecordsProcessed"] == 6 and results[0]["numberRecordsFailed"] == 1
    failed = sf.bulk2.Account.get_failed_records(results[0]["job_id"])
    assert "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST" in failed
    ok = sf.bulk2.Account.get_successful_records(results[0]["job_id"])
    assert ok.splitlines()[0].startswith('"sf__Id","sf__Created"') and len(ok.splitlines()) == 6
    assert sf.query("SELECT COUNT() FROM Account WHERE Lead2Cash_Key__c LIKE 'BK-%'")["totalSize"] == 5
    effects = fresh.http.get("/__sandbox/effects").json()
    assert effects["upsert:Account"]["BK-3"] == 1
