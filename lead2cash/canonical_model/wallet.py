"""Movements of a customer's prepaid-credit wallet (Lago's wallet transactions)."""

from __future__ import annotations

from datetime import date
from typing import Literal, Self

from pydantic import model_validator

from lead2cash.canonical_model.base import CanonicalEntity, NonEmptyStr
from lead2cash.canonical_model.money import Money


class WalletTransaction(CanonicalEntity):
    """One movement of a wallet, in money (credits times the wallet's rate). ``kind`` is the billing
    engine's: ``purchased`` (paid credits, billed by a top-up invoice), ``granted`` (free credits),
    ``invoiced`` (credits used on an invoice), ``voided`` (credits taken away)."""

    customer_id: NonEmptyStr
    wallet_id: NonEmptyStr
    kind: Literal["purchased", "granted", "invoiced", "voided"]
    direction: Literal["inbound", "outbound"]
    status: Literal["pending", "settled", "failed"]
    amount: Money
    transaction_date: date
    purchased: Money | None = None
    """Of an outbound movement, the part that consumed paid credits, when the billing engine tells
    (Lago's traceable wallets: the inbound transactions that funded it); None: it does not tell."""
    credit_note_id: NonEmptyStr | None = None
    """The credit note that took the credits back (a refunded top-up): that document books it."""
    voided_invoice_id: NonEmptyStr | None = None
    """The voided invoice whose used credits this movement gives back: the void's reversal books it."""

    @property
    def currency(self) -> str:
        return self.amount.currency

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.amount.is_negative():
            raise ValueError(f"amount: expected a non-negative amount, got {self.amount}")
        if self.purchased is not None and (
            self.purchased.currency != self.currency
            or self.purchased.is_negative()
            or self.purchased.amount > self.amount.amount
        ):
            raise ValueError(f"purchased: expected between 0 and the amount ({self.amount})")
        return self
