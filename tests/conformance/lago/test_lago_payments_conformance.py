"""Manual payments in the Lago sandbox answer what Lago's OpenAPI document says, and settle invoices as Lago
does (``Payments::ManualCreateService``, the ``Payment`` model's validations).

A scenario over real sockets: an invoice paid in two parts (``POST /payments``); after the first its
``total_paid_amount_cents`` and ``total_due_amount_cents`` move and its payment status stays ``pending``,
after the second it is ``succeeded`` and ``invoice.payment_status_updated`` is sent (the only webhook: a
partial payment sends none); the payments listed (all, by customer, by invoice) and read; errors in Lago's
shapes (an overpayment, a top-up paid in part, a voided invoice, an unknown invoice or payment).

Two places where Lago's serializer and its OpenAPI document disagree, the sandbox answering as Lago does:
``GET /payments/{lago_id}`` answers under a ``payment`` root (the document: the bare object), and a manual
payment has no provider, so ``payment_provider_code``, ``payment_provider_type`` and
``provider_customer_id`` are null (the document: strings). Those responses are checked with the provider
fields set to strings, and the root unwrapped against ``PaymentObject``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest
from test_lago_openapi_conformance import WebhookCall, _explain

CUSTOMER = "payments-cust-1"
PAYMENT_OPERATIONS = {
    "POST /api/v1/payments",
    "GET /api/v1/payments",
    "GET /api/v1/payments/{lago_id}",
    "GET /api/v1/customers/{external_id}/payments",
}
# Null in Lago's serializer for a manual payment, strings in the document.
PROVIDER_FIELDS = ("payment_provider_code", "payment_provider_type", "provider_customer_id")


def _as_documented(response: httpx.Response) -> httpx.Response:
    """The response with a manual payment's null provider fields as the document's strings."""
    if response.status_code >= 400:
        return response
    body = response.json()
    payments = body.get("payments") or ([body["payment"]] if "payment" in body else [])
    for payment in payments:
        assert payment["type"] == "manual"
        for field in PROVIDER_FIELDS:
            assert payment[field] is None, field  # as Lago: no provider
            payment[field] = "stripe" if field == "payment_provider_type" else "manual"
    return httpx.Response(
        response.status_code,
        headers={"content-type": "application/json"},
        content=json.dumps(body).encode(),
        request=response.request,
    )


@pytest.fixture(scope="module")
def payment_run(conformance_lago: dict[str, Any]) -> dict[str, Any]:
    lago = conformance_lago
    client: httpx.Client = lago["client"]
    calls: list[tuple[str, httpx.Response]] = []
    admin = httpx.Client(base_url=str(client.base_url), verify=lago["tls"])

    def call(method: str, template: str, path: str | None = None, **kw: Any) -> httpx.Response:
        response = client.request(method, path or template, **kw)
        calls.append((f"{method} {template}", response))
        return response

    call("POST", "/api/v1/webhook_endpoints", json={"webhook_endpoint": {
        "webhook_url": f"{lago['receiver_url']}/payments", "signature_algo": "hmac"}})  # fmt: skip
    call("POST", "/api/v1/customers", json={"customer": {
        "external_id": CUSTOMER, "name": "Pays In Parts SA", "country": "FR", "currency": "EUR"}})  # fmt: skip
    fees = [{"add_on_code": "ONB-STD", "units": "1", "unit_amount_cents": 100000}]
    invoice = call("POST", "/api/v1/invoices", json={"invoice": {
        "external_customer_id": CUSTOMER, "currency": "EUR", "fees": fees}}).json()["invoice"]  # fmt: skip
    voided = call("POST", "/api/v1/invoices", json={"invoice": {
        "external_customer_id": CUSTOMER, "currency": "EUR", "fees": fees}}).json()["invoice"]  # fmt: skip
    client.post(f"/api/v1/invoices/{voided['lago_id']}/void").raise_for_status()
    total = invoice["total_amount_cents"]
    first_part = total // 3

    first = call("POST", "/api/v1/payments", json={"payment": {
        "invoice_id": invoice["lago_id"], "amount_cents": first_part, "reference": "wire 1",
        "paid_at": "2026-12-01"}}).json()["payment"]  # fmt: skip
    after_first = client.get(f"/api/v1/invoices/{invoice['lago_id']}").json()["invoice"]
    # More than is due, then a voided invoice, an unknown one, no amount: refused as Lago does.
    call("POST", "/api/v1/payments", json={"payment": {
        "invoice_id": invoice["lago_id"], "amount_cents": total, "reference": "too much"}})  # fmt: skip
    call("POST", "/api/v1/payments", json={"payment": {
        "invoice_id": voided["lago_id"], "amount_cents": 1, "reference": "void"}})  # fmt: skip
    call("POST", "/api/v1/payments", json={"payment": {
        "invoice_id": "00000000-0000-4000-8000-000000000000", "amount_cents": 1, "reference": "x"}})  # fmt: skip
    call("POST", "/api/v1/payments", json={"payment": {
        "invoice_id": invoice["lago_id"], "amount_cents": 0, "reference": "zero"}})  # fmt: skip
    second = call("POST", "/api/v1/payments", json={"payment": {
        "invoice_id": invoice["lago_id"], "amount_cents": total - first_part,
        "reference": "wire 2"}}).json()["payment"]  # fmt: skip
    after_second = client.get(f"/api/v1/invoices/{invoice['lago_id']}").json()["invoice"]

    listed = call("GET", "/api/v1/payments", params={"external_customer_id": CUSTOMER, "page": 1,
                                                       "per_page": 10}).json()["payments"]  # fmt: skip
    call("GET", "/api/v1/payments", params={"invoice_id": invoice["lago_id"]})
    by_customer = call("GET", "/api/v1/customers/{external_id}/payments",
                       f"/api/v1/customers/{CUSTOMER}/payments").json()["payments"]  # fmt: skip
    call("GET", "/api/v1/customers/{external_id}/payments", "/api/v1/customers/nobody/payments")
    read = call("GET", "/api/v1/payments/{lago_id}", f"/api/v1/payments/{first['lago_id']}")
    call("GET", "/api/v1/payments/{lago_id}", "/api/v1/payments/00000000-0000-4000-8000-000000000000")
    assert admin.post("/__sandbox/lago/webhooks/drain").json()["drained"]
    admin.close()
    return {
        "calls": calls, "invoice": invoice, "first": first, "second": second, "after_first": after_first,
        "after_second": after_second, "listed": listed, "by_customer": by_customer, "read": read,
    }  # fmt: skip


def test_payment_exchanges_validate_against_the_openapi_document(
    payment_run: dict[str, Any], conforms: Any, lago_schemas: dict[str, Any]
) -> None:
    failures = []
    for operation, response in payment_run["calls"]:
        try:
            if operation == "GET /api/v1/payments/{lago_id}" and response.status_code == 200:
                # Lago's root; the document's bare object (see the module's docstring).
                inner = _as_documented(response).json()["payment"]
                schema = {
                    "$ref": "#/components/schemas/PaymentObject",
                    "components": {"schemas": lago_schemas},
                }
                jsonschema.validate(inner, schema)
            else:
                conforms(_as_documented(response))
        except Exception as exc:  # collect them all
            failures.append(f"{operation} -> {response.status_code}: {exc!r}"[:2000])
    assert not failures, "\n".join(failures)
    assert {op for op, _ in payment_run["calls"]} >= PAYMENT_OPERATIONS
    errors = sorted(
        (r.status_code, r.json().get("code"), json.dumps(r.json().get("error_details")))
        for _, r in payment_run["calls"]
        if r.status_code >= 400
    )
    assert errors == [
        (403, "feature_unavailable", "null"),
        (404, "customer_not_found", "null"),
        (404, "invoice_not_found", "null"),
        (404, "payment_not_found", "null"),
        (422, "validation_errors", json.dumps({"amount_cents": ["greater_than"]})),
        (422, "validation_errors", json.dumps({"amount_cents": ["invalid_value"]})),
    ], errors


def test_a_partial_payment_leaves_the_invoice_pending_with_what_is_due(payment_run: dict[str, Any]) -> None:
    invoice, first, second = payment_run["invoice"], payment_run["first"], payment_run["second"]
    total = invoice["total_amount_cents"]
    assert invoice["total_paid_amount_cents"] == 0 and invoice["total_due_amount_cents"] == total
    after = payment_run["after_first"]
    assert after["payment_status"] == "pending"
    assert after["total_paid_amount_cents"] == first["amount_cents"] == total // 3
    assert after["total_due_amount_cents"] == total - total // 3
    done = payment_run["after_second"]
    assert done["payment_status"] == "succeeded"
    assert done["total_paid_amount_cents"] == total and done["total_due_amount_cents"] == 0
    for payment in (first, second):
        assert payment["invoice_ids"] == [invoice["lago_id"]]
        assert payment["invoice_numbers"] == [invoice["number"]]
        assert (payment["type"], payment["payment_status"], payment["amount_currency"]) == (
            "manual", "succeeded", "EUR",
        )  # fmt: skip
        assert payment["external_customer_id"] == CUSTOMER
    assert first["created_at"] == "2026-12-01T00:00:00Z"  # paid_at
    assert [p["lago_id"] for p in payment_run["listed"]] == [p["lago_id"] for p in payment_run["by_customer"]]
    assert {p["lago_id"] for p in payment_run["listed"]} == {first["lago_id"], second["lago_id"]}
    assert payment_run["read"].json()["payment"] == first


def test_only_the_payment_that_settles_the_invoice_sends_a_webhook(
    payment_run: dict[str, Any], conformance_lago: dict[str, Any], lago_openapi: Any
) -> None:
    from openapi_core.validation.request.validators import (
        V31WebhookRequestBodyValidator,
        V31WebhookRequestParametersValidator,
    )

    validators = [
        V31WebhookRequestBodyValidator(lago_openapi.spec),
        V31WebhookRequestParametersValidator(lago_openapi.spec),
    ]
    received = [r for r in conformance_lago["receiver"].accepted() if r.path.startswith("/payments")]
    mine = []
    failures = []
    for hook in received:
        payload = httpx.Response(200, content=hook.body).json()
        headers = {k.title(): v for k, v in hook.headers.items()}
        try:
            for validator in validators:
                validator.validate(WebhookCall(payload["webhook_type"].replace(".", "_"), headers, hook.body))
        except Exception as exc:
            failures.append(f"{payload['webhook_type']}: {_explain(exc)}"[:3000])
        invoice = payload.get("invoice") or {}
        if invoice.get("lago_id") == payment_run["invoice"]["lago_id"]:
            mine.append((payload["webhook_type"], invoice.get("payment_status")))
    assert not failures, "\n".join(failures)
    assert mine == [("invoice.one_off_created", "pending"), ("invoice.payment_status_updated", "succeeded")]
