"""The Salesforce sandbox over real sockets: pagination, watermarks, deletes, limits, sessions, faults."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

D = "/services/data/v62.0"


def query(env, soql: str, headers: dict[str, str], endpoint: str = "query", batch: int | None = None) -> dict:
    h = dict(headers)
    if batch:
        h["Sforce-Query-Options"] = f"batchSize={batch}"
    r = env.http.get(f"{D}/{endpoint}", params={"q": soql}, headers=h)
    assert r.status_code == 200, r.text
    return r.json()


def test_pagination_boundaries_follow_next_records_url(fresh):
    h = fresh.auth()
    total = query(fresh, "SELECT COUNT() FROM OpportunityLineItem", h)["totalSize"]
    assert total > 200  # 120 opportunities with 1-4 lines each
    first = query(fresh, "SELECT Id FROM OpportunityLineItem ORDER BY Id", h, batch=200)
    assert first["totalSize"] == total and first["done"] is False and len(first["records"]) == 200
    assert first["nextRecordsUrl"].startswith(f"{D}/query/01g") and first["nextRecordsUrl"].endswith("-200")
    seen = [r["Id"] for r in first["records"]]
    page = first
    while not page["done"]:
        r = fresh.http.get(page["nextRecordsUrl"], headers=h)
        assert r.status_code == 200
        page = r.json()
        seen += [x["Id"] for x in page["records"]]
    assert len(seen) == total == len(set(seen)) and seen == sorted(seen)
    assert "nextRecordsUrl" not in page
    # exactly one full batch: no cursor; batch sizes below 200 are raised to 200
    exact = query(fresh, "SELECT Id FROM OpportunityLineItem ORDER BY Id LIMIT 200", h, batch=50)
    assert exact["done"] is True and len(exact["records"]) == 200
    bad = fresh.http.get(f"{D}/query/01gDx0000000000AAA-200", headers=h)
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_systemmodstamp_ties_and_keyset_watermark(fresh):
    h = fresh.auth()
    rows = query(fresh, "SELECT Id, SystemModstamp FROM Opportunity ORDER BY SystemModstamp, Id", h)[
        "records"
    ]
    stamps = [r["SystemModstamp"] for r in rows]
    assert len(set(stamps)) < len(stamps), "seed must produce shared SystemModstamps"
    tied = next(s for s in stamps if stamps.count(s) > 1)
    group = [r["Id"] for r in rows if r["SystemModstamp"] == tied]
    # keyset cursor (SystemModstamp, Id): resume strictly after the first row of the tie
    resumed = query(
        fresh,
        f"SELECT Id FROM Opportunity WHERE (SystemModstamp = {tied} AND Id > '{group[0]}') "
        f"OR SystemModstamp > {tied} ORDER BY SystemModstamp, Id",
        h,
    )["records"]
    assert [r["Id"] for r in resumed][: len(group) - 1] == group[1:]
    # a collection write stamps every record with one SystemModstamp
    ids = [r["Id"] for r in rows[:3]]
    body = {
        "allOrNone": True,
        "records": [
            {"attributes": {"type": "Opportunity"}, "id": i, "Billing_Payment_Status__c": "Paid"} for i in ids
        ],
    }
    r = fresh.http.patch(f"{D}/composite/sobjects", json=body, headers=h)
    assert r.status_code == 200 and all(x["success"] for x in r.json())
    id_list = ",".join(f"'{i}'" for i in ids)
    after = query(fresh, f"SELECT SystemModstamp FROM Opportunity WHERE Id IN ({id_list})", h)["records"]
    assert len({a["SystemModstamp"] for a in after}) == 1
    assert after[0]["SystemModstamp"] > stamps[-1]


def test_late_commit_lands_behind_the_watermark(fresh):
    h = fresh.auth()
    opp = query(fresh, "SELECT Id FROM Opportunity WHERE IsClosed = false LIMIT 1", h)["records"][0]["Id"]
    now = fresh.admin("GET", "clock").json()["now"]
    late = fresh.admin(
        "POST",
        "late-commit",
        json={"id": opp, "fields": {"Billing_Payment_Status__c": "Pending"}, "seconds_ago": 30},
    ).json()
    assert late["SystemModstamp"] < now
    newer = query(fresh, f"SELECT Id FROM Opportunity WHERE SystemModstamp >= {now.replace('+0000', 'Z')}", h)
    assert opp not in [r["Id"] for r in newer["records"]]


def test_query_all_returns_deleted_rows_and_get_deleted(fresh):
    h = fresh.auth()
    opp = query(fresh, "SELECT Id FROM Opportunity ORDER BY Id LIMIT 1", h)["records"][0]["Id"]
    lines = query(fresh, f"SELECT Id FROM OpportunityLineItem WHERE OpportunityId = '{opp}'", h)["records"]
    assert fresh.http.delete(f"{D}/sobjects/Opportunity/{opp}", headers=h).status_code == 204
    live = query(fresh, f"SELECT Id FROM Opportunity WHERE Id = '{opp}'", h)
    assert live["totalSize"] == 0
    gone = query(fresh, f"SELECT Id, IsDeleted FROM Opportunity WHERE Id = '{opp}'", h, endpoint="queryAll")
    assert gone["records"][0]["IsDeleted"] is True
    # lines are cascade-deleted with their opportunity
    soql = f"SELECT Id FROM OpportunityLineItem WHERE OpportunityId = '{opp}' AND IsDeleted = true"
    assert query(fresh, soql, h, endpoint="queryAll")["totalSize"] == len(lines) > 0
    assert fresh.http.get(f"{D}/sobjects/Opportunity/{opp}", headers=h).status_code == 404
    clock = fresh.admin("GET", "clock").json()["now"]
    r = fresh.http.get(
        f"{D}/sobjects/Opportunity/deleted/",
        params={"start": "2020-01-01T00:00:00+00:00", "end": "2100-01-01T00:00:00+00:00"},
        headers=h,
    )
    assert r.status_code == 200
    # covered up to the current whole minute, so a deletion in this minute shows up only later
    assert r.json()["latestDateCovered"] <= clock


def test_limits_exhaustion_and_reset(fresh):
    h = fresh.auth()
    fresh.admin("PUT", "limits", json={"max": 5, "used": 3})
    r = fresh.http.get(f"{D}/limits", headers=h)
    assert r.headers["Sforce-Limit-Info"] == "api-usage=4/5"
    assert r.json()["DailyApiRequests"] == {"Max": 5, "Remaining": 1}
    fresh.http.get(f"{D}/sobjects", headers=h)
    refused = fresh.http.get(f"{D}/sobjects", headers=h)
    assert refused.status_code == 403
    assert refused.json() == [
        {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]
    fresh.admin("PUT", "limits", json={"used": 0})
    assert fresh.http.get(f"{D}/sobjects", headers=h).status_code == 200


def test_session_expiry_then_new_token(fresh):
    h = fresh.auth()
    assert fresh.http.get(f"{D}/limits", headers=h).status_code == 200
    fresh.admin("POST", "expire-sessions")
    r = fresh.http.get(f"{D}/limits", headers=h)
    assert r.status_code == 401
    assert r.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    assert fresh.http.get(f"{D}/limits", headers=fresh.auth()).status_code == 200
    # expire_session fault: the caller's token dies on that request
    fresh.http.put("/__sandbox/faults", json={"rules": {"limits": {"expire_session_rate": 1.0}}})
    h = fresh.auth()
    assert fresh.http.get(f"{D}/limits", headers=h).status_code == 401
    fresh.http.put("/__sandbox/faults", json={"rules": {}})
    assert fresh.http.get(f"{D}/limits", headers=h).status_code == 401


def test_commit_then_drop_is_one_effect(fresh):
    h = fresh.auth()
    key = "L2C-DROP-1"
    fresh.http.put("/__sandbox/faults", json={"rules": {"sobject.upsert": {"commit_then_drop_rate": 1.0}}})
    url = f"{D}/sobjects/Account/Lead2Cash_Key__c/{key}"
    with pytest.raises(httpx.TransportError):
        fresh.http.patch(url, json={"Name": "Dropped Response GmbH"}, headers=h)
    fresh.http.put("/__sandbox/faults", json={"rules": {}})
    # the retry finds the record: an update, not a second insert
    r = fresh.http.patch(url, json={"Name": "Dropped Response GmbH"}, headers=h)
    assert r.status_code == 200 and r.json()["created"] is False
    effects = fresh.http.get("/__sandbox/effects").json()
    assert effects["upsert:Account"][key] == 2
    assert sum(effects["Account.create"].values()) == 1
    assert query(fresh, f"SELECT Id FROM Account WHERE Lead2Cash_Key__c = '{key}'", h)["totalSize"] == 1


def test_fault_429_and_503_bodies(fresh):
    h = fresh.auth()
    fresh.http.put(
        "/__sandbox/faults",
        json={"rules": {"query": {"error_rate": 1.0, "error_statuses": [503], "retry_after_s": 7}}},
    )
    r = fresh.http.get(f"{D}/query", params={"q": "SELECT Id FROM Account"}, headers=h)
    assert r.status_code == 503 and r.headers["Retry-After"] == "7"
    assert r.json()[0]["errorCode"] == "SERVER_UNAVAILABLE"


def test_rollup_and_silent_update_do_not_move_systemmodstamp(fresh):
    h = fresh.auth()
    opp = query(fresh, "SELECT Id, Amount, SystemModstamp FROM Opportunity ORDER BY Id LIMIT 1", h)[
        "records"
    ][0]
    line = query(
        fresh, f"SELECT Id, Quantity FROM OpportunityLineItem WHERE OpportunityId = '{opp['Id']}' LIMIT 1", h
    )["records"][0]
    r = fresh.http.patch(f"{D}/sobjects/OpportunityLineItem/{line['Id']}", json={"Quantity": 99}, headers=h)
    assert r.status_code == 204
    after = fresh.http.get(f"{D}/sobjects/Opportunity/{opp['Id']}", headers=h).json()
    assert after["SystemModstamp"] == opp["SystemModstamp"]
    assert Decimal(str(after["Amount"])) != Decimal(str(opp["Amount"]))
    fresh.admin(
        "POST", "silent-update", json={"object": "Opportunity", "id": opp["Id"], "fields": {"Amount": "1.00"}}
    )
    again = fresh.http.get(f"{D}/sobjects/Opportunity/{opp['Id']}", headers=h).json()
    assert again["Amount"] == 1.0 and again["SystemModstamp"] == opp["SystemModstamp"]


def test_close_won_admin_and_validation_errors(fresh):
    h = fresh.auth()
    won = fresh.admin("POST", "close-won", json={"count": 2}).json()
    assert len(won["ids"]) == 2
    rec = fresh.http.get(f"{D}/sobjects/Opportunity/{won['ids'][0]}", headers=h).json()
    assert rec["StageName"] == "Closed Won" and rec["IsWon"] is True and rec["IsClosed"] is True
    r = fresh.http.patch(
        f"{D}/sobjects/Opportunity/{won['ids'][0]}", json={"Billing_Invoiced_Amount__c": -5}, headers=h
    )
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    r = fresh.http.post(f"{D}/sobjects/Account", json={"BillingCity": "Berlin"}, headers=h)
    assert r.json() == [
        {
            "message": "Required fields are missing: [Name]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["Name"],
        }
    ]
    r = fresh.http.get(f"{D}/sobjects/Account/001900K0001pPuOAAU", headers=h)
    assert r.status_code == 400 and r.json()[0]["errorCode"] == "MALFORMED_ID"
