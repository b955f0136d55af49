"""Logon, sessions and CSRF protection over real sockets."""

from __future__ import annotations

import ssl

import httpx

NEW_BP = {"BusinessPartnerCategory": "2", "OrganizationBPName1": "Csrf Test GmbH", "SearchTerm1": "CSRFTEST"}


def test_wrong_credentials_get_basic_challenge(sap_cluster, sap_url, h):
    with httpx.Client(
        base_url=sap_url,
        verify=ssl.create_default_context(cafile=str(sap_cluster.ca_bundle)),
        auth=("LEAD2CASH", "nope"),
    ) as c:
        r = c.get(h.BP + "/A_BusinessPartner('1000001')")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Basic realm="SAP NetWeaver Application Server [S4H/100]"'


def test_fetch_sets_session_cookies_and_token_allows_post(sap, h):
    r = sap.get(h.BP + "/", headers={"x-csrf-token": "Fetch"})
    assert r.status_code == 200
    token = r.headers["x-csrf-token"]
    assert len(token) >= 20
    assert "SAP_SESSIONID_S4H_100" in sap.cookies
    assert sap.cookies["sap-usercontext"] == "sap-client=100"
    created = sap.post(h.BP + "/A_BusinessPartner", json=NEW_BP, headers={"x-csrf-token": token})
    assert created.status_code == 201, created.text


def test_post_without_token_or_cookie_is_refused(sap, sap_cluster, sap_url, h):
    r = sap.post(h.BP + "/A_BusinessPartner", json=NEW_BP)
    assert r.status_code == 403
    assert r.headers["x-csrf-token"] == "Required"
    assert r.text == "CSRF token validation failed"
    token = h.csrf(sap)
    # The right token without the session cookie it belongs to is refused too.
    with httpx.Client(
        base_url=sap_url,
        verify=ssl.create_default_context(cafile=str(sap_cluster.ca_bundle)),
        auth=(h.USER, h.PASSWORD),
    ) as other:
        r = other.post(h.BP + "/A_BusinessPartner", json=NEW_BP, headers={"x-csrf-token": token})
    assert r.status_code == 403


def test_expired_token_is_refused_then_refetch_works(sap, admin, h):
    token = h.csrf(sap)
    assert admin.post("/__sandbox/sap/sessions/expire").status_code == 200
    r = sap.post(h.BP + "/A_BusinessPartner", json=NEW_BP, headers={"x-csrf-token": token})
    assert r.status_code == 403
    assert r.text == "CSRF token validation failed"
    fresh = h.csrf(sap)
    assert fresh != token
    r = sap.post(h.BP + "/A_BusinessPartner", json=NEW_BP, headers={"x-csrf-token": fresh})
    assert r.status_code == 201


def test_expire_session_fault_invalidates_token(sap, admin, h):
    token = h.csrf(sap)
    admin.put("/__sandbox/faults", json={"rules": {"business_partner.write": {"expire_session_rate": 1.0}}})
    r = sap.post(h.BP + "/A_BusinessPartner", json=NEW_BP, headers={"x-csrf-token": token})
    assert r.status_code == 403
    admin.put("/__sandbox/faults", json={"rules": {}})
    r = sap.post(h.BP + "/A_BusinessPartner", json=NEW_BP, headers={"x-csrf-token": token})
    assert r.status_code == 403  # the session is gone for good
    r = sap.post(h.BP + "/A_BusinessPartner", json=NEW_BP, headers={"x-csrf-token": h.csrf(sap)})
    assert r.status_code == 201


def test_oauth_client_credentials_bearer(sap_cluster, sap_url, h):
    with httpx.Client(
        base_url=sap_url, verify=ssl.create_default_context(cafile=str(sap_cluster.ca_bundle))
    ) as c:
        bad = c.post("/sap/bc/sec/oauth2/token", data={"grant_type": "client_credentials"}, auth=("x", "y"))
        assert bad.status_code == 401
        r = c.post(
            "/sap/bc/sec/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=("lead2cash-client", "sandbox-secret"),
        )
        assert r.status_code == 200
        body = r.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] > 0
        bearer = {"authorization": f"Bearer {body['access_token']}"}
        assert c.get(h.BP + "/A_BusinessPartner('1000001')", headers=bearer).status_code == 200
        assert (
            c.get(
                h.BP + "/A_BusinessPartner('1000001')", headers={"authorization": "Bearer nope"}
            ).status_code
            == 401
        )


def test_429_fault_carries_retry_after_and_sap_error(sap, admin, h):
    admin.put(
        "/__sandbox/faults",
        json={
            "rules": {
                "business_partner.read": {"error_rate": 1.0, "error_statuses": [429], "retry_after_s": 7}
            }
        },
    )
    r = sap.get(h.BP + "/A_BusinessPartner('1000001')")
    assert r.status_code == 429
    assert r.headers["retry-after"] == "7"
    assert r.json()["error"]["message"]["lang"] == "en"
