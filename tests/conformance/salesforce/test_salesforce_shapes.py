"""Response shapes of the Salesforce sandbox against the published samples (restforce fixtures and the
REST API Developer Guide v62 extracts) and request paths/methods against the official Postman collection.
The samples are read in place from the specs folder; records in them are synthetic, envelopes are real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

D = "/services/data/v62.0"


def sample(specs_dir: Path, name: str) -> Any:
    for sub in ("restforce-fixtures", "sf-rest-api-guide-v62"):
        path = specs_dir / "salesforce" / "rest-samples" / sub / name
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(name)


def kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    return type(v).__name__


def assert_shape(expected: Any, actual: Any, where: str = "$", exact: bool = False) -> None:
    """Every key of the sample exists in ours with the same JSON type, recursively (nulls match anything)."""
    if expected is None or actual is None:
        return
    assert kind(expected) == kind(actual), f"{where}: {kind(expected)} != {kind(actual)}"
    if isinstance(expected, dict):
        missing = set(expected) - set(actual)
        assert not missing, f"{where}: missing keys {sorted(missing)}"
        if exact:
            assert set(actual) == set(expected), f"{where}: extra keys {sorted(set(actual) - set(expected))}"
        for k in expected:
            assert_shape(expected[k], actual[k], f"{where}.{k}", exact)
    elif isinstance(expected, list) and expected:
        # An empty list of ours would compare nothing and pass for the wrong reason.
        assert actual, f"{where}: the sample has items, ours is empty (nothing to compare)"
        assert_shape(expected[0], actual[0], f"{where}[0]", exact)


def envelope(page: dict[str, Any]) -> dict[str, Any]:
    """A sample query page with its synthetic record fields dropped, keeping ``attributes``."""
    return {**page, "records": [{"attributes": r["attributes"]} for r in page["records"]]}


def q(env, soql: str, h: dict[str, str]) -> dict[str, Any]:
    r = env.http.get(f"{D}/query", params={"q": soql}, headers=h)
    assert r.status_code == 200, r.text
    return r.json()


def test_oauth_and_session_shapes(fresh, specs_dir):
    r = fresh.http.post(
        "/services/oauth2/token",
        data={
            "grant_type": "password",
            "client_id": fresh.sandbox.client_id,
            "client_secret": fresh.sandbox.client_secret,
            "username": fresh.sandbox.username,
            "password": fresh.sandbox.password,
        },
    )
    assert_shape(sample(specs_dir, "auth_success_response.json"), r.json())
    assert r.json()["token_type"] == "Bearer" and r.json()["instance_url"] == fresh.base
    bad = fresh.http.post(
        "/services/oauth2/token",
        data={
            "grant_type": "password",
            "client_id": fresh.sandbox.client_id,
            "client_secret": fresh.sandbox.client_secret,
            "username": "x",
            "password": "y",
        },
    )
    assert bad.status_code == 400
    assert_shape(sample(specs_dir, "auth_error_response.json"), bad.json(), exact=True)
    expired = fresh.http.get(f"{D}/limits", headers={"Authorization": "Bearer nope"})
    assert expired.status_code == 401 and expired.json() == sample(specs_dir, "expired_session_response.json")
    versions = fresh.http.get("/services/data/").json()
    assert_shape(sample(specs_dir, "services_data_success_response.json"), versions, exact=True)
    assert any(v["url"] == D for v in versions)


def test_jwt_bearer_grant(fresh):
    import time

    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    claims = {
        "iss": fresh.sandbox.client_id,
        "sub": fresh.sandbox.username,
        "aud": "https://login.salesforce.com",
        "exp": int(time.time()) + 300,
    }
    good = jwt.encode(claims, pem, algorithm="RS256")
    r = fresh.http.post(
        "/services/oauth2/token",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": good},
    )
    assert r.status_code == 200 and r.json()["access_token"]
    wrong = jwt.encode({**claims, "iss": "someone-else"}, pem, algorithm="RS256")
    r = fresh.http.post(
        "/services/oauth2/token",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": wrong},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_client_id"


def test_query_shapes(fresh, specs_dir):
    h = fresh.auth()
    body = q(
        fresh,
        "SELECT Id, Name, CloseDate, IsWon, Amount, Account.Name, "
        "(SELECT Name, Quantity, PricebookEntry.Product2.ProductCode FROM OpportunityLineItems) "
        "FROM Opportunity WHERE Amount > 0 LIMIT 3",
        h,
    )
    # query_success_response: a parent relationship object and a child subquery result
    restforce = sample(specs_dir, "query_success_response.json")
    rec = restforce["records"][0]
    parent = {k: rec["ParentWhizbang__r"][k] for k in ("attributes", "Name")}
    mapped = {"attributes": rec["attributes"], "Account": parent, "OpportunityLineItems": rec["Whizbangs__r"]}
    assert_shape({**restforce, "records": [mapped]}, body)
    guide = sample(specs_dir, "query_relationship_response.json")
    line = body["records"][0]["OpportunityLineItems"]["records"][0]
    # Units_Sold__c (a number) stands for Quantity here
    guide_rec = {k: v for k, v in guide["records"][0].items() if k != "Units_Sold__c"}
    assert_shape({**guide, "records": [guide_rec]}, {**body, "records": [line]})
    assert kind(guide["records"][0]["Units_Sold__c"]) == kind(line["Quantity"])
    first = q(fresh, "SELECT Id FROM OpportunityLineItem", {**h, "Sforce-Query-Options": "batchSize=200"})
    assert_shape(envelope(sample(specs_dir, "query_paginated_first_page_response.json")), first)
    last = fresh.http.get(first["nextRecordsUrl"], headers=h).json()
    while not last["done"]:
        last = fresh.http.get(last["nextRecordsUrl"], headers=h).json()
    assert_shape(envelope(sample(specs_dir, "query_paginated_last_page_response.json")), last)
    assert "nextRecordsUrl" not in last
    empty = q(fresh, "SELECT Id FROM Account WHERE Name = 'no such account'", h)
    assert_shape(sample(specs_dir, "query_empty_response.json"), empty, exact=True)
    err = fresh.http.get(f"{D}/query", params={"q": "SELECT Nope FROM Account"}, headers=h)
    assert err.status_code == 400
    assert_shape(sample(specs_dir, "query_error_response.json"), err.json(), exact=True)
    assert err.json()[0]["errorCode"] == "INVALID_FIELD"
    # date/datetime formats as the platform writes them
    opp = body["records"][0]
    assert len(opp["CloseDate"]) == 10
    one = q(fresh, "SELECT SystemModstamp FROM Opportunity LIMIT 1", h)["records"][0]["SystemModstamp"]
    assert one.endswith("+0000") and one[19] == "." and len(one) == 28


def test_sobject_row_shapes(fresh, specs_dir):
    h = fresh.auth()
    created = fresh.http.post(f"{D}/sobjects/Account", json={"Name": "Shape Co"}, headers=h)
    assert created.status_code == 201
    assert_shape(sample(specs_dir, "sobject_create_response.json"), created.json(), exact=True)
    assert_shape(sample(specs_dir, "create_success_response.json"), created.json(), exact=True)
    row = fresh.http.get(f"{D}/sobjects/Account/{created.json()['id']}", headers=h).json()
    find = sample(specs_dir, "sobject_find_success_response.json")
    assert_shape({k: find[k] for k in ("attributes", "Id", "IsDeleted", "Name")}, row)
    up = fresh.http.patch(f"{D}/sobjects/Account/Lead2Cash_Key__c/SHAPE-1", json={"Name": "Up"}, headers=h)
    assert up.status_code == 201
    assert_shape(sample(specs_dir, "sobject_upsert_created_response.json"), up.json(), exact=True)
    again = fresh.http.patch(
        f"{D}/sobjects/Account/Lead2Cash_Key__c/SHAPE-1", json={"Name": "Up 2"}, headers=h
    )
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert_shape(sample(specs_dir, "sobject_upsert_updated_response_v46plus.json"), again.json(), exact=True)
    bad_field = fresh.http.patch(f"{D}/sobjects/Account/Namez/x", json={"Name": "x"}, headers=h)
    assert bad_field.status_code == 404
    assert_shape(sample(specs_dir, "upsert_error_response.json"), bad_field.json(), exact=True)
    malformed = fresh.http.get(f"{D}/sobjects/Account/001900K0001pPuOAAU", headers=h)
    assert_shape(sample(specs_dir, "error_malformed_id_response.json"), malformed.json(), exact=True)
    missing = fresh.http.get(f"{D}/sobjects/Nope/describe", headers=h)
    assert missing.status_code == 404
    assert missing.json() == sample(specs_dir, "sobject_describe_error_response.json")


def test_describe_shapes(fresh, specs_dir):
    h = fresh.auth()
    ours = fresh.http.get(f"{D}/sobjects/Opportunity/describe", headers=h).json()
    theirs = sample(specs_dir, "sobject_describe_success_response.json")
    assert set(theirs) <= set(ours)
    assert ours["fields"] and ours["childRelationships"], "nothing to compare"
    for f in ours["fields"]:
        assert set(theirs["fields"][0]) <= set(f), f["name"]
    assert set(theirs["childRelationships"][0]) <= set(ours["childRelationships"][0])
    assert set(theirs["urls"]) <= set(ours["urls"])
    amount = next(f for f in ours["fields"] if f["name"] == "Amount")
    assert (amount["type"], amount["precision"], amount["scale"]) == ("currency", 18, 2)
    glob = fresh.http.get(f"{D}/sobjects", headers=h).json()
    assert_shape(sample(specs_dir, "describe_sobjects_success_response.json"), glob)
    prefixes = {o["name"]: o["keyPrefix"] for o in glob["sobjects"]}
    assert prefixes["Opportunity"] == "006" and prefixes["OpportunityLineItem"] == "00k"


def test_updated_deleted_shapes(fresh, specs_dir):
    h = fresh.auth()
    window = {"start": "2020-01-01T00:00:00+00:00", "end": "2100-01-01T00:00:00+00:00"}
    updated = fresh.http.get(f"{D}/sobjects/Opportunity/updated/", params=window, headers=h).json()
    assert_shape(sample(specs_dir, "get_updated_success_response.json"), updated, exact=True)
    assert updated["ids"]
    rid = updated["ids"][0]
    fresh.http.delete(f"{D}/sobjects/Opportunity/{rid}", headers=h)
    fresh.admin("PUT", "clock", json={"offset_seconds": 120})
    deleted = fresh.http.get(f"{D}/sobjects/Opportunity/deleted/", params=window, headers=h).json()
    assert_shape(sample(specs_dir, "sobject_get_deleted_response.json"), deleted, exact=True)
    assert_shape(sample(specs_dir, "get_deleted_success_response.json"), deleted, exact=True)
    assert [d["id"] for d in deleted["deletedRecords"]] == [rid]


def test_collections_and_composite_shapes(fresh, specs_dir):
    h = fresh.auth()
    created = fresh.http.post(
        f"{D}/composite/sobjects",
        headers=h,
        json={"allOrNone": False, "records": [{"attributes": {"type": "Contact"}, "LastName": "One"}]},
    ).json()
    assert_shape(sample(specs_dir, "composite_sobjects_success_response.json"), created, exact=True)
    gone = fresh.http.delete(f"{D}/composite/sobjects", params={"ids": created[0]["id"]}, headers=h).json()
    assert_shape(sample(specs_dir, "composite_sobjects_destroy_success_response.json"), gone, exact=True)
    bad = fresh.http.delete(f"{D}/composite/sobjects", headers=h)
    assert bad.status_code == 400
    assert bad.json() == sample(specs_dir, "composite_sobjects_destroy_bad_request_response.json")
    # the guide's update request, verbatim: its ids do not exist here, so each record fails on its own
    update = fresh.http.patch(
        f"{D}/composite/sobjects",
        headers=h,
        json=sample(specs_dir, "sobject_collections_update_request.json"),
    ).json()
    assert [r["success"] for r in update] == [False, False]
    assert set(update[0]["errors"][0]) == {"statusCode", "message", "fields"}
    # all-or-none: one bad record rolls back the good one
    aon = fresh.http.post(
        f"{D}/composite/sobjects",
        headers=h,
        json={
            "allOrNone": True,
            "records": [
                {"attributes": {"type": "Account"}, "Name": "Kept?"},
                {"attributes": {"type": "Account"}},
            ],
        },
    ).json()
    assert aon[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert q(fresh, "SELECT COUNT() FROM Account WHERE Name = 'Kept?'", h)["totalSize"] == 0
    too_many = fresh.http.post(
        f"{D}/composite/sobjects",
        headers=h,
        json={"records": [{"attributes": {"type": "Contact"}, "LastName": "x"}] * 201},
    )
    assert too_many.status_code == 400
    # the guide's composite request, verbatim, with the @{refAccount.id} reference
    comp = fresh.http.post(
        f"{D}/composite", headers=h, json=sample(specs_dir, "composite_request.json")
    ).json()
    # the guide's response pairs an upsert with a create; both our subrequests are creates
    create_item = sample(specs_dir, "composite_response_upsert_account_create_contact.json")[
        "compositeResponse"
    ][1]
    assert_shape({"compositeResponse": [create_item]}, comp)
    assert [r["httpStatusCode"] for r in comp["compositeResponse"]] == [201, 201]
    contact_id = comp["compositeResponse"][1]["body"]["id"]
    contact = fresh.http.get(f"{D}/sobjects/Contact/{contact_id}", headers=h).json()
    assert contact["AccountId"] == comp["compositeResponse"][0]["body"]["id"]
    too_big = {
        "compositeRequest": [
            {"method": "GET", "url": f"{D}/limits", "referenceId": f"r{i}"} for i in range(26)
        ]
    }
    assert fresh.http.post(f"{D}/composite", headers=h, json=too_big).status_code == 400


POSTMAN = Path("salesforce/postman-salesforce-apis/src/collections/salesforce_apis")
CASES = [
    ("rest/query.json", None),
    ("rest/queryall.json", None),
    ("rest/limit.json", None),
    ("rest/describe_global.json", None),
    ("rest/sobject_describe.json", None),
    ("rest/sobject_rows.json", None),
    ("rest/sobject_rows_by_external_id.json", None),
    ("rest/sobject_create.json", {"Name": "Postman Account"}),
    ("rest/sobject_rows_update.json", {"BillingCity": "Boston"}),
    ("rest/sobject_get_updated.json", None),
    (
        "composite/composite.json",
        {"compositeRequest": [{"method": "GET", "url": f"{D}/limits", "referenceId": "l"}]},
    ),
    (
        "composite/sobject_collections_create.json",
        {"records": [{"attributes": {"type": "Account"}, "Name": "Via Postman"}]},
    ),
    ("composite/sobject_collections_retrieve.json", None),
    ("bulk_v2/get_all_jobs.json", None),
    ("bulk_v2/create_job.json", {"object": "Account", "operation": "update"}),
    ("rest/sobject_rows_delete.json", None),
]


@pytest.mark.parametrize(("name", "body"), CASES, ids=[c[0] for c in CASES])
def test_postman_requests_are_served(fresh, specs_dir, name, body):
    spec = json.loads((specs_dir / POSTMAN / name).read_text())
    h = fresh.auth()
    account = q(fresh, "SELECT Id FROM Account ORDER BY Id LIMIT 1", h)["records"][0]["Id"]
    fresh.http.patch(f"{D}/sobjects/Account/{account}", json={"Lead2Cash_Key__c": "PM-1"}, headers=h)
    url = (
        spec["url"]
        .replace("{{_endpoint}}", fresh.base)
        .replace("{{version}}", "62.0")
        .replace("<SOBJECT_API_NAME>", "Account")
        .replace("<RECORD_ID>", account)
        .replace("<FIELD_NAME>", "Lead2Cash_Key__c")
        .replace("<FIELD_VALUE>", "PM-1")
        .replace("start=&end=", "start=2020-01-01T00:00:00Z&end=2100-01-01T00:00:00Z")
        .replace("?ids&fields", f"?ids={account}&fields=Id,Name")
    )
    r = fresh.http.request(spec["method"], url, json=body, headers=h)
    assert r.status_code in (200, 201, 204), (spec["method"], url, r.text)
    assert r.headers["Sforce-Limit-Info"].startswith("api-usage=")
