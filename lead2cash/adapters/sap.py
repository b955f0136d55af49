"""SAP S/4HANA adapter: canonical invoices and credit notes -> balanced journal entries, and journal entries
and customers -> the shapes SAP's services take (SOAP JournalEntry, BAPI tables, API_BUSINESS_PARTNER deep
insert). Pure functions: no I/O; the binding resolves the business partner and calls the connector.

Account determination (:class:`PostingRules`): the receivable (reconciliation account) is debited on the
customer for the gross total; revenue is credited per product code, else per product family, else the
table's ``_default`` (a table value may split a line over several accounts by weight, e.g.
``{"41000000": 70, "41100000": 30}``; the split uses the largest-remainder method, so rounding is allocated
deterministically and nothing is dropped); each tax is credited under its SAP tax code (``tax_codes`` maps the
billing system's codes). Lines with the same account, tax code, profit and cost centre are summed into one
item. A credit note (or an invoice with a negative total) posts the reverse entry.

Each billing type posts by its nature (``invoice_postings``: the billing engine's invoice type ->
``revenue`` or ``advance``). A revenue invoice is the entry above. An advance invoice (Lago's ``credit``
invoice, a wallet top-up) is a customer prepayment: its lines are credited to ``advance_account`` (a
liability), never to revenue. Prepaid credits applied to an invoice (wallet consumption) settle part of
it: the advance is debited and the customer's receivable credited by that amount, in the same document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from typing import Any

from lead2cash.canonical_model import (
    CreditNote,
    Customer,
    DebitCredit,
    Invoice,
    JournalEntry,
    JournalEntryItem,
    JournalItemKind,
    Money,
    Payment,
    PaymentStatus,
    WalletTransaction,
    sum_money,
)
from lead2cash.canonical_model.invoice import TaxLine

DEFAULT_KEY = "_default"
POSTING_NATURES = ("revenue", "advance")
DEFAULT_INVOICE_POSTINGS: Mapping[str, str] = {
    "subscription": "revenue",
    "add_on": "revenue",
    "one_off": "revenue",
    "progressive_billing": "revenue",
    "credit": "advance",
}
"""Lago's invoice types by nature, when the system names no ``invoice_postings`` table."""
MAX_REFERENCE = 16  # DocumentReferenceID (XBLNR)
MAX_HEADER_TEXT = 25
MAX_ITEM_TEXT = 50
MAX_ASSIGNMENT = 18

INBOUND: dict[str, Any] = {}
"""No SAP records are read into the canonical model by the shipped routes (SAP is a target)."""


class PostingRuleError(ValueError):
    """The configured rules cannot post this document (no account, no tax code...): names what is missing."""


@dataclass(frozen=True)
class PostingRules:
    """GL account determination and document settings, from the system config and its mapping tables."""

    receivables_account: str
    revenue_accounts: Mapping[str, Any]
    tax_codes: Mapping[str, str]
    tax_account: str = "22000000"
    company_code: str | None = None
    company_code_by_currency: Mapping[str, str] = field(default_factory=dict)
    document_type: str = "DR"
    credit_document_type: str = "DG"
    profit_centers: Mapping[str, str] = field(default_factory=dict)
    cost_centers: Mapping[str, str] = field(default_factory=dict)
    header_prefix: str = "Invoice"
    credit_header_prefix: str = "Credit"
    # A document number longer than DocumentReferenceID: "reject" (permanent error) or "tail" (its longest
    # tail of whole "-" segments that fits, the same on every read so the crash-recovery lookup finds it).
    long_references: str = "reject"
    invoice_postings: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_INVOICE_POSTINGS))
    # Customer advances (a liability): wallet top-ups are credited here, prepaid credits used debited.
    advance_account: str | None = None
    # Granted (free) credits consumed on an invoice: a sales deduction (contra-revenue), debited instead of
    # the advance (no cash was received for them, so no liability was ever booked).
    granted_credits_account: str | None = None
    # Paid credits voided (taken away from the customer without a refund): the advance released to this
    # account (other operating income, "breakage"): the customer gave up credits it paid for.
    voided_credits_account: str | None = None
    # Bank / clearing account of incoming payments: "<provider>:<currency>", "<currency>", "<provider>"
    # or "_default" -> G/L account, tried in that order.
    clearing_accounts: Mapping[str, Any] = field(default_factory=dict)
    payment_document_type: str = "DZ"

    def clearing_account(self, currency: str, provider: str | None) -> str:
        keys = [f"{provider}:{currency}", currency, provider] if provider else [currency]
        for key in (*keys, DEFAULT_KEY):
            if key in self.clearing_accounts:
                return str(self.clearing_accounts[key])
        raise PostingRuleError(
            f"clearing_accounts: no account for currency {currency} (provider {provider or '-'}) "
            f"and no {DEFAULT_KEY!r} entry"
        )

    def posting_nature(self, billing_type: str | None) -> str:
        """``revenue`` or ``advance`` for a billing type (a document of no known type is revenue)."""
        if billing_type is None:
            return "revenue"
        nature = self.invoice_postings.get(billing_type, self.invoice_postings.get(DEFAULT_KEY))
        if nature is None:
            raise PostingRuleError(f"invoice_postings: no posting for billing type {billing_type!r}")
        if nature not in POSTING_NATURES:
            raise PostingRuleError(
                f"invoice_postings: {billing_type!r} -> {nature!r}; expected one of {', '.join(POSTING_NATURES)}"
            )
        return str(nature)

    def _required(self, name: str, why: str) -> str:
        account = getattr(self, name)
        if not account:
            raise PostingRuleError(f"{name}: not configured, and {why} needs it")
        return str(account)

    def advance(self, why: str) -> str:
        return self._required("advance_account", why)

    def granted(self, why: str) -> str:
        return self._required("granted_credits_account", why)

    def voided(self, why: str) -> str:
        return self._required("voided_credits_account", why)

    def company_code_for(self, currency: str) -> str:
        code = self.company_code_by_currency.get(currency) or self.company_code
        if not code:
            raise PostingRuleError(
                f"company_code_by_currency: no company code for currency {currency} (and no company_code)"
            )
        return code

    def sap_tax_code(self, code: str) -> str:
        mapped = self.tax_codes.get(code) or self.tax_codes.get(DEFAULT_KEY)
        if not mapped:
            raise PostingRuleError(f"tax_codes: no SAP tax code for tax code {code!r}")
        return str(mapped)


