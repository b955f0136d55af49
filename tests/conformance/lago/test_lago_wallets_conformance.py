"""Wallets and prepaid credits in the Lago sandbox answer what Lago's OpenAPI document says, and move money
as Lago does.

A scenario over real sockets: a wallet created with paid and granted credits, listed, read, updated; a
paid top-up (a ``credit`` invoice of one ``credit`` fee without tax, ``invoice.paid_credit_added``; the
credits reach the wallet only once that invoice is paid); a subscription invoice that takes the wallet's
balance as prepaid credits (``prepaid_credit_amount_cents``, ``total_amount_cents`` reduced, an outbound
transaction), granted credits first, with its granted/purchased split and the transaction's fundings
(traceable wallets); the invoice voided (its credits back as a ``granted`` transaction carrying
``lago_voided_invoice_id``); a top-up refunded by a credit note (its credits taken back: a ``voided``
transaction carrying ``lago_credit_note_id``); credits voided; the wallet terminated; errors in Lago's
shapes. Every request and response is validated
against ``specs/lago/openapi.yaml``, and the webhooks against its ``webhooks:`` section.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from test_lago_openapi_conformance import WebhookCall, _explain

from lead2cash.sandbox.lago import plan_code_for

CUSTOMER = "wallet-cust-1"
SUB = "wallet-sub-1"

# The operations this file covers (the main scenario covers the rest).
WALLET_OPERATIONS = {
    "POST /api/v1/wallets",
    "GET /api/v1/wallets",
    "GET /api/v1/wallets/{lago_id}",
    "PUT /api/v1/wallets/{lago_id}",
    "DELETE /api/v1/wallets/{lago_id}",
    "GET /api/v1/wallets/{lago_id}/wallet_transactions",
    "POST /api/v1/wallet_transactions",
    "GET /api/v1/wallet_transactions/{lago_id}",
    "GET /api/v1/wallet_transactions/{lago_id}/fundings",
}


@pytest.fixture(scope="module")
def wallet_run(conformance_lago: dict[str, Any]) -> dict[str, Any]:
    lago = conformance_lago
    client: httpx.Client = lago["client"]
    calls: list[tuple[str, httpx.Response]] = []
    admin = httpx.Client(base_url=str(client.base_url), verify=lago["tls"])

    def call(method: str, template: str, path: str | None = None, **kw: Any) -> httpx.Response:
        response = client.request(method, path or template, **kw)
        calls.append((f"{method} {template}", response))
        return response

    call("POST", "/api/v1/webhook_endpoints", json={"webhook_endpoint": {
        "webhook_url": f"{lago['receiver_url']}/wallets", "signature_algo": "hmac"}})  # fmt: skip
    call("POST", "/api/v1/customers", json={"customer": {
        "external_id": CUSTOMER, "name": "Prepaid GmbH", "country": "DE", "currency": "EUR"}})  # fmt: skip
    call("POST", "/api/v1/subscriptions", json={"subscription": {
        "external_customer_id": CUSTOMER, "plan_code": plan_code_for("PLAT-BASE", "EUR"),
        "external_id": SUB, "billing_time": "calendar"}})  # fmt: skip

    created = call("POST", "/api/v1/wallets", json={"wallet": {
        "external_customer_id": CUSTOMER, "currency": "EUR", "rate_amount": "1.0", "name": "Prepaid",
        "code": "prepaid", "paid_credits": "100.0", "granted_credits": "10.0",
        "transaction_metadata": [{"key": "po", "value": "PO-1"}]}}).json()["wallet"]  # fmt: skip
    wallet_path = f"/api/v1/wallets/{created['lago_id']}"
    call("GET", "/api/v1/wallets", params={"external_customer_id": CUSTOMER, "page": 1, "per_page": 10})
    call(
        "PUT",
        "/api/v1/wallets/{lago_id}",
        wallet_path,
        json={"wallet": {"name": "Prepaid (EUR)", "priority": 10}},
    )
    top_up = call("POST", "/api/v1/wallet_transactions", json={"wallet_transaction": {
        "wallet_id": created["lago_id"], "paid_credits": "50.5"}}).json()["wallet_transactions"]  # fmt: skip
    before_paid = call("GET", "/api/v1/wallets/{lago_id}", wallet_path).json()["wallet"]

    purchased = call("GET", "/api/v1/wallets/{lago_id}/wallet_transactions",
                     f"{wallet_path}/wallet_transactions",
                     params={"transaction_status": "purchased"}).json()["wallet_transactions"]  # fmt: skip
    credit_invoices = [
        client.get(f"/api/v1/invoices/{t['lago_invoice_id']}").json()["invoice"] for t in purchased
    ]
    for invoice in credit_invoices:  # the customer pays both top-ups
        client.put(
            f"/api/v1/invoices/{invoice['lago_id']}", json={"invoice": {"payment_status": "succeeded"}}
        )
    after_paid = call("GET", "/api/v1/wallets/{lago_id}", wallet_path).json()["wallet"]

    # The first period ends on the 1st of next month; two days of grace later the draft is finalized,
    # and the wallet pays what it can of it.
    today = date.fromisoformat(admin.get("/__sandbox/lago/clock").json()["today"])
    first = (today.replace(day=1) + timedelta(days=32)).replace(day=1)
    billed = admin.post("/__sandbox/lago/clock", json={"to": (first + timedelta(days=3)).isoformat()})
    billed.raise_for_status()
    invoices = client.get("/api/v1/invoices", params={"external_customer_id": CUSTOMER,
                                                       "invoice_type": "subscription"}).json()["invoices"]  # fmt: skip
    subscription_invoice = client.get(f"/api/v1/invoices/{invoices[0]['lago_id']}").json()["invoice"]
    consumed = call("GET", "/api/v1/wallets/{lago_id}", wallet_path).json()["wallet"]
    outbound = call("GET", "/api/v1/wallets/{lago_id}/wallet_transactions", f"{wallet_path}/wallet_transactions",
                    params={"transaction_type": "outbound"}).json()["wallet_transactions"]  # fmt: skip
    tx_path = f"/api/v1/wallet_transactions/{outbound[0]['lago_id']}"
    read_back = call("GET", "/api/v1/wallet_transactions/{lago_id}", tx_path).json()
    fundings = call("GET", "/api/v1/wallet_transactions/{lago_id}/fundings", f"{tx_path}/fundings").json()[
        "wallet_transaction_fundings"
    ]
    # The invoice voided: its credits go back to the wallet as granted credits.
    client.post(f"/api/v1/invoices/{subscription_invoice['lago_id']}/void").raise_for_status()
    recredited = call("GET", "/api/v1/wallets/{lago_id}", wallet_path).json()["wallet"]
    # A new 20.00 top-up, paid, partly refunded: a credit note (refund only) takes 10.00 of its credits back.
    (fresh,) = client.post("/api/v1/wallet_transactions", json={"wallet_transaction": {
        "wallet_id": created["lago_id"], "paid_credits": "20.0"}}).json()["wallet_transactions"]  # fmt: skip
    fresh_invoice = f"/api/v1/invoices/{fresh['lago_invoice_id']}"
    client.put(fresh_invoice, json={"invoice": {"payment_status": "succeeded"}}).raise_for_status()
    small = client.get(fresh_invoice).json()["invoice"]
    refund_note = client.post("/api/v1/credit_notes", json={"credit_note": {
        "invoice_id": small["lago_id"], "reason": "other", "refund_amount_cents": 1000,
        "items": [{"fee_id": small["fees"][0]["lago_id"], "amount_cents": 1000}]}})  # fmt: skip
    assert refund_note.status_code == 200, refund_note.text
    credited_back = client.post("/api/v1/credit_notes", json={"credit_note": {
        "invoice_id": small["lago_id"], "reason": "other", "credit_amount_cents": 100,
        "items": [{"fee_id": small["fees"][0]["lago_id"], "amount_cents": 100}]}})  # fmt: skip
    voided = call("POST", "/api/v1/wallet_transactions", json={"wallet_transaction": {
        "wallet_id": created["lago_id"], "voided_credits": "1.0"}}).json()["wallet_transactions"]  # fmt: skip
    after_void = call("GET", "/api/v1/wallets/{lago_id}/wallet_transactions", f"{wallet_path}/wallet_transactions",
                      params={"per_page": 100}).json()["wallet_transactions"]  # fmt: skip
    terminated = call("DELETE", "/api/v1/wallets/{lago_id}", wallet_path).json()["wallet"]

    # Errors, in Lago's shapes.
    missing = "/api/v1/wallets/00000000-0000-4000-8000-000000000000"
    call("GET", "/api/v1/wallets/{lago_id}", missing)
    call("POST", "/api/v1/wallets", json={"wallet": {"external_customer_id": CUSTOMER, "currency": "EUR"}})
    call("POST", "/api/v1/wallets", json={"wallet": {
        "external_customer_id": CUSTOMER, "currency": "USD", "rate_amount": "1"}})  # fmt: skip
    call("POST", "/api/v1/wallet_transactions", json={"wallet_transaction": {
        "wallet_id": created["lago_id"], "paid_credits": "1"}})  # fmt: skip
    assert admin.post("/__sandbox/lago/webhooks/drain").json()["drained"]
    admin.close()
    return {
        "calls": calls, "created": created, "top_up": top_up, "before_paid": before_paid,
        "after_paid": after_paid, "credit_invoices": credit_invoices, "invoice": subscription_invoice,
        "consumed": consumed, "outbound": outbound, "terminated": terminated, "read_back": read_back,
        "fundings": fundings, "recredited": recredited, "refund_note": refund_note.json()["credit_note"],
        "credited_back": credited_back, "voided": voided, "after_void": after_void,
    }  # fmt: skip


def test_wallet_exchanges_validate_against_the_openapi_document(
    wallet_run: dict[str, Any], conforms: Any
) -> None:
    failures = []
    for operation, response in wallet_run["calls"]:
        try:
            conforms(response)
        except Exception as exc:  # collect them all
            failures.append(f"{operation} -> {response.status_code}: {exc!r}"[:2000])
    assert not failures, "\n".join(failures)
    assert {op for op, _ in wallet_run["calls"]} >= WALLET_OPERATIONS
    errors = {(r.status_code, r.json().get("code")) for _, r in wallet_run["calls"] if r.status_code >= 400}
    assert errors == {(404, "wallet_not_found"), (422, "validation_errors")}, errors


def test_paid_credits_are_a_credit_invoice_and_reach_the_wallet_once_paid(wallet_run: dict[str, Any]) -> None:
    created, top_up = wallet_run["created"], wallet_run["top_up"]
    # Granted credits at once, paid ones (100 + 50.5) only once their invoices are paid.
    assert created["balance_cents"] == 1000 and created["credits_balance"] == "10.0"
    assert [t["transaction_status"] for t in top_up] == ["purchased"] and top_up[0]["status"] == "pending"
    assert wallet_run["before_paid"]["balance_cents"] == 1000
    assert wallet_run["after_paid"]["balance_cents"] == 1000 + 10000 + 5050
    totals = sorted(i["total_amount_cents"] for i in wallet_run["credit_invoices"])
    assert totals == [5050, 10000]
    for invoice in wallet_run["credit_invoices"]:
        assert invoice["invoice_type"] == "credit" and invoice["status"] == "finalized"
        assert invoice["taxes_amount_cents"] == 0 and invoice["applied_taxes"] == []
        (fee,) = invoice["fees"]
        assert fee["item"]["type"] == "credit" and fee["item"]["item_type"] == "WalletTransaction"


def test_a_subscription_invoice_takes_the_wallet_balance_as_prepaid_credits(
    wallet_run: dict[str, Any],
) -> None:
    invoice, consumed, outbound = wallet_run["invoice"], wallet_run["consumed"], wallet_run["outbound"]
    balance = wallet_run["after_paid"]["balance_cents"]
    gross = invoice["sub_total_including_taxes_amount_cents"]
    used = min(balance, gross)
    assert invoice["status"] == "finalized" and used > 0
    assert invoice["prepaid_credit_amount_cents"] == used
    assert invoice["total_amount_cents"] == gross - used
    assert consumed["balance_cents"] == balance - used
    assert [(t["transaction_status"], t["amount"], t["lago_invoice_id"]) for t in outbound] == [
        ("invoiced", f"{used / 100:.2f}", invoice["lago_id"])
    ]
    assert wallet_run["terminated"]["status"] == "terminated" and wallet_run["terminated"]["terminated_at"]


def test_wallet_webhooks_validate_against_the_webhooks_section(
    wallet_run: dict[str, Any], conformance_lago: dict[str, Any], lago_openapi: Any
) -> None:
    from openapi_core.validation.request.validators import (
        V31WebhookRequestBodyValidator,
        V31WebhookRequestParametersValidator,
    )

    validators = [
        V31WebhookRequestBodyValidator(lago_openapi.spec),
        V31WebhookRequestParametersValidator(lago_openapi.spec),
    ]
    received = [r for r in conformance_lago["receiver"].accepted() if r.path.startswith("/wallets")]
    types: list[str] = []
    failures = []
    for hook in received:
        payload = httpx.Response(200, content=hook.body).json()
        types.append(payload["webhook_type"])
        headers = {k.title(): v for k, v in hook.headers.items()}
        try:
            for validator in validators:
                validator.validate(WebhookCall(payload["webhook_type"].replace(".", "_"), headers, hook.body))
        except Exception as exc:
            failures.append(f"{payload['webhook_type']}: {_explain(exc)}"[:3000])
    assert not failures, "\n".join(failures)
    # A paid top-up: the credit invoice is told as issued (never invoice.created); its payment settles
    # the transaction (two top-ups, two of each).
    assert types.count("invoice.paid_credit_added") == 3 and "invoice.created" in types  # the period's
    assert types.count("wallet_transaction.updated") == 3
    # paid, granted, paid, invoiced, granted back by the void, paid, voided (a credit note's take-back
    # sends none)
    assert types.count("wallet_transaction.created") == 7


def test_prepaid_credits_tell_granted_from_purchased_and_come_back_on_a_void(
    wallet_run: dict[str, Any],
) -> None:
    invoice, fundings = wallet_run["invoice"], wallet_run["fundings"]
    used = invoice["prepaid_credit_amount_cents"]
    # Granted credits (10.00) are used before purchased ones (Lago's in_consumption_order).
    assert invoice["prepaid_granted_credit_amount_cents"] == 1000
    assert invoice["prepaid_purchased_credit_amount_cents"] == used - 1000
    assert wallet_run["read_back"]["lago_id"] == wallet_run["outbound"][0]["lago_id"]
    assert sorted(
        (f["wallet_transaction"]["transaction_status"], f["amount_cents"]) for f in fundings
    ) == sorted([("granted", 1000)] + [("purchased", a) for a in _purchased_parts(fundings)])
    assert sum(f["amount_cents"] for f in fundings) == used
    # The void: the credits used come back, as one granted transaction naming the voided invoice.
    assert wallet_run["recredited"]["balance_cents"] == wallet_run["consumed"]["balance_cents"] + used
    back = [t for t in wallet_run["after_void"] if t["lago_voided_invoice_id"] == invoice["lago_id"]]
    assert [(t["transaction_status"], t["transaction_type"], t["amount"]) for t in back] == [
        ("granted", "inbound", f"{used / 100:.2f}")
    ]


def test_a_top_up_credit_note_refunds_and_takes_the_credits_back(wallet_run: dict[str, Any]) -> None:
    note = wallet_run["refund_note"]
    assert note["refund_amount_cents"] == 1000 and note["credit_amount_cents"] == 0
    taken = [t for t in wallet_run["after_void"] if t["lago_credit_note_id"] == note["lago_id"]]
    assert [(t["transaction_status"], t["transaction_type"], t["amount"]) for t in taken] == [
        ("voided", "outbound", "10.00")
    ]
    # A credit (not a refund) of a top-up is refused, as Lago.
    assert wallet_run["credited_back"].status_code == 422
    (voided,) = wallet_run["voided"]
    assert (voided["transaction_status"], voided["transaction_type"], voided["status"]) == (
        "voided", "outbound", "settled",
    )  # fmt: skip


def _purchased_parts(fundings: list[dict[str, Any]]) -> list[int]:
    return [
        f["amount_cents"] for f in fundings if f["wallet_transaction"]["transaction_status"] == "purchased"
    ]
