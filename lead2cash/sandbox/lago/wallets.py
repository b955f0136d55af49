"""Wallets and prepaid credits of the Lago simulator, as lago-api does them (``Wallets::CreateService``,
``WalletTransactions::CreateFromParamsService``, ``Invoices::PaidCreditService``,
``Credits::AppliedPrepaidCreditService``):

- paid credits: an inbound transaction ``purchased``/``pending`` and a ``credit`` invoice (one fee of type
  ``credit``, no tax: an advance), finalized at once with the webhook ``invoice.paid_credit_added``; the
  wallet's balance grows only when that invoice's payment succeeds (the transaction is then ``settled``,
  ``wallet_transaction.updated``);
- granted credits: an inbound transaction ``granted``/``settled`` at once, no invoice;
- voided credits: an outbound transaction ``voided``/``settled`` (``WalletTransactions::VoidService``);
- consumption: a subscription invoice, when finalized, takes what the customer's active wallets in its
  currency hold (by priority, then age) up to the amount due: ``prepaid_credit_amount_cents`` on the
  invoice, ``total_amount_cents`` reduced, an outbound transaction ``invoiced`` per wallet used;
- traceable wallets (``WalletTransactions::TrackConsumptionService``): every inbound transaction keeps
  its ``remaining_amount_cents``; an outbound one (invoiced or voided) consumes the settled inbound ones
  (by priority, granted before purchased, then oldest first), so an invoice tells how much of its prepaid credits were granted and how much purchased
  (``prepaid_granted_credit_amount_cents``, ``prepaid_purchased_credit_amount_cents``);
- a voided invoice gives the credits it consumed back (``WalletTransactions::RecreditService``): an
  inbound ``granted``/``settled`` transaction carrying ``lago_voided_invoice_id``, on an active wallet only;
- a credit note of a paid top-up (refund only, as Lago) takes its credits back: an outbound ``voided``
  transaction carrying ``lago_credit_note_id`` (``CreditNotes::CreateService``), consuming the top-up's
  own credits first.

Not simulated: ``invoice_requires_successful_payment`` (taken and shown; the invoice is issued at once as
when it is false), recurring rules, ``applies_to`` limits, expiry, traceable wallets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from lead2cash.sandbox.lago.money import decimal_str, exponent, round_half_up, to_major
from lead2cash.sandbox.lago.store import Customer, Invoice, LagoError, invalid, not_found, ts

if TYPE_CHECKING:
    from lead2cash.sandbox.lago.store import LagoStore

CREDITS_PLACES = Decimal("0.00001")  # Lago keeps credits with 5 decimals


@dataclass
class Wallet:
    lago_id: str
    customer: Customer
    currency: str
    rate_amount: Decimal
    created_at: datetime
    name: str | None = None
    code: str | None = None
    priority: int = 50
    status: str = "active"
    balance_cents: int = 0
    consumed_cents: int = 0
    invoice_requires_successful_payment: bool = False
    expiration_at: str | None = None
    terminated_at: datetime | None = None
    last_balance_sync_at: datetime | None = None
    last_consumed_credit_at: datetime | None = None

    def credits(self, cents: int) -> Decimal:
        return (Decimal(cents).scaleb(-exponent(self.currency)) / self.rate_amount).quantize(CREDITS_PLACES)

    def cents(self, credits: Decimal) -> int:
        return round_half_up((credits * self.rate_amount).scaleb(exponent(self.currency)))

    def json(self) -> dict[str, Any]:
        credits = decimal_str(self.credits(self.balance_cents))
        return {
            "lago_id": self.lago_id,
            "lago_customer_id": self.customer.lago_id,
            "external_customer_id": self.customer.external_id,
            "billing_entity_code": "lead2cash",
            "status": self.status,
            "currency": self.currency,
            "name": self.name,
            "code": self.code,
            "priority": self.priority,
            "rate_amount": decimal_str(self.rate_amount),
            "credits_balance": credits,
            # Required by the document's WalletObject (an older field): the balance in major units.
            "balance": to_major(self.balance_cents, self.currency),
            "balance_cents": self.balance_cents,
            "consumed_credits": decimal_str(self.credits(self.consumed_cents)),
            "created_at": ts(self.created_at),
            "expiration_at": self.expiration_at,
            "last_balance_sync_at": ts(self.last_balance_sync_at),
            "last_consumed_credit_at": ts(self.last_consumed_credit_at),
            "terminated_at": ts(self.terminated_at),
            "invoice_requires_successful_payment": self.invoice_requires_successful_payment,
            "applies_to": {"fee_types": [], "billable_metric_codes": []},
            "recurring_transaction_rules": [],
            "ongoing_balance_cents": self.balance_cents,
            "ongoing_usage_balance_cents": 0,
            "credits_ongoing_balance": credits,
            "credits_ongoing_usage_balance": "0.0",
            "paid_top_up_min_amount_cents": None,
            "paid_top_up_max_amount_cents": None,
            "applied_invoice_custom_sections": [],
            "payment_method": {"payment_method_type": "provider"},
            "purchase_order_number": None,
            "metadata": None,
        }


@dataclass
class WalletTransaction:
    lago_id: str
    wallet: Wallet
    status: str  # pending | settled | failed
    transaction_status: str  # purchased | granted | voided | invoiced
    transaction_type: str  # inbound | outbound
    amount_cents: int
    created_at: datetime
    name: str | None = None
    invoice: Invoice | None = None
    remaining_cents: int | None = None  # inbound: what outbound transactions have not consumed yet
    voided_invoice: Invoice | None = None
    credit_note_id: str | None = None
    settled_at: datetime | None = None
    invoice_requires_successful_payment: bool = False
    metadata: list[dict[str, str]] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        wallet = self.wallet
        return {
            "lago_id": self.lago_id,
            "lago_wallet_id": wallet.lago_id,
            "lago_invoice_id": self.invoice.lago_id if self.invoice else None,
            "lago_credit_note_id": self.credit_note_id,
            "lago_voided_invoice_id": self.voided_invoice.lago_id if self.voided_invoice else None,
            "status": self.status,
            "source": "manual",
            "transaction_status": self.transaction_status,
            "transaction_type": self.transaction_type,
            "amount": to_major(self.amount_cents, wallet.currency),
            "credit_amount": decimal_str(wallet.credits(self.amount_cents)),
            "remaining_amount_cents": self.remaining_cents,
            "remaining_credit_amount": (
                None if self.remaining_cents is None else decimal_str(wallet.credits(self.remaining_cents))
            ),
            "priority": wallet.priority,
            "invoice_requires_successful_payment": self.invoice_requires_successful_payment,
            "settled_at": ts(self.settled_at),
            "failed_at": None,
            "created_at": ts(self.created_at),
            "metadata": list(self.metadata),
            "name": self.name,
            "payment_method": {"payment_method_type": "provider"},
            "purchase_order_number": None,
        }

    def webhook_json(self) -> dict[str, Any]:
        return {**self.json(), "wallet": self.wallet.json()}


@dataclass
class Funding:
    """What one inbound transaction gave to an outbound one (``WalletTransactionConsumption``)."""

    lago_id: str
    inbound: WalletTransaction
    outbound: WalletTransaction
    amount_cents: int
    created_at: datetime

    def json(self) -> dict[str, Any]:
        return {
            "lago_id": self.lago_id,
            "amount_cents": self.amount_cents,
            "credit_amount": decimal_str(self.inbound.wallet.credits(self.amount_cents)),
            "created_at": ts(self.created_at),
            "wallet_transaction": self.inbound.json(),
        }


def _credits(data: dict[str, Any], name: str) -> Decimal:
    raw = data.get(name)
    if raw is None or raw == "":
        return Decimal(0)
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise invalid(**{name: "invalid_value"}) from None
    if not value.is_finite() or value < 0:
        raise invalid(**{name: "invalid_value"})
    return value


def _metadata(data: dict[str, Any], name: str) -> list[dict[str, str]]:
    items = data.get(name) or []
    if not isinstance(items, list) or not all(isinstance(m, dict) for m in items):
        raise invalid(**{name: "invalid_value"})
    return [{"key": str(m.get("key", "")), "value": str(m.get("value", ""))} for m in items]


class Wallets:
    """The organization's wallets and their transactions; billing calls :meth:`apply_prepaid_credits`
    when it finalizes a subscription invoice, and :meth:`invoice_paid` when an invoice is paid."""

    def __init__(self, store: LagoStore) -> None:
        self.store = store
        self.wallets: dict[str, Wallet] = {}
        self.transactions: dict[str, WalletTransaction] = {}
        self.fundings: list[Funding] = []

    # -- wallets -----------------------------------------------------------------------------------

    def create(self, data: dict[str, Any]) -> Wallet:
        store = self.store
        errors = {k: ["value_is_mandatory"] for k in ("external_customer_id", "currency", "rate_amount")
                  if not data.get(k)}  # fmt: skip
        if errors:
            raise LagoError(422, "validation_errors", errors)
        customer = store.customer(str(data["external_customer_id"]))
        currency = store.check_currency(data["currency"])
        try:
            rate = Decimal(str(data["rate_amount"]))
        except InvalidOperation:
            raise invalid(rate_amount="invalid_value") from None
        if not rate.is_finite() or rate <= 0:
            raise invalid(rate_amount="invalid_value")
        paid, granted = _credits(data, "paid_credits"), _credits(data, "granted_credits")
        priority = data.get("priority", 50)
        if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 50:
            raise invalid(priority="invalid_value")
        store._assign_currency(customer, currency)  # a customer of another currency: 422, as Lago
        now = store.clock.now()
        wallet = Wallet(
            store.new_id(), customer, currency, rate, now, name=data.get("name"), code=data.get("code"),
            priority=priority,
            invoice_requires_successful_payment=bool(data.get("invoice_requires_successful_payment")),
            expiration_at=data.get("expiration_at"),
        )  # fmt: skip
        self.wallets[wallet.lago_id] = wallet
        store.effects.record("wallet.create", customer.external_id)
        self._top_up(wallet, paid, granted, Decimal(0), data.get("transaction_name"),
                     _metadata(data, "transaction_metadata"), wallet.invoice_requires_successful_payment)  # fmt: skip
        return wallet

    def get(self, lago_id: str) -> Wallet:
        wallet = self.wallets.get(lago_id)
        if wallet is None:
            raise not_found("wallet")
        return wallet

    def list(self, query: Any) -> list[Wallet]:
        external_id = query.get("external_customer_id")
        if not external_id:
            raise invalid(external_customer_id="value_is_mandatory")
        customer = self.store.customer(external_id)
        items = [w for w in self.wallets.values() if w.customer is customer]
        if query.get("currency"):
            items = [w for w in items if w.currency == query["currency"]]
        return sorted(items, key=lambda w: w.created_at)

    def update(self, lago_id: str, data: dict[str, Any]) -> Wallet:
        wallet = self.get(lago_id)
        if wallet.status != "active":
            raise not_found("wallet")
        if "priority" in data:
            priority = data["priority"]
            if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 50:
                raise invalid(priority="invalid_value")
            wallet.priority = priority
        for name in ("name", "code", "expiration_at"):
            if name in data:
                setattr(wallet, name, data[name])
        if "invoice_requires_successful_payment" in data:
            wallet.invoice_requires_successful_payment = bool(data["invoice_requires_successful_payment"])
        return wallet

    def terminate(self, lago_id: str) -> Wallet:
        wallet = self.get(lago_id)
        if wallet.status == "active":
            wallet.status = "terminated"
            wallet.terminated_at = self.store.clock.now()
            self.store.effects.record("wallet.terminate", lago_id)
        return wallet

    # -- transactions ------------------------------------------------------------------------------

    def create_transactions(self, data: dict[str, Any]) -> list[WalletTransaction]:
        wallet = self.wallets.get(str(data.get("wallet_id") or ""))
        if wallet is None:
            raise not_found("wallet")
        if wallet.status != "active":
            raise invalid(wallet_id="wallet_not_active")
        paid, granted = _credits(data, "paid_credits"), _credits(data, "granted_credits")
        voided = _credits(data, "voided_credits")
        if voided and wallet.cents(voided) > wallet.balance_cents:
            raise invalid(voided_credits="insufficient_credits")
        requires = data.get("invoice_requires_successful_payment")
        requires = wallet.invoice_requires_successful_payment if requires is None else bool(requires)
        return self._top_up(
            wallet, paid, granted, voided, data.get("name"), _metadata(data, "metadata"), requires
        )

    def _top_up(
        self,
        wallet: Wallet,
        paid: Decimal,
        granted: Decimal,
        voided: Decimal,
        name: str | None,
        metadata: list[dict[str, str]],
        requires_payment: bool,
    ) -> list[WalletTransaction]:
        store = self.store
        now = store.clock.now()
        made: list[WalletTransaction] = []

        def new(status: str, kind: str, direction: str, cents: int) -> WalletTransaction:
            tx = WalletTransaction(
                store.new_id(), wallet, status, kind, direction, cents, now, name=name, metadata=metadata,
                settled_at=now if status == "settled" else None,
                invoice_requires_successful_payment=requires_payment,
                remaining_cents=cents if direction == "inbound" else None,
            )  # fmt: skip
            self.transactions[tx.lago_id] = tx
            made.append(tx)
            return tx

        if paid:
            tx = new("pending", "purchased", "inbound", wallet.cents(paid))
            store.emit("wallet_transaction.created", "wallet_transaction", tx.webhook_json())
            tx.invoice = self._credit_invoice(tx, paid)
        if granted:
            tx = new("settled", "granted", "inbound", wallet.cents(granted))
            self._move(wallet, tx.amount_cents)
            store.emit("wallet_transaction.created", "wallet_transaction", tx.webhook_json())
        if voided:
            tx = new("settled", "voided", "outbound", wallet.cents(voided))
            self._consume(wallet, tx.amount_cents, tx)
            self._move(wallet, -tx.amount_cents)
            store.emit("wallet_transaction.created", "wallet_transaction", tx.webhook_json())
        for tx in made:
            store.effects.record("wallet_transaction.create", f"{wallet.lago_id}:{tx.transaction_status}")
        return made

    def _credit_invoice(self, tx: WalletTransaction, credits: Decimal) -> Invoice:
        """``Invoices::PaidCreditService``: a ``credit`` invoice of one ``credit`` fee, without tax (an
        advance), finalized at once; ``invoice.paid_credit_added`` tells it."""
        store, wallet = self.store, tx.wallet
        unit_cents = round_half_up(wallet.rate_amount.scaleb(exponent(wallet.currency)))
        label = tx.name or "credit"
        fee = store._make_fee("credit", "credit", label, tx.lago_id, credits, unit_cents, wallet.currency, [],
                              description="credit")  # fmt: skip
        fee.amount_cents = tx.amount_cents  # credits x rate, rounded once (the rate may have more places)
        today = store.clock.today()
        invoice = store._new_invoice(wallet.customer, "credit", wallet.currency, [fee], issuing=today)
        store._finalize(invoice, today)
        store.effects.record("invoice.create", wallet.customer.external_id)
        store.emit("invoice.paid_credit_added", "invoice", invoice.extended_json())
        return invoice

    def invoice_paid(self, invoice: Invoice) -> None:
        """A ``credit`` invoice paid: its purchased credits reach the wallet (once)."""
        for tx in self.transactions.values():
            if tx.invoice is invoice and tx.status == "pending":
                tx.status, tx.settled_at = "settled", self.store.clock.now()
                self._move(tx.wallet, tx.amount_cents)
                self.store.emit("wallet_transaction.updated", "wallet_transaction", tx.webhook_json())

    def transaction(self, lago_id: str) -> WalletTransaction:
        tx = self.transactions.get(lago_id)
        if tx is None:
            raise not_found("wallet_transaction")
        return tx

    def fundings_of(self, lago_id: str) -> list[Funding]:
        tx = self.transaction(lago_id)
        if tx.transaction_type != "outbound":
            raise invalid(lago_id="not_outbound")
        return [f for f in self.fundings if f.outbound is tx]

    def _consume(
        self, wallet: Wallet, cents: int, outbound: WalletTransaction, first: WalletTransaction | None = None
    ) -> int:
        """Takes ``cents`` from the wallet's settled inbound transactions (``first``, then oldest first);
        returns how much of it came from granted credits."""
        inbound = sorted(
            (t for t in self.transactions.values() if t.wallet is wallet and t.transaction_type == "inbound"
             and t.status == "settled" and t.remaining_cents),
            # Lago's in_consumption_order: priority, granted before purchased, oldest first.
            key=lambda t: (t is not first, wallet.priority, t.transaction_status != "granted", t.created_at),
        )  # fmt: skip
        granted = 0
        for tx in inbound:
            if cents <= 0:
                break
            used = min(cents, tx.remaining_cents or 0)
            tx.remaining_cents = (tx.remaining_cents or 0) - used
            cents -= used
            self.fundings.append(Funding(self.store.new_id(), tx, outbound, used, self.store.clock.now()))
            if tx.transaction_status == "granted":
                granted += used
        return granted

    def recredit(self, invoice: Invoice) -> None:
        """``WalletTransactions::RecreditService``, for a voided invoice: the credits each of its
        ``invoiced`` transactions took go back to their wallet (an active one) as granted credits."""
        store, now = self.store, self.store.clock.now()
        for used in [t for t in self.transactions.values() if t.invoice is invoice and t.transaction_status
                     == "invoiced"]:  # fmt: skip
            wallet = used.wallet
            if wallet.status != "active":
                continue  # Lago refuses (wallet_not_active): the credits are lost
            tx = WalletTransaction(store.new_id(), wallet, "settled", "granted", "inbound", used.amount_cents,
                                   now, settled_at=now, remaining_cents=used.amount_cents,
                                   voided_invoice=invoice)  # fmt: skip
            self.transactions[tx.lago_id] = tx
            self._move(wallet, tx.amount_cents)
            store.effects.record("wallet_transaction.create", f"{wallet.lago_id}:granted")
            store.emit("wallet_transaction.created", "wallet_transaction", tx.webhook_json())

    def top_up_left(self, invoice: Invoice) -> int:
        """What is left of a top-up's own credits (a credit note takes back no more: Lago's
        ``exceeds_remaining_transaction_amount``)."""
        return sum(t.remaining_cents or 0 for t in self.transactions.values()
                   if t.invoice is invoice and t.transaction_status == "purchased" and t.status == "settled")  # fmt: skip

    def top_up_wallet(self, invoice: Invoice) -> Wallet | None:
        """The active wallet a ``credit`` invoice topped up (Lago's ``associated_active_wallet``)."""
        for tx in self.transactions.values():
            if (
                tx.invoice is invoice
                and tx.transaction_status == "purchased"
                and tx.wallet.status == "active"
            ):
                return tx.wallet
        return None

    def take_back(self, invoice: Invoice, cents: int, credit_note_id: str) -> None:
        """A credit note of a top-up: its refunded amount leaves the wallet, an outbound ``voided``
        transaction carrying the credit note (``WalletTransactions::VoidService``)."""
        wallet = self.top_up_wallet(invoice)
        if wallet is None or cents <= 0:
            return
        purchased = next(t for t in self.transactions.values() if t.invoice is invoice and t.wallet is wallet)
        now = self.store.clock.now()
        tx = WalletTransaction(self.store.new_id(), wallet, "settled", "voided", "outbound", cents, now,
                               settled_at=now, credit_note_id=credit_note_id)  # fmt: skip
        self.transactions[tx.lago_id] = tx
        self._consume(wallet, cents, tx, first=purchased)
        self._move(wallet, -cents)
        self.store.effects.record("wallet_transaction.create", f"{wallet.lago_id}:voided")

    def _move(self, wallet: Wallet, cents: int) -> None:
        wallet.balance_cents += cents
        now = self.store.clock.now()
        if cents > 0:
            wallet.last_balance_sync_at = now
        else:
            wallet.consumed_cents -= cents
            wallet.last_consumed_credit_at = now

    def of_wallet(self, lago_id: str, query: Any) -> list[WalletTransaction]:
        wallet = self.get(lago_id)
        items = [t for t in self.transactions.values() if t.wallet is wallet]
        for name in ("status", "transaction_status", "transaction_type"):
            if query.get(name):
                items = [t for t in items if getattr(t, name) == query[name]]
        return sorted(items, key=lambda t: t.created_at, reverse=True)

    # -- consumption -------------------------------------------------------------------------------

    def apply_prepaid_credits(self, invoice: Invoice) -> None:
        """``Credits::AppliedPrepaidCreditService``: the customer's active wallets in the invoice's
        currency pay what they can of the amount due, highest priority (lowest number) first."""
        due = invoice.total_amount_cents
        wallets = sorted(
            (w for w in self.wallets.values() if w.customer is invoice.customer and w.status == "active"
             and w.currency == invoice.currency and w.balance_cents > 0),
            key=lambda w: (w.priority, w.created_at),
        )  # fmt: skip
        now = self.store.clock.now()
        for wallet in wallets:
            if due <= 0:
                break
            used = min(due, wallet.balance_cents)
            tx = WalletTransaction(self.store.new_id(), wallet, "settled", "invoiced", "outbound", used, now,
                                   invoice=invoice, settled_at=now)  # fmt: skip
            self.transactions[tx.lago_id] = tx
            granted = self._consume(wallet, used, tx)
            self._move(wallet, -used)
            invoice.prepaid_credit_amount_cents += used
            invoice.prepaid_granted_credit_amount_cents = (
                invoice.prepaid_granted_credit_amount_cents or 0
            ) + granted
            due -= used
            self.store.effects.record("wallet_transaction.create", f"{wallet.lago_id}:invoiced")
            self.store.emit("wallet_transaction.created", "wallet_transaction", tx.webhook_json())