# ---------------------------------------------------------------------------------------------- lookups
def _lookup(table: Mapping[str, Any], product_code: str | None, family: str | None) -> Any:
    for key in (product_code, family, DEFAULT_KEY):
        if key is not None and key in table:
            return table[key]
    return None


def _revenue_split(value: Any, product_code: str | None, family: str | None) -> list[tuple[str, Decimal]]:
    if value is None:
        raise PostingRuleError(
            "revenue_accounts: no account for "
            f"product {product_code or '-'} / family {family or '-'} and no {DEFAULT_KEY!r} entry"
        )
    if isinstance(value, str | int):
        return [(str(value), Decimal(1))]
    if isinstance(value, Mapping) and value:
        split = [(str(account), Decimal(str(weight))) for account, weight in value.items()]
        if any(w < 0 for _, w in split) or sum(w for _, w in split) <= 0:
            raise PostingRuleError(
                f"revenue_accounts: weights of {family or product_code} must be >= 0, sum > 0"
            )
        return split
    raise PostingRuleError(f"revenue_accounts: expected an account or {{account: weight}}, got {value!r}")


def _text(value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    value = " ".join(value.split())
    return value[:limit] or None


def check_reference(number: str, long_references: str = "reject") -> str:
    """The DocumentReferenceID for a document number. Lago's numbers grow past 16 characters (a
    four-digit customer sequence, a credit note suffix); their leading segment is the organization's
    prefix, the same on every document, so the tail stays unique."""
    if len(number) <= MAX_REFERENCE:
        return number
    if long_references == "tail":
        parts = number.split("-")
        for start in range(1, len(parts)):
            tail = "-".join(parts[start:])
            if len(tail) <= MAX_REFERENCE:
                return tail
        raise PostingRuleError(
            f"invoice_number: {number!r} has no tail of whole '-' segments within SAP's "
            f"DocumentReferenceID ({MAX_REFERENCE} characters)"
        )
    raise PostingRuleError(
        f"invoice_number: {number!r} is longer than SAP's DocumentReferenceID ({MAX_REFERENCE} characters); "
        "the target option long_references: tail posts it under its tail"
    )


def refund_reference(number: str, long_references: str = "reject", suffix: str | None = None) -> str:
    """The DocumentReferenceID of a credit note's refund: its number with ``-RF``. A number too long for
    that keeps the credit note's own reference (unique among credit notes) and appends the suffix to it,
    never a shorter tail of the whole: the tail of ``<org>-<customer>-<seq>-CN001-RF`` would drop the
    customer's segment, and two customers' refunds would share one reference (the lookup would then take
    one for the other)."""
    dashed = suffix or REFUND_SUFFIX
    whole = f"{number}{dashed}"
    if len(whole) <= MAX_REFERENCE:
        return whole
    base = check_reference(number, long_references)
    bare = dashed.lstrip("-")
    # Lago's segments have fixed widths, so the reference without its hyphens is as unique as with them.
    for candidate in (f"{base}{dashed}", f"{base}{bare}", f"{base.replace('-', '')}{bare}"):
        if len(candidate) <= MAX_REFERENCE:
            return candidate
    raise PostingRuleError(
        f"credit_note_number: {number!r}: its refund's reference ({base!r} with {dashed!r}) is longer "
        f"than SAP's DocumentReferenceID ({MAX_REFERENCE} characters)"
    )


# ---------------------------------------------------------------------------------------------- entries
@dataclass
class _Group:
    account: str
    tax_code: str | None
    profit_center: str | None
    cost_center: str | None
    label: str | None
    amount: Money  # credit-positive


def _revenue_groups(
    lines: Sequence[tuple[str | None, str | None, str | None, Money]],
    rules: PostingRules,
    line_tax: Sequence[str | None],
    currency: str,
) -> list[_Group]:
    """``lines``: (product_code, family, description, credit-positive amount) with each line's SAP tax code."""
    groups: dict[tuple[str, str | None, str | None, str | None], _Group] = {}
    for (code, family, description, amount), tax_code in zip(lines, line_tax, strict=True):
        split = _revenue_split(_lookup(rules.revenue_accounts, code, family), code, family)
        shares = amount.allocate([w for _, w in split]) if len(split) > 1 else [amount]
        profit = _lookup(rules.profit_centers, code, family)
        cost = _lookup(rules.cost_centers, code, family)
        for (account, _), share in zip(split, shares, strict=True):
            key = (account, tax_code, profit, cost)
            group = groups.get(key)
            if group is None:
                groups[key] = _Group(account, tax_code, profit, cost, family or code or description, share)
            else:
                group.amount = group.amount + share
    return [g for g in groups.values() if not g.amount.is_zero()]


def _item(side_positive_is: DebitCredit, amount: Money, **fields: Any) -> JournalEntryItem:
    """An item from a signed amount: positive means ``side_positive_is``, negative the other side."""
    other = DebitCredit.CREDIT if side_positive_is is DebitCredit.DEBIT else DebitCredit.DEBIT
    side = side_positive_is if amount.is_positive() else other
    return JournalEntryItem(side=side, amount=abs(amount), **fields)


def _cash_legs(
    cash_in: Money, clearing_account: str, receivables_account: str, customer_id: str, **fields: Any
) -> tuple[JournalEntryItem, JournalEntryItem]:
    """Cash between the bank/clearing account and the customer's receivable: positive comes in (a
    payment clears the receivable), negative goes out (a refund). Returns (bank, receivable)."""
    return (
        _item(DebitCredit.DEBIT, cash_in, kind=JournalItemKind.GL, gl_account=clearing_account, **fields),
        _item(
            DebitCredit.CREDIT,
            cash_in,
            kind=JournalItemKind.RECEIVABLE,
            gl_account=receivables_account,
            customer_id=customer_id,
            **fields,
        ),
    )


def _advance_release(
    amount: Money, advance_account: str, account: str, **fields: Any
) -> tuple[JournalEntryItem, JournalEntryItem]:
    """Paid credits leaving the customer's advance: the advance debited, ``account`` credited (both G/L
    items with the same assignment and text). Returns (advance, other)."""
    return (
        _item(DebitCredit.DEBIT, amount, kind=JournalItemKind.GL, gl_account=advance_account, **fields),
        _item(DebitCredit.CREDIT, amount, kind=JournalItemKind.GL, gl_account=account, **fields),
    )


def _tax_bases(
    taxes: Sequence[TaxLine], lines: Sequence[tuple[str | None, Money]], subtotal: Money
) -> list[Money]:
    """Each tax's base: as the source reported it, else the lines tied to its code, else the subtotal."""
    bases = []
    for tax in taxes:
        if tax.taxable_amount is not None:
            bases.append(tax.taxable_amount)
            continue
        tied = [amount for code, amount in lines if code == tax.code]
        bases.append(sum_money(tied, subtotal.currency) if tied else subtotal)
    return bases


def _entry(
    *,
    entity_id: str,
    version: int,
    refs: Mapping[str, str],
    number: str,
    customer_id: str,
    currency: str,
    issue_date: date,
    posting_date: date | None,
    total: Money,
    subtotal: Money,
    lines: Sequence[tuple[str | None, str | None, str | None, str | None, Money]],
    taxes: Sequence[TaxLine],
    rules: PostingRules,
    sign: int,
    header_prefix: str,
    document_type: str,
    prepaid: Money | None = None,
    prepaid_granted: Money | None = None,
    assignment_of: str | None = None,
) -> JournalEntry:
    reference = check_reference(number, rules.long_references)
    # Tax code per line: its own, else the document's only tax code (a single-rate invoice).
    distinct = sorted({t.code for t in taxes})
    line_codes = [
        code if code is not None else (distinct[0] if len(distinct) == 1 else None) for *_x, code, _a in lines
    ]
    sap_codes = [rules.sap_tax_code(c) if c is not None else None for c in line_codes]
    revenue = _revenue_groups(
        [(pc, fam, desc, amount * sign) for pc, fam, desc, _c, amount in lines], rules, sap_codes, currency
    )
    items: list[JournalEntryItem] = []
    # The assignment (ZUONR) is the invoice's number on its own entry and on every entry against it (a
    # credit note, a void), so the customer's open items of one invoice match for clearing.
    assignment = _text(assignment_of or number, MAX_ASSIGNMENT)
    gross = total * sign
    if not gross.is_zero():
        items.append(
            _item(
                DebitCredit.DEBIT,
                gross,
                kind=JournalItemKind.RECEIVABLE,
                gl_account=rules.receivables_account,
                customer_id=customer_id,
                assignment=assignment,
                text=_text(f"{header_prefix} {number}", MAX_ITEM_TEXT),
            )
        )
    for g in revenue:
        items.append(
            _item(
                DebitCredit.CREDIT,
                g.amount,
                kind=JournalItemKind.GL,
                gl_account=g.account,
                tax_code=g.tax_code,
                profit_center=g.profit_center,
                cost_center=g.cost_center,
                assignment=assignment,
                text=_text(g.label, MAX_ITEM_TEXT),
            )
        )
    bases = _tax_bases(
        taxes,
        [(code, amount) for code, amount in zip(line_codes, (x[-1] for x in lines), strict=True)],
        subtotal,
    )
    for tax, base in zip(taxes, bases, strict=True):
        amount = tax.amount * sign
        if amount.is_zero():
            continue  # a 0 % tax has no ledger effect; its code still travels on the revenue items
        # Kept unsigned here; the SAP shapes give the base the tax item's sign.
        base_for_item = abs(base)
        items.append(
            _item(
                DebitCredit.CREDIT,
                amount,
                kind=JournalItemKind.TAX,
                gl_account=rules.tax_account,
                tax_code=rules.sap_tax_code(tax.code),
                tax_base_amount=base_for_item if not base_for_item.is_zero() else None,
                text=_text(tax.name or tax.code, MAX_ITEM_TEXT),
            )
        )
    if prepaid is not None and not prepaid.is_zero():
        # The part the customer's prepaid credits settled: owed no more, and the advance is used up.
        items.append(
            _item(
                DebitCredit.CREDIT,
                prepaid * sign,
                kind=JournalItemKind.RECEIVABLE,
                gl_account=rules.receivables_account,
                customer_id=customer_id,
                assignment=assignment,
                text=_text(f"Prepaid credits {number}", MAX_ITEM_TEXT),
            )
        )
        granted = prepaid_granted if prepaid_granted is not None else prepaid * 0
        paid = prepaid - granted
        if not paid.is_zero():
            items.append(
                _item(
                    DebitCredit.DEBIT,
                    paid * sign,
                    kind=JournalItemKind.GL,
                    gl_account=rules.advance("prepaid credits applied to an invoice"),
                    assignment=assignment,
                    text=_text(f"Prepaid credits {number}", MAX_ITEM_TEXT),
                )
            )
        if not granted.is_zero():
            # Free credits: no cash was received, no advance was booked; the discount is a sales deduction.
            items.append(
                _item(
                    DebitCredit.DEBIT,
                    granted * sign,
                    kind=JournalItemKind.GL,
                    gl_account=rules.granted("granted credits applied to an invoice"),
                    assignment=assignment,
                    text=_text(f"Granted credits {number}", MAX_ITEM_TEXT),
                )
            )
    if len(items) < 2:
        raise PostingRuleError(f"{number}: nothing to post (the document totals zero)")
    company_code = rules.company_code_for(currency)
    return JournalEntry(
        id=f"{entity_id}:je",
        refs=dict(refs),
        version=version,
        company_code=company_code,
        document_type=document_type,
        document_date=issue_date,
        posting_date=posting_date or issue_date,
        reference_id=reference,
        header_text=_text(f"{header_prefix} {number}", MAX_HEADER_TEXT),
        source_document_id=entity_id,
        items=tuple(items),
    )


def invoice_to_journal_entry(
    invoice: Invoice, rules: PostingRules, *, posting_date: date | None = None
) -> JournalEntry:
    """The ledger posting of a finalized invoice (the reverse posting when its total is negative), by the
    nature of its billing type; prepaid credits applied move from the advance to the receivable."""
    reverse = invoice.total.is_negative()
    if rules.posting_nature(invoice.billing_type) == "advance":
        # Every line to the customer advance: one account, no revenue, no profit or cost centre.
        account = rules.advance(f"billing type {invoice.billing_type!r}")
        rules = replace(rules, revenue_accounts={DEFAULT_KEY: account}, profit_centers={}, cost_centers={})
    return _entry(
        entity_id=invoice.id,
        version=invoice.version,
        refs=invoice.refs,
        number=invoice.invoice_number,
        customer_id=invoice.customer.id,
        currency=invoice.currency,
        issue_date=invoice.issue_date,
        posting_date=posting_date,
        total=invoice.total,
        subtotal=invoice.subtotal,
        lines=[
            (ln.product_code, ln.product_family, ln.description, ln.tax_code, ln.net_amount)
            for ln in invoice.lines
        ],
        taxes=invoice.taxes,
        rules=rules,
        sign=1,  # amounts carry their own signs; a negative total credits the receivable
        header_prefix=rules.header_prefix,
        document_type=rules.credit_document_type if reverse else rules.document_type,
        prepaid=invoice.prepaid_credit,
        prepaid_granted=invoice.prepaid_granted_credit,
    )


VOID_SUFFIX = "-RV"


def payment_reference(payment: Payment, rules: PostingRules) -> str:
    """``<invoice number>-P<version>``: one document per state of the invoice's payment, whatever it
    clears (the lookup after a lost response finds it by this reference alone)."""
    number = payment.reference or payment.invoice_ids[0]
    return check_reference(f"{number}-P{payment.version}", rules.long_references)


def payment_cleared_amount(payment: Payment) -> Money:
    """What this payment state has cleared on the receivable: the amount once it succeeded, nothing
    while pending, after a failure (a returned debit) or a refund."""
    if payment.status is PaymentStatus.SUCCEEDED:
        return payment.amount
    return Money.from_minor_units(0, payment.amount.currency)


def payment_record_reference(payment: Payment) -> str:
    """``P<digits of the Lago payment id>-<version>``: one document per state of one payment record
    (several partial payments of an invoice each have their own), within SAP's 16 characters. The
    leading hex digits of a random (version 4) id keep references apart."""
    suffix = f"-{payment.version}"
    digits = "".join(c for c in payment.id if c.isalnum()).upper()
    return f"P{digits[: MAX_REFERENCE - 1 - len(suffix)]}{suffix}"


def payment_to_journal_entry(
    payment: Payment, cleared_before: Money, rules: PostingRules, *, reference_id: str | None = None
) -> JournalEntry | None:
    """The clearing of a payment state against what earlier states cleared: a success clears the
    receivable against the bank/clearing account, a failure after it reverses only what was cleared.
    None: nothing changes on the ledger (a failure of a payment never cleared, a repeat).
    ``reference_id``: a payment record's (``payment_record_reference``); by default the invoice's state's."""
    delta = payment_cleared_amount(payment) - cleared_before
    if delta.is_zero():
        return None
    number = payment.reference or payment.invoice_ids[0]
    account = rules.clearing_account(payment.amount.currency, payment.method)
    assignment = _text(number, MAX_ASSIGNMENT)
    text = _text(f"Payment {number} {payment.status.value}", MAX_ITEM_TEXT)
    bank, receivable = _cash_legs(
        delta, account, rules.receivables_account, payment.customer_id, assignment=assignment, text=text
    )
    return JournalEntry(
        id=f"{payment.id}:v{payment.version}:je",
        refs=dict(payment.refs),
        version=payment.version,
        company_code=rules.company_code_for(payment.amount.currency),
        document_type=rules.payment_document_type,
        document_date=payment.payment_date,
        posting_date=payment.payment_date,
        reference_id=reference_id or payment_reference(payment, rules),
        header_text=_text(f"Payment {number}", MAX_HEADER_TEXT),
        source_document_id=payment.id,
        items=(bank, receivable),
    )


def void_reversal_entry(
    invoice: Invoice, rules: PostingRules, *, posting_date: date | None = None
) -> JournalEntry:
    """The reversal of a voided invoice's posting: the same accounts (the same rules, the same lines) on
    the other sides, under the reference ``<number>-RV`` (its tail, by ``long_references``) so it never
    passes for the original; the assignment stays the original's number, so the receivable clears.

    Prepaid credits the invoice consumed: Lago gives them back to the wallet as *granted* credits
    (``WalletTransactions::RecreditService``, a ``granted`` transaction carrying the voided invoice), so
    when Lago tells the granted part (traceable wallets) the whole of them is credited to the granted
    credits account, not back to the advance: the advance keeps equal to the wallets' paid credits, and
    their later use is debited to the same account. Without the split the advance is restored."""
    if invoice.prepaid_granted_credit is not None and invoice.prepaid_credit is not None:
        invoice = invoice.model_copy(update={"prepaid_granted_credit": invoice.prepaid_credit})
    original = invoice_to_journal_entry(invoice, rules, posting_date=posting_date)
    flipped = tuple(
        item.model_copy(
            update={"side": DebitCredit.CREDIT if item.side is DebitCredit.DEBIT else DebitCredit.DEBIT}
        )
        for item in original.items
    )
    return original.model_copy(
        update={
            "id": f"{invoice.id}:void",
            "items": flipped,
            "document_type": rules.credit_document_type,
            "reference_id": check_reference(f"{invoice.invoice_number}{VOID_SUFFIX}", rules.long_references),
            "header_text": _text(f"Void {invoice.invoice_number}", MAX_HEADER_TEXT),
        }
    )


def void_unposted_entry(invoice: Invoice, rules: PostingRules) -> JournalEntry | None:
    """A void of an invoice that was never posted (the void overtook it): nothing of the invoice is
    reversed, but Lago gave the paid credits it used back as granted credits, so they leave the advance
    for the granted-credits account (the advance keeps equal to the wallets' paid credits). Under the
    reversal's reference (``<number>-RV``); the customer as the assignment (no receivable line carries
    it). None: the invoice used no paid credits, or Lago does not tell the split."""
    granted, prepaid = invoice.prepaid_granted_credit, invoice.prepaid_credit
    if granted is None or prepaid is None:
        return None
    paid = prepaid - granted
    if paid.is_zero():
        return None
    assignment = _text(invoice.customer.id, MAX_ASSIGNMENT)
    text = _text(f"Credits back {invoice.invoice_number}", MAX_ITEM_TEXT)
    why = "paid credits given back as granted ones"
    advance, deduction = _advance_release(
        paid, rules.advance(why), rules.granted(why), assignment=assignment, text=text
    )
    return JournalEntry(
        id=f"{invoice.id}:void",
        refs=dict(invoice.refs),
        version=invoice.version,
        company_code=rules.company_code_for(invoice.currency),
        document_type=rules.credit_document_type,
        document_date=invoice.issue_date,
        posting_date=invoice.issue_date,
        reference_id=check_reference(f"{invoice.invoice_number}{VOID_SUFFIX}", rules.long_references),
        header_text=_text(f"Void {invoice.invoice_number}", MAX_HEADER_TEXT),
        source_document_id=invoice.id,
        items=(advance, deduction),
    )


def credit_note_to_journal_entry(
    note: CreditNote, rules: PostingRules, *, posting_date: date | None = None
) -> JournalEntry:
    """The reverse posting for a credit note: receivable credited, revenue and tax debited; the credit
    note of an advance (a wallet top-up) debits the advance instead of revenue."""
    if rules.posting_nature(note.billing_type) == "advance":
        account = rules.advance(f"a credit note of billing type {note.billing_type!r}")
        rules = replace(rules, revenue_accounts={DEFAULT_KEY: account}, profit_centers={}, cost_centers={})
    return _entry(
        entity_id=note.id,
        version=note.version,
        refs=note.refs,
        number=note.credit_note_number,
        customer_id=note.customer_id,
        currency=note.currency,
        issue_date=note.issue_date,
        posting_date=posting_date,
        total=note.total,
        subtotal=note.subtotal,
        lines=[(ln.product_code, ln.product_family, ln.description, None, ln.amount) for ln in note.lines],
        taxes=note.taxes,
        rules=rules,
        sign=-1,  # credit note amounts are positive: the document reverses them
        header_prefix=rules.credit_header_prefix,
        document_type=rules.credit_document_type,
        assignment_of=note.invoice_number,
    )


REFUND_SUFFIX = "-RF"
REFUND_DECLINED_SUFFIX = "-RD"


def credit_note_refund_entry(
    note: CreditNote, rules: PostingRules, *, declined: bool = False
) -> JournalEntry | None:
    """The cash leg of a credit note's refund: the customer's receivable debited (what the credit note
    credited is partly paid back, not owed to the customer any more) and the bank/clearing account of
    the refund's provider and currency credited, under ``<credit note number>-RF`` (payment document
    type). None: the credit note refunds nothing (all of it is credit kept for the customer).

    ``declined``: the reversal of that cash leg once the provider declined the refund (Lago's
    ``credit_note.refund_failure``): the same accounts on the other sides, under ``<number>-RD``; the
    amount is owed to the customer again. None: no declined refund."""
    amount = note.refund_declined if declined else note.refund
    if amount is None or amount.is_zero():
        return None
    number = note.credit_note_number
    account = rules.clearing_account(note.currency, note.payment_method)
    assignment = _text(note.invoice_number or number, MAX_ASSIGNMENT)
    what = "Refund declined" if declined else "Refund"
    text = _text(f"{what} {number}", MAX_ITEM_TEXT)
    bank, receivable = _cash_legs(
        amount if declined else -amount,
        account,
        rules.receivables_account,
        note.customer_id,
        assignment=assignment,
        text=text,
    )
    suffix = REFUND_DECLINED_SUFFIX if declined else REFUND_SUFFIX
    return JournalEntry(
        id=f"{note.id}:{'refund-declined' if declined else 'refund'}:je",
        refs=dict(note.refs),
        version=note.version,
        company_code=rules.company_code_for(note.currency),
        document_type=rules.payment_document_type,
        document_date=note.issue_date,
        posting_date=note.issue_date,
        reference_id=refund_reference(number, rules.long_references, suffix),
        header_text=_text(f"{what} {number}", MAX_HEADER_TEXT),
        source_document_id=note.id,
        items=(receivable, bank),
    )


VOIDED_CREDITS_PREFIX = "VC"


def voided_credits_reference(tx: WalletTransaction) -> str:
    """``VC`` and the transaction's id without hyphens, its last 14 characters (16 in all)."""
    return VOIDED_CREDITS_PREFIX + tx.id.replace("-", "")[-(MAX_REFERENCE - len(VOIDED_CREDITS_PREFIX)) :]


def voided_credits_entry(tx: WalletTransaction, rules: PostingRules) -> JournalEntry | None:
    """Paid credits voided in a wallet: the advance debited (no longer owed to the customer in credits)
    and ``voided_credits_account`` credited, by the part of the voided credits that paid credits funded
    (all of it when the billing engine does not tell). None for every other movement: top-ups are
    booked with their invoice, credits used with the invoice that used them, granted credits when they
    are used, credits a refunded top-up's credit note takes back with that credit note, and credits a
    void gives back with the void's reversal; voided granted credits were never booked."""
    if tx.kind != "voided" or tx.direction != "outbound" or tx.status != "settled" or tx.credit_note_id:
        return None
    paid = tx.purchased if tx.purchased is not None else tx.amount
    if paid.is_zero():
        return None
    reference = voided_credits_reference(tx)
    # The customer on both items (as the assignment): the advance is per customer, and no receivable
    # line carries it here.
    assignment = _text(tx.customer_id, MAX_ASSIGNMENT)
    text = _text(f"Voided credits {tx.customer_id}", MAX_ITEM_TEXT)
    why = "paid credits voided in a wallet"
    advance, income = _advance_release(
        paid, rules.advance(why), rules.voided(why), assignment=assignment, text=text
    )
    return JournalEntry(
        id=f"{tx.id}:je",
        refs=dict(tx.refs),
        version=tx.version,
        company_code=rules.company_code_for(tx.currency),
        document_type=rules.document_type,
        document_date=tx.transaction_date,
        posting_date=tx.transaction_date,
        reference_id=reference,
        header_text=_text(f"Voided credits {tx.customer_id}", MAX_HEADER_TEXT),
        source_document_id=tx.id,
        items=(advance, income),
    )


# ---------------------------------------------------------------------------------------------- SAP shapes
def _signed(item: JournalEntryItem) -> Decimal:
    return item.signed_amount.amount


def _amount(value: Decimal, currency: str) -> dict[str, Any]:
    return {"_value_1": value, "currencyCode": currency}


def _dc(value: Decimal) -> str:
    return "S" if value > 0 else "H"


@dataclass(frozen=True)
class SoapHeader:
    created_by: str = "LEAD2CASH"
    logical_system: str | None = None
    original_reference_type: str = "BKPFF"
    business_transaction_type: str = "RFBU"


def journal_entry_to_soap(
    entry: JournalEntry, debtors: Mapping[str, str], header: SoapHeader
) -> dict[str, Any]:
    """The ``JournalEntry`` element of JournalEntryCreateRequest (zeep's dict form). Amounts are signed
    (debit positive) with a matching DebitCreditCode; ``debtors`` maps canonical customer ids to SAP
    business partner (customer) numbers."""
    gl: list[dict[str, Any]] = []
    debtor_items: list[dict[str, Any]] = []
    tax_items: list[dict[str, Any]] = []
    for n, item in enumerate(entry.items, start=1):
        signed = _signed(item)
        currency = item.amount.currency
        if item.kind is JournalItemKind.RECEIVABLE:
            customer = item.customer_id or ""
            if customer not in debtors:
                raise PostingRuleError(f"items[{n - 1}]: no SAP business partner for customer {customer}")
            debtor_items.append(
                _compact(
                    {
                        "ReferenceDocumentItem": str(n),
                        "Debtor": debtors[customer],
                        "AmountInTransactionCurrency": _amount(signed, currency),
                        "DebitCreditCode": _dc(signed),
                        "DocumentItemText": item.text,
                        "AssignmentReference": item.assignment,
                    }
                )
            )
        elif item.kind is JournalItemKind.TAX:
            base = item.tax_base_amount.amount if item.tax_base_amount is not None else Decimal(0)
            tax_items.append(
                _compact(
                    {
                        "ReferenceDocumentItem": str(n),
                        "TaxCode": {"_value_1": item.tax_code},
                        "AmountInTransactionCurrency": _amount(signed, currency),
                        "DebitCreditCode": _dc(signed),
                        "TaxBaseAmountInTransCrcy": _amount(base if signed > 0 else -base, currency),
                    }
                )
            )
        else:
            assignment = _compact({"ProfitCenter": item.profit_center, "CostCenter": item.cost_center})
            gl.append(
                _compact(
                    {
                        "ReferenceDocumentItem": str(n),
                        "GLAccount": {"_value_1": item.gl_account},
                        "AmountInTransactionCurrency": _amount(signed, currency),
                        "DebitCreditCode": _dc(signed),
                        "DocumentItemText": item.text,
                        "AssignmentReference": item.assignment,
                        "Tax": {"TaxCode": {"_value_1": item.tax_code}} if item.tax_code else None,
                        "AccountAssignment": assignment or None,
                    }
                )
            )
    return _compact(
        {
            "OriginalReferenceDocumentType": header.original_reference_type,
            "OriginalReferenceDocument": entry.reference_id,
            "OriginalReferenceDocumentLogicalSystem": header.logical_system,
            "BusinessTransactionType": header.business_transaction_type,
            "AccountingDocumentType": entry.document_type,
            "DocumentReferenceID": entry.reference_id,
            "DocumentHeaderText": entry.header_text,
            "CreatedByUser": header.created_by[:12],
            "CompanyCode": entry.company_code,
            "DocumentDate": entry.document_date,
            "PostingDate": entry.posting_date,
            "Item": gl,
            "DebtorItem": debtor_items,
            "ProductTaxItem": tax_items,
        }
    )


def journal_entry_to_bapi(entry: JournalEntry, debtors: Mapping[str, str], username: str) -> dict[str, Any]:
    """Parameters of ``BAPI_ACC_DOCUMENT_POST`` / ``_CHECK``: DOCUMENTHEADER and the ACCOUNTGL,
    ACCOUNTRECEIVABLE, ACCOUNTTAX and CURRENCYAMOUNT tables, joined by ITEMNO_ACC."""
    gl: list[dict[str, Any]] = []
    receivable: list[dict[str, Any]] = []
    tax: list[dict[str, Any]] = []
    amounts: list[dict[str, Any]] = []
    for n, item in enumerate(entry.items, start=1):
        itemno = f"{n:010d}"
        signed = _signed(item)
        amount_row: dict[str, Any] = {
            "ITEMNO_ACC": itemno,
            "CURRENCY": item.amount.currency,
            "AMT_DOCCUR": signed,
        }
        if item.kind is JournalItemKind.RECEIVABLE:
            customer = item.customer_id or ""
            if customer not in debtors:
                raise PostingRuleError(f"items[{n - 1}]: no SAP business partner for customer {customer}")
            receivable.append(
                _compact(
                    {
                        "ITEMNO_ACC": itemno,
                        "CUSTOMER": debtors[customer],
                        "ITEM_TEXT": item.text,
                        "ALLOC_NMBR": item.assignment,
                    }
                )
            )
        elif item.kind is JournalItemKind.TAX:
            tax.append({"ITEMNO_ACC": itemno, "GL_ACCOUNT": item.gl_account, "TAX_CODE": item.tax_code})
            base = item.tax_base_amount.amount if item.tax_base_amount is not None else Decimal(0)
            amount_row["AMT_BASE"] = base if signed > 0 else -base
        else:
            gl.append(
                _compact(
                    {
                        "ITEMNO_ACC": itemno,
                        "GL_ACCOUNT": item.gl_account,
                        "ITEM_TEXT": item.text,
                        "ALLOC_NMBR": item.assignment,
                        "TAX_CODE": item.tax_code,
                        "PROFIT_CTR": item.profit_center,
                        "COSTCENTER": item.cost_center,
                    }
                )
            )
        amounts.append(amount_row)
    header = _compact(
        {
            "BUS_ACT": "RFBU",
            "USERNAME": username[:12],
            "HEADER_TXT": entry.header_text,
            "COMP_CODE": entry.company_code,
            "DOC_DATE": entry.document_date,
            "PSTNG_DATE": entry.posting_date,
            "DOC_TYPE": entry.document_type,
            "REF_DOC_NO": entry.reference_id,
        }
    )
    return {
        "DOCUMENTHEADER": header,
        "ACCOUNTGL": gl,
        "ACCOUNTRECEIVABLE": receivable,
        "ACCOUNTTAX": tax,
        "CURRENCYAMOUNT": amounts,
    }


def _compact(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != [] and v != {}}


# ---------------------------------------------------------------------------------------------- partners
@dataclass(frozen=True)
class PartnerRules:
    search_field: str = "SearchTerm1"
    category: str = "2"
    grouping: str | None = None
    roles: tuple[str, ...] = ("FLCU00", "FLCU01")
    payment_terms: str | None = None
    language: str | None = None


SEARCH_TERM_LENGTH = 20


def search_value(raw: str) -> str:
    """The search key as SAP stores it (upper case, at most 20 characters)."""
    value = raw.strip().upper()
    if not value or len(value) > SEARCH_TERM_LENGTH:
        raise PostingRuleError(
            f"business_partner.search_value: {raw!r} must be 1..{SEARCH_TERM_LENGTH} characters"
        )
    return value


def _region(region: str | None, country: str) -> str | None:
    if not region:
        return None
    code = region.upper().removeprefix(f"{country}-")
    return code if 1 <= len(code) <= 3 and code.isalnum() else None


def business_partner_payload(
    customer: Customer,
    key: str,
    rules: PartnerRules,
    *,
    company_code: str,
    reconciliation_account: str,
) -> dict[str, Any]:
    """Deep insert for ``A_BusinessPartner``: an organization with the customer roles, its billing address
    and the customer's company code data (role FLCU00 plus a reconciliation account, as S/4HANA requires)."""
    name = " ".join((customer.legal_name or customer.name).split())
    payload: dict[str, Any] = {
        "BusinessPartnerCategory": rules.category,
        rules.search_field: search_value(key),
        "to_BusinessPartnerRole": [{"BusinessPartnerRole": role} for role in rules.roles],
    }
    if rules.category == "1":
        payload["LastName"] = name[:40]
    else:
        payload["OrganizationBPName1"] = name[:40]
        if len(name) > 40:
            payload["OrganizationBPName2"] = name[40:80]
    if rules.grouping:
        payload["BusinessPartnerGrouping"] = rules.grouping
    language = (rules.language or customer.language or "")[:2].upper()
    if language:
        payload["Language"] = language
    address = customer.billing_address
    if address is not None:
        payload["to_BusinessPartnerAddress"] = [
            _compact(
                {
                    "Country": address.country,
                    "CityName": _text(address.city, 40),
                    "StreetName": _text(address.line1, 60),
                    "PostalCode": _text(address.postal_code, 10),
                    "Region": _region(address.region, address.country),
                    "Language": language or None,
                }
            )
        ]
    payload["to_Customer"] = {
        "to_CustomerCompany": [customer_company_payload(company_code, reconciliation_account, rules)]
    }
    return payload


def customer_company_payload(
    company_code: str, reconciliation_account: str, rules: PartnerRules
) -> dict[str, Any]:
    return _compact(
        {
            "CompanyCode": company_code,
            "ReconciliationAccount": reconciliation_account,
            "PaymentTerms": rules.payment_terms,
        }
    )
