"""API_BUSINESS_PARTNER over sockets: deep insert, read back, $filter, paging, $batch."""

from __future__ import annotations

import re

import pytest


def _deep_insert(search_term: str, name: str = "Acme O'Brien GmbH") -> dict:
    return {
        "BusinessPartnerCategory": "2",
        "OrganizationBPName1": name,
        "SearchTerm1": search_term.lower(),
        "to_BusinessPartnerRole": {
            "results": [{"BusinessPartnerRole": "FLCU00"}, {"BusinessPartnerRole": "FLCU01"}]
        },
        "to_BusinessPartnerAddress": [{"Country": "DE", "CityName": "Berlin", "PostalCode": "10115"}],
        "to_Customer": {
            "to_CustomerCompany": [
                {"CompanyCode": "1010", "ReconciliationAccount": "12100000", "PaymentTerms": "0001"}
            ]
        },
    }


def test_deep_insert_and_read_back_with_expand(sap, admin, h):
    token = h.csrf(sap)
    r = sap.post(h.BP + "/A_BusinessPartner", json=_deep_insert("deep1"), headers={"x-csrf-token": token})
    assert r.status_code == 201, r.text
    created = r.json()["d"]
    number = created["BusinessPartner"]
    assert r.headers["location"].endswith(f"/A_BusinessPartner('{number}')")
    assert created["SearchTerm1"] == "DEEP1"  # UpperCase display format
    assert created["Customer"] == number
    assert len(created["to_BusinessPartnerRole"]["results"]) == 2
    assert created["to_Customer"]["to_CustomerCompany"]["results"][0]["CompanyCode"] == "1010"
    assert re.fullmatch(r"/Date\(\d+\)/", created["CreationDate"])
    assert re.fullmatch(r"/Date\(\d+\+0000\)/", created["to_BusinessPartnerRole"]["results"][0]["ValidFrom"])

    r = sap.get(
        f"{h.BP}/A_BusinessPartner('{number}')",
        params={"$expand": "to_BusinessPartnerAddress,to_Customer/to_CustomerCompany", "$format": "json"},
    )
    bp = r.json()["d"]
    assert bp["to_BusinessPartnerAddress"]["results"][0]["CityName"] == "Berlin"
    assert bp["to_Customer"]["to_CustomerCompany"]["results"][0]["ReconciliationAccount"] == "12100000"
    assert bp["to_BusinessPartnerRole"] == {
        "__deferred": {"uri": bp["__metadata"]["uri"] + "/to_BusinessPartnerRole"}
    }
    assert bp["__metadata"]["type"] == "API_BUSINESS_PARTNER.A_BusinessPartnerType"
    roles = sap.get(f"{h.BP}/A_BusinessPartner('{number}')/to_BusinessPartnerRole").json()["d"]["results"]
    assert {x["BusinessPartnerRole"] for x in roles} == {"FLCU00", "FLCU01"}
    company = sap.get(f"{h.BP}/A_CustomerCompany(Customer='{number}',CompanyCode='1010')").json()["d"]
    assert company["PaymentTerms"] == "0001"
    assert admin.get("/__sandbox/effects").json()["business_partner.create"]["DEEP1"] == 1


@pytest.mark.parametrize(
    ("payload_change", "fragment"),
    [
        ({"BusinessPartnerCategory": "9"}, "category"),
        ({"to_BusinessPartnerRole": [{"BusinessPartnerRole": "NOPE"}]}, "BP role NOPE does not exist"),
        ({"Unknown": "x"}, "Property 'Unknown' is invalid"),
        ({"SearchTerm1": "X" * 21}, "for property 'SearchTerm1' exceeds length 20"),
        (
            {"to_BusinessPartnerAddress": [{"Country": "DE", "CityName": "B" * 41, "PostalCode": "10115"}]},
            "for property 'CityName' exceeds length 40",
        ),
        (
            {
                "to_Customer": {
                    "to_CustomerCompany": [{"CompanyCode": "9999", "ReconciliationAccount": "12100000"}]
                }
            },
            "Company code 9999 does not exist",
        ),
    ],
)
def test_invalid_deep_insert_is_rejected_atomically(sap, h, payload_change, fragment):
    payload = {**_deep_insert("badbp"), **payload_change}
    before = sap.get(h.BP + "/A_BusinessPartner/$count").text
    r = sap.post(h.BP + "/A_BusinessPartner", json=payload, headers={"x-csrf-token": h.csrf(sap)})
    assert r.status_code == 400
    error = r.json()["error"]
    assert fragment in error["message"]["value"]
    assert error["innererror"]["errordetails"][0]["severity"] == "error"
    assert sap.get(h.BP + "/A_BusinessPartner/$count").text == before


def test_unknown_key_and_bad_filter(sap, h):
    r = sap.get(h.BP + "/A_BusinessPartner('0000000000')")
    assert r.status_code == 404
    assert r.json()["error"]["code"].startswith("/IWBEP/")
    r = sap.get(h.BP + "/A_BusinessPartner", params={"$filter": "SearchTerm1 eq"})
    assert r.status_code == 400
    r = sap.get(h.BP + "/A_BusinessPartner", params={"$filter": "SearchTerm1 eq 5"})
    assert r.status_code == 400
    assert "Invalid parametertype" in r.json()["error"]["message"]["value"]


def _names(sap, h, flt: str) -> set[str]:
    r = sap.get(h.BP + "/A_BusinessPartner", params={"$filter": flt, "$select": "SearchTerm1", "$top": "500"})
    assert r.status_code == 200, r.text
    return {x["SearchTerm1"] for x in r.json()["d"]["results"]}


