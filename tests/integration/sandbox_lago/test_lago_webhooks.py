"""Lago webhooks from the sandbox, checked the way a receiver must: signatures verified with PyJWT and
hmac against Lago's documented scheme (not with the sandbox's code), unique keys, retries, duplicates and
reordering."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json

import jwt
import pytest
from waiting import wait_until


def make_invoice(env, customer: str) -> str:
    response = env.api.post("/invoices", json={"invoice": {
        "external_customer_id": customer, "currency": "EUR",
        "fees": [{"add_on_code": "HW-GW", "unit_amount_cents": 32999}]}})  # fmt: skip
    assert response.status_code == 200
    return response.json()["invoice"]["lago_id"]


def test_hmac_signature_is_base64_hmac_sha256_of_the_raw_body(lago_env, hooks) -> None:
    lago_env.endpoint(hooks, "hmac")
    make_invoice(lago_env, lago_env.customer())
    lago_env.drain()
    [hook] = lago_env.receiver.accepted(hooks)
    assert hook.headers["x-lago-signature-algorithm"] == "hmac"
    key = lago_env.sandbox.hub_config(lago_env.base_url)["webhook_hmac_key"].encode()
    expected = base64.b64encode(hmac.new(key, hook.body, hashlib.sha256).digest()).decode()
    assert hmac.compare_digest(hook.headers["x-lago-signature"], expected)
    forged = base64.b64encode(hmac.new(b"other", hook.body, hashlib.sha256).digest()).decode()
    assert hook.headers["x-lago-signature"] != forged
    payload = json.loads(hook.body)
    assert payload["webhook_type"] == "invoice.one_off_created" and payload["object_type"] == "invoice"
    assert set(payload) == {"webhook_type", "object_type", "organization_id", "invoice"}


def test_jwt_signature_verifies_with_the_served_public_key(lago_env, hooks) -> None:
    lago_env.endpoint(hooks, "jwt")
    make_invoice(lago_env, lago_env.customer())
    lago_env.drain()
    [hook] = lago_env.receiver.accepted(hooks)
    assert hook.headers["x-lago-signature-algorithm"] == "jwt"
    # As lago-python-client does: GET /webhooks/json_public_key, base64-decode the PEM.
    served = lago_env.api.get("/webhooks/json_public_key").json()["webhook"]["public_key"]
    public_pem = base64.b64decode(served)
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert base64.b64decode(lago_env.api.get("/webhooks/public_key").text) == public_pem
    claims = jwt.decode(
        hook.headers["x-lago-signature"], public_pem, algorithms=["RS256"], issuer=lago_env.base_url
    )
    assert claims["data"] == hook.body.decode()
    tampered = hook.headers["x-lago-signature"][:-4] + (
        "AAAA" if not hook.headers["x-lago-signature"].endswith("AAAA") else "BBBB"
    )
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(tampered, public_pem, algorithms=["RS256"], issuer=lago_env.base_url)


def test_failed_delivery_is_retried_with_the_same_unique_key(lago_env, hooks) -> None:
    lago_env.endpoint(hooks)
    lago_env.receiver.fail_next(1, 500)
    make_invoice(lago_env, lago_env.customer())
    lago_env.drain()
    attempts = [r for r in lago_env.receiver.received if r.path == hooks]
    assert [r.status for r in attempts] == [500, 200]
    assert attempts[0].headers["x-lago-unique-key"] == attempts[1].headers["x-lago-unique-key"]
    assert attempts[0].body == attempts[1].body
    log = lago_env.admin.get("/lago/webhooks").json()["deliveries"]
    mine = [d for d in log if d["unique_key"] == attempts[0].headers["x-lago-unique-key"]]
    assert [(d["attempt"], d["status_code"]) for d in mine] == [(1, 500), (2, 200)]


def test_retries_are_bounded(lago_env, hooks) -> None:
    lago_env.endpoint(hooks)
    lago_env.receiver.fail_next(10, 503)
    try:
        make_invoice(lago_env, lago_env.customer())
        lago_env.drain()
        assert [r.status for r in lago_env.receiver.received if r.path == hooks] == [503, 503, 503]
    finally:
        lago_env.receiver.clear()


def test_duplicate_sends_the_same_event_concurrently(lago_env, hooks) -> None:
    lago_env.endpoint(hooks)
    lago_env.admin.put("/lago/webhooks", json={"duplicate": 3})
    make_invoice(lago_env, lago_env.customer())
    lago_env.drain()
    copies = lago_env.receiver.accepted(hooks)
    assert len(copies) == 3
    assert len({c.headers["x-lago-unique-key"] for c in copies}) == 1
    assert len({c.body for c in copies}) == 1 and len({c.headers["x-lago-signature"] for c in copies}) == 1


def test_reorder_delivers_queued_events_newest_first(lago_env, hooks) -> None:
    lago_env.endpoint(hooks)
    lago_env.admin.put("/lago/webhooks", json={"reorder": True})
    lago_id = make_invoice(lago_env, lago_env.customer())
    lago_env.api.put(f"/invoices/{lago_id}", json={"invoice": {"payment_status": "succeeded"}})
    lago_env.drain()
    kinds = [json.loads(r.body)["webhook_type"] for r in lago_env.receiver.accepted(hooks)]
    assert kinds == ["invoice.payment_status_updated", "invoice.one_off_created"]


def test_each_endpoint_gets_its_own_unique_key_and_event_filter(lago_env, hooks) -> None:
    lago_env.endpoint(f"{hooks}/a")
    lago_env.endpoint(f"{hooks}/b", "jwt", event_types=["invoice.voided"])
    lago_id = make_invoice(lago_env, lago_env.customer())
    lago_env.api.post(f"/invoices/{lago_id}/void", json={})
    lago_env.drain()
    a = lago_env.receiver.accepted(f"{hooks}/a")
    b = lago_env.receiver.accepted(f"{hooks}/b")
    assert [json.loads(r.body)["webhook_type"] for r in a] == ["invoice.one_off_created", "invoice.voided"]
    assert [json.loads(r.body)["webhook_type"] for r in b] == ["invoice.voided"]
    assert a[1].headers["x-lago-unique-key"] != b[0].headers["x-lago-unique-key"]


def test_paused_deliveries_wait_then_flow(lago_env, hooks) -> None:
    lago_env.endpoint(hooks)
    lago_env.admin.put("/lago/webhooks", json={"paused": True})
    make_invoice(lago_env, lago_env.customer())
    # The event is queued (pending) while paused, and nothing was sent.
    wait_until(lambda: lago_env.admin.get("/lago/webhooks").json()["pending"] >= 1, 10, what="a queued event")
    assert lago_env.receiver.accepted(hooks) == []
    lago_env.admin.put("/lago/webhooks", json={"paused": False})
    lago_env.drain()
    assert len(lago_env.receiver.accepted(hooks)) == 1


def test_a_send_that_fails_outside_httpx_is_a_failed_attempt_not_a_stuck_delivery() -> None:
    """A receiver killed mid-request can make the HTTP stack raise something that is not an HTTPError
    (seen: ``AttributeError: 'NoneType' object has no attribute 'getpeername'``); the delivery must still
    be retried and then given up, never counted as pending for ever."""
    from datetime import UTC, datetime

    from lead2cash.sandbox.lago.store import WebhookEndpoint
    from lead2cash.sandbox.lago.webhooks import DispatchSettings, Signer, WebhookDispatcher

    endpoint = WebhookEndpoint("we-1", "https://127.0.0.1:9/hooks", "hmac", None, None, datetime.now(UTC))
    dispatcher = WebhookDispatcher(
        signer=Signer("hmac-key-0001"),
        organization_id="org-1",
        endpoints=lambda: [endpoint],
        issuer=lambda: "https://lago.test",
        settings=DispatchSettings(retry_schedule_s=(0.01,), max_attempts=2),
    )

    class Broken:
        async def post(self, *_args: object, **_kw: object) -> None:
            raise AttributeError("'NoneType' object has no attribute 'getpeername'")

    dispatcher._client = Broken()  # type: ignore[assignment]

    async def scenario() -> bool:
        dispatcher.publish("invoice.created", "invoice", {"lago_id": "inv-1"})
        return await dispatcher.drain(timeout=5)

    assert asyncio.run(scenario()) is True
    assert dispatcher.pending == 0
    assert [e["attempt"] for e in dispatcher.log] == [1, 2]
    assert all("AttributeError" in str(e["error"]) for e in dispatcher.log)
