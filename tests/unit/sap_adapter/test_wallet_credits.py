"""Wallet credits on the ledger: granted credits used are a sales deduction, not the advance; a void
credits the returned credits to that deduction (Lago gives them back as granted credits); paid credits
voided release the advance to the voided-credits account; every other wallet movement posts nothing."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from test_accounting_properties import (
    ADVANCE,
    GRANTED,
    OPTIONS,
    RECEIVABLE,
    RULES,
    VOIDED,
    Customer,
    _invoice,
)

from lead2cash.adapters import lago, sap
from lead2cash.canonical_model import DebitCredit, JournalEntry


def _accounts(entry: JournalEntry) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for item in entry.items:
        signed = item.amount.amount if item.side is DebitCredit.DEBIT else -item.amount.amount
        out[item.gl_account] = out.get(item.gl_account, Decimal(0)) + signed
    return out


def _consuming(granted: int | None) -> dict[str, Any]:
    raw = _invoice(Customer(1, "EUR"), 7, "subscription", [(0, 10_000)], 5_000, granted or 0)
    if granted is None:  # a wallet that is not traceable: Lago tells no split
        raw["prepaid_granted_credit_amount_cents"] = raw["prepaid_purchased_credit_amount_cents"] = None
    return raw


def test_granted_credits_used_are_a_sales_deduction_and_paid_ones_leave_the_advance() -> None:
    invoice = lago.invoice_from_lago(_consuming(1_500), OPTIONS)
    accounts = _accounts(sap.invoice_to_journal_entry(invoice, RULES))
    assert accounts[ADVANCE] == Decimal("35.00") and accounts[GRANTED] == Decimal("15.00")
    assert accounts[RECEIVABLE] == Decimal("119.00") - Decimal("50.00")


def test_without_the_split_every_credit_used_is_taken_as_paid() -> None:
    invoice = lago.invoice_from_lago(_consuming(None), OPTIONS)
    accounts = _accounts(sap.invoice_to_journal_entry(invoice, RULES))
    assert accounts[ADVANCE] == Decimal("50.00") and GRANTED not in accounts


def test_granted_credits_without_their_account_are_refused_naming_it() -> None:
    invoice = lago.invoice_from_lago(_consuming(1_500), OPTIONS)
    with pytest.raises(sap.PostingRuleError, match="granted_credits_account"):
        sap.invoice_to_journal_entry(invoice, replace(RULES, granted_credits_account=None))


def test_a_void_credits_the_returned_credits_to_the_deduction_as_lago_gives_them_back_granted() -> None:
    invoice = lago.invoice_from_lago({**_consuming(1_500), "status": "voided"}, OPTIONS)
    accounts = _accounts(sap.void_reversal_entry(invoice, RULES))
    assert accounts[GRANTED] == Decimal("-50.00") and ADVANCE not in accounts
    # Without the split, the credits go back to the advance.
    plain = lago.invoice_from_lago({**_consuming(None), "status": "voided"}, OPTIONS)
    assert _accounts(sap.void_reversal_entry(plain, RULES))[ADVANCE] == Decimal("-50.00")


def test_a_granted_part_larger_than_the_credits_used_is_refused_naming_the_field() -> None:
    raw = _consuming(1_500)
    raw["prepaid_granted_credit_amount_cents"] = 6_000
    with pytest.raises(ValueError, match="prepaid_granted_credit_amount_cents"):
        lago.invoice_from_lago(raw, OPTIONS)


def _tx(
    kind: str, direction: str, fundings: list[tuple[str, int]] | None = None, **extra: Any
) -> dict[str, Any]:
    tx: dict[str, Any] = {
        "lago_id": "0b6f5a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b", "lago_wallet_id": "w-1", "status": "settled",
        "transaction_status": kind, "transaction_type": direction, "amount": "12.50",
        "created_at": "2026-01-06T10:00:00Z", "settled_at": "2026-01-06T10:00:00Z",
        "wallet": {"lago_id": "w-1", "external_customer_id": "001PROP0001", "currency": "EUR"}, **extra,
    }  # fmt: skip
    if fundings is not None:
        tx[lago.FUNDINGS_FIELD] = [{"transaction_status": s, "amount_cents": c} for s, c in fundings]
    return {"webhook_type": "wallet_transaction.created", "wallet_transaction": tx}


def test_paid_credits_voided_release_the_advance_by_the_part_paid_credits_funded() -> None:
    tx = lago.wallet_transaction_from_lago(
        _tx("voided", "outbound", [("granted", 1_000), ("purchased", 250)])
    )
    entry = sap.voided_credits_entry(tx, RULES)
    assert entry is not None and _accounts(entry) == {ADVANCE: Decimal("2.50"), VOIDED: Decimal("-2.50")}
    assert entry.reference_id == "VC" + "0b6f5a3e1c2d4e5f8a9b0c1d2e3f4a5b"[-14:]
    assert {i.assignment for i in entry.items} == {"001PROP0001"}
    # Lago tells no fundings (not a traceable wallet): all of it is taken as paid credits.
    whole = sap.voided_credits_entry(lago.wallet_transaction_from_lago(_tx("voided", "outbound")), RULES)
    assert whole is not None and _accounts(whole)[ADVANCE] == Decimal("12.50")


@pytest.mark.parametrize(
    "record",
    [
        _tx("voided", "outbound", [("granted", 1_250)]),  # granted credits voided: never booked
        _tx("voided", "outbound", [("purchased", 1_250)], lago_credit_note_id="cn-1"),  # the credit note's
        _tx("granted", "inbound"),  # free credits: booked when used
        _tx("granted", "inbound", lago_voided_invoice_id="inv-1"),  # given back by a void: its reversal's
        _tx("purchased", "inbound"),  # the top-up invoice's
        _tx("invoiced", "outbound"),  # the consuming invoice's
    ],
)
def test_every_other_wallet_movement_posts_nothing(record: dict[str, Any]) -> None:
    assert sap.voided_credits_entry(lago.wallet_transaction_from_lago(record), RULES) is None


def test_a_wallet_movement_without_its_wallet_is_refused_naming_the_field() -> None:
    record = _tx("voided", "outbound")
    del record["wallet_transaction"]["wallet"]
    with pytest.raises(ValueError, match=r"wallet_transaction\.wallet: missing"):
        lago.wallet_transaction_from_lago(record)