def test_filter_expressions(sap, h):
    token = h.csrf(sap)
    for term, name in (("FLT1", "Zeta O'Brien"), ("FLT2", "Alpha Corp"), ("FLT3", "Beta Ltd")):
        body = {"BusinessPartnerCategory": "2", "OrganizationBPName1": name, "SearchTerm1": term}
        assert (
            sap.post(h.BP + "/A_BusinessPartner", json=body, headers={"x-csrf-token": token}).status_code
            == 201
        )
    assert _names(sap, h, "OrganizationBPName1 eq 'Zeta O''Brien'") == {"FLT1"}
    assert _names(sap, h, "startswith(SearchTerm1,'FLT') and SearchTerm1 ne 'FLT2'") == {"FLT1", "FLT3"}
    assert _names(sap, h, "substringof('Corp', OrganizationBPName1) or SearchTerm1 eq 'FLT3'") >= {
        "FLT2",
        "FLT3",
    }
    assert _names(sap, h, "startswith(SearchTerm1,'FLT') and not (SearchTerm1 ge 'FLT2')") == {"FLT1"}
    assert _names(
        sap, h, "(SearchTerm1 gt 'FLT1' and SearchTerm1 le 'FLT3') and startswith(SearchTerm1,'FLT')"
    ) == {
        "FLT2",
        "FLT3",
    }
    assert _names(sap, h, "SearchTerm1 lt 'FLT2' and SearchTerm1 ge 'FLT1'") == {"FLT1"}
    assert "FLT1" in _names(sap, h, "CreationDate ge datetime'2000-01-01T00:00:00' and SearchTerm1 eq 'FLT1'")
    assert _names(sap, h, "CreationDate lt datetime'2000-01-01T00:00:00'") == set()
    r = sap.get(
        h.BP + "/A_BusinessPartner",
        params={"$filter": "SearchTerm1 eq 'FLT1'", "$select": "BusinessPartnerUUID"},
    )
    uid = r.json()["d"]["results"][0]["BusinessPartnerUUID"]
    assert _names(sap, h, f"BusinessPartnerUUID eq guid'{uid}'") == {"FLT1"}


def test_server_paging_with_next_and_inlinecount(sap, h):
    # The session sandbox pages at 10 entities.
    url = h.BP + "/A_BusinessPartner"
    params = {
        "$filter": "startswith(SearchTerm1,'SEED')",
        "$inlinecount": "allpages",
        "$select": "SearchTerm1",
    }
    seen: list[str] = []
    r = sap.get(url, params=params)
    body = r.json()["d"]
    assert body["__count"] == "25"
    while True:
        seen += [x["SearchTerm1"] for x in body["results"]]
        if "__next" not in body:
            break
        assert "$skiptoken=" in body["__next"]
        body = sap.get(body["__next"]).json()["d"]
    assert seen == [f"SEED{n:05d}" for n in range(1, 26)]
    page = sap.get(url, params={**params, "$skip": "5", "$top": "3", "$orderby": "SearchTerm1 desc"}).json()[
        "d"
    ]
    assert [x["SearchTerm1"] for x in page["results"]] == ["SEED00020", "SEED00019", "SEED00018"]
    assert "__next" not in page


def test_metadata_is_xml(sap, h):
    r = sap.get(h.BP + "/$metadata")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/xml")
    assert b'EntitySet Name="A_BusinessPartner"' in r.content


def test_batch_get_and_changeset(sap, h):
    token = h.csrf(sap)
    body = (
        "--batch_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "GET A_BusinessPartner('1000001')?$select=BusinessPartner HTTP/1.1\r\nAccept: application/json\r\n\r\n\r\n"
        "--batch_1\r\nContent-Type: multipart/mixed; boundary=changeset_1\r\n\r\n"
        "--changeset_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "POST A_BusinessPartner HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
        '{"BusinessPartnerCategory":"2","OrganizationBPName1":"Batch AG","SearchTerm1":"BATCH1"}\r\n'
        "--changeset_1--\r\n--batch_1--\r\n"
    )
    r = sap.post(
        h.BP + "/$batch",
        content=body.encode(),
        headers={"content-type": "multipart/mixed; boundary=batch_1", "x-csrf-token": token},
    )
    assert r.status_code == 202
    assert r.headers["content-type"].startswith("multipart/mixed; boundary=")
    assert "HTTP/1.1 200 OK" in r.text and "HTTP/1.1 201 Created" in r.text
    assert '"BusinessPartner": "1000001"' in r.text
    assert sap.get(h.BP + "/A_BusinessPartner", params={"$filter": "SearchTerm1 eq 'BATCH1'"}).json()["d"][
        "results"
    ]

    failing = body.replace("BATCH1", "BATCH2").replace('"2"', '"7"')
    r = sap.post(
        h.BP + "/$batch",
        content=failing.encode(),
        headers={"content-type": "multipart/mixed; boundary=batch_1", "x-csrf-token": token},
    )
    assert r.status_code == 202
    assert "HTTP/1.1 400 Bad Request" in r.text
    assert not sap.get(h.BP + "/A_BusinessPartner", params={"$filter": "SearchTerm1 eq 'BATCH2'"}).json()[
        "d"
    ]["results"]
    assert (
        sap.post(
            h.BP + "/$batch",
            content=body.encode(),
            headers={"content-type": "multipart/mixed; boundary=batch_1"},
        ).status_code
        == 403
    )
