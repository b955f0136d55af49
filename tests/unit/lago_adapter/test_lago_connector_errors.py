"""The Lago connector's error classes and in-call retries (respx), and webhook signature checks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from lead2cash.connectors.lago import LagoClient, LagoNotFound, WebhookVerifier
from lead2cash.errors import PermanentError, ThrottledError, TransientError

BASE = "https://lago.test/api/v1"


def _client(**kw: Any) -> LagoClient:
    return LagoClient(BASE, "secret-key-123", transport=httpx.AsyncHTTPTransport(), **kw)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@respx.mock
def test_422_is_permanent_with_lago_error_details_and_no_secret() -> None:
    respx.post(f"{BASE}/customers").respond(
        422, json={"status": 422, "error": "Unprocessable Entity", "code": "validation_errors",
                   "error_details": {"currency": ["value_is_invalid"]}})  # fmt: skip
    with pytest.raises(PermanentError) as info:
        run(_client().upsert_customer({"external_id": "c"}))
    text = info.value.describe()
    assert "value_is_invalid" in text and "currency" in text and "secret-key-123" not in text


@respx.mock
def test_429_with_a_long_reset_is_handed_to_the_route_as_throttled() -> None:
    route = respx.get(f"{BASE}/invoices/x").respond(
        429, headers={"X-RateLimit-Reset": "42", "X-RateLimit-Remaining": "0"}, json={"status": 429}
    )
    with pytest.raises(ThrottledError) as info:
        run(_client(max_inline_wait=5).get_invoice("x"))
    assert info.value.retry_after == 42 and route.call_count == 1


@respx.mock
def test_5xx_and_timeouts_are_transient_and_safe_calls_are_retried() -> None:
    route = respx.get(f"{BASE}/invoices/x").mock(side_effect=[
        httpx.Response(503, headers={"Retry-After": "0"}), httpx.ReadTimeout("slow"),
        httpx.Response(200, json={"invoice": {"lago_id": "x", "taxes_rate": 19.5}})])  # fmt: skip
    invoice = run(_client().get_invoice("x"))
    assert (
        route.call_count == 3
        and str(invoice["taxes_rate"]) == "19.5"
        and type(invoice["taxes_rate"]).__name__ == "Decimal"
    )
    respx.get(f"{BASE}/invoices/y").respond(500)
    with pytest.raises(TransientError):
        run(_client(retries=1).get_invoice("y"))


@respx.mock
def test_invoice_create_is_not_repeated_after_an_ambiguous_failure_but_is_after_429() -> None:
    route = respx.post(f"{BASE}/invoices").mock(side_effect=[
        httpx.Response(429, headers={"Retry-After": "0"}), httpx.ReadTimeout("lost"),
        httpx.Response(200, json={"invoice": {"lago_id": "i"}})])  # fmt: skip
    with pytest.raises(TransientError, match="timed out"):
        run(_client().create_one_off_invoice({"external_customer_id": "c", "fees": []}))
    assert route.call_count == 2  # the 429 was retried, the timeout was not


@respx.mock
def test_404_is_not_found_and_terminate_treats_it_as_done() -> None:
    respx.get(f"{BASE}/invoices/z").respond(404, json={"status": 404, "code": "invoice_not_found"})
    respx.delete(f"{BASE}/subscriptions/s%3A1").respond(
        404, json={"status": 404, "code": "subscription_not_found"}
    )
    with pytest.raises(LagoNotFound, match="not found"):
        run(_client().get_invoice("z"))
    assert run(_client().terminate_subscription("s:1")) is None


def _hmac(body: bytes, key: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


def test_hmac_signature_on_the_raw_body() -> None:
    verifier = WebhookVerifier("hmac", hmac_key="hk")
    body = b'{"webhook_type":"invoice.created"}'
    assert run(verifier.verify({"X-Lago-Signature": _hmac(body, "hk")}, body))
    assert not run(verifier.verify({"X-Lago-Signature": _hmac(body, "other")}, body))
    assert not run(verifier.verify({"X-Lago-Signature": _hmac(body, "hk")}, body + b" "))
    assert not run(verifier.verify({}, body))


def _rsa() -> tuple[Any, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, base64.b64encode(pem).decode()


@respx.mock
def test_jwt_signature_with_the_fetched_and_cached_public_key() -> None:
    key, served = _rsa()
    other, _ = _rsa()
    route = respx.get(f"{BASE}/webhooks/json_public_key").respond(
        200, json={"webhook": {"public_key": served}}
    )
    verifier = WebhookVerifier("jwt", client=_client(), public_key_url=f"{BASE}/webhooks/json_public_key",
                               issuer="https://lago.test")  # fmt: skip
    body = b'{"webhook_type":"invoice.voided"}'
    good = jwt.encode({"data": body.decode(), "iss": "https://lago.test"}, key, algorithm="RS256")

    async def scenario() -> list[bool]:
        return [
            await verifier.verify({"x-lago-signature": good}, body),
            await verifier.verify({"x-lago-signature": good}, body + b"x"),  # tampered body
            await verifier.verify(
                {
                    "x-lago-signature": jwt.encode(
                        {"data": body.decode(), "iss": "https://lago.test"}, other, algorithm="RS256"
                    )
                },
                body,
            ),
            await verifier.verify(
                {
                    "x-lago-signature": jwt.encode(
                        {"data": body.decode(), "iss": "https://evil.test"}, key, algorithm="RS256"
                    )
                },
                body,
            ),
            await verifier.verify({"x-lago-signature": good}, body),
        ]

    assert run(scenario()) == [True, False, False, False, True]
    assert route.call_count == 1, "the key is cached; failures re-fetch at most once a minute"
